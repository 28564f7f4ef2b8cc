"""Partition discovery: the partitions of the topics and their resolved start and stop offsets.

Runs once, at run time (see `_source.py` for end offsets and start positions).
"""
from __future__ import annotations

import logging
import time
from typing import Dict, Iterator, List, Sequence, Tuple

import apache_beam as beam

from pipelines.io.kafka._clients import source_consumer
from pipelines.io.kafka._config import POLL_BATCH, POLL_TIMEOUT_SECONDS, KafkaReadConfig
from pipelines.io.kafka._health import BrokerWatch, is_outage, is_partition_eof, raise_if_fatal
from pipelines.io.kafka._restrictions import UNBOUNDED_STOP
from schemas.internal_records import PartitionDescriptor

_LOGGER = logging.getLogger(__name__)
_DISCOVERY_EOF_TIMEOUT_SECONDS = 15.0


def allocate_max_records(total: int, backlogs: Sequence[int]) -> List[int]:
    """Splits `total` offsets over partitions: even shares capped by each backlog, surplus redistributed.

    Whatever exceeds the whole backlog is spread evenly (those partitions wait for new records).
    """
    allocation = [0] * len(backlogs)
    if not backlogs:
        return allocation
    remaining = total
    open_partitions = [index for index, backlog in enumerate(backlogs) if backlog > 0]
    while remaining > 0 and open_partitions:
        share = remaining // len(open_partitions)
        if share == 0:
            for index in open_partitions[:remaining]:
                allocation[index] += 1
            remaining = 0
            break
        still_open = []
        for index in open_partitions:
            given = min(share, backlogs[index] - allocation[index])
            allocation[index] += given
            remaining -= given
            if allocation[index] < backlogs[index]:
                still_open.append(index)
        open_partitions = still_open
    for step in range(remaining):
        allocation[step % len(backlogs)] += 1
    return allocation


def _list_partitions(consumer, topics: Sequence[str], timeout: float) -> List[Tuple[str, int]]:
    partitions: List[Tuple[str, int]] = []
    for topic in topics:
        metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            reason = metadata.error if metadata is not None and metadata.error is not None else "no partitions"
            raise ValueError(f"cannot read Kafka topic {topic!r}: {reason}")
        partitions.extend((topic, number) for number in sorted(metadata.partitions))
    return partitions


def end_offsets(consumer, partitions: Sequence[Tuple[str, int]], timeout: float) -> Tuple[Dict, Dict]:
    """(low, end) offsets per partition: ListOffsets first, then the fetch-response high watermark."""
    from confluent_kafka import TopicPartition

    low: Dict[Tuple[str, int], int] = {}
    end: Dict[Tuple[str, int], int] = {}
    for key in partitions:
        low[key], end[key] = consumer.get_watermark_offsets(TopicPartition(*key), timeout=timeout)
    # A fetch at the ListOffsets answer ends with a partition-EOF event at the high watermark the
    # broker put in the fetch response: on Apache Kafka the same offset (nothing is fetched), on a
    # broker whose ListOffsets lags the log, the true end (see the module docstring).
    consumer.assign([TopicPartition(topic, number, max(end[(topic, number)], low[(topic, number)]))
                     for topic, number in partitions])
    pending = set(partitions)
    deadline = time.monotonic() + _DISCOVERY_EOF_TIMEOUT_SECONDS
    try:
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=POLL_BATCH, timeout=POLL_TIMEOUT_SECONDS):
                error = message.error()
                key = (message.topic(), message.partition())
                if error is None:
                    continue  # records before the end: not read here
                if is_partition_eof(error):
                    if key in pending:
                        end[key] = max(end[key], message.offset())
                        pending.discard(key)
                else:
                    raise_if_fatal(error)
        for key in pending:  # no EOF in time: the cached fetch watermark is the next best answer
            cached_high = consumer.get_watermark_offsets(TopicPartition(*key), cached=True)[1]
            _LOGGER.warning("no end-of-partition event for %s/%s within %ss; using end offset %s", key[0], key[1],
                            _DISCOVERY_EOF_TIMEOUT_SECONDS, max(end[key], cached_high))
            end[key] = max(end[key], cached_high)
    finally:
        consumer.unassign()
    return low, end


def _start_offsets(consumer, config: KafkaReadConfig, partitions, low, end) -> Dict[Tuple[str, int], int]:
    from confluent_kafka import TopicPartition

    if config.start == "earliest":
        return {key: low[key] for key in partitions}
    if config.start == "latest":
        return {key: end[key] for key in partitions}
    if config.start == "committed":
        committed = consumer.committed([TopicPartition(*key) for key in partitions], timeout=config.broker_timeout_seconds)
        starts = {}
        for entry in committed:
            key = (entry.topic, entry.partition)
            if entry.error is not None:
                raise ValueError(f"cannot read the committed offset of {key[0]}/{key[1]}: {entry.error}")
            # No committed offset (or one already deleted by retention): the earliest offset.
            starts[key] = entry.offset if entry.offset >= low[key] else low[key]
        return starts
    found = consumer.offsets_for_times(
        [TopicPartition(topic, number, config.start_timestamp_millis) for topic, number in partitions],
        timeout=config.broker_timeout_seconds)
    starts = {}
    for entry in found:
        key = (entry.topic, entry.partition)
        # -1: no record at or after the time -> the end. Below the log start -> the log start.
        starts[key] = end[key] if entry.offset < 0 else max(entry.offset, low[key])
    return starts


def discover_partitions(consumer, config: KafkaReadConfig) -> List[PartitionDescriptor]:
    """The partitions of the configured topics with their start and stop offsets."""
    partitions = _list_partitions(consumer, config.topics, config.broker_timeout_seconds)
    low, end = end_offsets(consumer, partitions, config.broker_timeout_seconds)
    starts = _start_offsets(consumer, config, partitions, low, end)
    if config.bounded == "end_offsets":
        stops = {key: max(starts[key], end[key]) for key in partitions}
    elif config.bounded == "max_records":
        shares = allocate_max_records(config.max_records, [max(0, end[key] - starts[key]) for key in partitions])
        stops = {key: starts[key] + share for key, share in zip(partitions, shares)}
    else:
        stops = {key: UNBOUNDED_STOP for key in partitions}
    descriptors = [PartitionDescriptor(topic, number, starts[(topic, number)], stops[(topic, number)])
                   for topic, number in partitions]
    for descriptor in descriptors:
        _LOGGER.info("Kafka source %s/%s: offsets [%s, %s), log [%s, %s), start=%s bounded=%s",
                     descriptor.topic, descriptor.partition, descriptor.start_offset,
                     "unbounded" if descriptor.stop_offset == UNBOUNDED_STOP else descriptor.stop_offset,
                     low[(descriptor.topic, descriptor.partition)], end[(descriptor.topic, descriptor.partition)],
                     config.start, config.bounded)
    return descriptors


class DiscoverPartitionsFn(beam.DoFn):
    """Impulse -> one PartitionDescriptor per partition of the configured topics."""

    def __init__(self, config: KafkaReadConfig):
        self._config = config
        self._consumer = None
        self._watch = None

    def setup(self):
        self._watch = BrokerWatch(self._config.bootstrap_servers, self._config.broker_timeout_seconds)
        self._consumer = source_consumer(self._config, "discovery", self._watch)

    def process(self, unused_impulse) -> Iterator[PartitionDescriptor]:
        from confluent_kafka import KafkaException

        try:
            descriptors = discover_partitions(self._consumer, self._config)
        except KafkaException as error:  # each broker call waited up to the broker timeout
            if error.args and is_outage(error.args[0]):
                raise self._watch.unavailable() from None
            raise
        yield from descriptors

    def teardown(self):
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
