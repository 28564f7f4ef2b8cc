"""Kafka source: a pure-Python Splittable DoFn on confluent-kafka (docs/DESIGN.md 5).

    records = pipeline | ReadRawRecordsFromKafka(KafkaReadConfig(
        bootstrap_servers="broker:9092", topics=("payments",), group_id="paybeam",
        input_name=PAYMENTS, value_format="json", bounded="end_offsets"))

Shape of the read (after Beam Java KafkaIO's ReadFromKafkaDoFn):

    Impulse -> DiscoverPartitions -> Reshuffle -> ReadPartitions (SDF) -> RawRecord

* DiscoverPartitions runs once, at run time (not at pipeline construction, so
  a template or a resubmitted job sees the topic as it is when it starts). It
  lists the partitions of every topic and resolves, per partition, the start
  offset (committed / earliest / latest / timestamp) and the stop offset of a
  bounded mode. Each partition becomes one `PartitionDescriptor` element,
  carrying concrete offsets, so a retried read never re-resolves them.
* ReadPartitions is a Splittable DoFn whose restriction is an `OffsetRange`
  [start, stop) of that one partition; unbounded reads use stop =
  `UNBOUNDED_STOP`. The tracker only allows self-checkpoints (like KafkaIO's
  UnsplittableRestrictionTracker): two workers reading one partition at once
  would race their offset commits.
* Each DoFn instance owns one consumer (created in `setup`, closed in
  `teardown`), uses `assign()` (never `subscribe()`: Beam, not the group
  coordinator, decides who reads which partition) and seeks to the
  restriction's start at every `process` call.
* When the partition has nothing more to read right now, `process` defers the
  rest of its restriction (`defer_remainder`), as KafkaIO returns
  `ProcessContinuation.resume()` on an empty poll.
* Offsets are committed to `group_id` by a bundle-finalization callback, i.e.
  only after the runner has durably committed the bundle's output:
  at-least-once, made exactly-once by the pipeline's Deduplicate.

End offsets. The end of a partition is its high watermark. `ListOffsets
(latest)` (`get_watermark_offsets(tp, timeout=...)`) is the standard query,
and is used first. The discovery step then seeks to that offset with
`enable.partition.eof=True` and takes the offset of the partition-EOF event
(the high watermark carried by the fetch response) when it is beyond the
ListOffsets answer. On Apache Kafka the two agree (the fetch at the high
watermark returns nothing and the EOF event arrives at once), so this costs one
empty fetch per partition; on brokers whose ListOffsets answer lags the log
(the Tansu test broker answers with the base offset of the last record batch)
the fetch response is the authoritative value. The read loop also uses EOF
events: EOF at or beyond a bounded stop ends the restriction even when the
last offsets are not records (transaction markers, compacted records).

Start at a timestamp. `offsets_for_times` (ListOffsets by timestamp) gives
the first offset whose broker timestamp is >= T on Apache Kafka. The reader
additionally skips any record whose broker timestamp is earlier than T, so the
result is "records of the partition with a broker timestamp >= T" even on a
broker that does not implement the lookup (Tansu answers offset 0). On Kafka
this only differs for records that were appended after the first record >= T
but carry an earlier producer-set timestamp: they are skipped too.

Output. One `RawRecord(input_name, "topic/partition@offset", fields,
raw_payload, decode_error)` per message; a value that does not decode is kept
with `fields=None` and `decode_error` set (dead letters downstream), never
dropped. Each record is timestamped with its payload event time (`event_time`
for payments, `booked_time` for settlements, docs/DESIGN.md 4.1), or with the
broker timestamp when the payload has no valid time.

Watermark policy (per partition restriction; Beam takes the minimum over the
restrictions, so the slowest active partition holds the output watermark):
* After every poll batch the watermark advances to the smallest payload event
  time among the records that batch emitted (never backwards). A record that
  comes in a later batch with an earlier time is late for the downstream
  windows (their allowed lateness covers it).
* A partition that is caught up (EOF) and has emitted nothing for
  `idle_timeout_seconds` advances its watermark to wall-clock now minus
  `idle_timeout_seconds`: it then no longer holds the other partitions back,
  and still leaves a margin of one timeout for a record whose event time was
  stamped just before it reached the broker.
* A finished (bounded) restriction no longer holds the watermark at all.
The idle clock lives in the watermark-estimator state, so it survives the
restriction's checkpoints.

Bounded modes:
* "end_offsets": stop at the end offsets seen when the run starts; records
  produced later are not read.
* "max_records": the total number of offsets to read across all partitions.
  It is allocated per partition at start: evenly over the partitions, each
  capped at the backlog it has (start..end), the surplus going to partitions
  with more backlog ("water-filling"); only a total beyond the whole backlog
  makes partitions wait for new records (the excess spread evenly). Offsets
  equal records for topics without transactions or compaction.
* "until_time": a partition stops at its first record whose payload event
  time is >= `stop_at_millis` (that record is not emitted, and the committed
  offset points at it), or when its idle watermark passes `stop_at_millis`
  (nothing earlier can still arrive in time) — so an empty or quiet partition
  also ends.

Secrets: `consumer_config` may hold SASL passwords and keys; only its keys are
ever logged.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from pipelines.io.kafka_restrictions import _RESTRICTIONS, _WATERMARKS, UNBOUNDED_STOP
from schemas.kafka_values import (
    PAYLOAD_TIME_FIELD,
    SCHEMA_OF_INPUT,
    VALUE_FORMATS,
    payload_time_millis,
    raw_record_from_message,
)
from schemas.records import PAYMENTS, SETTLEMENTS, RawRecord
from transforms.event_time import millis_to_beam_timestamp

_LOGGER = logging.getLogger(__name__)

START_POSITIONS = ("committed", "earliest", "latest", "timestamp")
BOUNDED_MODES = (None, "end_offsets", "max_records", "until_time")

# The stop of an unbounded restriction (Java KafkaIO uses Long.MAX_VALUE too).


# Settings the source owns: overriding them would break offsets, EOF detection or at-least-once.
_RESERVED_KEYS = frozenset({
    "bootstrap.servers", "group.id", "enable.auto.commit", "enable.auto.offset.store", "enable.partition.eof",
})
# Defaults a user may override through consumer_config.
_DEFAULT_CONSUMER_SETTINGS = {
    "auto.offset.reset": "earliest",  # a seek position deleted by retention resumes at the log start
    "fetch.wait.max.ms": 100,  # a caught-up partition reports EOF quickly
}

_METADATA_TIMEOUT_SECONDS = 15.0
_DISCOVERY_EOF_TIMEOUT_SECONDS = 15.0
_POLL_TIMEOUT_SECONDS = 0.2
_POLL_BATCH = 500
# A busy partition checkpoints after this long or this many records, so its bundle commits
# (and its offsets are finalized) regularly, as unbounded_source.py's per-bundle caps do.
_MAX_READ_SECONDS_PER_CALL = 5.0
_MAX_RECORDS_PER_CALL = 10_000
# How long a caught-up partition waits before it is polled again.
_RESUME_DELAY_SECONDS = 0.5
# The longest a call waits for data (or EOF) before it checkpoints.
_MAX_WAIT_SECONDS_PER_CALL = 2.0


@dataclass(frozen=True)
class KafkaReadConfig:
    """What to read and how; see the module docstring for the semantics of each mode."""

    bootstrap_servers: str
    topics: Tuple[str, ...]
    group_id: str
    input_name: str
    value_format: str = "json"
    start: str = "committed"
    start_timestamp_millis: Optional[int] = None
    bounded: Optional[str] = None
    max_records: Optional[int] = None
    stop_at_millis: Optional[int] = None
    idle_timeout_seconds: float = 10.0
    commit_offsets: bool = True
    consumer_config: Mapping[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        """Raises ValueError naming the first bad setting or combination."""
        if not self.bootstrap_servers:
            raise ValueError("bootstrap_servers is required")
        if isinstance(self.topics, str) or not self.topics or not all(
                isinstance(topic, str) and topic for topic in self.topics):
            raise ValueError(f"topics must be a non-empty tuple of topic names, got {self.topics!r}")
        if not self.group_id:
            raise ValueError("group_id is required (committed offsets are read from and written to it)")
        if self.input_name not in SCHEMA_OF_INPUT:
            raise ValueError(f"input_name must be {PAYMENTS!r} or {SETTLEMENTS!r}, got {self.input_name!r}")
        if self.value_format not in VALUE_FORMATS:
            raise ValueError(f"unknown value_format {self.value_format!r}; choose one of {', '.join(VALUE_FORMATS)}")
        if self.start not in START_POSITIONS:
            raise ValueError(f"unknown start {self.start!r}; choose one of {', '.join(START_POSITIONS)}")
        if self.start == "timestamp":
            if not isinstance(self.start_timestamp_millis, int) or isinstance(self.start_timestamp_millis, bool):
                raise ValueError('start="timestamp" needs start_timestamp_millis (epoch milliseconds)')
            if self.start_timestamp_millis < 0:
                raise ValueError("start_timestamp_millis must be >= 0")
        elif self.start_timestamp_millis is not None:
            raise ValueError('start_timestamp_millis is only used with start="timestamp"')
        if self.bounded not in BOUNDED_MODES:
            raise ValueError(f"unknown bounded mode {self.bounded!r}; choose one of "
                             f"{', '.join(str(mode) for mode in BOUNDED_MODES)}")
        if self.bounded == "max_records":
            if not isinstance(self.max_records, int) or isinstance(self.max_records, bool) or self.max_records < 1:
                raise ValueError('bounded="max_records" needs max_records, a positive integer')
        elif self.max_records is not None:
            raise ValueError('max_records is only used with bounded="max_records"')
        if self.bounded == "until_time":
            if not isinstance(self.stop_at_millis, int) or isinstance(self.stop_at_millis, bool):
                raise ValueError('bounded="until_time" needs stop_at_millis (epoch milliseconds)')
        elif self.stop_at_millis is not None:
            raise ValueError('stop_at_millis is only used with bounded="until_time"')
        if not self.idle_timeout_seconds > 0:
            raise ValueError("idle_timeout_seconds must be > 0")
        reserved = sorted(_RESERVED_KEYS.intersection(self.consumer_config))
        if reserved:
            raise ValueError(f"consumer_config may not set {', '.join(reserved)}: the source manages them")

    @property
    def schema_name(self) -> str:
        return SCHEMA_OF_INPUT[self.input_name]

    @property
    def time_field(self) -> str:
        return PAYLOAD_TIME_FIELD[self.input_name]


class PartitionDescriptor(NamedTuple):
    """One partition to read and its resolved offsets: the SDF's element."""

    topic: str
    partition: int
    start_offset: int
    stop_offset: int  # exclusive; UNBOUNDED_STOP when no end is known


def consumer_settings(config: KafkaReadConfig) -> Dict[str, Any]:
    settings: Dict[str, Any] = dict(_DEFAULT_CONSUMER_SETTINGS)
    settings.update(config.consumer_config)
    settings.update({
        "bootstrap.servers": config.bootstrap_servers,
        "group.id": config.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "error_cb": _log_client_error,
    })
    return settings


def _log_client_error(error) -> None:
    _LOGGER.warning("Kafka client error: %s", error)


def _new_consumer(config: KafkaReadConfig, role: str):
    from confluent_kafka import Consumer

    _LOGGER.info("Kafka %s consumer for %s (group %s); consumer_config keys: %s", role,
                 ",".join(config.topics), config.group_id, sorted(config.consumer_config) or "none")
    return Consumer(consumer_settings(config))


def _is_partition_eof(error) -> bool:
    from confluent_kafka import KafkaError

    return error.code() == KafkaError._PARTITION_EOF


def _raise_if_fatal(error) -> None:
    """Fails the bundle (Beam retries it) on errors the client cannot recover from; logs the rest.

    librdkafka reports transient errors (a broker connection lost, a leader moving) through the
    consumer too and recovers by itself, so those are only logged.
    """
    from confluent_kafka import KafkaError, KafkaException

    permanent = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.TOPIC_AUTHORIZATION_FAILED,
                 KafkaError.GROUP_AUTHORIZATION_FAILED, KafkaError.SASL_AUTHENTICATION_FAILED,
                 KafkaError._UNKNOWN_PARTITION, KafkaError._UNKNOWN_TOPIC, KafkaError._AUTHENTICATION,
                 KafkaError._SSL, KafkaError.OFFSET_OUT_OF_RANGE}
    if error.fatal() or error.code() in permanent:
        raise KafkaException(error)
    _LOGGER.warning("Kafka consumer error (the client retries): %s", error)


# --------------------------------------------------------------------------------------------
# Partition discovery and start/stop offsets
# --------------------------------------------------------------------------------------------

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


def _list_partitions(consumer, topics: Sequence[str]) -> List[Tuple[str, int]]:
    partitions: List[Tuple[str, int]] = []
    for topic in topics:
        metadata = consumer.list_topics(topic, timeout=_METADATA_TIMEOUT_SECONDS).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            reason = metadata.error if metadata is not None and metadata.error is not None else "no partitions"
            raise ValueError(f"cannot read Kafka topic {topic!r}: {reason}")
        partitions.extend((topic, number) for number in sorted(metadata.partitions))
    return partitions


def _end_offsets(consumer, partitions: Sequence[Tuple[str, int]]) -> Tuple[Dict, Dict]:
    """(low, end) offsets per partition: ListOffsets first, then the fetch-response high watermark."""
    from confluent_kafka import TopicPartition

    low: Dict[Tuple[str, int], int] = {}
    end: Dict[Tuple[str, int], int] = {}
    for key in partitions:
        low[key], end[key] = consumer.get_watermark_offsets(TopicPartition(*key), timeout=_METADATA_TIMEOUT_SECONDS)
    # A fetch at the ListOffsets answer ends with a partition-EOF event at the high watermark the
    # broker put in the fetch response: on Apache Kafka the same offset (nothing is fetched), on a
    # broker whose ListOffsets lags the log, the true end (see the module docstring).
    consumer.assign([TopicPartition(topic, number, max(end[(topic, number)], low[(topic, number)]))
                     for topic, number in partitions])
    pending = set(partitions)
    deadline = time.monotonic() + _DISCOVERY_EOF_TIMEOUT_SECONDS
    try:
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=_POLL_BATCH, timeout=_POLL_TIMEOUT_SECONDS):
                error = message.error()
                key = (message.topic(), message.partition())
                if error is None:
                    continue  # records before the end: not read here
                if _is_partition_eof(error):
                    if key in pending:
                        end[key] = max(end[key], message.offset())
                        pending.discard(key)
                else:
                    _raise_if_fatal(error)
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
        committed = consumer.committed([TopicPartition(*key) for key in partitions], timeout=_METADATA_TIMEOUT_SECONDS)
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
        timeout=_METADATA_TIMEOUT_SECONDS)
    starts = {}
    for entry in found:
        key = (entry.topic, entry.partition)
        # -1: no record at or after the time -> the end. Below the log start -> the log start.
        starts[key] = end[key] if entry.offset < 0 else max(entry.offset, low[key])
    return starts


def discover_partitions(consumer, config: KafkaReadConfig) -> List[PartitionDescriptor]:
    """The partitions of the configured topics with their start and stop offsets."""
    partitions = _list_partitions(consumer, config.topics)
    low, end = _end_offsets(consumer, partitions)
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


class _DiscoverPartitionsFn(beam.DoFn):
    """Impulse -> one PartitionDescriptor per partition of the configured topics."""

    def __init__(self, config: KafkaReadConfig):
        self._config = config
        self._consumer = None

    def setup(self):
        self._consumer = _new_consumer(self._config, "discovery")

    def process(self, unused_impulse) -> Iterator[PartitionDescriptor]:
        yield from discover_partitions(self._consumer, self._config)

    def teardown(self):
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None




class _ReadPartitionFn(beam.DoFn):
    """Reads one partition's OffsetRange into timestamped RawRecords (the bounded flavour)."""

    def __init__(self, config: KafkaReadConfig):
        self._config = config
        self._consumer = None
        self._lock = None
        self._committed: Dict[Tuple[str, int], int] = {}

    def setup(self):
        self._lock = threading.Lock()
        self._committed = {}
        self._consumer = _new_consumer(self._config, "reader")

    def teardown(self):
        if self._consumer is not None:
            with self._lock:
                self._consumer.close()
                self._consumer = None

    # `fin` must come before the RestrictionParam argument (docs/DESIGN.md 7).
    def process(self, descriptor: PartitionDescriptor, fin=beam.DoFn.BundleFinalizerParam,
                tracker=beam.DoFn.RestrictionParam(_RESTRICTIONS),
                watermark=beam.DoFn.WatermarkEstimatorParam(_WATERMARKS)):
        yield from self._read(descriptor, fin, tracker, watermark)

    def _read(self, descriptor: PartitionDescriptor, fin, tracker, watermark) -> Iterator[TimestampedValue]:
        from confluent_kafka import TopicPartition

        config = self._config
        key = (descriptor.topic, descriptor.partition)
        restriction = tracker.current_restriction()
        start, stop = restriction.start, restriction.stop
        if start >= stop:
            return
        with self._lock:
            self._consumer.assign([TopicPartition(descriptor.topic, descriptor.partition, start)])
        skip_before = config.start_timestamp_millis if config.start == "timestamp" else None
        next_offset = start  # the first offset not yet claimed
        emitted = 0
        began = time.monotonic()
        waited_since = began
        try:
            while True:
                with self._lock:
                    messages = self._consumer.consume(num_messages=_POLL_BATCH, timeout=_POLL_TIMEOUT_SECONDS)
                batch_min: Optional[Timestamp] = None
                caught_up_at: Optional[int] = None
                finished = False
                for message in messages:
                    if (message.topic(), message.partition()) != key:
                        continue  # left over from an earlier assignment
                    error = message.error()
                    if error is not None:
                        if _is_partition_eof(error):
                            caught_up_at = message.offset()
                            continue
                        _raise_if_fatal(error)
                        continue
                    offset = message.offset()
                    if offset < next_offset:
                        continue  # already claimed (a re-fetch after a retriable error)
                    if not tracker.try_claim(offset):
                        finished = True
                        break
                    next_offset = offset + 1
                    if skip_before is not None and _is_before(message, skip_before):
                        continue
                    record, millis, payload_millis = self._to_record(message)
                    if (config.bounded == "until_time" and payload_millis is not None
                            and payload_millis >= config.stop_at_millis):
                        next_offset = offset  # not read: a later run starting at the committed offset gets it
                        if offset < stop - 1:
                            tracker.try_claim(stop - 1)  # finish the restriction (as KafkaIO's stop-reading path)
                        finished = True
                        break
                    timestamp = millis_to_beam_timestamp(millis)
                    yield TimestampedValue(record, timestamp)
                    emitted += 1
                    batch_min = timestamp if batch_min is None or timestamp < batch_min else batch_min
                if batch_min is not None:
                    watermark.advance_to(batch_min)
                    watermark.mark_active()
                    waited_since = time.monotonic()
                if finished or next_offset >= stop:
                    return  # the whole range is claimed
                if caught_up_at is not None and caught_up_at >= stop:
                    tracker.try_claim(stop)  # nothing but non-record offsets left below stop: done
                    return
                if caught_up_at is not None and caught_up_at >= next_offset:
                    # Nothing more to read now: let idleness release the watermark, then come back later.
                    if self._idle_release(watermark, emitted):
                        if next_offset < stop - 1:
                            tracker.try_claim(stop - 1)
                        return
                    tracker.defer_remainder(Duration(seconds=_RESUME_DELAY_SECONDS))
                    return
                now = time.monotonic()
                if (emitted >= _MAX_RECORDS_PER_CALL or now - began >= _MAX_READ_SECONDS_PER_CALL
                        or (not messages and now - waited_since >= _MAX_WAIT_SECONDS_PER_CALL)):
                    tracker.defer_remainder()
                    return
        finally:
            if next_offset > start and config.commit_offsets:
                fin.register(_CommitOnFinalize(self, descriptor.topic, descriptor.partition, next_offset))

    def _idle_release(self, watermark, emitted_now: int) -> bool:
        """Applies the idle policy; True when an until_time partition can end now."""
        idle_for = watermark.idle_seconds(time.time())
        if emitted_now or idle_for < self._config.idle_timeout_seconds:
            return False
        released = Timestamp.of(time.time() - self._config.idle_timeout_seconds)
        watermark.advance_to(released)
        return self._config.bounded == "until_time" and watermark.current_watermark().micros >= \
            self._config.stop_at_millis * 1000

    def _to_record(self, message) -> Tuple[RawRecord, int, Optional[int]]:
        """The RawRecord, its output time (epoch millis) and the payload time (None if not valid)."""
        config = self._config
        value = message.value()
        source = f"{message.topic()}/{message.partition()}@{message.offset()}"
        record = raw_record_from_message(config.input_name, source, value, config.value_format)
        payload_millis = payload_time_millis(record)
        millis = payload_millis if payload_millis is not None else _broker_millis(message)
        if millis is None:  # no broker timestamp either: the time it was read
            millis = int(time.time() * 1000)
        return record, millis, payload_millis

    def commit(self, topic: str, partition: int, next_offset: int) -> None:
        """Commits `next_offset` (the next offset to read) for the partition to the consumer group."""
        from confluent_kafka import TopicPartition

        key = (topic, partition)
        with self._lock:
            if self._committed.get(key, -1) >= next_offset:
                return  # a later position was already committed by this reader
            consumer, temporary = self._consumer, False
            if consumer is None:  # finalized after teardown
                consumer, temporary = _new_consumer(self._config, "commit"), True
            try:
                consumer.commit(offsets=[TopicPartition(topic, partition, next_offset)], asynchronous=False)
                self._committed[key] = next_offset
            finally:
                if temporary:
                    consumer.close()
        _LOGGER.debug("committed %s/%s@%s for group %s", topic, partition, next_offset, self._config.group_id)


class _ReadPartitionUnboundedFn(_ReadPartitionFn):
    """The same reader, declared as doing unbounded work per element (an unbounded PCollection)."""

    @beam.DoFn.unbounded_per_element()
    def process(self, descriptor: PartitionDescriptor, fin=beam.DoFn.BundleFinalizerParam,
                tracker=beam.DoFn.RestrictionParam(_RESTRICTIONS),
                watermark=beam.DoFn.WatermarkEstimatorParam(_WATERMARKS)):
        yield from self._read(descriptor, fin, tracker, watermark)


class _CommitOnFinalize:
    """A bundle-finalization callback; a failed commit is logged (the records are re-read: at-least-once)."""

    def __init__(self, reader: _ReadPartitionFn, topic: str, partition: int, next_offset: int):
        self._reader, self._topic, self._partition, self._next_offset = reader, topic, partition, next_offset

    def __call__(self) -> None:
        try:
            self._reader.commit(self._topic, self._partition, self._next_offset)
        except Exception:  # pylint: disable=broad-except
            _LOGGER.warning("could not commit %s/%s@%s to group %s; those records will be read again",
                            self._topic, self._partition, self._next_offset, self._reader._config.group_id,
                            exc_info=True)


def _is_before(message, millis: int) -> bool:
    broker_millis = _broker_millis(message)
    return broker_millis is not None and broker_millis < millis


def _broker_millis(message) -> Optional[int]:
    from confluent_kafka import TIMESTAMP_NOT_AVAILABLE

    kind, millis = message.timestamp()
    return None if kind == TIMESTAMP_NOT_AVAILABLE else millis


# --------------------------------------------------------------------------------------------
# The public composite
# --------------------------------------------------------------------------------------------

class ReadRawRecordsFromKafka(beam.PTransform):
    """PBegin -> PCollection[RawRecord] of one input, timestamped with the payload event time."""

    def __init__(self, config: KafkaReadConfig):
        super().__init__()
        config.validate()
        self._config = config

    def expand(self, pbegin):
        config = self._config
        read_fn = _ReadPartitionUnboundedFn if config.bounded is None else _ReadPartitionFn
        return (
            pbegin
            | "Impulse" >> beam.Impulse()
            | "DiscoverPartitions" >> beam.ParDo(_DiscoverPartitionsFn(config))
            # Spread the partitions over workers before the long-running reads.
            | "SpreadPartitions" >> beam.Reshuffle()
            | "ReadPartitions" >> beam.ParDo(read_fn(config))
        )
