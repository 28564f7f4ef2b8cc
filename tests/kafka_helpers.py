"""Reading topics back in tests: every message, by partition and offset."""
from __future__ import annotations

import uuid
from typing import List

from pipelines.io.kafka import Clock, EndNotReached, ReadError, TopicMessage, new_consumer, read_to_end

Message = TopicMessage  # (partition, offset, key, value)


def unique_topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def read_topic(bootstrap_servers: str, topic: str, timeout: float = 20.0) -> List[Message]:
    """Every message of the topic, by partition and offset (assign + partition EOF, no consumer group)."""
    consumer = new_consumer({"bootstrap.servers": bootstrap_servers, "group.id": f"reader-{uuid.uuid4().hex}",
                             "enable.partition.eof": True, "enable.auto.commit": False,
                             "auto.offset.reset": "earliest"})
    try:
        messages = read_to_end(consumer, topic, timeout, metadata_timeout=10)
        try:
            return sorted(messages, key=lambda m: (m.partition, m.offset))
        except EndNotReached as failure:
            raise AssertionError(str(failure)) from None
        except ReadError as failure:
            raise AssertionError(f"consumer error: {failure.error}") from None
    finally:
        consumer.close()


class TickingClock(Clock):
    """A clock that moves `step` seconds each time it is read (from `start`, epoch seconds).

    Injected into the Kafka reader, it makes time pass per poll rather than per wall-clock
    second: what a test sees no longer depends on how busy the machine is. Picklable, so a
    pipeline's copy of it ticks the same way.
    """

    def __init__(self, start: float = 1_000_000.0, step: float = 1.0):
        self._now = start
        self._step = step

    def time(self) -> float:
        self._now += self._step
        return self._now

    def monotonic(self) -> float:
        return self.time()


class ManualClock(Clock):
    """Wall-clock time set by the test (`now`); monotonic time ticks, so per-call caps still end calls."""

    def __init__(self, now: float):
        self.now = now
        self._ticks = 0.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        self._ticks += 0.1
        return self._ticks
