"""Daily sums are bounded (issue 9 §2.2, docs/DESIGN.md 4.3): a (merchant, currency, day) sum is exact, and
one that leaves int64 is published as null in both engines, never wrapped, saturated or crashing.

10,000 maximal amounts (10^15 each) make 10^19 > 2^63 - 1. Pure functions of
each engine, then `paybeam reconcile` with both engines. Every id is made up.
"""
from __future__ import annotations

import pytest

from pipelines.reconcile_batch import ENGINES
from schemas.money import INT64_MAX, MAX_MINOR_UNITS, within_int64
from schemas.record_tables import PAYMENT_TABLE, SETTLEMENT_TABLE, records_to_table
from schemas.records import PaymentEvent, SettlementLine
from tests.cli_helpers import daily_totals, reconcile, results, run_summary
from tests.engine_parity import assert_same_outputs
from transforms.columnar.daily_totals import combine_partials, ledger_partials, settlement_partials
from transforms.daily_totals import (
    DailyTotalsFn,
    SettlementDay,
    ledger_contribution,
    published_sums,
    settlement_contribution,
)

T0 = 1_767_607_200_000  # 2026-01-05T10:00:00Z
MANY = 10_000
FITS = INT64_MAX // MAX_MINOR_UNITS  # 9,223 maximal amounts still fit


def captures(count: int, merchant: str = "m_big", amount: int = MAX_MINOR_UNITS, event_type="CAPTURED"):
    return [PaymentEvent(f"{merchant}_{event_type}_{i}", f"p_{i}", event_type, "stripe", f"ch_{i}", merchant,
                         amount, "USD", T0 + i) for i in range(count)]


def lines(count: int, record_type: str, amount: int = MAX_MINOR_UNITS):
    return [SettlementLine(f"s_{record_type}_{i}", "stripe", f"ch_{i}", "m_big", record_type, amount, 0, amount,
                           "USD", "2026-01-05", T0 + i, None) for i in range(count)]


def per_element(payments, settlements):
    fn = DailyTotalsFn()
    accumulator = fn.create_accumulator()
    for contribution in [*map(ledger_contribution, payments), *map(settlement_contribution, settlements)]:
        accumulator = fn.add_input(accumulator, contribution)
    sums, _ = fn.extract_output(accumulator)
    return published_sums(sums)


def columnar(payments, settlements):
    day = SettlementDay()
    partials = [ledger_partials(records_to_table(payments, PAYMENT_TABLE), day),
                settlement_partials(records_to_table(settlements, SETTLEMENT_TABLE), day)]
    (row,) = combine_partials(partials, day).to_pylist()
    return (row["captured_minor"], row["refunded_minor"], row["chargeback_minor"], row["ledger_event_count"],
            row["settled_gross_minor"], row["fee_minor"], row["settled_net_minor"], row["adjustment_minor"],
            row["payout_minor"], row["settlement_line_count"])


def test_within_int64_is_exact_at_the_bounds():
    assert within_int64(INT64_MAX) == INT64_MAX and within_int64(-(2**63)) == -(2**63)
    assert within_int64(INT64_MAX + 1) is None and within_int64(-(2**63) - 1) is None


@pytest.mark.parametrize("engine", [per_element, columnar])
def test_a_sum_past_int64_is_null_and_the_rest_exact(engine):
    sums = engine(captures(MANY) + captures(3, event_type="REFUNDED", amount=7), lines(2, "PAYOUT"))
    assert sums == (None, 21, 0, MANY + 3, 0, 0, 0, 0, 2 * MAX_MINOR_UNITS, 2)


@pytest.mark.parametrize("engine", [per_element, columnar])
def test_the_largest_count_that_fits_is_exact_and_one_more_is_null(engine):
    assert engine(captures(FITS), [])[0] == FITS * MAX_MINOR_UNITS
    assert engine(captures(FITS + 1), [])[0] is None


@pytest.mark.parametrize("engine", [per_element, columnar])
def test_negative_sums_and_partials_that_leave_int64_on_the_way(engine):
    # Refunds flow out: the gross sum of MANY refunds is below -2^63; with as many captures it is exactly 0,
    # although partial sums leave int64 on the way (each input's partial table alone does).
    assert engine([], lines(MANY, "REFUND"))[4] is None
    assert engine([], lines(MANY, "REFUND") + lines(MANY, "CAPTURE"))[4:7] == (0, 0, 0)


def test_both_engines_agree_on_one_group_of_max_amounts():
    payments, settlements = captures(MANY), lines(MANY, "FEE")
    assert per_element(payments, settlements) == columnar(payments, settlements)


HEADER = "event_id,payment_id,event_type,processor,processor_reference,merchant_id,amount_minor,currency,event_time"
SETTLEMENT_HEADER = ("settlement_id,processor,processor_reference,merchant_id,record_type,gross_minor,fee_minor,"
                     "net_minor,currency,settlement_date,booked_time,payout_id")


def test_reconcile_publishes_null_for_an_overflowing_day_in_both_engines(tmp_path):
    (tmp_path / "payments").mkdir()
    (tmp_path / "settlements").mkdir()
    rows = [f"e_{i},p_{i},AUTHORIZED,stripe,ch_{i},m_big,{MAX_MINOR_UNITS},USD,2026-01-05T10:00:00Z"
            for i in range(MANY)]
    rows.append("e_small,p_s,CAPTURED,stripe,ch_s,m_small,250,USD,2026-01-05T10:00:00Z")
    (tmp_path / "payments" / "p.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    (tmp_path / "settlements" / "s.csv").write_text("\n".join([SETTLEMENT_HEADER, *[
        f"s_{i},stripe,ch_{i},m_big,PAYOUT,{MAX_MINOR_UNITS},0,{MAX_MINOR_UNITS},USD,2026-01-05,2026-01-05T11:00:00Z,"
        for i in range(MANY)], "s_small,stripe,ch_s,m_small,CAPTURE,250,0,250,USD,2026-01-05,2026-01-05T11:00:00Z,"])
        + "\n")
    outputs = {}
    for engine in ENGINES:
        outputs[engine] = str(tmp_path / f"out-{engine}")
        assert reconcile(str(tmp_path / "payments" / "*"), str(tmp_path / "settlements" / "*"), outputs[engine],
                         "--csv", "--engine", engine) == 0
    assert_same_outputs(*outputs.values())
    out = outputs[ENGINES[0]]
    totals = {row["merchant_id"]: row for row in daily_totals(out)}
    assert totals["m_big"]["payout_minor"] is None
    assert (totals["m_big"]["ledger_event_count"], totals["m_big"]["settlement_line_count"]) == (MANY, MANY)
    assert (totals["m_big"]["captured_minor"], totals["m_small"]["captured_minor"]) == (0, 250)
    assert [row["status"] for row in results(out)] == ["MATCHED"]
    assert run_summary(out)["inputs"]["payments"]["accepted"] == MANY + 1
