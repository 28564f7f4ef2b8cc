"""The partition reader: a Splittable DoFn over one partition's OffsetRange (see _source.py)."""
from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from pipelines.io.kafka._clients import poll_batch, source_consumer
from pipelines.io.kafka._commit import OFFSETS, CommitOnFinalize
from pipelines.io.kafka._config import POLL_BATCH, POLL_TIMEOUT_SECONDS, KafkaReadConfig
from pipelines.io.kafka._health import SYSTEM_CLOCK, Clock, is_partition_eof, raise_if_fatal
from pipelines.io.kafka._reader_clients import Lease, ReaderClients, acquire_reader_clients, release_reader_clients
from pipelines.io.kafka._restrictions import RESTRICTIONS, WATERMARKS
from schemas.arrow_readers import tabulate_records
from schemas.codecs import capped
from schemas.internal_records import PartitionDescriptor, PartitionOffset
from schemas.kafka_values import payload_time_millis, raw_record_from_message, raw_text
from schemas.records import RawRecord
from schemas.timestamps import EARLIEST_MILLIS, LATEST_MILLIS
from transforms.counting import METRICS_NAMESPACE
from transforms.event_time import millis_to_beam_timestamp

_LOGGER = logging.getLogger(__name__)
# A busy partition checkpoints after this many records (or `read_call_millis`), so its bundle commits
# (and its offsets are finalized) regularly, as unbounded_source.py's per-bundle caps do.
_MAX_RECORDS_PER_CALL = 10_000
# The longest a caught-up partition waits before it is polled again: one that just read records comes back
# after `resume_millis` if that is sooner, one that read nothing after twice its previous wait.
_RESUME_DELAY_SECONDS = 0.5
# The longest a call waits for data (or EOF) before it checkpoints, if `read_call_millis` is longer.
_MAX_WAIT_SECONDS_PER_CALL = 2.0
# The first poll of a call that continues where its consumer stands, whose latest fetch said the partition
# ends there: only what arrived since is waited for (an idle partition's call must not hold up the
# partitions read after it in the same bundle, as on Flink).
_CAUGHT_UP_POLL_SECONDS = 0.01
# Chunk mode sets each partition's lag gauge at most this often.
_LAG_REPORT_SECONDS = 1.0


class ReadPartitionFn(beam.DoFn):
    """Reads one partition's OffsetRange into timestamped RawRecords (the bounded flavour); with
    `chunks=True`, into timestamped RawChunks of up to `config.chunk_max_records` records (chunk mode).

    With `config.defer_commit` it also emits, on the OFFSETS output, a PartitionOffset (the next
    offset to read) for every call that read something, instead of committing on finalization.
    """

    def __init__(self, config: KafkaReadConfig, clock: Clock = SYSTEM_CLOCK, chunks: bool = False):
        self._config = config
        self._clock = clock
        self._chunks = chunks
        # Chunk mode's metrics (namespace "paybeam"; docs/DESIGN.md 5).
        self._read_counter = Metrics.counter(METRICS_NAMESPACE, f"{config.input_name}.read")
        self._watermark_gauge = Metrics.gauge(METRICS_NAMESPACE, f"{config.input_name}.watermark_millis")
        self._lag_gauges: Dict[Tuple[str, int], object] = {}
        self._lag_reported_at: Dict[Tuple[str, int], float] = {}
        self._clients: Optional[ReaderClients] = None  # shared by the process's readers (_reader_clients.py)

    def setup(self):
        self._clients = acquire_reader_clients(self._config, self._clock)
        self._watch = self._clients.watch

    def teardown(self):
        if self._clients is not None:
            clients, self._clients = self._clients, None
            release_reader_clients(clients)

    # `fin` must come before the RestrictionParam argument (docs/DESIGN.md 7).
    def process(self, descriptor: PartitionDescriptor, fin=beam.DoFn.BundleFinalizerParam,
                tracker=beam.DoFn.RestrictionParam(RESTRICTIONS),
                watermark=beam.DoFn.WatermarkEstimatorParam(WATERMARKS)):
        yield from self._read(descriptor, fin, tracker, watermark)

    def _read(self, descriptor: PartitionDescriptor, fin, tracker, watermark) -> Iterator[TimestampedValue]:
        config = self._config
        commits_on_finalize = config.commit_offsets and not config.defer_commit
        if commits_on_finalize:
            # Prism sends FinalizeBundle for every bundle of a stage whose DoFn takes a finalizer, not only
            # for bundles that registered a callback; the SDK answers one that did not with a logged "Bundle
            # is not in a finalizable state" traceback (758 in a 7-minute catch-up, 2026-12-03). Only the
            # unbounded mode that commits on finalization registers: Flink's batch mode refuses finalizers.
            fin.register(nothing_to_commit)
        start = tracker.current_restriction().start
        if start >= tracker.current_restriction().stop:
            return
        self._watch.check(self._list_topic(descriptor.topic))
        progress = [start]  # the first offset not yet claimed, updated as the range is read
        try:
            yield from self._read_range(descriptor, tracker, watermark, progress)
        finally:
            if progress[0] > start and commits_on_finalize:
                fin.register(CommitOnFinalize(self, descriptor.topic, descriptor.partition, progress[0]))
        # Only after a call that ended normally: a failing one must not wait on the broker here.
        if progress[0] == start and commits_on_finalize and self._behind_the_group(descriptor, start):
            # A run restored from a checkpoint starts where the checkpoint says. If the run before it
            # stopped after that checkpoint but before its finalization committed, and nothing new
            # arrives, no read would ever commit that position (seen on Flink, 2026-12-04).
            fin.register(CommitOnFinalize(self, descriptor.topic, descriptor.partition, start))
        if progress[0] > start and config.commit_offsets and config.defer_commit:
            yield TaggedOutput(OFFSETS, PartitionOffset(descriptor.topic, descriptor.partition, progress[0]))

    def _behind_the_group(self, descriptor: PartitionDescriptor, start: int) -> bool:
        """True once per partition and process: the group's committed offset is below `start` (> 0)."""
        from confluent_kafka import KafkaException, TopicPartition

        key = (descriptor.topic, descriptor.partition)
        clients = self._clients
        with clients.lock:
            if start <= 0 or key in clients.checked_commits:
                return False
            clients.checked_commits.add(key)
        try:
            with clients.lock:
                (committed,) = clients.control.committed([TopicPartition(*key)],
                                                         timeout=self._config.broker_timeout_seconds)
        except KafkaException:
            return False  # unknown: the next read that moves commits anyway
        return committed.offset < start

    def _list_topic(self, topic: str):
        clients = self._clients

        def probe(timeout: float) -> None:
            with clients.lock:
                clients.control.list_topics(topic, timeout=timeout)
        return probe

    def _read_range(self, descriptor: PartitionDescriptor, tracker, watermark,
                    progress: List[int]) -> Iterator[TimestampedValue]:
        lease = self._clients.lease((descriptor.topic, descriptor.partition), tracker.current_restriction().start)
        try:
            yield from self._read_leased(descriptor, lease, tracker, watermark, progress)
        except BaseException:
            self._clients.give_back(lease, failed=True)
            raise
        self._clients.give_back(lease)

    def _read_leased(self, descriptor: PartitionDescriptor, lease: Lease, tracker, watermark,
                     progress: List[int]) -> Iterator[TimestampedValue]:
        config, clock = self._config, self._clock
        key, consumer = lease.partition, lease.consumer
        restriction = tracker.current_restriction()
        start, stop = restriction.start, restriction.stop
        skip_before = config.start_timestamp_millis if config.start == "timestamp" else None
        # Chunk mode: records wait here until they leave as one RawChunk; `progress` then counts only
        # offsets whose records have left (a commit never covers a record still held).
        chunk = _Chunk(descriptor.topic, config.input_name) if self._chunks else None
        max_records_per_call = max(_MAX_RECORDS_PER_CALL, config.chunk_max_records) if self._chunks \
            else _MAX_RECORDS_PER_CALL
        next_offset = start  # the first offset not yet claimed
        emitted = 0
        call_seconds = config.read_call_millis / 1000
        wait_seconds = min(call_seconds, _MAX_WAIT_SECONDS_PER_CALL)
        began = clock.monotonic()
        waited_since = began
        poll_seconds = POLL_TIMEOUT_SECONDS
        if lease.continuing and self._fetched_high(consumer, key) == start:
            poll_seconds = _CAUGHT_UP_POLL_SECONDS
        while True:
            messages = poll_batch(consumer, POLL_BATCH, poll_seconds, config.linger_millis / 1000)
            lease.polled(messages)
            poll_seconds = POLL_TIMEOUT_SECONDS
            batch_min: Optional[Timestamp] = None
            caught_up_at: Optional[int] = None
            finished = False
            read_now = emitted
            for message in messages:
                if (message.topic(), message.partition()) != key:
                    continue  # left over from an earlier assignment
                error = message.error()
                if error is not None:
                    if is_partition_eof(error):
                        self._watch.healthy()
                        caught_up_at = message.offset()
                        continue
                    self._watch.on_error(error)
                    raise_if_fatal(error)
                    continue
                self._watch.healthy()
                offset = message.offset()
                if offset < next_offset:
                    continue  # already claimed (a re-fetch after a retriable error)
                if not tracker.try_claim(offset):
                    finished = True
                    break
                next_offset = offset + 1
                if chunk is None or not chunk.records:
                    progress[0] = next_offset
                if skip_before is not None and _is_before(message, skip_before):
                    continue
                record, millis, payload_millis = self._to_record(message)
                if (config.bounded == "until_time" and payload_millis is not None
                        and payload_millis >= config.stop_at_millis):
                    next_offset = offset  # not read: a later run starting at the committed offset gets it
                    if chunk is None or not chunk.records:
                        progress[0] = offset
                    if offset < stop - 1:
                        tracker.try_claim(stop - 1)  # finish the restriction (as KafkaIO's stop-reading path)
                    finished = True
                    break
                emitted += 1
                if chunk is None:
                    timestamp = millis_to_beam_timestamp(millis)
                    yield TimestampedValue(record, timestamp)
                    batch_min = timestamp if batch_min is None or timestamp < batch_min else batch_min
                    continue
                if not chunk.records:
                    chunk.first_read_at = clock.monotonic()
                chunk.add(record, millis)
                if len(chunk.records) >= config.chunk_max_records:
                    yield from self._emit_chunk(chunk, watermark)
                    progress[0] = next_offset
            if caught_up_at is None and not finished:
                # Read up to the latest fetch's high watermark: caught up now, without waiting for the
                # end-of-partition event, which comes only with the next fetch (or never, to a consumer
                # that stayed assigned after reading to the end before).
                high = self._fetched_high(consumer, key)
                caught_up_at = high if high == next_offset else None
            if batch_min is not None:
                watermark.advance_to(batch_min)
            if batch_min is not None or (chunk is not None and emitted > read_now):
                watermark.mark_active()
                waited_since = clock.monotonic()
            now: Optional[float] = None
            ending = finished or next_offset >= stop or (caught_up_at is not None and caught_up_at >= next_offset)
            if not ending:
                now = clock.monotonic()
                ending = (emitted >= max_records_per_call or now - began >= call_seconds
                          or (not messages and now - waited_since >= wait_seconds))
            if chunk is not None:
                # Never hold records across the end of the call (a checkpoint or the end of the range).
                if chunk.records and (ending or (now - chunk.first_read_at) * 1000 >= config.chunk_max_millis):
                    yield from self._emit_chunk(chunk, watermark)
                    progress[0] = next_offset
                self._report_lag(consumer, key, next_offset, caught_up_at)
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
                lease.empty_calls = 0 if emitted else lease.empty_calls + 1
                tracker.defer_remainder(Duration(seconds=self._resume_delay_seconds(lease.empty_calls)))
                return
            if ending:
                tracker.defer_remainder()  # the next call starts by checking the broker's health
                return

    def _resume_delay_seconds(self, empty_calls: int) -> float:
        """After a caught-up call: `resume_millis` (at most 0.5 s), doubled for every call in a row before this
        one that read nothing (an idle partition settles at 0.5 s; a quiet one is not left waiting 0.5 s
        because one call came between two of its records)."""
        doublings = min(max(empty_calls - 1, 0), 16)
        return min(_RESUME_DELAY_SECONDS, self._config.resume_millis / 1000 * 2 ** doublings)

    @staticmethod
    def _fetched_high(consumer, key: Tuple[str, int]) -> Optional[int]:
        """The partition's high watermark as of its consumer's latest fetch (no broker call; a stale one is
        lower, never higher), None before any fetch."""
        from confluent_kafka import KafkaException, TopicPartition

        try:
            offsets = consumer.get_watermark_offsets(TopicPartition(*key), cached=True)
        except KafkaException:
            return None  # not known to the client yet
        return offsets[1] if offsets and offsets[1] >= 0 else None

    def _emit_chunk(self, chunk: "_Chunk", watermark) -> Iterator[TimestampedValue]:
        """Yields the held records as one RawChunk at their smallest time, then (only then) advances the
        watermark to that time: the reader never moves its watermark past a record it still holds."""
        records, min_millis = chunk.take()
        timestamp = millis_to_beam_timestamp(min_millis)
        yield TimestampedValue(tabulate_records(records, path=chunk.topic, input_name=chunk.input_name), timestamp)
        watermark.advance_to(timestamp)
        self._read_counter.inc(len(records))
        self._report_watermark(watermark)

    def _report_watermark(self, watermark) -> None:
        current = watermark.current_watermark()
        if current is not None:
            self._watermark_gauge.set(current.micros // 1000)

    def _report_lag(self, consumer, key: Tuple[str, int], next_offset: int, caught_up_at: Optional[int]) -> None:
        """Sets `<input>.lag.<topic>.<partition>` (high watermark - next offset) at most once a second per
        partition, from the consumer's cached fetch information (no broker call)."""
        now = self._clock.monotonic()
        if now - self._lag_reported_at.get(key, float("-inf")) < _LAG_REPORT_SECONDS:
            return
        high = caught_up_at if caught_up_at is not None else self._fetched_high(consumer, key)
        if high is None:
            return  # nothing fetched yet: unknown
        self._lag_reported_at[key] = now
        gauge = self._lag_gauges.get(key)
        if gauge is None:
            gauge = self._lag_gauges[key] = Metrics.gauge(
                METRICS_NAMESPACE, f"{self._config.input_name}.lag.{key[0]}.{key[1]}")
        gauge.set(max(0, high - next_offset))

    def _idle_release(self, watermark, emitted_now: int) -> bool:
        """Applies the idle policy; True when an until_time partition can end now."""
        now = self._clock.time()
        idle_for = watermark.idle_seconds(now)
        if emitted_now or idle_for < self._config.idle_timeout_seconds:
            return False
        released = Timestamp.of(now - self._config.idle_timeout_seconds)
        watermark.advance_to(released)
        if self._chunks:
            self._report_watermark(watermark)
        return self._config.bounded == "until_time" and watermark.current_watermark().micros >= \
            self._config.stop_at_millis * 1000

    def _to_record(self, message) -> Tuple[RawRecord, int, Optional[int]]:
        """The RawRecord, its output time (epoch millis) and the payload time (None if not valid)."""
        return record_of_message(message, self._config.input_name, self._config.value_format, self._clock.time)

    def commit(self, topic: str, partition: int, next_offset: int) -> None:
        """Commits `next_offset` (the next offset to read) for the partition to the consumer group."""
        from confluent_kafka import TopicPartition

        key = (topic, partition)
        clients = self._clients
        offsets = [TopicPartition(topic, partition, next_offset)]
        with clients.lock if clients is not None else nullcontext():
            if clients is None or clients.control is None:  # finalized after teardown
                consumer = source_consumer(self._config, "commit")
                try:
                    consumer.commit(offsets=offsets, asynchronous=False)
                finally:
                    consumer.close()
            elif clients.committed.get(key, -1) >= next_offset:
                return  # a later position was already committed by this process's readers
            else:
                clients.control.commit(offsets=offsets, asynchronous=False)
                clients.committed[key] = next_offset
        _LOGGER.debug("committed %s/%s@%s for group %s", topic, partition, next_offset, self._config.group_id)


class _Chunk:
    """The records a chunk-mode call holds until they leave as one RawChunk."""

    def __init__(self, topic: str, input_name: str):
        self.topic = topic
        self.input_name = input_name
        self.records: List[RawRecord] = []
        self.min_millis: Optional[int] = None
        self.first_read_at = 0.0

    def add(self, record: RawRecord, millis: int) -> None:
        self.records.append(record)
        if self.min_millis is None or millis < self.min_millis:
            self.min_millis = millis

    def take(self) -> Tuple[List[RawRecord], int]:
        records, min_millis = self.records, self.min_millis
        self.records, self.min_millis = [], None
        return records, min_millis


class ReadPartitionUnboundedFn(ReadPartitionFn):
    """The same reader, declared as doing unbounded work per element (an unbounded PCollection)."""

    @beam.DoFn.unbounded_per_element()
    def process(self, descriptor: PartitionDescriptor, fin=beam.DoFn.BundleFinalizerParam,
                tracker=beam.DoFn.RestrictionParam(RESTRICTIONS),
                watermark=beam.DoFn.WatermarkEstimatorParam(WATERMARKS)):
        yield from self._read(descriptor, fin, tracker, watermark)


def nothing_to_commit() -> None:
    """The finalization callback of a bundle that read nothing new."""


def _is_before(message, millis: int) -> bool:
    broker_millis = _broker_millis(message)
    return broker_millis is not None and broker_millis < millis


def _broker_millis(message) -> Optional[int]:
    """The broker timestamp, or None when there is none or it lies outside the instants paybeam accepts.

    A producer sets CreateTime freely; one beyond Beam's timestamp range would crash the reader on
    every restart at that offset (a poison record), so it is ignored like a missing one.
    """
    from confluent_kafka import TIMESTAMP_NOT_AVAILABLE

    kind, millis = message.timestamp()
    if kind == TIMESTAMP_NOT_AVAILABLE or not EARLIEST_MILLIS <= millis < LATEST_MILLIS:
        return None
    return millis


def record_of_message(message, input_name: str, value_format: str,
                      clock: Callable[[], float] = SYSTEM_CLOCK.time) -> Tuple[RawRecord, int, Optional[int]]:
    """A message as (RawRecord, output time in epoch millis, payload time or None); never raises on its bytes.

    Output time: the payload event time (docs/DESIGN.md 4.1), else the broker timestamp, else the
    time it was read. Whatever a value holds, the message becomes a record (a dead letter downstream
    at worst), so one poison message can never stop its partition.
    """
    value = message.value()
    source = f"{message.topic()}/{message.partition()}@{message.offset()}"
    try:
        record = raw_record_from_message(input_name, source, value, value_format)
        payload_millis = payload_time_millis(record)
    except Exception as error:  # pylint: disable=broad-except  (a decoder bug: keep the message, say why)
        record = RawRecord(input_name, source, None, capped(raw_text(value, value_format)),
                           f"cannot decode the value ({type(error).__name__})")
        payload_millis = None
    millis = payload_millis if payload_millis is not None else _broker_millis(message)
    if millis is None:  # no usable broker timestamp either: the time it was read
        millis = int(clock() * 1000)
    return record, millis, payload_millis
