"""Topics as a whole: creating them, and reading one from its beginning to its end.

`read_to_end` is what every "what does this topic hold now" look uses (the `paybeam kafka
consume` tool, the open-items store, tests and benchmarks): it assigns every partition (no
group membership, nothing committed) and stops once each has reported its end, i.e. the high
watermark at the time it got there (a message arriving before the last partition's end is read
too). It needs a consumer with `enable.partition.eof`; the caller owns (and closes) it.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Iterator, List, Mapping, NamedTuple, Optional, Sequence

from pipelines.io.kafka._clients import new_admin
from pipelines.io.kafka._config import POLL_BATCH
from pipelines.io.kafka._health import BrokerWatch, is_partition_eof
from schemas.errors import RunFailed

if TYPE_CHECKING:
    from confluent_kafka import Consumer, KafkaError

_READ_POLL_SECONDS = 0.5


class KafkaToolError(RunFailed):
    """A topic that could not be created, or messages the broker did not acknowledge: the environment
    failed the command (exit 1)."""


class TopicNotFound(LookupError):
    """The topic is unknown to the brokers (or has no partitions)."""


class EndNotReached(TimeoutError):
    """Not every partition reported its end within the timeout."""


class ReadError(RuntimeError):
    """The consumer reported an error other than a partition's end; `error` is the KafkaError."""

    def __init__(self, error: "KafkaError"):
        super().__init__(str(error))
        self.error = error


class TopicMessage(NamedTuple):
    partition: int
    offset: int
    key: Optional[bytes]
    value: Optional[bytes]


def create_topics(bootstrap_servers: str, topics: Sequence[str], partitions: int = 3,
                  config: Mapping[str, str] = {}, replication_factor: int = -1,
                  admin_config: Mapping[str, str] = {}, timeout: float = 30.0) -> List[str]:
    """Creates the topics that do not exist yet; returns the names created (existing topics are fine).

    `config` is the topic configuration (e.g. retention.ms); `replication_factor=-1` takes the
    broker's default; `admin_config` passes client settings (security) through.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    names = list(dict.fromkeys(topics))
    if not names:
        return []
    admin = new_admin({**dict(admin_config), "bootstrap.servers": bootstrap_servers,
                       **BrokerWatch(bootstrap_servers, timeout).client_settings()})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=replication_factor,
                  config=dict(config)) for name in names],
        request_timeout=timeout)
    created: List[str] = []
    failures: List[str] = []
    for name in names:
        try:
            futures[name].result(timeout=timeout)
            created.append(name)
        except KafkaException as error:
            kafka_error = error.args[0] if error.args else None
            if isinstance(kafka_error, KafkaError) and kafka_error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            failures.append(f"{name}: {error}")
        except Exception as error:  # e.g. a timeout waiting for the controller
            failures.append(f"{name}: {error}" if str(error) else f"{name}: no answer within {timeout:g} s")
    if failures:
        raise KafkaToolError("cannot create topic(s): " + "; ".join(failures))
    return created


def read_to_end(consumer: "Consumer", topic: str, timeout_seconds: float, *,
                metadata_timeout: Optional[float] = None, idle_timeout: bool = False,
                partitionless_is_empty: bool = False) -> Iterator[TopicMessage]:
    """Every message of `topic` from its beginning until each partition has reported its end.

    The topic is looked up and assigned at once (TopicNotFound if it is unknown or, unless
    `partitionless_is_empty`, has an error or no partitions); the messages come lazily.
    `timeout_seconds` bounds the whole read, or with `idle_timeout` only the time spent polling
    without any event (then EndNotReached). A consumer error other than a partition's end raises
    ReadError.
    """
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    listed = consumer.list_topics(topic, timeout=timeout_seconds if metadata_timeout is None else metadata_timeout)
    metadata = listed.topics.get(topic)
    if metadata is None or (not partitionless_is_empty and (metadata.error is not None or not metadata.partitions)):
        raise TopicNotFound(topic)
    partitions = sorted(metadata.partitions)
    consumer.assign([TopicPartition(topic, number, OFFSET_BEGINNING) for number in partitions])
    return _messages_to_end(consumer, topic, partitions, timeout_seconds, idle_timeout)


def _messages_to_end(consumer: "Consumer", topic: str, partitions: List[int], timeout_seconds: float,
                     idle_timeout: bool) -> Iterator[TopicMessage]:
    at_end: set = set()
    deadline = time.monotonic() + timeout_seconds
    waited = 0.0
    while len(at_end) < len(partitions):
        if not idle_timeout and time.monotonic() > deadline:
            raise EndNotReached(f"topic {topic!r}: partitions not exhausted within {timeout_seconds}s")
        batch = consumer.consume(num_messages=POLL_BATCH, timeout=_READ_POLL_SECONDS)
        if not batch:
            waited += _READ_POLL_SECONDS
            if idle_timeout and waited >= timeout_seconds:
                raise EndNotReached(f"topic {topic!r}: nothing read for {timeout_seconds}s")
            continue
        waited = 0.0
        for message in batch:
            error = message.error()
            if error is not None:
                if not is_partition_eof(error):
                    raise ReadError(error)
                at_end.add(message.partition())
                if len(at_end) == len(partitions):
                    return  # what the batch holds beyond the last end is newer than the end
                continue
            at_end.discard(message.partition())
            yield TopicMessage(message.partition(), message.offset(), message.key(), message.value())
