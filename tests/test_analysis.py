"""The notebooks' analysis package: frames, breaks, money at risk, drill-downs, panes and charts."""
from __future__ import annotations

import json
from datetime import timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from matplotlib.figure import Figure

from analysis import charts, panes
from analysis import results as ar
from schemas import arrow
from schemas.records import DailyTotal, DeadLetter, PaymentEvent, ReconciliationResult, SettlementLine
from tests.beam_helpers import DAY, HOUR, at, payment, settlement

DAY_TD = timedelta(days=1)


def result(reference, status, revision=1, ledger=None, settled=None, currency="USD", processor="stripe",
           merchant="m_1", kind="CAPTURE", event_id=None, settlement_id=None, event_time=None, booked_time=None,
           is_final=True):
    difference = settled - ledger if ledger is not None and settled is not None else None
    return ReconciliationResult(processor, reference, kind, status, merchant, currency, ledger, settled, difference,
                                event_id, settlement_id, event_time, booked_time, revision, is_final)


def total(day, pane_index, captured, merchant="m_1", currency="USD", breaks=0, timing="ON_TIME", net=0):
    start = at() + (int(day[-2:]) - 5) * DAY
    return DailyTotal(merchant, currency, day, start, start + DAY, captured, 0, 0, 1, net, 0, net, 0, 0, 1,
                      breaks, timing, pane_index, False)


@pytest.fixture
def results_frame():
    return ar.records_frame([
        result("r_match", "MATCHED", ledger=1000, settled=1000, event_id="e1", settlement_id="s1", event_time=at()),
        # revised key: its answer is the last revision only
        result("r_late", "PENDING", 1, ledger=500, event_id="e2", event_time=at(), is_final=False),
        result("r_late", "MISSING_SETTLEMENT", 2, ledger=500, event_id="e2", event_time=at(), is_final=False),
        result("r_late", "MATCHED", 3, ledger=500, settled=500, event_id="e2", settlement_id="s2", event_time=at()),
        result("r_amt1", "AMOUNT_MISMATCH", ledger=1000, settled=995, event_id="e3", settlement_id="s3",
               event_time=at(DAY_TD)),
        result("r_amt2", "AMOUNT_MISMATCH", ledger=1000, settled=1003, event_id="e4", settlement_id="s4",
               event_time=at(DAY_TD), processor="adyen"),
        result("r_amt3", "AMOUNT_MISMATCH", ledger=1000, settled=941, currency="KWD", event_id="e5",
               settlement_id="s5", event_time=at(), merchant="m_2"),
        result("r_miss", "MISSING_SETTLEMENT", ledger=2500, event_id="e6", event_time=at()),
        result("r_unexp", "UNEXPECTED_SETTLEMENT", settled=700, settlement_id="s7", booked_time=at(DAY_TD * 2),
               processor="adyen"),
        result("r_dup", "MATCHED", ledger=48210, settled=48210, currency="JPY", event_id="e8", settlement_id="s8",
               event_time=at()),
        result("r_dup", "DUPLICATE_SETTLEMENT", settled=48210, currency="JPY", settlement_id="s9",
               booked_time=at(DAY_TD), processor="stripe"),
        result("r_pend", "PENDING", ledger=100, event_id="e10", event_time=at()),
    ], ReconciliationResult)


def test_records_frame_keeps_money_integer_and_missing_sides_missing():
    big = 2 ** 53 + 1  # not representable as a float
    frame = ar.records_frame([result("r1", "MISSING_SETTLEMENT", ledger=big, event_time=at())], ReconciliationResult)
    assert str(frame["ledger_amount_minor"].dtype) == "Int64"
    assert frame.loc[0, "ledger_amount_minor"] == big
    assert pd.isna(frame.loc[0, "settled_amount_minor"])
    assert list(frame.columns) == list(ReconciliationResult._fields)


def test_normalize_turns_float_columns_from_ib_collect_back_into_integers_and_refuses_fractions():
    floats = pd.DataFrame({"ledger_amount_minor": [1000.0, None], "revision": [1, 2], "is_final": [True, False]})
    frame = ar.normalize(floats, ReconciliationResult)
    assert frame["ledger_amount_minor"].tolist()[0] == 1000 and pd.isna(frame["ledger_amount_minor"][1])
    assert str(frame["ledger_amount_minor"].dtype) == "Int64"
    with pytest.raises(ValueError, match="ledger_amount_minor"):
        ar.normalize(pd.DataFrame({"ledger_amount_minor": [10.5]}), ReconciliationResult)


def test_latest_revision_and_breaks(results_frame):
    answer = ar.latest_revision(results_frame)
    assert answer[answer["processor_reference"] == "r_late"]["status"].tolist() == ["MATCHED"]
    assert len(answer[answer["processor_reference"] == "r_dup"]) == 2  # both rows of the key's answer
    breaks = ar.breaks(results_frame)
    assert sorted(breaks["processor_reference"]) == ["r_amt1", "r_amt2", "r_amt3", "r_dup", "r_miss", "r_unexp"]


def test_status_counts_in_readme_order(results_frame):
    counts = ar.status_counts(results_frame)
    assert counts["status"].tolist() == ["MATCHED", "AMOUNT_MISMATCH", "MISSING_SETTLEMENT",
                                         "UNEXPECTED_SETTLEMENT", "DUPLICATE_SETTLEMENT", "PENDING"]
    assert counts.set_index("status")["rows"].to_dict() == {
        "MATCHED": 3, "AMOUNT_MISMATCH": 3, "MISSING_SETTLEMENT": 1, "UNEXPECTED_SETTLEMENT": 1,
        "DUPLICATE_SETTLEMENT": 1, "PENDING": 1}
    assert counts.set_index("status")["is_break"].to_dict()["PENDING"] is False


def test_breaks_by_processor_and_merchant(results_frame):
    by_processor = ar.breaks_by(results_frame, "processor")
    assert by_processor.index.tolist() == ["stripe", "adyen"]  # most breaks first
    assert by_processor.loc["stripe"].to_dict() == {
        "AMOUNT_MISMATCH": 2, "MISSING_SETTLEMENT": 1, "UNEXPECTED_SETTLEMENT": 0, "DUPLICATE_SETTLEMENT": 1,
        "total": 4}
    assert by_processor.loc["adyen", "total"] == 2
    by_merchant = ar.breaks_by(results_frame, "merchant_id")
    assert by_merchant["total"].to_dict() == {"m_1": 5, "m_2": 1}


def test_amount_at_risk_per_status_and_currency_never_mixes_currencies(results_frame):
    table = ar.amount_at_risk(results_frame)
    rows = {(r["status"], r["currency"]): r for r in table.to_dict("records")}
    # USD mismatches -5 and +3: 8 at risk (absolute values); KWD stays apart, 3 decimals
    assert rows[("AMOUNT_MISMATCH", "USD")]["at_risk_minor"] == 8
    assert rows[("AMOUNT_MISMATCH", "USD")]["rows"] == 2
    assert rows[("AMOUNT_MISMATCH", "KWD")]["at_risk_minor"] == 59
    assert rows[("AMOUNT_MISMATCH", "KWD")]["at_risk"] == "0.059 KWD"
    assert rows[("MISSING_SETTLEMENT", "USD")]["at_risk_minor"] == 2500  # the ledger amount
    assert rows[("UNEXPECTED_SETTLEMENT", "USD")]["at_risk_minor"] == 700  # the settled amount
    assert rows[("DUPLICATE_SETTLEMENT", "JPY")]["at_risk"] == "48210 JPY"  # JPY has no minor digits
    assert set(table["status"]) == {"AMOUNT_MISMATCH", "MISSING_SETTLEMENT", "UNEXPECTED_SETTLEMENT",
                                    "DUPLICATE_SETTLEMENT"}  # MATCHED and PENDING are not at risk
    assert table["at_risk_minor"].dtype == "int64"


def test_with_major_units_is_exact_text():
    frame = pd.DataFrame({"amount_minor": pd.array([123456789012345678, -5, None], dtype="Int64"),
                          "currency": ["USD", "KWD", "EUR"]})
    shown = ar.with_major_units(frame, ["amount_minor"])
    assert shown["amount_major"].tolist() == ["1234567890123456.78", "-0.005", None]
    with pytest.raises(TypeError, match="float"):  # a float column has already lost precision
        ar.with_major_units(pd.DataFrame({"amount_minor": [1.0, None], "currency": ["USD", "USD"]}), ["amount_minor"])


def test_drill_down_finds_the_rows_records_and_marks_its_own():
    payments = ar.records_frame([
        payment("e1", "r_dup", 1000), payment("e2", "r_dup", 300, time=DAY, event_type="REFUNDED"),
        payment("e3", "other", 1000)], PaymentEvent)
    settlements = ar.records_frame([
        settlement("s1", "r_dup", 1000, time=HOUR), settlement("s2", "r_dup", 1000, time=2 * HOUR),
        settlement("s3", "r_dup", 300, time=DAY, record_type="REFUND"), settlement("s4", "other", 1000)],
        SettlementLine)
    results = ar.records_frame([
        result("r_dup", "MATCHED", ledger=1000, settled=1000, event_id="e1", settlement_id="s1"),
        result("r_dup", "DUPLICATE_SETTLEMENT", settled=1000, settlement_id="s2"),
        result("r_dup", "MATCHED", kind="REFUND", ledger=300, settled=300, event_id="e2", settlement_id="s3"),
    ], ReconciliationResult)
    row = ar.pick_break(results, "DUPLICATE_SETTLEMENT")
    drill = ar.drill_down(row, payments, settlements, results)
    assert drill.ledger_events["event_id"].tolist() == ["e1"]  # the CAPTURE key only, not the refund
    assert drill.settlement_lines["settlement_id"].tolist() == ["s1", "s2"]
    assert drill.settlement_lines["is_this_row"].tolist() == [False, True]
    assert drill.key_results["status"].tolist() == ["MATCHED", "DUPLICATE_SETTLEMENT"]
    assert drill.result.loc[0, "settlement_id"] == "s2"
    with pytest.raises(LookupError):
        ar.pick_break(results, "AMOUNT_MISMATCH")


def test_final_panes_and_totals_per_day_sum_merchants_but_not_currencies():
    totals = ar.records_frame([
        total("2026-01-05", 0, 100, timing="EARLY"), total("2026-01-05", 1, 150),
        total("2026-01-05", 2, 170, timing="LATE", breaks=1),
        total("2026-01-05", 0, 30, merchant="m_2"),
        total("2026-01-05", 0, 999, currency="JPY"),
        total("2026-01-06", 0, 40),
    ], DailyTotal)
    final = ar.final_panes(totals)
    assert sorted(final["captured_minor"].tolist()) == [30, 40, 170, 999]
    per_day = ar.totals_per_day(totals)
    assert per_day[["settlement_day", "currency", "captured_minor", "break_count"]].values.tolist() == [
        ["2026-01-05", "JPY", 999, 0], ["2026-01-05", "USD", 200, 1], ["2026-01-06", "USD", 40, 0]]


def test_breaks_per_day_uses_the_settlement_line_when_there_is_no_ledger_event(results_frame):
    table = ar.breaks_per_day(results_frame)
    assert table.index.tolist() == ["2026-01-05", "2026-01-06", "2026-01-07"]
    assert table.loc["2026-01-07", "UNEXPECTED_SETTLEMENT"] == 1  # booked on the 7th, no ledger event
    assert table.loc["2026-01-06", "AMOUNT_MISMATCH"] == 2
    assert table.loc["2026-01-06", "DUPLICATE_SETTLEMENT"] == 1
    assert int(table.values.sum()) == 6


def test_load_outputs_reads_parquet_times_as_epoch_millis(tmp_path):
    rows = [result("r1", "MISSING_SETTLEMENT", ledger=2500, event_id="e1", event_time=at())._asdict()]
    (tmp_path / "results").mkdir()
    (tmp_path / "daily_totals").mkdir()
    (tmp_path / "dead_letters").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=arrow.RECONCILIATION_RESULT),
                   str(tmp_path / "results" / "results-00000-of-00001.parquet"))
    pq.write_table(pa.Table.from_pylist([total("2026-01-05", 0, 100)._asdict()], schema=arrow.DAILY_TOTAL),
                   str(tmp_path / "daily_totals" / "daily_totals-00000-of-00001.parquet"))
    letter = DeadLetter("payments", "p.csv:3", "validate", "unknown currency 'XXX'", "raw")
    (tmp_path / "dead_letters" / "dead_letters-00000-of-00001.jsonl").write_text(json.dumps(letter._asdict()) + "\n")
    outputs = ar.load_outputs(str(tmp_path))
    assert outputs.results.loc[0, "event_time"] == at()
    assert pd.isna(outputs.results.loc[0, "booked_time"])
    assert outputs.results.loc[0, "ledger_amount_minor"] == 2500
    assert outputs.daily_totals.loc[0, "window_start"] == at()
    assert outputs.dead_letters["reason"].tolist() == ["unknown currency 'XXX'"]


def test_outputs_from_records_builds_each_frame():
    outputs = ar.outputs_from_records({"results": [result("r1", "PENDING", ledger=1)], "payments": [],
                                       "dead_letters": []})
    assert len(outputs.results) == 1 and outputs.payments.empty and outputs.settlements is None


def test_charts_are_figures_with_a_panel_per_currency(results_frame):
    totals = ar.records_frame([total("2026-01-05", 0, 100), total("2026-01-05", 0, 999, currency="JPY"),
                               total("2026-01-06", 0, 40)], DailyTotal)
    figure = charts.daily_totals_chart(totals)
    assert isinstance(figure, Figure)
    assert [axis.get_ylabel() for axis in figure.axes] == ["JPY", "USD"]
    usd_captured = figure.axes[1].lines[0].get_ydata().tolist()
    assert usd_captured == [1.0, 0.4]  # major units, per day
    bars = charts.break_counts_chart(results_frame)
    heights = sorted(patch.get_height() for patch in bars.axes[0].patches if patch.get_height() > 0)
    assert sum(heights) == 6
    with pytest.raises(ValueError):
        charts.daily_totals_chart(ar.records_frame([], DailyTotal))


@pytest.fixture(scope="module")
def pane_run():
    return panes.run_pane_scenario()


def test_pane_scenario_has_early_on_time_and_late_panes(pane_run):
    table = panes.pane_table(pane_run)
    timings = table["pane_timing"].tolist()
    assert timings[0] == "EARLY" and timings[1] == "ON_TIME" and set(timings[2:]) == {"LATE"}
    assert table["pane_index"].tolist() == list(range(len(table)))
    captured = table["captured_minor"].tolist()
    assert captured[0] == 3500 and captured[1] == 7500 and captured[-1] == 8200  # accumulating panes
    assert captured == sorted(captured)
    # ref_c counts as a break while MISSING_SETTLEMENT, then its late settlement matches it; ref_d stays missing
    assert table["break_count"].tolist()[-1] == 1 and 1 in table["break_count"].tolist()[:-1]
    assert table["settled_gross_minor"].tolist()[-1] == 7500


def test_pane_scenario_drops_the_record_beyond_allowed_lateness(pane_run):
    check = panes.captured_check(pane_run)["minor_units"].tolist()
    assert check == [8200, 8200, 300]
    # it still reaches the matcher (global window)
    assert [r.status for r in pane_run.revisions("ref_e")][-1] == "MISSING_SETTLEMENT"


def test_pane_scenario_revisions_of_one_key(pane_run):
    table = panes.revision_table(pane_run, "ref_c")
    assert table["status"].tolist() == ["PENDING", "MISSING_SETTLEMENT", "MATCHED", "MATCHED"]
    assert table["revision"].tolist() == [1, 2, 3, 4]
    assert table["is_final"].tolist() == [False, False, False, True]


def test_pane_chart_has_a_point_per_pane(pane_run):
    table = panes.pane_table(pane_run)
    figure = charts.pane_evolution_chart(table, "USD")
    assert len(figure.axes[0].lines[0].get_xdata()) == len(table)
    assert figure.axes[0].lines[0].get_ydata().tolist()[-1] == 82.0
