"""Kafka source: a pure-Python Splittable DoFn on confluent-kafka (docs/DESIGN.md 5).

    records = pipeline | ReadRawRecordsFromKafka(KafkaReadConfig(
        bootstrap_servers="broker:9092", topics=("payments",), group_id="paybeam",
        input_name=PAYMENTS, value_format="json", bounded="end_offsets"))

Shape of the read (after Beam Java KafkaIO's ReadFromKafkaDoFn):

    Impulse -> DiscoverPartitions -> Reshuffle -> ReadPartitions (SDF) -> RawRecord (or RawChunk)

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
  at-least-once, made exactly-once by the pipeline's Deduplicate. Bounded runs
  whose outputs are written later use `ReadKafkaCommitLater` +
  `CommitOffsetsWhenWritten` instead (_commit.py says why).

End offsets. The end of a partition is its high watermark. `ListOffsets
(latest)` (`get_watermark_offsets(tp, timeout=...)`) is the standard query,
and is used first. The discovery step then seeks to that offset with
`enable.partition.eof=True` and takes the offset of the partition-EOF event
(the high watermark carried by the fetch response) when it is beyond the
ListOffsets answer. On Apache Kafka the two agree (the fetch at the high
watermark returns nothing and the EOF event arrives at once), so this costs one
empty fetch per partition; on brokers whose ListOffsets answer lags the log
(the Tansu test broker answers one past the base offset of the last record
batch) the fetch response is the authoritative value (tests/test_apache_kafka.py
checks both lookups on Apache Kafka, and that this and the timestamp skip below
change nothing there). The read loop also uses EOF events: EOF at or beyond a
bounded stop ends the restriction even when the last offsets are not records
(transaction markers, compacted records).

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

Chunk mode (`ReadRawChunksFromKafka`, `ReadKafkaChunksCommitLater`: the columnar engine's input).
The same read loop, the same records, offsets, commits and stop rules, but the
records leave as `schemas.raw_chunks.RawChunk`s made by
`schemas.arrow_readers.tabulate_records(records, path=<topic>, input_name=<input>)`
(Arrow columns for the plain rows; decode errors and odd rows kept as records).
A partition's records are gathered across polls and emitted as one chunk when it
holds `chunk_max_records` records, when its first record was read
`chunk_max_millis` ago (checked after each poll, on the reader's injectable
clock), and always before the call returns (end of range, checkpoint, deferral):
no record is ever held across a checkpoint, and an empty chunk is never
emitted. A chunk is timestamped with the smallest output time (millis) of its
records. Offsets (the commit on finalization, or the OFFSETS output) only ever
cover records already emitted in a chunk. A call reads at most
max(10,000, `chunk_max_records`) records (the record mode: 10,000) and at most
5 s. Defaults: 20,000 records, 200 ms (measured: docs/DESIGN.md 5).
Metrics (namespace "paybeam", chunk mode only): the counter `<input>.read`
(records emitted in chunks), the gauge `<input>.lag.<topic>.<partition>` (high
watermark offset minus the next offset, from the EOF event or the consumer's
cached fetch information, set at most once a second per partition), and the
gauge `<input>.watermark_millis` (set whenever the reader advances a watermark).

Watermark policy (per partition restriction; Beam takes the minimum over the
restrictions, so the slowest active partition holds the output watermark):
* After every poll batch the watermark advances to the smallest payload event
  time among the records that batch emitted (never backwards). A record that
  comes in a later batch with an earlier time is late for the downstream
  windows (their allowed lateness covers it). In chunk mode the same rule holds
  per chunk: only after a chunk is yielded does the watermark advance to its
  timestamp (the smallest time of its records), so the reader never sets a
  watermark past a record it has not emitted yet.
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

from dataclasses import replace

import apache_beam as beam

import schemas.arrow_coder  # noqa: F401  (registers the RawChunk coder)
from pipelines.io.kafka._commit import OFFSETS
from pipelines.io.kafka._config import KafkaReadConfig
from pipelines.io.kafka._discovery import DiscoverPartitionsFn
from pipelines.io.kafka._health import SYSTEM_CLOCK, Clock
from pipelines.io.kafka._reader import ReadPartitionFn, ReadPartitionUnboundedFn
from schemas.raw_chunks import RawChunk


def _read_outputs(pbegin, config: KafkaReadConfig, clock: Clock, chunks: bool = False):
    read_fn = ReadPartitionUnboundedFn if config.bounded is None else ReadPartitionFn
    read = beam.ParDo(read_fn(config, clock, chunks=chunks))
    if chunks:
        read = read.with_output_types(RawChunk)
    return (
        pbegin
        | "Impulse" >> beam.Impulse()
        | "DiscoverPartitions" >> beam.ParDo(DiscoverPartitionsFn(config))
        # Spread the partitions over workers before the long-running reads.
        | "SpreadPartitions" >> beam.Reshuffle()
        | "ReadPartitions" >> read.with_outputs(OFFSETS, main="records")
    )


class _ReadKafka(beam.PTransform):
    """The four read transforms: records or chunks (`CHUNKS`), committed on finalization or emitted as
    offsets for a later commit (`DEFER_COMMIT`)."""

    CHUNKS = False
    DEFER_COMMIT = False

    def __init__(self, config: KafkaReadConfig, clock: Clock = SYSTEM_CLOCK):
        super().__init__()
        config.validate()
        self._config = replace(config, defer_commit=self.DEFER_COMMIT)
        self._clock = clock

    def _outputs(self, pbegin):
        return _read_outputs(pbegin, self._config, self._clock, chunks=self.CHUNKS)


class ReadRawRecordsFromKafka(_ReadKafka):
    """PBegin -> PCollection[RawRecord] of one input, timestamped with the payload event time.

    Offsets are committed in bundle finalization (or not at all with commit_offsets=False);
    a bounded run that must commit only after its outputs are written uses ReadKafkaCommitLater.
    """

    def expand(self, pbegin):
        return self._outputs(pbegin).records


class ReadKafkaCommitLater(_ReadKafka):
    """PBegin -> {"records": RawRecords, "offsets": PartitionOffsets}; nothing is committed by the read.

    Pass "offsets" to CommitOffsetsWhenWritten together with the outputs' completion signals.
    """

    DEFER_COMMIT = True

    def expand(self, pbegin):
        outputs = self._outputs(pbegin)
        return {"records": outputs.records, "offsets": outputs[OFFSETS]}


class ReadRawChunksFromKafka(_ReadKafka):
    """PBegin -> PCollection[RawChunk] of one input (chunk mode), each timestamped with the smallest
    output time of its records; the same records, offsets and commits as ReadRawRecordsFromKafka.

    Offsets are committed in bundle finalization (or not at all with commit_offsets=False).
    """

    CHUNKS = True

    def expand(self, pbegin):
        return self._outputs(pbegin).records


class ReadKafkaChunksCommitLater(_ReadKafka):
    """PBegin -> {"chunks": RawChunks, "offsets": PartitionOffsets}; nothing is committed by the read
    (ReadKafkaCommitLater in chunk mode): pass "offsets" to CommitOffsetsWhenWritten."""

    CHUNKS = True
    DEFER_COMMIT = True

    def expand(self, pbegin):
        outputs = self._outputs(pbegin)
        return {"chunks": outputs.records, "offsets": outputs[OFFSETS]}
