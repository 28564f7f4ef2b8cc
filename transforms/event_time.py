"""Event time: payments at `event_time`, settlement lines at `booked_time` (docs/DESIGN.md 4.1)."""
from __future__ import annotations

from typing import Union

import apache_beam as beam
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from schemas.records import PaymentEvent, ReconciliationResult, SettlementLine


def event_time_millis(record: Union[PaymentEvent, SettlementLine]) -> int:
    """The instant a record happened, from its payload (never the arrival or broker time)."""
    # Payments and authorization attempts carry event_time; settlement lines are booked.
    return record.booked_time if isinstance(record, SettlementLine) else record.event_time


def millis_to_beam_timestamp(millis: int) -> Timestamp:
    return Timestamp(micros=millis * 1000)


def beam_timestamp_to_millis(timestamp: Timestamp) -> int:
    return timestamp.micros // 1000


class AssignEventTime(beam.PTransform):
    """Stamps each record with its payload event time, so windows and timers use it.

    `delivered`: the elements are (source, record) pairs (what deduplication reads).
    """

    def __init__(self, delivered: bool = False):
        super().__init__()
        self._delivered = delivered

    def expand(self, records):
        element_type = records.element_type
        record_of = (lambda element: element[1]) if self._delivered else (lambda element: element)
        return records | "WithPayloadTime" >> beam.Map(
            lambda element: TimestampedValue(element, millis_to_beam_timestamp(event_time_millis(record_of(element))))
        ).with_output_types(element_type)


def result_event_time(row: ReconciliationResult) -> int:
    """A result belongs to the time of its ledger event, or of its settlement line if it has none."""
    return row.event_time if row.event_time is not None else row.booked_time


class ResultsAtRecordTime(beam.PTransform):
    """Re-stamps results (emitted when a verdict is reached) with the time of the record they concern.

    Aggregates by day or hour then count a break where the payment happened,
    not where the matcher noticed it.
    """

    def expand(self, results):
        return results | "AtRecordTime" >> beam.Map(
            lambda row: TimestampedValue(row, millis_to_beam_timestamp(result_event_time(row)))
        ).with_output_types(ReconciliationResult)
