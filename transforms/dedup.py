"""Deduplication of re-deliveries: the same `event_id` / `settlement_id` seen again.

At-least-once sources (Kafka, re-sent report files) deliver some records
twice; docs/DESIGN.md 3.3 drops them here and counts them, never reporting them
as duplicates. The first delivery of an id passes; the id is remembered for
`horizon` of event time, so streaming state stays bounded.

Beam's own DeduplicatePerKey would do, but it always declares a
processing-time timer, which makes the DirectRunner fall back from the fast
Fn API runner to the legacy bundle-based one for every batch job.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Tuple, Union

import apache_beam as beam
from apache_beam.coders import BooleanCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Duration

from runners.state_cache import use_fast_state_cache_sizing
from schemas.records import PaymentEvent, SettlementLine

DEFAULT_HORIZON = timedelta(days=7)


def record_id(record: Union[PaymentEvent, SettlementLine]) -> str:
    return record.event_id if isinstance(record, PaymentEvent) else record.settlement_id


class _FirstDeliveryFn(beam.DoFn):
    SEEN = ReadModifyWriteStateSpec("seen", BooleanCoder())
    FORGET = TimerSpec("forget", TimeDomain.WATERMARK)

    def __init__(self, horizon: Duration):
        self._horizon = horizon

    def setup(self):
        use_fast_state_cache_sizing()

    def process(self, element, timestamp=beam.DoFn.TimestampParam,
                seen=beam.DoFn.StateParam(SEEN), forget=beam.DoFn.TimerParam(FORGET)):
        if seen.read():
            return
        seen.write(True)
        forget.set(timestamp + self._horizon)
        yield element[1]

    @on_timer(FORGET)
    def on_forget(self, seen=beam.DoFn.StateParam(SEEN)):
        seen.clear()


class Deduplicate(beam.PTransform):
    """Drops re-deliveries of a record id within `horizon` of event time."""

    def __init__(self, horizon: timedelta = DEFAULT_HORIZON):
        super().__init__()
        self._horizon = Duration(micros=int(horizon.total_seconds() * 1_000_000))

    def expand(self, records):
        element_type = records.element_type
        return (
            records
            | "KeyById" >> beam.Map(lambda record: (record_id(record), record)).with_output_types(
                Tuple[str, element_type])
            | "FirstDelivery" >> beam.ParDo(_FirstDeliveryFn(self._horizon)).with_output_types(element_type)
        )
