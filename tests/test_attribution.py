"""Lines whose file names no merchant count under their ledger event's merchant (issue 10, Stripe 5).

The rule (transforms/attribution.py), its two implementations compared on
every column of every line (hypothesis), a stream that moves a line from
UNATTRIBUTED to the ledger's merchant once the ledger event arrives
(TestStream), and a Stripe report without the merchant metadata through
both engines, with totals written down by hand. Every id is made up.
"""
from __future__ import annotations

from collections import defaultdict

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.reconcile_batch import ENGINES
from schemas.record_tables import PAYMENT_TABLE, SETTLEMENT_TABLE, records_to_table
from schemas.records import (
    PAYMENT_FIELDS,
    PAYMENTS,
    SETTLEMENT_FIELDS,
    SETTLEMENTS,
    UNATTRIBUTED,
    PaymentEvent,
    RawRecord,
    ReconciliationResult,
    SettlementLine,
)
from schemas.timestamps import format_timestamp
from tests.beam_helpers import streaming_options
from tests.cli_helpers import daily_totals, reconcile_with_each_engine, results
from tests.engine_parity import assert_same_outputs
from transforms.attribution import CountLinesUnderTheirMerchant, key_attributions, needs_attribution
from transforms.columnar.attribution import attributed_settlements, attribution_table
from transforms.columnar.matching import ledger_candidates, reconcile_candidates, settlement_candidates
from transforms.daily_totals import TriggerPolicy
from transforms.event_time import millis_to_beam_timestamp
from transforms.flow import ReconcileConfig, ReconcileRecords
from transforms.matching import MatchPolicy, candidate_of, reconcile_key, reconciliation_key, with_revision
from transforms.reconcile import AsOf

DAY = 86_400_000
T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z


def _event(event_id, reference, merchant, amount=1000, event_type="CAPTURED", time=T0, currency="USD"):
    return PaymentEvent(event_id, f"pay-{reference}", event_type, "stripe", reference, merchant, amount, currency,
                        time)


def _line(settlement_id, reference, merchant, gross=1000, record_type="CAPTURE", time=T0 + 3_600_000,
          currency="USD", fee=30):
    return SettlementLine(settlement_id, "stripe", reference, merchant, record_type, gross, fee, gross - fee,
                          currency, "2026-01-06", time, None)


def _row(settlement_id, merchant, ledger_event_id):
    return ReconciliationResult("stripe", "ch_1", "CAPTURE", "MATCHED", merchant, "USD", 1000, 1000, 0,
                                ledger_event_id, settlement_id, T0, T0, 1, True)


# ------------------------------------------------------------------ the rule

def test_an_unattributed_line_paired_with_a_ledger_event_takes_its_merchant():
    line = _line("s1", "ch_1", UNATTRIBUTED)
    rows = reconcile_key(reconciliation_key(line), [candidate_of(line), candidate_of(_event("e1", "ch_1", "m-7"))],
                         T0, MatchPolicy())
    assert key_attributions(rows, [candidate_of(line), candidate_of(_event("e1", "ch_1", "m-7"))], 2) == [
        ("s1", (2, "m-7"))]


def test_an_unpaired_or_attributed_line_keeps_its_merchant():
    unpaired = _line("s1", "ch_1", UNATTRIBUTED)
    rows = reconcile_key(reconciliation_key(unpaired), [candidate_of(unpaired)], T0, MatchPolicy())
    assert key_attributions(rows, [candidate_of(unpaired)], 1) == [("s1", (1, UNATTRIBUTED))]
    named = _line("s2", "ch_2", "m-3")
    candidates = [candidate_of(named), candidate_of(_event("e2", "ch_2", "m-7"))]
    assert key_attributions(reconcile_key(reconciliation_key(named), candidates, T0, MatchPolicy()), candidates, 1) == []


def test_only_matchable_unattributed_lines_need_attribution():
    assert needs_attribution(_line("s1", "ch_1", UNATTRIBUTED))
    assert not needs_attribution(_line("s1", "ch_1", "m-1"))
    # A fee or payout line is never matched, so no ledger event can name its merchant.
    assert not needs_attribution(_line("s1", "ch_1", UNATTRIBUTED, record_type="FEE"))


def test_columnar_attribution_replaces_only_paired_unattributed_lines():
    settlements = records_to_table([_line("s1", "ch_1", UNATTRIBUTED), _line("s2", "ch_2", UNATTRIBUTED),
                                    _line("s3", "ch_3", "m-3")], SETTLEMENT_TABLE)
    moved = pa.table({"settlement_id": ["s1"], "merchant_id": ["m-7"]})
    assert attributed_settlements(settlements, [moved]).column("merchant_id").to_pylist() == [
        "m-7", UNATTRIBUTED, "m-3"]
    assert attributed_settlements(settlements, []).equals(settlements)


# ------------------------------------------------------------------ differential: both implementations

merchants = st.sampled_from(["m-1", "m-2", UNATTRIBUTED])
references = st.sampled_from(["ch_a", "ch_b", "ch_c", "ch_d"])
ledger_events = st.builds(
    lambda index, reference, merchant, event_type, amount, day: _event(
        f"e{index}", reference, merchant, amount, event_type, T0 + day * DAY),
    st.integers(0, 30), references, st.sampled_from(["m-1", "m-2"]),
    st.sampled_from(["CAPTURED", "REFUNDED", "AUTHORIZED"]), st.sampled_from([1000, 999]), st.integers(0, 3))
settlement_lines = st.builds(
    lambda index, reference, merchant, record_type, gross, day, currency: _line(
        f"s{index}", reference, merchant, gross, record_type, T0 + day * DAY, currency),
    st.integers(0, 30), references, merchants, st.sampled_from(["CAPTURE", "REFUND", "FEE", "PAYOUT"]),
    st.sampled_from([1000, 999]), st.integers(0, 3), st.sampled_from(["USD", "EUR"]))


def _distinct(records, id_of):
    return list({id_of(record): record for record in records}.values())


def _per_record(payments, settlements, as_of):
    """What the per-element engine counts: each line under its latest attribution, else as it is."""
    by_key = defaultdict(list)
    for record in [*payments, *settlements]:
        key = reconciliation_key(record)
        if key is not None:
            by_key[key].append(candidate_of(record))
    merchant_of = {}
    for key, candidates in by_key.items():
        rows = with_revision(reconcile_key(key, candidates, as_of, MatchPolicy()), 1, True)
        merchant_of.update((sid, merchant) for sid, (_, merchant) in key_attributions(rows, candidates, 1))
    return sorted(line._replace(merchant_id=merchant_of[line.settlement_id]) if needs_attribution(line) else line
                  for line in settlements)


def _columnar(payments, settlements, as_of):
    ledger = records_to_table(payments, PAYMENT_TABLE)
    lines = records_to_table(settlements, SETTLEMENT_TABLE)
    candidates = pa.concat_tables([ledger_candidates(ledger), settlement_candidates(lines)])
    attributions = attribution_table(candidates, reconcile_candidates(candidates, as_of, MatchPolicy()))
    table = attributed_settlements(lines, [attributions])
    return sorted(SettlementLine(**row) for row in table.to_pylist())


@settings(max_examples=300, deadline=None)
@given(payments=st.lists(ledger_events, max_size=12), settlements=st.lists(settlement_lines, max_size=12),
       as_of_day=st.integers(0, 6))
def test_columnar_attribution_equals_the_per_record_rule(payments, settlements, as_of_day):
    payments = _distinct(payments, lambda event: event.event_id)
    settlements = _distinct(settlements, lambda line: line.settlement_id)
    as_of = T0 + as_of_day * DAY
    assert _columnar(payments, settlements, as_of) == _per_record(payments, settlements, as_of)


# ------------------------------------------------------------------ a stream moves the line

def _stamped(record, millis):
    return TimestampedValue(record, millis_to_beam_timestamp(millis))


def test_a_streamed_line_moves_to_the_ledger_merchant_when_its_event_arrives():
    """PENDING: counted under UNATTRIBUTED; once paired: withdrawn from there, counted under the ledger's merchant."""
    line = _line("s1", "ch_1", UNATTRIBUTED, time=T0 + 3_600_000)
    attributions = [("s1", (1, UNATTRIBUTED)), ("s1", (2, "m-7")), ("s1", (2, "m-7"))]
    stream = (TestStream()
              .add_elements([_stamped(line, line.booked_time)])
              .add_elements([_stamped(("s1", attributions[0][1]), T0 + 3_600_000)])
              .advance_watermark_to(millis_to_beam_timestamp(T0 + 7_200_000))
              .add_elements([_stamped(("s1", attributions[1][1]), T0 + 7_200_000)])
              .add_elements([_stamped(("s1", attributions[2][1]), T0 + 7_200_000)])  # a repeat moves nothing
              .advance_watermark_to_infinity())
    with TestPipeline(options=beam.options.pipeline_options.PipelineOptions(streaming=True)) as pipeline:
        inputs = pipeline | stream
        lines = inputs | "Lines" >> beam.Filter(lambda element: isinstance(element, SettlementLine))
        pairs = inputs | "Pairs" >> beam.Filter(lambda element: not isinstance(element, SettlementLine))
        counted = (lines, pairs) | CountLinesUnderTheirMerchant()
        assert_that(counted["counted"] | "CountedMerchants" >> beam.Map(lambda l: l.merchant_id),
                    equal_to([UNATTRIBUTED, "m-7"]), label="Counted")
        assert_that(counted["withdrawn"] | "WithdrawnMerchants" >> beam.Map(lambda l: l.merchant_id),
                    equal_to([UNATTRIBUTED]), label="Withdrawn")


def _raw(name, record, fields, time_field):
    values = {field: ("" if value is None else format_timestamp(value) if field == time_field else str(value))
              for field, value in zip(fields, record)}
    return RawRecord(name, f"{name}.csv:1", values, ",".join(values.values()))


def test_streamed_daily_totals_end_under_the_ledger_merchant():
    """The whole flow in watermark mode: the line is judged PENDING before its ledger event arrives."""
    line = _line("s1", "ch_1", UNATTRIBUTED, time=T0 + 3_600_000)
    event = _event("e1", "ch_1", "m-7", time=T0 + 1_800_000)
    stream = (TestStream()
              .add_elements([_stamped(_raw(SETTLEMENTS, line, SETTLEMENT_FIELDS, "booked_time"), line.booked_time)])
              .advance_watermark_to(millis_to_beam_timestamp(T0 + 2 * 3_600_000))
              .add_elements([_stamped(_raw(PAYMENTS, event, PAYMENT_FIELDS, "event_time"), event.event_time)])
              .advance_watermark_to(millis_to_beam_timestamp(T0 + 30 * DAY)))
    config = ReconcileConfig(as_of=AsOf.watermark(), trigger_policy=TriggerPolicy(None))
    with TestPipeline(options=streaming_options()) as pipeline:
        arriving = pipeline | stream
        raw = {name: arriving | f"Only[{name}]" >> beam.Filter(lambda r, n=name: r.input == n)
               for name in (PAYMENTS, SETTLEMENTS)}
        outputs = raw | ReconcileRecords(config)
        panes = outputs["daily_totals"] | beam.Map(lambda t: (t.merchant_id, t.pane_index, t.captured_minor,
                                                             t.settled_gross_minor, t.settlement_line_count))
        assert_that(panes, _last_panes_are({"m-7": (1000, 1000, 1), UNATTRIBUTED: (0, 0, 0)}))


def _last_panes_are(expected):
    def check(panes):
        last = {}
        for merchant, index, *sums in panes:
            if merchant not in last or index > last[merchant][0]:
                last[merchant] = (index, tuple(sums))
        # The pending line was counted under UNATTRIBUTED first (otherwise there is no such row to end at 0).
        assert {merchant: sums for merchant, (_, sums) in last.items()} == expected, panes
    return check


# ------------------------------------------------------------------ a Stripe report without merchant metadata

STRIPE_CSV = """balance_transaction_id,created_utc,available_on_utc,currency,gross,fee,net,reporting_category,charge_id,payment_intent_id
txn_att_1,2024-02-01 10:00:00,2024-02-03 00:00:00,usd,20.00,0.88,19.12,charge,ch_att_1,pi_att_1
txn_att_2,2024-02-01 11:00:00,2024-02-03 00:00:00,usd,-5.00,0.00,-5.00,refund,ch_att_1,pi_att_1
txn_att_3,2024-02-01 12:00:00,2024-02-03 00:00:00,usd,7.00,0.30,6.70,charge,ch_att_9,pi_att_9
txn_att_4,2024-02-01 13:00:00,2024-02-03 00:00:00,usd,-1.50,0.00,-1.50,fee,,
"""
PAYMENTS_CSV = """event_id,payment_id,event_type,processor,processor_reference,merchant_id,amount_minor,currency,event_time
evt-a1,pay-a1,CAPTURED,stripe,ch_att_1,m-real-4,2000,USD,2024-02-01T09:00:00Z
evt-a2,pay-a1,REFUNDED,stripe,ch_att_1,m-real-4,500,USD,2024-02-01T09:30:00Z
"""


@pytest.fixture(scope="module")
def unattributed_runs(tmp_path_factory):
    return reconcile_with_each_engine(tmp_path_factory.mktemp("attribution"), PAYMENTS_CSV, STRIPE_CSV,
                                      settlements_name="stripe.csv")


def test_both_engines_attribute_alike(unattributed_runs):
    assert_same_outputs(unattributed_runs["columnar"], unattributed_runs["elementwise"])


@pytest.mark.parametrize("engine", ENGINES)
def test_matched_lines_count_under_the_ledger_merchant(unattributed_runs, engine):
    totals = {row["merchant_id"]: row for row in daily_totals(unattributed_runs[engine])}
    assert set(totals) == {"m-real-4", UNATTRIBUTED}
    real, unknown = totals["m-real-4"], totals[UNATTRIBUTED]
    # By hand: the 20.00 charge (fee 0.88) and its 5.00 refund settle for m-real-4's ledger events.
    assert (real["captured_minor"], real["refunded_minor"], real["settled_gross_minor"], real["fee_minor"],
            real["settled_net_minor"], real["settlement_line_count"], real["ledger_event_count"]) == (
        2000, 500, 1500, 88, 1412, 2, 2)
    # The unmatched 7.00 charge and the account's 1.50 Stripe fee name no merchant anywhere.
    assert (unknown["settled_gross_minor"], unknown["fee_minor"], unknown["settled_net_minor"],
            unknown["settlement_line_count"], unknown["ledger_event_count"]) == (700, 30 + 150, 670 - 150, 2, 0)
    statuses = sorted((row["processor_reference"], row["status"], row["merchant_id"])
                      for row in results(unattributed_runs[engine]))
    assert statuses == [("ch_att_1", "MATCHED", "m-real-4"), ("ch_att_1", "MATCHED", "m-real-4"),
                        ("ch_att_9", "PENDING", UNATTRIBUTED)]
