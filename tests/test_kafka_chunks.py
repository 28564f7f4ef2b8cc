"""The Kafka source's chunk mode (ReadRawChunksFromKafka) against a real broker (the `kafka_broker`
fixture): the same records, times, offsets and commits as the record mode, in RawChunks.

Pipelines run on the DirectRunner with bounded reads; the watermark and chunk-time rules are checked
by driving the reader's process() directly with an injectable clock, as tests/test_kafka_source.py does.
"""
from __future__ import annotations

import glob
import json
import uuid
from typing import List, Tuple

import apache_beam as beam
import pytest
from apache_beam.io.restriction_trackers import OffsetRange
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from pipelines.io.kafka import (
    DEFAULT_LINGER_MILLIS,
    DEFAULT_READ_CALL_MILLIS,
    DEFAULT_RESUME_MILLIS,
    OFFSETS,
    UNBOUNDED_STOP,
    KafkaReadConfig,
    PartitionWatermarkEstimator,
    ReadKafkaChunksCommitLater,
    ReadKafkaCommitLater,
    ReadPartitionFn,
    ReadRawChunksFromKafka,
    ReadRawRecordsFromKafka,
)
from schemas.internal_records import PartitionDescriptor, PartitionOffset
from schemas.raw_chunks import RawChunk
from schemas.records import PAYMENTS
from tests.beam_helpers import at
from tests.kafka_helpers import ManualClock
from tests.test_kafka_source import (
    MINUTE,
    _Finalizer,
    committed_offsets,
    config_for,
    drive,
    drive_call,
    new_topic,
    payments,
    produce,
    produce_payments,
)

POISON = [
    (0, b"\xff\xfe not json", None),  # not UTF-8, not JSON
    (1, b"[1, 2]", None),  # JSON of the wrong type (an array, not an object)
    (2, b"{truncated", None),
    (0, None, None),  # a tombstone
    # An object whose amount is text: decoded, but no row of the chunk's int column fits it.
    (1, json.dumps({**payments("odd", 1)[0], "amount_minor": "12.50"}).encode(), None),
]


def _record_key(record) -> Tuple:
    return (record.source, json.dumps(record.fields, sort_keys=True, default=str), record.raw_payload,
            record.decode_error, record.input)


class _DescribeRecord(beam.DoFn):
    def process(self, record, timestamp=beam.DoFn.TimestampParam):
        yield json.dumps({"record": _record_key(record), "ts": timestamp.micros // 1000})


class _DescribeChunk(beam.DoFn):
    def process(self, chunk: RawChunk, timestamp=beam.DoFn.TimestampParam):
        rows = chunk.row_records or []
        if chunk.table is not None:
            # The table holds exactly its rows' fields.
            assert chunk.table.to_pylist() == [record.fields for record in rows]
        yield json.dumps({"records": [_record_key(record) for record in rows + chunk.records],
                          "ts": timestamp.micros // 1000, "path": chunk.path, "input": chunk.input})


def _run(transform, describe, tmp_path, offsets: bool = False):
    """Runs a read; returns (described lines, emitted offsets, the pipeline's metrics)."""
    prefix = str(tmp_path / f"out-{uuid.uuid4().hex[:6]}")
    pipeline = beam.Pipeline()
    read = pipeline | "Read" >> transform
    main = read["chunks" if "chunks" in read else "records"] if offsets else read
    _ = main | "Describe" >> beam.ParDo(describe) | "Write" >> beam.io.WriteToText(prefix + "-main")
    if offsets:
        _ = (read["offsets"] | "Offsets" >> beam.Map(lambda offset: json.dumps(list(offset)))
             | "WriteOffsets" >> beam.io.WriteToText(prefix + "-offsets"))
    result = pipeline.run()
    result.wait_until_finish()

    def lines(suffix):
        return [json.loads(line) for path in sorted(glob.glob(prefix + suffix + "*"))
                for line in open(path) if line.strip()]
    return lines("-main"), lines("-offsets"), result.metrics().query(MetricsFilter().with_namespace("paybeam"))


def _metric_value(results, name):
    values = [item.committed if item.committed is not None else item.attempted
              for item in results if item.key.metric.name == name]
    return values


@pytest.mark.parametrize("mode", ["end_offsets", "until_time"])
def test_chunks_hold_exactly_the_records_of_the_record_mode(kafka_broker, tmp_path, mode):
    topic = new_topic(kafka_broker)
    produced = payments("chunk", 40)  # minutes 0..39 over partitions 0, 1, 2
    produce_payments(kafka_broker, topic, produced[:20])
    produce(kafka_broker, topic, POISON)
    produce_payments(kafka_broker, topic, produced[20:])
    extra = dict(bounded="until_time", stop_at_millis=at() + 30 * MINUTE, idle_timeout_seconds=0.5) \
        if mode == "until_time" else {}
    group_records, group_chunks = f"g-rec-{uuid.uuid4().hex[:8]}", f"g-chk-{uuid.uuid4().hex[:8]}"

    records, _, record_metrics = _run(ReadRawRecordsFromKafka(config_for(kafka_broker, topic, group_id=group_records,
                                                                         **extra)), _DescribeRecord(), tmp_path)
    chunks, _, metrics = _run(ReadRawChunksFromKafka(config_for(kafka_broker, topic, group_id=group_chunks,
                                                                chunk_max_records=4, **extra)),
                              _DescribeChunk(), tmp_path)

    time_of = {tuple(row["record"]): row["ts"] for row in records}
    in_chunks = [tuple(record) for chunk in chunks for record in chunk["records"]]
    assert sorted(in_chunks) == sorted(time_of)  # the same records, each once
    expected = len(produced) + len(POISON) if mode == "end_offsets" else len(produced) - 10 + len(POISON)
    assert len(in_chunks) == expected
    assert any(record[3] is not None for record in in_chunks)  # the poison is there, with its error
    for chunk in chunks:
        assert 1 <= len(chunk["records"]) <= 4
        assert chunk["ts"] == min(time_of[tuple(record)] for record in chunk["records"])
        assert chunk["path"] == topic and chunk["input"] == PAYMENTS
        assert len({record[0].split("@")[0] for record in chunk["records"]}) == 1  # one partition per chunk
    # Offsets committed on finalization: the same as the record mode's.
    assert committed_offsets(kafka_broker, group_chunks, topic) == committed_offsets(kafka_broker, group_records, topic)
    # Metrics: the records read, in chunk mode only (the record mode reports nothing).
    assert sum(_metric_value(metrics["counters"], "payments.read")) == expected
    assert not record_metrics["counters"] and not record_metrics["gauges"]
    assert _metric_value(metrics["gauges"], "payments.watermark_millis")[0].value in {chunk["ts"] for chunk in chunks}
    lags = {item.key.metric.name: item for item in metrics["gauges"] if ".lag." in item.key.metric.name}
    assert set(lags) <= {f"payments.lag.{topic}.{partition}" for partition in range(3)} and lags
    assert all((item.committed or item.attempted).value >= 0 for item in lags.values())


def test_chunks_commit_later_emits_the_offsets_of_the_record_mode(kafka_broker, tmp_path):
    topic = new_topic(kafka_broker)
    produce_payments(kafka_broker, topic, payments("later", 17))
    produce(kafka_broker, topic, POISON[:2])
    _, record_offsets, _ = _run(ReadKafkaCommitLater(config_for(kafka_broker, topic)), _DescribeRecord(),
                                tmp_path, offsets=True)
    chunks, chunk_offsets, _ = _run(ReadKafkaChunksCommitLater(config_for(kafka_broker, topic, chunk_max_records=3)),
                                    _DescribeChunk(), tmp_path, offsets=True)
    assert sum(len(chunk["records"]) for chunk in chunks) == 19
    assert sorted(map(tuple, chunk_offsets)) == sorted(map(tuple, record_offsets))
    assert sorted((offset[1], offset[2]) for offset in chunk_offsets) == [(0, 7), (1, 7), (2, 5)]  # + the poison


def test_chunk_output_types_and_config_validation():
    config = KafkaReadConfig(bootstrap_servers="127.0.0.1:9", topics=("t",), group_id="g", input_name=PAYMENTS,
                             bounded="end_offsets")
    chunks = beam.Pipeline() | ReadRawChunksFromKafka(config)
    assert chunks.element_type is RawChunk
    assert beam.Pipeline() | "Later" >> ReadKafkaChunksCommitLater(config)
    for bad in (dict(chunk_max_records=0), dict(chunk_max_millis=-5), dict(chunk_max_records=2.5),
                dict(chunk_max_millis=True)):
        with pytest.raises(ValueError, match="must be a positive integer"):
            ReadRawChunksFromKafka(KafkaReadConfig(**{**config.__dict__, **bad}))


# ------------------------------------------------------------------------------------------
# The read loop, driven directly
# ------------------------------------------------------------------------------------------

class _WatchedEstimator(PartitionWatermarkEstimator):
    """Records the watermark at every advance."""

    def __init__(self, state=None):
        super().__init__(state)
        self.advances: List[Timestamp] = []

    def advance_to(self, timestamp):
        super().advance_to(timestamp)
        self.advances.append(self.current_watermark())


def _drive_watching(fn, descriptor, restriction, estimator):
    """process() output by output; each main output with the watermark the reader had set when it came."""
    from apache_beam.runners.sdf_utils import (
        RestrictionTrackerView,
        ThreadsafeRestrictionTracker,
        ThreadsafeWatermarkEstimator,
    )

    from pipelines.io.kafka import CheckpointOnlyOffsetTracker

    tracker = ThreadsafeRestrictionTracker(CheckpointOnlyOffsetTracker(restriction))
    finalizer = _Finalizer()
    seen = []
    for output in fn.process(descriptor, finalizer, RestrictionTrackerView(tracker),
                             ThreadsafeWatermarkEstimator(estimator)):
        seen.append((output, estimator.current_watermark()))
    tracker.check_done()
    deferred = tracker.deferred_status()
    return seen, tracker.current_restriction(), deferred and deferred[0], finalizer.callbacks


def test_the_watermark_advances_to_a_chunks_min_time_only_after_the_chunk(kafka_broker):
    topic = new_topic(kafka_broker, partitions=1)
    minutes = [10, 5, 20, 15, 30, 1, 40, 35, 50, 45, 60]  # out of order: chunks of 3 have mins 5, 1, 35, 45
    produce_payments(kafka_broker, topic, [payments(f"w{m}", 1, start=m)[0] for m in minutes], partitions=(0,))
    group = f"g-wm-{uuid.uuid4().hex[:8]}"
    config = config_for(kafka_broker, topic, group_id=group, bounded=None, idle_timeout_seconds=5.0,
                        chunk_max_records=3, chunk_max_millis=60_000)
    fn = ReadPartitionFn(config, ManualClock(now=1_800_000_000.0), chunks=True)
    fn.setup()
    try:
        estimator = _WatchedEstimator()
        seen, primary, residual, callbacks = _drive_watching(
            fn, PartitionDescriptor(topic, 0, 0, UNBOUNDED_STOP), OffsetRange(0, UNBOUNDED_STOP), estimator)
    finally:
        fn.teardown()
    chunk_times = [output.timestamp for output, _ in seen]
    assert [output.value.read_count for output, _ in seen] == [3, 3, 3, 2]  # the last one at the checkpoint
    assert [t.micros // 1000 for t in chunk_times] == [at() + m * MINUTE for m in (5, 1, 35, 45)]
    # When each chunk leaves, the watermark is still where the chunks before it put it ...
    assert [watermark for _, watermark in seen] == [None, chunk_times[0], chunk_times[0], chunk_times[2]]
    # ... and it advances to each chunk's min time (never backwards) after it.
    assert estimator.advances == [chunk_times[0], chunk_times[0], chunk_times[2], chunk_times[3]]
    # Checkpointed with nothing held: the done part ends at the next offset, the commit covers every record.
    assert primary == OffsetRange(0, 11) and residual == OffsetRange(11, UNBOUNDED_STOP)
    assert len(callbacks) == 1
    callbacks[0]()
    assert committed_offsets(kafka_broker, group, topic)[0] == 11


def test_chunk_max_millis_on_the_injected_clock(kafka_broker):
    topic = new_topic(kafka_broker, partitions=1)
    produce_payments(kafka_broker, topic, payments("t", 1200), partitions=(0,))
    descriptor = PartitionDescriptor(topic, 0, 0, 1200)

    def chunk_sizes(max_millis: int, clock_step: float) -> List[int]:
        clock = ManualClock(now=1_800_000_000.0)
        clock.monotonic = _stepping(clock_step)  # each reading of the monotonic clock: `clock_step` seconds on
        config = config_for(kafka_broker, topic, chunk_max_records=100_000, chunk_max_millis=max_millis)
        fn = ReadPartitionFn(config, clock, chunks=True)
        fn.setup()
        try:
            outputs, primary, residual, _, _ = drive(fn, descriptor, OffsetRange(0, 1200))
        finally:
            fn.teardown()
        assert primary == OffsetRange(0, 1200) and not residual
        assert all(isinstance(output, TimestampedValue) for output in outputs)
        return [output.value.read_count for output in outputs]

    # No time passes: one chunk at the end of the range.
    assert chunk_sizes(max_millis=1, clock_step=0.0) == [1200]
    # 20 ms per reading: every poll's records are 40 ms old when the poll ends, past 30 ms.
    sizes = chunk_sizes(max_millis=30, clock_step=0.02)
    assert sum(sizes) == 1200 and len(sizes) >= 3 and max(sizes) <= 500  # POLL_BATCH


@pytest.mark.parametrize("chunks", [True, False], ids=["chunk-mode", "record-mode"])
def test_read_call_millis_ends_a_busy_call_on_the_injected_clock(kafka_broker, chunks):
    """A call returns after `read_call_millis` even while records keep coming: runners finish a bundle (and
    Flink passes a checkpoint barrier) only between calls, so long calls held every result (DESIGN 9.5)."""
    topic = new_topic(kafka_broker, partitions=1)
    produce_payments(kafka_broker, topic, payments("c", 1200), partitions=(0,))
    descriptor = PartitionDescriptor(topic, 0, 0, UNBOUNDED_STOP)

    def one_call(read_call_millis: int):
        clock = ManualClock(now=1_800_000_000.0)
        clock.monotonic = _stepping(0.02)
        config = config_for(kafka_broker, topic, bounded=None, chunk_max_records=100_000, chunk_max_millis=10,
                            read_call_millis=read_call_millis)
        fn = ReadPartitionFn(config, clock, chunks=chunks)
        fn.setup()
        try:
            outputs, primary, residual, _, _ = drive(fn, descriptor, OffsetRange(0, UNBOUNDED_STOP))
        finally:
            fn.teardown()
        main = [output for output in outputs if not isinstance(output, TaggedOutput)]
        read = sum(output.value.read_count for output in main) if chunks else len(main)
        return read, primary, residual

    read, primary, residual = one_call(read_call_millis=30)  # past after the first poll's few readings
    assert 0 < read < 1200
    assert primary == OffsetRange(0, read) and residual == OffsetRange(read, UNBOUNDED_STOP)
    read, primary, residual = one_call(read_call_millis=600_000)  # the whole backlog, then caught up
    assert read == 1200
    assert primary.stop >= 1200 and residual.start == primary.stop


@pytest.mark.parametrize("name", ["read_call_millis", "resume_millis"])
def test_read_call_and_resume_millis_are_validated(name):
    config = KafkaReadConfig(bootstrap_servers="127.0.0.1:9", topics=("t",), group_id="g", input_name=PAYMENTS)
    assert config.read_call_millis == DEFAULT_READ_CALL_MILLIS == 500
    assert config.resume_millis == DEFAULT_RESUME_MILLIS == 500
    for bad in (0, -1, 0.5, True):
        with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
            KafkaReadConfig(**{**config.__dict__, name: bad}).validate()


def test_linger_millis_may_be_zero_and_is_validated():
    config = KafkaReadConfig(bootstrap_servers="127.0.0.1:9", topics=("t",), group_id="g", input_name=PAYMENTS)
    assert config.linger_millis == DEFAULT_LINGER_MILLIS == 200
    KafkaReadConfig(**{**config.__dict__, "linger_millis": 0}).validate()
    for bad in (-1, 0.5, True, None):
        with pytest.raises(ValueError, match="linger_millis must be a whole number"):
            KafkaReadConfig(**{**config.__dict__, "linger_millis": bad}).validate()


def _stepping(step: float):
    state = {"now": 0.0}

    def monotonic() -> float:
        state["now"] += step
        return state["now"]
    return monotonic


def test_a_deferring_chunk_reader_emits_its_offset_after_its_chunks(kafka_broker):
    topic = new_topic(kafka_broker)
    group = f"g-defer-{uuid.uuid4().hex[:8]}"
    produce_payments(kafka_broker, topic, payments("later", 4), partitions=(0,))
    fn = ReadPartitionFn(config_for(kafka_broker, topic, group_id=group, defer_commit=True, chunk_max_records=3),
                         chunks=True)
    fn.setup()
    try:
        outputs, _, _, _, callbacks = drive(fn, PartitionDescriptor(topic, 0, 0, 4), OffsetRange(0, 4))
    finally:
        fn.teardown()
    assert [output.value.read_count for output in outputs[:-1]] == [3, 1]
    assert isinstance(outputs[-1], TaggedOutput) and outputs[-1].tag == OFFSETS
    assert outputs[-1].value == PartitionOffset(topic, 0, 4)
    assert callbacks == [] and committed_offsets(kafka_broker, group, topic)[0] < 0


def test_an_idle_chunk_reader_releases_its_watermark_as_the_record_reader_does(kafka_broker):
    topic = new_topic(kafka_broker)
    config = config_for(kafka_broker, topic, bounded=None, idle_timeout_seconds=5.0)
    clock = ManualClock(now=1_800_000_000.0)
    fn = ReadPartitionFn(config, clock, chunks=True)
    fn.setup()
    try:
        empty = PartitionDescriptor(topic, 1, 0, UNBOUNDED_STOP)
        outputs, _, residual, estimator, callbacks = drive(fn, empty, OffsetRange(0, UNBOUNDED_STOP))
        assert outputs == [] and callbacks == [] and residual == OffsetRange(0, UNBOUNDED_STOP)
        clock.now += 5.0
        outputs, _, residual, estimator, _ = drive(fn, empty, residual, estimator.get_estimator_state())
        assert outputs == [] and residual == OffsetRange(0, UNBOUNDED_STOP)
        assert estimator.current_watermark() == Timestamp.of(clock.now - 5.0)
    finally:
        fn.teardown()


@pytest.mark.parametrize("chunks", [True, False], ids=["chunk-mode", "record-mode"])
@pytest.mark.parametrize("resume_millis, active_delay", [(50, 0.05), (200, 0.2), (5_000, 0.5)])
def test_a_caught_up_partition_comes_back_after_resume_millis_and_backs_off_to_half_a_second_when_idle(
        kafka_broker, chunks, resume_millis, active_delay):
    """A call that read up to the partition's end defers its remainder by `resume_millis` (at most 0.5 s):
    the live risk stream's 50 ms read its next records that soon, where every decision used to wait up to
    half a second (2026-12-05). A call that found nothing comes back as soon, each further empty call in a
    row after twice the wait before, up to 0.5 s (an idle partition settles there; a quiet one is not left
    waiting 0.5 s because one call fell between two of its records). A record ends the back-off."""
    topic = new_topic(kafka_broker, partitions=1)
    produce_payments(kafka_broker, topic, payments("soon", 7), partitions=(0,))
    descriptor = PartitionDescriptor(topic, 0, 0, UNBOUNDED_STOP)
    fn = ReadPartitionFn(config_for(kafka_broker, topic, bounded=None, idle_timeout_seconds=3_600.0,
                                    read_call_millis=600_000, resume_millis=resume_millis),
                         ManualClock(now=1_800_000_000.0), chunks=chunks)

    def one_call(start: int):
        outputs, tracker, _, _ = drive_call(fn, descriptor, OffsetRange(start, UNBOUNDED_STOP))
        residual, delay = tracker.deferred_status()  # the delay less the time since it was set
        read = sum(o.value.read_count for o in outputs) if chunks else len(outputs)
        return read, residual, delay

    def near(delay, seconds: float) -> bool:  # less the call's end, which may ask the group coordinator once
        return Duration(seconds=seconds - 0.15) < delay <= Duration(seconds=seconds)

    fn.setup()
    try:
        read, residual, delay = one_call(0)
        assert read == 7 and residual == OffsetRange(7, UNBOUNDED_STOP)
        assert Duration(seconds=active_delay - 0.02) < delay <= Duration(seconds=active_delay)  # read: back soon
        waits = []
        for _ in range(5):
            read, residual, delay = one_call(7)
            assert read == 0 and residual == OffsetRange(7, UNBOUNDED_STOP)
            waits.append(delay)
        expected = [min(0.5, active_delay * 2 ** n) for n in range(5)]
        assert all(near(wait, seconds) for wait, seconds in zip(waits, expected)), (waits, expected)
        produce_payments(kafka_broker, topic, payments("later", 2), partitions=(0,))
        for _ in range(50):  # the records may not be fetched yet: empty calls, then they come
            read, residual, delay = one_call(7)
            if read:
                break
        assert read == 2 and residual == OffsetRange(9, UNBOUNDED_STOP) and near(delay, active_delay)
    finally:
        fn.teardown()


def test_poll_batch_takes_at_most_its_batch_and_every_message_once(kafka_broker):
    from confluent_kafka import TopicPartition

    from pipelines.io.kafka import new_consumer, poll_batch

    topic = new_topic(kafka_broker, partitions=1)
    produce_payments(kafka_broker, topic, payments("pb", 23), partitions=(0,))
    consumer = new_consumer({"bootstrap.servers": kafka_broker.bootstrap_servers, "group.id": "g-poll-batch",
                             "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        offsets, eof = [], False
        while not eof:
            batch = poll_batch(consumer, 5, 5.0, linger_seconds=0.01 * (len(offsets) % 2))
            assert 1 <= len(batch) <= 5  # a message or the end-of-partition event within 5 s, at most 5
            offsets += [message.offset() for message in batch if message.error() is None]
            eof = any(message.error() is not None for message in batch)
        assert offsets == list(range(23))
        assert poll_batch(consumer, 5, 0.05) == []  # nothing more: an empty batch after the wait
    finally:
        consumer.close()


# ------------------------------------------------------------------------------------------
# The per-message fast path gives exactly the general path's records
# ------------------------------------------------------------------------------------------

def _general_path(input_name, source, value, value_format):
    """raw_record_from_message as it was before its one-decode fast path (the reference)."""
    from schemas.codecs import capped
    from schemas.kafka_values import ValueDecodeError, decode_value, raw_text
    from schemas.records import RawRecord

    raw = raw_text(value, value_format)
    try:
        return RawRecord(input_name, source, decode_value(value, value_format, "payment_event"), raw)
    except ValueDecodeError as error:
        return RawRecord(input_name, source, None, capped(raw), str(error))


@pytest.mark.parametrize("value", [
    json.dumps(payments("fast", 1)[0]).encode(),
    b'{"a": "\xc3\xa9\xe2\x82\xac"}', b"{}", b'{"a":1}\n', b'{"a":NaN, "b": [1, {"c": null}]}',
    b'{"a":1', b"{", b'{"a":1} extra', b'{"a":"\xff"}', b'{"a":"\xed\xa0\x80"}', b'{"\\ud800": 1}',
    b'\xef\xbb\xbf{"a":1}', '{"a":1}'.encode("utf-16-le"), '{"a":1}'.encode("utf-32-le"), b'{\x00"a":1}',
    b" {\"a\": 1}", b"[1, 2]", b"", None, b"{" + b"x" * 70_000, b'{"a": "' + b"\xe2\x82" * 40_000 + b'"}',
])
def test_the_one_decode_json_path_gives_the_general_paths_record(value):
    from schemas.kafka_values import raw_record_from_message

    assert raw_record_from_message(PAYMENTS, "t/0@1", value, "json") == _general_path(PAYMENTS, "t/0@1", value, "json")
