"""Reading topics back in tests: every message, by partition and offset."""
from __future__ import annotations

import time
import uuid
from typing import List, NamedTuple, Optional

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from pipelines.io.kafka_client import Clock


class Message(NamedTuple):
    partition: int
    offset: int
    key: Optional[bytes]
    value: Optional[bytes]


def unique_topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def read_topic(bootstrap_servers: str, topic: str, timeout: float = 20.0) -> List[Message]:
    """Every message of the topic, by partition and offset (assign + partition EOF, no consumer group)."""
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": f"reader-{uuid.uuid4().hex}",
                         "enable.partition.eof": True, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        assert partitions, f"topic {topic} has no partitions"
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        at_end: set = set()
        messages: List[Message] = []
        deadline = time.monotonic() + timeout
        while len(at_end) < len(partitions):
            assert time.monotonic() < deadline, f"{topic}: partitions {set(partitions) - at_end} not exhausted"
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
                    continue
                raise AssertionError(f"consumer error: {message.error()}")
            at_end.discard(message.partition())
            messages.append(Message(message.partition(), message.offset(), message.key(), message.value()))
        return sorted(messages, key=lambda m: (m.partition, m.offset))
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
