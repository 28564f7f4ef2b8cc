"""The partition reader's Kafka clients, shared by a process's reader instances (docs/DESIGN.md 5).

Two measured facts (2026-12-06, embedded Flink, 1,000 attempts/s) shape this:
- A runner may run every bundle of the reading stage in a new DoFn instance: Beam's Python worker keeps
  a bundle that asked for finalization active until the runner finalizes it, which Flink does only
  when its next checkpoint completes, so each bundle in between gets a fresh instance (20 at a time at
  10 s checkpoints). Clients made in `setup` were made per bundle: a new consumer, its connection, its
  metadata and its first fetch before any record. They live here instead, per process and settings.
- A consumer re-assigned at the start of every read call begins with nothing fetched: the partition
  read first in a bundle fetched nothing for 0.6 s at a time while its records waited (p99 5.5 s). So
  each partition has its own consumer, which stays assigned between calls and fetches ahead while the
  restriction waits to be resumed; a call that starts where the previous one left it reads what is
  already in the client. Beam Java's KafkaIO keeps a consumer per partition likewise.

A call leases its partition's consumer and gives it back when it ends, with the offset its next message
will carry; a call that starts elsewhere (the first, a retried bundle, a restored checkpoint, a split,
records taken from the client but not claimed) assigns it there. A failed call closes its consumer (a
fatal client error leaves it unusable). Clients close when the last reader instance using them is torn
down.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Set, Tuple

from pipelines.io.kafka._clients import source_consumer
from pipelines.io.kafka._config import KafkaReadConfig
from pipelines.io.kafka._health import BrokerWatch, Clock

if TYPE_CHECKING:
    from confluent_kafka import Consumer

Partition = Tuple[str, int]


@dataclass
class Lease:
    """A partition's consumer for one read call; `next_offset`: the offset of the next message it will give."""

    partition: Partition
    consumer: "Consumer"
    next_offset: Optional[int]
    continuing: bool  # the call starts where the consumer stands: what it fetched ahead is there
    empty_calls: int = 0  # caught-up calls in a row that read nothing (the reader's resume back-off)

    def polled(self, messages: Sequence) -> None:
        """Notes what a poll took out of the consumer: its next message follows the last one of the partition."""
        for message in reversed(messages):  # only the last one counts: no second pass over every message
            if message.error() is None and (message.topic(), message.partition()) == self.partition:
                self.next_offset = message.offset() + 1
                return


@dataclass
class ReaderClients:
    """One process's clients for one set of consumer settings: a control consumer (topic metadata, group
    offsets; never assigned) and the partition consumers, with the group offsets committed so far."""

    config: KafkaReadConfig
    watch: BrokerWatch
    lock: threading.Lock = field(default_factory=threading.Lock)  # the control consumer and the maps below
    control: Optional["Consumer"] = None
    committed: Dict[Partition, int] = field(default_factory=dict)
    checked_commits: Set[Partition] = field(default_factory=set)
    _idle: Dict[Partition, List[Tuple["Consumer", Optional[int], int]]] = field(default_factory=dict)
    _users: int = 0

    def lease(self, partition: Partition, offset: int) -> Lease:
        """The partition's consumer, positioned at `offset`."""
        from confluent_kafka import TopicPartition

        with self.lock:
            idle = self._idle.get(partition)
            consumer, next_offset, empty_calls = idle.pop() if idle else (None, None, 0)
        if consumer is None:
            consumer = source_consumer(self.config, f"reader of {partition[0]}/{partition[1]}", self.watch)
        continuing = next_offset == offset
        if not continuing:
            consumer.assign([TopicPartition(partition[0], partition[1], offset)])
        return Lease(partition, consumer, offset, continuing, empty_calls if continuing else 0)

    def give_back(self, lease: Lease, failed: bool = False) -> None:
        """Ends a call's lease; a failed call's consumer is closed, as is one more than its partition needs."""
        extra = lease.consumer if failed else None
        if not failed:
            with self.lock:
                if self.control is None:
                    extra = lease.consumer  # closed: every reader instance is gone
                else:
                    idle = self._idle.setdefault(lease.partition, [])
                    if idle:  # two calls of one partition overlapped (a split, a retry): keep one
                        extra = idle.pop()[0]
                    idle.append((lease.consumer, lease.next_offset, lease.empty_calls))
        if extra is not None:
            extra.close()

    def close(self) -> None:
        with self.lock:
            consumers = [entry[0] for idle in self._idle.values() for entry in idle]
            if self.control is not None:
                consumers.append(self.control)
            self.control, self._idle = None, {}
        for consumer in consumers:
            consumer.close()


_SHARED: Dict[tuple, ReaderClients] = {}
_SHARED_LOCK = threading.Lock()


def _settings_key(config: KafkaReadConfig, clock: Clock) -> tuple:
    """What the clients depend on: the consumer settings, and the clock that times outages when it is not the
    system's (each reader instance unpickles a system clock of its own; a test's clock is one object)."""
    return (config.bootstrap_servers, config.group_id, tuple(sorted(config.consumer_config.items())),
            config.broker_timeout_seconds, None if type(clock) is Clock else id(clock))  # noqa: E721


def acquire_reader_clients(config: KafkaReadConfig, clock: Clock) -> ReaderClients:
    """This process's clients for `config`'s consumer settings, for one more reader instance (its setup)."""
    key = _settings_key(config, clock)
    with _SHARED_LOCK:
        clients = _SHARED.get(key)
        if clients is None:
            watch = BrokerWatch(config.bootstrap_servers, config.broker_timeout_seconds, clock)
            clients = _SHARED[key] = ReaderClients(config, watch)
            clients.control = source_consumer(config, "reader", watch)
        clients._users += 1
        return clients


def release_reader_clients(clients: ReaderClients) -> None:
    """One reader instance fewer (its teardown); the last one closes the clients."""
    with _SHARED_LOCK:
        clients._users -= 1
        if clients._users > 0:
            return
        for key, shared in list(_SHARED.items()):
            if shared is clients:
                del _SHARED[key]
    clients.close()
