"""The Kafka source against a real broker (the `kafka_broker` fixture: Tansu, or Apache Kafka with
`--kafka-broker=apache`).

Pipelines run on Beam's default DirectRunner in batch, so every read uses a bounded mode
(docs/DESIGN.md 7). Outputs are collected by writing them to a file.
"""
from __future__ import annotations

import glob
import json
import logging
import uuid
from contextlib import contextmanager
from datetime import timedelta
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.utils.timestamp import Timestamp
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from pipelines.io.kafka import (
    BOUNDED_MODES,
    START_POSITIONS,
    SYSTEM_CLOCK,
    UNBOUNDED_STOP,
    Clock,
    DiscoverPartitionsFn,
    KafkaReadConfig,
    PartitionWatermarkEstimator,
    ReadPartitionFn,
    ReadRawRecordsFromKafka,
    allocate_max_records,
)
from pipelines.io.kafka._reader import nothing_to_commit
from schemas.kafka_values import encode_value
from schemas.records import PAYMENTS, SETTLEMENTS
from tests.beam_helpers import DAY as DAY_MILLIS
from tests.beam_helpers import at, payment, settlement
from tests.kafka_helpers import ManualClock, TickingClock

MINUTE = 60_000


# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------

def new_topic(broker, partitions: int = 3) -> str:
    name = f"src-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    for future in admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)]).values():
        future.result(timeout=15)
    return name


def produce(broker, topic: str, messages: Iterable[Tuple[int, Optional[bytes], Optional[int]]]) -> None:
    """Produces (partition, value, broker timestamp or None) messages, then flushes and closes."""
    errors: List[str] = []
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "linger.ms": 5})
    for partition, value, timestamp in messages:
        kwargs = {"timestamp": timestamp} if timestamp is not None else {}
        producer.produce(topic, value=value, partition=partition,
                         on_delivery=lambda error, _msg: errors.append(str(error)) if error else None, **kwargs)
    assert producer.flush(15) == 0
    assert not errors, errors
    if hasattr(producer, "close"):
        producer.close()


def payments(prefix: str, count: int, minutes_apart: int = 1, start: int = 0) -> List[Dict]:
    return [payment(f"{prefix}-{index}", f"ref_{prefix}_{index}", time=(start + index * minutes_apart) * MINUTE)._asdict()
            for index in range(count)]


def produce_payments(broker, topic: str, records: Sequence[Dict], value_format: str = "json",
                     partitions: Sequence[int] = (0, 1, 2), timestamp: Optional[int] = None) -> None:
    produce(broker, topic, [(partitions[index % len(partitions)], encode_value(fields, value_format, "payment_event"),
                             timestamp) for index, fields in enumerate(records)])


def config_for(broker, topic: str, **overrides) -> KafkaReadConfig:
    settings = dict(bootstrap_servers=broker.bootstrap_servers, topics=(topic,), group_id=f"g-{uuid.uuid4().hex[:8]}",
                    input_name=PAYMENTS, start="earliest", bounded="end_offsets")
    settings.update(overrides)
    return KafkaReadConfig(**settings)


class _Describe(beam.DoFn):
    """A RawRecord and its element timestamp as one JSON line."""

    def process(self, record, timestamp=beam.DoFn.TimestampParam):
        fields = record.fields or {}
        yield json.dumps({
            "input": record.input,
            "source": record.source,
            "id": fields.get("event_id", fields.get("settlement_id")),
            "error": record.decode_error,
            "raw": record.raw_payload,
            "ts": timestamp.micros // 1000,
        })


def collect(pcoll, tmp_path, label: str = "Collect") -> str:
    prefix = str(tmp_path / f"out-{uuid.uuid4().hex[:6]}")
    _ = pcoll | f"{label}Describe" >> beam.ParDo(_Describe()) | f"{label}Write" >> beam.io.WriteToText(prefix)
    return prefix


def read_collected(prefix: str) -> List[Dict]:
    rows: List[Dict] = []
    for path in sorted(glob.glob(prefix + "*")):
        with open(path) as handle:
            rows.extend(json.loads(line) for line in handle if line.strip())
    return rows


def run_read(config: KafkaReadConfig, tmp_path, clock: Clock = SYSTEM_CLOCK) -> List[Dict]:
    with beam.Pipeline() as pipeline:
        prefix = collect(pipeline | "Read" >> ReadRawRecordsFromKafka(config, clock), tmp_path)
    return read_collected(prefix)


def ids(rows: Iterable[Dict]) -> List[str]:
    return sorted(row["id"] for row in rows)


# ------------------------------------------------------------------------------------------
# 1-2. Every record exactly once; an empty partition does not block
# ------------------------------------------------------------------------------------------

def test_reads_every_record_once_across_three_partitions(kafka_broker, tmp_path, caplog):
    topic = new_topic(kafka_broker)
    produced = payments("all", 30)
    produce_payments(kafka_broker, topic, produced)
    config = config_for(kafka_broker, topic, consumer_config={"client.id": "do-not-log-this-value"})

    caplog.set_level(logging.INFO, logger="pipelines.io.kafka")
    rows = run_read(config, tmp_path)

    assert len(rows) == 30
    assert ids(rows) == sorted(fields["event_id"] for fields in produced)
    event_times = {fields["event_id"]: fields["event_time"] for fields in produced}
    assert all(row["ts"] == event_times[row["id"]] for row in rows)  # payload time, not broker time
    assert {row["source"].rsplit("/", 1)[0] for row in rows} == {topic}
    assert {row["source"].split("/")[1].split("@")[0] for row in rows} == {"0", "1", "2"}
    assert all(row["input"] == PAYMENTS and row["error"] is None for row in rows)
    # The consumer config's keys are logged, never its values (they may be SASL secrets).
    assert "client.id" in caplog.text
    assert "do-not-log-this-value" not in caplog.text


def test_timestamps_checked_in_pipeline_with_assert_that(kafka_broker):
    topic = new_topic(kafka_broker)
    produced = [settlement(f"s-{index}", f"ref_s_{index}", time=index * MINUTE)._asdict() for index in range(6)]
    produce(kafka_broker, topic, [(index % 3, encode_value(fields, "avro", "settlement_line"), None)
                                  for index, fields in enumerate(produced)])
    config = config_for(kafka_broker, topic, input_name=SETTLEMENTS, value_format="avro")

    def with_time(record, timestamp=beam.DoFn.TimestampParam):
        return record.fields["settlement_id"], timestamp.micros // 1000

    with beam.Pipeline() as pipeline:
        stamped = pipeline | ReadRawRecordsFromKafka(config) | beam.Map(with_time)
        assert_that(stamped, equal_to([(fields["settlement_id"], fields["booked_time"]) for fields in produced]))


def test_one_empty_partition_still_completes(kafka_broker, tmp_path):
    topic = new_topic(kafka_broker)
    produced = payments("two", 10)
    produce_payments(kafka_broker, topic, produced, partitions=(0, 2))
    rows = run_read(config_for(kafka_broker, topic), tmp_path)
    assert ids(rows) == sorted(fields["event_id"] for fields in produced)
    assert {row["source"].split("/")[1].split("@")[0] for row in rows} == {"0", "2"}


# ------------------------------------------------------------------------------------------
# 3. Start positions
# ------------------------------------------------------------------------------------------

def test_start_latest_with_end_offsets_reads_nothing(kafka_broker, tmp_path):
    topic = new_topic(kafka_broker)
    produce_payments(kafka_broker, topic, payments("old", 9))
    assert run_read(config_for(kafka_broker, topic, start="latest"), tmp_path) == []


def test_start_timestamp_reads_only_records_at_or_after_it(kafka_broker, tmp_path):
    topic = new_topic(kafka_broker)
    t = at(timedelta(days=1))
    before, after = payments("before", 9), payments("after", 6, start=100)
    produce_payments(kafka_broker, topic, before, timestamp=t - 5 * MINUTE)
    produce_payments(kafka_broker, topic, after, timestamp=t + 5 * MINUTE)
    rows = run_read(config_for(kafka_broker, topic, start="timestamp", start_timestamp_millis=t), tmp_path)
    assert ids(rows) == sorted(fields["event_id"] for fields in after)


# ------------------------------------------------------------------------------------------
# 4. Bounded modes
# ------------------------------------------------------------------------------------------

def test_max_records_reads_that_many_in_total(kafka_broker, tmp_path):
    topic = new_topic(kafka_broker)
    produced = payments("many", 30)
    produce_payments(kafka_broker, topic, produced)
    rows = run_read(config_for(kafka_broker, topic, bounded="max_records", max_records=11), tmp_path)
    assert len(rows) == 11
    assert len(set(ids(rows))) == 11
    assert set(ids(rows)) <= {fields["event_id"] for fields in produced}
    # Even shares per partition: 4 + 4 + 3 (the first offsets of each partition).
    per_partition = sorted(sum(1 for row in rows if f"/{number}@" in row["source"]) for number in range(3))
    assert per_partition == [3, 4, 4]


def test_until_time_stops_each_partition_at_the_stop_time(kafka_broker, tmp_path):
    topic = new_topic(kafka_broker)
    produced = payments("until", 24)  # minute 0..23, round-robin over the 3 partitions
    produce_payments(kafka_broker, topic, produced)
    stop = at() + 15 * MINUTE  # each partition ends at its first record at or after minute 15
    rows = run_read(config_for(kafka_broker, topic, bounded="until_time", stop_at_millis=stop,
                               idle_timeout_seconds=0.5), tmp_path)
    expected = [fields["event_id"] for fields in produced if fields["event_time"] < stop]
    assert ids(rows) == sorted(expected)


def test_until_time_ends_a_quiet_partition_by_idleness(kafka_broker, tmp_path):
    topic = new_topic(kafka_broker)
    early = payments("early", 4)  # all before the stop time, partitions 0 and 1; partition 2 empty
    produce_payments(kafka_broker, topic, early, partitions=(0, 1))
    stop = at() + 60 * MINUTE
    # The reader's clock moves 1 s per reading, from a day after the stop time: each caught-up
    # partition is idle for longer than the timeout after a few polls however slow the machine is,
    # and its idle watermark (now minus the timeout) is then past the stop time, so it ends.
    clock = TickingClock(start=(stop + DAY_MILLIS) / 1000, step=1.0)
    rows = run_read(config_for(kafka_broker, topic, bounded="until_time", stop_at_millis=stop,
                               idle_timeout_seconds=10.0), tmp_path, clock)
    assert ids(rows) == sorted(fields["event_id"] for fields in early)


def test_end_offsets_ignores_records_produced_after_the_start(kafka_broker, tmp_path):
    topic = new_topic(kafka_broker)
    first = payments("first", 9)
    produce_payments(kafka_broker, topic, first)
    late = payments("late", 3, start=500)
    config = config_for(kafka_broker, topic)
    broker = kafka_broker

    def produce_one_more(descriptor):
        # Runs after the end offsets were taken and before the partition is read.
        produce_payments(broker, topic, [late[descriptor.partition]], partitions=(descriptor.partition,))
        return descriptor

    with beam.Pipeline() as pipeline:
        read = (pipeline
                | beam.Impulse()
                | "Discover" >> beam.ParDo(DiscoverPartitionsFn(config))
                | "ProduceMore" >> beam.Map(produce_one_more)
                | "Read" >> beam.ParDo(ReadPartitionFn(config)))
        prefix = collect(read, tmp_path)
    assert ids(read_collected(prefix)) == sorted(fields["event_id"] for fields in first)
    # The late records are there: a new run sees them.
    again = run_read(config_for(kafka_broker, topic), tmp_path)
    assert ids(again) == sorted(fields["event_id"] for fields in first + late)


# ------------------------------------------------------------------------------------------
# 5. Committed offsets
# ------------------------------------------------------------------------------------------

def committed_offsets(broker, group: str, topic: str) -> Dict[int, int]:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": group})
    try:
        entries = consumer.committed([TopicPartition(topic, number) for number in range(3)], timeout=10)
        return {entry.partition: entry.offset for entry in entries}
    finally:
        consumer.close()


def test_committed_start_resumes_after_the_finalized_offsets(kafka_broker, tmp_path):
    topic = new_topic(kafka_broker)
    group = f"g-commit-{uuid.uuid4().hex[:8]}"
    first = payments("run1", 7)  # partitions 0,1,2 get 3,2,2 records
    produce_payments(kafka_broker, topic, first)
    config = config_for(kafka_broker, topic, group_id=group, start="committed")

    rows = run_read(config, tmp_path)  # no committed offsets yet: from the earliest
    assert ids(rows) == sorted(fields["event_id"] for fields in first)
    assert committed_offsets(kafka_broker, group, topic) == {0: 3, 1: 2, 2: 2}

    second = payments("run2", 5, start=100)
    produce_payments(kafka_broker, topic, second)
    rows = run_read(config, tmp_path)
    assert ids(rows) == sorted(fields["event_id"] for fields in second)
    assert committed_offsets(kafka_broker, group, topic) == {0: 5, 1: 4, 2: 3}


def test_no_commits_when_disabled(kafka_broker, tmp_path):
    topic = new_topic(kafka_broker)
    group = f"g-nocommit-{uuid.uuid4().hex[:8]}"
    produce_payments(kafka_broker, topic, payments("nc", 3))
    rows = run_read(config_for(kafka_broker, topic, group_id=group, start="committed", commit_offsets=False), tmp_path)
    assert len(rows) == 3
    assert all(offset < 0 for offset in committed_offsets(kafka_broker, group, topic).values())


# ------------------------------------------------------------------------------------------
# 6. Undecodable values are kept, with their error
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value_format, garbage", [
    ("json", [b"\xff\xfe not json", b"[1, 2]", b"{truncated"]),
    ("avro", [b"", b"\x07", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"]),
    ("confluent-avro", [b"\x01\x00\x00\x00\x01", b"\x00\x00"]),
])
def test_undecodable_values_become_raw_records_with_an_error(kafka_broker, tmp_path, value_format, garbage):
    topic = new_topic(kafka_broker)
    good = payments(f"good-{value_format}", 3)
    produce_payments(kafka_broker, topic, good, value_format=value_format)
    produce(kafka_broker, topic, [(index % 3, value, None) for index, value in enumerate(garbage)])
    rows = run_read(config_for(kafka_broker, topic, value_format=value_format), tmp_path)

    assert len(rows) == len(good) + len(garbage)
    bad = [row for row in rows if row["error"] is not None]
    assert len(bad) == len(garbage)
    assert all(row["id"] is None and row["raw"] is not None for row in bad)
    if value_format == "json":
        assert {row["raw"] for row in bad} == {value.decode("utf-8", errors="replace") for value in garbage}
    else:
        assert all(row["raw"].startswith("base64:") for row in bad)
    assert sorted(row["id"] for row in rows if row["error"] is None) == sorted(f["event_id"] for f in good)


# ------------------------------------------------------------------------------------------
# 7. Configuration errors, and the pure pieces
# ------------------------------------------------------------------------------------------

def _config(**overrides) -> KafkaReadConfig:
    settings = dict(bootstrap_servers="127.0.0.1:9", topics=("t",), group_id="g", input_name=PAYMENTS)
    settings.update(overrides)
    return KafkaReadConfig(**settings)


@pytest.mark.parametrize("overrides, message", [
    (dict(start="beginning"), "unknown start"),
    (dict(start="timestamp"), "start_timestamp_millis"),
    (dict(start_timestamp_millis=5), "only used with"),
    (dict(bounded="max_records"), "max_records"),
    (dict(bounded="max_records", max_records=0), "positive integer"),
    (dict(bounded="until_time"), "stop_at_millis"),
    (dict(bounded="forever"), "unknown bounded mode"),
    (dict(value_format="protobuf"), "unknown value_format"),
    (dict(input_name="refunds"), "input_name"),
    (dict(topics="payments"), "tuple of topic names"),
    (dict(topics=()), "tuple of topic names"),
    (dict(group_id=""), "group_id"),
    (dict(idle_timeout_seconds=0), "idle_timeout_seconds"),
    (dict(consumer_config={"enable.auto.commit": "true", "sasl.password": "x"}), "enable.auto.commit"),
])
def test_config_validation_errors(overrides, message):
    config = _config(**overrides)
    with pytest.raises(ValueError, match=message):
        config.validate()
    with pytest.raises(ValueError, match=message):
        ReadRawRecordsFromKafka(config)


def test_valid_configs_and_constants():
    assert START_POSITIONS == ("committed", "earliest", "latest", "timestamp")
    assert BOUNDED_MODES == (None, "end_offsets", "max_records", "until_time")
    _config().validate()
    _config(start="timestamp", start_timestamp_millis=0, bounded="until_time", stop_at_millis=1).validate()
    _config(bounded="max_records", max_records=5, value_format="confluent-avro",
            consumer_config={"security.protocol": "SASL_SSL"}).validate()


def test_max_records_allocation():
    assert allocate_max_records(11, [10, 10, 10]) == [4, 4, 3]
    assert allocate_max_records(10, [1, 0, 20]) == [1, 0, 9]  # capped by backlog, surplus redistributed
    assert allocate_max_records(10, [2, 1, 1]) == [4, 3, 3]  # beyond the backlog: spread evenly
    assert sum(allocate_max_records(1000, [7, 300, 5])) == 1000


def test_watermark_estimator_is_monotonic_and_keeps_its_idle_clock():
    estimator = PartitionWatermarkEstimator(None)
    assert estimator.current_watermark() is None
    estimator.advance_to(Timestamp(100))
    estimator.advance_to(Timestamp(50))  # never backwards
    assert estimator.current_watermark() == Timestamp(100)
    assert estimator.idle_seconds(1000.0) == 0.0
    resumed = PartitionWatermarkEstimator(estimator.get_estimator_state())
    assert resumed.current_watermark() == Timestamp(100)
    assert resumed.idle_seconds(1002.5) == 2.5
    resumed.mark_active()
    assert resumed.idle_seconds(1010.0) == 0.0
    assert UNBOUNDED_STOP == 2**63 - 1


# ------------------------------------------------------------------------------------------
# The unbounded read loop, driven directly (the bundle-based runner cannot run it, docs/DESIGN.md 7)
# ------------------------------------------------------------------------------------------

class _Finalizer:
    """Keeps the commit callbacks, not the no-op a bundle that commits on finalization also registers (Prism
    finalizes every bundle of the reading stage, docs/DESIGN.md 7)."""

    def __init__(self):
        self.callbacks = []

    def register(self, callback):
        if callback is not nothing_to_commit:
            self.callbacks.append(callback)


def drive_call(fn, descriptor, restriction, estimator_state=None):
    """One process() call as the SDK harness makes it: outputs, the (done) tracker, estimator, finalizer."""
    from apache_beam.runners.sdf_utils import (
        RestrictionTrackerView,
        ThreadsafeRestrictionTracker,
        ThreadsafeWatermarkEstimator,
    )

    from pipelines.io.kafka import CheckpointOnlyOffsetTracker

    tracker = ThreadsafeRestrictionTracker(CheckpointOnlyOffsetTracker(restriction))
    estimator = PartitionWatermarkEstimator(estimator_state)
    finalizer = _Finalizer()
    outputs = list(fn.process(descriptor, finalizer, RestrictionTrackerView(tracker),
                              ThreadsafeWatermarkEstimator(estimator)))
    tracker.check_done()
    return outputs, tracker, estimator, finalizer


def drive(fn, descriptor, restriction, estimator_state=None):
    """One process() call as the SDK harness makes it: outputs, primary, residual, estimator, callbacks."""
    outputs, tracker, estimator, finalizer = drive_call(fn, descriptor, restriction, estimator_state)
    deferred = tracker.deferred_status()
    return outputs, tracker.current_restriction(), deferred and deferred[0], estimator, finalizer.callbacks


@contextmanager
def partition_reader(kafka_broker, label: str, count: int, clock=None, **overrides):
    """A set-up ReadPartitionFn over a fresh topic whose partition 0 holds `count` payments of `label`, with
    a consumer group of its own: yields (fn, topic, group, produced) and tears the fn down after."""
    topic = new_topic(kafka_broker)
    group = f"g-{label}-{uuid.uuid4().hex[:8]}"
    produced = payments(label, count)
    produce_payments(kafka_broker, topic, produced, partitions=(0,))
    config = config_for(kafka_broker, topic, group_id=group, **overrides)
    fn = ReadPartitionFn(config, clock) if clock is not None else ReadPartitionFn(config)
    fn.setup()
    try:
        yield fn, topic, group, produced
    finally:
        fn.teardown()


def test_unbounded_reader_defers_when_caught_up_commits_on_finalize_and_releases_idle_watermark(kafka_broker):
    from apache_beam.io.restriction_trackers import OffsetRange

    from schemas.internal_records import PartitionDescriptor

    clock = ManualClock(now=1_800_000_000.0)  # wall-clock time as the test sets it, to the microsecond
    # Payments at minutes 0..4, all on partition 0.
    with partition_reader(kafka_broker, "live", 5, clock, bounded=None, idle_timeout_seconds=5.0) as (
            fn, topic, group, produced):
        busy = PartitionDescriptor(topic, 0, 0, UNBOUNDED_STOP)
        outputs, primary, residual, estimator, callbacks = drive(fn, busy, OffsetRange(0, UNBOUNDED_STOP))
        assert [value.value.fields["event_id"] for value in outputs] == [f["event_id"] for f in produced]
        assert [value.timestamp.micros // 1000 for value in outputs] == [f["event_time"] for f in produced]
        # Caught up: the rest of the partition is deferred, the done part ends at the next offset.
        assert primary == OffsetRange(0, 5) and residual == OffsetRange(5, UNBOUNDED_STOP)
        watermark = estimator.current_watermark()
        assert Timestamp(micros=at() * 1000) <= watermark <= Timestamp(micros=(at() + 4 * MINUTE) * 1000)
        # Nothing is committed until the bundle is finalized.
        assert committed_offsets(kafka_broker, group, topic)[0] < 0
        assert len(callbacks) == 1
        callbacks[0]()
        assert committed_offsets(kafka_broker, group, topic)[0] == 5

        # Resumed and still idle, but not for long enough: the watermark stays, the clock runs.
        state = estimator.get_estimator_state()
        outputs, primary, residual, estimator, callbacks = drive(fn, busy, residual, state)
        assert outputs == [] and callbacks == [] and residual == OffsetRange(5, UNBOUNDED_STOP)
        assert estimator.current_watermark() == watermark
        assert estimator.get_estimator_state()[1] is not None  # idle since

        assert estimator.get_estimator_state()[1] == clock.now

        # Idle for exactly the timeout: the watermark moves to wall-clock now minus the timeout.
        clock.now += 5.0
        outputs, primary, residual, estimator, _ = drive(fn, busy, residual, estimator.get_estimator_state())
        assert outputs == [] and residual == OffsetRange(5, UNBOUNDED_STOP)
        assert estimator.current_watermark() == Timestamp.of(clock.now - 5.0)

        # An empty partition defers at once and commits nothing.
        empty = PartitionDescriptor(topic, 1, 0, UNBOUNDED_STOP)
        outputs, primary, residual, estimator, callbacks = drive(fn, empty, OffsetRange(0, UNBOUNDED_STOP))
        assert outputs == [] and callbacks == [] and residual == OffsetRange(0, UNBOUNDED_STOP)
        assert estimator.current_watermark() is None


def test_a_restored_position_with_nothing_new_to_read_is_committed_on_finalize(kafka_broker):
    """A run restored from a checkpoint whose predecessor stopped before its finalization committed: the
    partition has nothing new, so no read moves, yet the checkpoint's position must reach the group."""
    from apache_beam.io.restriction_trackers import OffsetRange

    from schemas.internal_records import PartitionDescriptor

    with partition_reader(kafka_broker, "restored", 5, bounded=None) as (fn, topic, group, _):
        restored = PartitionDescriptor(topic, 0, 0, UNBOUNDED_STOP)
        outputs, _, residual, _, callbacks = drive(fn, restored, OffsetRange(5, UNBOUNDED_STOP))
        assert outputs == [] and residual == OffsetRange(5, UNBOUNDED_STOP)
        assert committed_offsets(kafka_broker, group, topic)[0] < 0  # only after the checkpoint
        assert len(callbacks) == 1
        callbacks[0]()
        assert committed_offsets(kafka_broker, group, topic)[0] == 5
        # Asked once per partition: later idle calls register nothing.
        assert drive(fn, restored, residual)[4] == []


def test_unbounded_mode_gives_an_unbounded_pcollection():
    unbounded = beam.Pipeline() | "Live" >> ReadRawRecordsFromKafka(_config(bounded=None))
    bounded = beam.Pipeline() | "Finite" >> ReadRawRecordsFromKafka(_config(bounded="end_offsets"))
    assert not unbounded.is_bounded
    assert bounded.is_bounded


def test_a_deferring_reader_emits_its_next_offsets_and_commits_nothing_itself(kafka_broker):
    from apache_beam.io.restriction_trackers import OffsetRange
    from apache_beam.pvalue import TaggedOutput

    from pipelines.io.kafka import OFFSETS
    from schemas.internal_records import PartitionDescriptor, PartitionOffset

    with partition_reader(kafka_broker, "later", 4, defer_commit=True) as (fn, topic, group, _):
        outputs, _, _, _, callbacks = drive(fn, PartitionDescriptor(topic, 0, 0, 4), OffsetRange(0, 4))
    offsets = [output.value for output in outputs if isinstance(output, TaggedOutput) and output.tag == OFFSETS]
    assert offsets == [PartitionOffset(topic, 0, 4)]
    assert len(outputs) == 5 and callbacks == []
    assert committed_offsets(kafka_broker, group, topic)[0] < 0
