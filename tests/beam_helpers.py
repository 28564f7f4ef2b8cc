"""Shared builders for Beam tests: records at readable instants, streaming options."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Optional

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from schemas.records import PaymentEvent, SettlementLine
from schemas.timestamps import datetime_to_millis

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
HOUR = 3_600_000
DAY = 24 * HOUR


def at(offset: timedelta = timedelta(0)) -> int:
    """Epoch millis of T0 + offset."""
    return datetime_to_millis(T0 + offset)


def payment(event_id: str, reference: str, amount: int = 1000, time: int = 0, event_type: str = "CAPTURED",
            currency: str = "USD", merchant: str = "m_1", processor: str = "stripe") -> PaymentEvent:
    return PaymentEvent(event_id, f"pay_{reference}", event_type, processor, reference, merchant, amount,
                        currency, at() + time)


def settlement(settlement_id: str, reference: str, gross: int = 1000, time: int = 0, record_type: str = "CAPTURE",
               currency: str = "USD", merchant: str = "m_1", fee: int = 0, processor: str = "stripe",
               payout_id: Optional[str] = None) -> SettlementLine:
    booked = at() + time
    day = (T0 + timedelta(milliseconds=time)).date().isoformat()
    return SettlementLine(settlement_id, processor, reference, merchant, record_type, gross, fee, gross - fee,
                          currency, day, booked, payout_id)


def streaming_options() -> PipelineOptions:
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return options


def batches_half_a_day_behind(ordered, rng):
    """(record, time) arrivals in order -> ([(batch, watermark after it or None)], the latest time): batches of
    1 to 40, the watermark trailing the latest time seen by half a day (moved only forward)."""
    batches, latest, watermark, start = [], 0, None, 0
    while start < len(ordered):
        size = rng.randint(1, 40)
        batch = ordered[start:start + size]
        start += size
        latest = max([latest] + [t for _, t in batch])
        if watermark is None or latest - DAY // 2 > watermark:
            watermark = latest - DAY // 2
            batches.append((batch, watermark))
        else:
            batches.append((batch, None))
    return batches, latest


class StateBag:
    """A bag state handle in memory, for calling a stateful DoFn's process or timer method directly."""

    def __init__(self, items=()):
        self.items = list(items)

    def read(self):
        return list(self.items)

    def add(self, value):
        self.items.append(value)

    def clear(self):
        self.items = []


class StateValue:
    """A read-modify-write state handle in memory."""

    def __init__(self, value=None):
        self.value = value

    def read(self):
        return self.value

    def write(self, value):
        self.value = value


class StateTimer:
    """A timer handle in memory: remembers when it was last set."""

    at = None

    def set(self, timestamp):
        self.at = timestamp
