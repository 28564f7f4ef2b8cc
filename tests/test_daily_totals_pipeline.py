"""DailyTotals under Beam: one final on-time pane in batch; early, on-time and late panes in streaming."""
from __future__ import annotations

from datetime import timedelta

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to

from schemas.records import PaymentEvent, SettlementLine
from tests.beam_helpers import DAY, HOUR, payment, settlement, streaming_options
from tests.test_reconcile_pipeline import _timestamped, _watermark
from transforms.daily_totals import DailyTotals, SettlementDay, TriggerPolicy
from transforms.event_time import AssignEventTime


def _pane(total):
    return total.settlement_day, total.pane_timing, total.pane_index, total.captured_minor, total.is_final


def test_batch_one_final_on_time_pane_per_day_and_merchant_currency():
    payments = [payment("e1", "r1", 1000), payment("e2", "r2", 500, time=HOUR),
                payment("e3", "r3", 700, time=DAY + HOUR),  # next day
                payment("e4", "r4", 9, currency="JPY")]
    lines = [settlement("s1", "r1", 1000, fee=30, time=2 * HOUR),
             settlement("s2", "r9", 200, record_type="REFUND", time=3 * HOUR),
             settlement("s3", "f1", 15, record_type="FEE", time=4 * HOUR)]
    with TestPipeline() as pipeline:
        ledger = pipeline | "L" >> beam.Create(payments).with_output_types(PaymentEvent) | "TL" >> AssignEventTime()
        settled = pipeline | "S" >> beam.Create(lines).with_output_types(SettlementLine) | "TS" >> AssignEventTime()
        totals = (ledger, settled) | DailyTotals(SettlementDay(), TriggerPolicy.batch())
        assert_that(totals | beam.Map(lambda t: (t.currency, *_pane(t))), equal_to([
            ("USD", "2026-01-05", "ON_TIME", 0, 1500, True),
            ("USD", "2026-01-06", "ON_TIME", 0, 700, True),
            ("JPY", "2026-01-05", "ON_TIME", 0, 9, True),
        ]), label="panes")
        usd_day_one = totals | beam.Filter(lambda t: t.currency == "USD" and t.settlement_day == "2026-01-05")
        assert_that(usd_day_one | beam.Map(
            lambda t: (t.settled_gross_minor, t.fee_minor, t.settled_net_minor, t.ledger_event_count,
                       t.settlement_line_count)),
            # capture 1000 (fee 30) − refund 200; the FEE line adds 15 to fees and takes it from net
            equal_to([(800, 45, 755, 2, 3)]), label="money")


def test_stream_early_on_time_and_late_panes_accumulate():
    policy = TriggerPolicy.streaming(early_firing_interval=timedelta(minutes=5), allowed_lateness=timedelta(days=2))
    events = (TestStream()
              .add_elements([_timestamped(payment("e1", "r1", 1000, time=HOUR))])
              .advance_processing_time(6 * 60)  # early firing: provisional total
              .add_elements([_timestamped(payment("e2", "r2", 500, time=2 * HOUR))])
              .advance_watermark_to(_watermark(DAY))  # end of 2026-01-05: the on-time pane
              .add_elements([_timestamped(payment("e3", "r3", 200, time=3 * HOUR))])  # late, within lateness
              .advance_watermark_to(_watermark(DAY + HOUR))
              .advance_watermark_to(_watermark(4 * DAY))  # lateness (2 days) has passed: the day is closed
              .add_elements([_timestamped(payment("e4", "r4", 50, time=4 * HOUR))])  # too late: dropped
              .advance_watermark_to(_watermark(5 * DAY)))
    with TestPipeline(options=streaming_options()) as pipeline:
        records = pipeline | events
        nothing = pipeline | "NoSettlements" >> beam.Create([]).with_output_types(SettlementLine)
        totals = (records, nothing) | DailyTotals(SettlementDay(), policy)
        assert_that(totals | beam.Map(_pane), equal_to([
            ("2026-01-05", "EARLY", 0, 1000, False),
            ("2026-01-05", "ON_TIME", 1, 1500, False),
            ("2026-01-05", "LATE", 2, 1700, False),
        ]))
