"""DailyTotals under Beam: one final on-time pane in batch; early, on-time and late panes in streaming."""
from __future__ import annotations

from datetime import timedelta

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.trigger import AccumulationMode, AfterCount, AfterProcessingTime, AfterWatermark
from apache_beam.transforms.window import FixedWindows, TimestampedValue

from schemas.records import PaymentEvent, SettlementLine
from tests.beam_helpers import DAY, HOUR, payment, settlement
from tests.prism_helpers import on_prism, prism_streaming_options
from tests.test_reconcile_pipeline import _watermark, timestamped
from transforms.daily_totals import PANE_TIMINGS, DailyTotals, SettlementDay, TriggerPolicy
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


def _early_on_time_late_stream(late_gap: bool = False) -> TestStream:
    return (TestStream()
            .add_elements([timestamped(payment("e1", "r1", 1000, time=HOUR))])
            .advance_processing_time(6 * 60)  # early firing: provisional total
            .add_elements([timestamped(payment("e2", "r2", 500, time=2 * HOUR))])
            .advance_watermark_to(_watermark(DAY))  # end of 2026-01-05: the on-time pane
            .add_elements([timestamped(payment("e3", "r3", 200, time=3 * HOUR))])  # late, within lateness
            .advance_watermark_to(_watermark(DAY + HOUR))
            .add_elements([timestamped(payment("e5", "r5", 100, time=5 * HOUR))])  # late again
            .advance_watermark_to(_watermark(DAY + 2 * HOUR))
            .advance_watermark_to(_watermark(4 * DAY))  # lateness (2 days) has passed: the day is closed
            .add_elements([timestamped(payment("e4", "r4", 50, time=4 * HOUR))])  # too late: dropped
            .advance_watermark_to(_watermark(5 * DAY)))


POLICY = TriggerPolicy.streaming(early_firing_interval=timedelta(minutes=5), allowed_lateness=timedelta(days=2))


def test_stream_early_on_time_and_late_panes_accumulate(stream_options):
    with TestPipeline(options=stream_options) as pipeline:
        records = pipeline | _early_on_time_late_stream()
        # Both sides come from the one stream (as both come from Kafka in `paybeam stream`).
        ledger = records | "OnlyLedger" >> beam.Filter(lambda r: isinstance(r, PaymentEvent))
        lines = records | "OnlyLines" >> beam.Filter(lambda r: isinstance(r, SettlementLine))
        totals = (ledger, lines) | DailyTotals(SettlementDay(), POLICY)
        if on_prism(stream_options):
            # Prism 2.77 deviates twice (docs/DESIGN.md 6; the test below isolates both):
            # - no processing-time EARLY pane: DailyTotals flattens its contributions before the
            #   triggered CombinePerKey, and behind a runner-side Flatten Prism never fires
            #   AfterProcessingTime, whatever advance_processing_time says;
            # - not one LATE pane per late element (late=AfterCount(1)): late data waits until the
            #   window expires (end + allowed lateness) and goes out in one final LATE pane.
            expected = [("2026-01-05", "ON_TIME", 0, 1500, False),
                        ("2026-01-05", "LATE", 1, 1800, True)]
        else:
            expected = [("2026-01-05", "EARLY", 0, 1000, False),
                        ("2026-01-05", "ON_TIME", 1, 1500, False),
                        ("2026-01-05", "LATE", 2, 1700, False),
                        ("2026-01-05", "LATE", 3, 1800, False)]
        assert_that(totals | beam.Map(_pane), equal_to(expected))


class _Pane(beam.DoFn):
    def process(self, element, pane=beam.DoFn.PaneInfoParam):
        yield element[1], PANE_TIMINGS[pane.timing], pane.index, pane.is_last


@pytest.mark.parametrize("flatten", [False, True], ids=["direct_to_combine", "through_flatten"])
def test_prism_processing_time_and_late_firings(prism, flatten):
    """What Prism 2.77 does with AfterWatermark(early=AfterProcessingTime(5 min), late=AfterCount(1))
    under TestStream, on a plain windowed sum: it fires the EARLY pane after advance_processing_time
    — unless a Flatten stands between the stream and the CombinePerKey, as in DailyTotals —
    and holds late data for one final LATE pane when the window expires."""
    day = 86_400
    events = (TestStream()
              .add_elements([TimestampedValue(("k", 1), 100)])
              .advance_processing_time(6 * 60)
              .add_elements([TimestampedValue(("k", 2), 200)])
              .advance_watermark_to(day)
              .add_elements([TimestampedValue(("k", 3), 300)])  # late
              .advance_watermark_to(day + 3600)
              .add_elements([TimestampedValue(("k", 10), 310)])  # late again
              .advance_watermark_to(day + 7200)
              .advance_watermark_to(4 * day))
    with TestPipeline(options=prism_streaming_options(prism.endpoint)) as pipeline:
        stream = pipeline | events
        if flatten:
            stream = (stream,) | beam.Flatten()
        sums = (stream
                | beam.WindowInto(FixedWindows(day), trigger=AfterWatermark(early=AfterProcessingTime(300),
                                                                           late=AfterCount(1)),
                                  accumulation_mode=AccumulationMode.ACCUMULATING, allowed_lateness=2 * day)
                | beam.CombinePerKey(sum))
        early = [] if flatten else [(1, "EARLY", 0, False)]
        first = len(early)
        assert_that(sums | beam.ParDo(_Pane()), equal_to(
            early + [(3, "ON_TIME", first, False), (16, "LATE", first + 1, True)]))
