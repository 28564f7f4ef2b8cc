"""Committing read offsets to the consumer group (docs/DESIGN.md 5).

Two ways, one per kind of run:

* Unbounded: `CommitOnFinalize`, a bundle-finalization callback. On Flink finalization
  follows the checkpoint that made the bundle's output durable, so that is the right moment.
* Bounded: `CommitOffsetsWhenWritten`. On the DirectRunner/FnApiRunner a bounded read stage's
  bundles are finalized when the read stage ends, before the stages that produce the outputs
  run: a failed output would find its input offsets already committed (issue 9: lost results).
  So the reader emits each partition's next offset (`PartitionOffset` on its OFFSETS output)
  and this composite commits them only after every sink has finished: Beam's "wait on" pattern.
  The sinks' per-bundle delivery counts are re-windowed into the global window, flattened and
  summed (a global combine: it fires only when all its inputs are complete, and a failed sink
  fails the run before it fires); that sum is the main input of the commit step, the offsets
  its side input. Runner-independent: no stage can see the sum before every write is done.
"""

import logging
from typing import Dict, Iterable, Iterator, Tuple

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from pipelines.io.kafka._clients import source_consumer
from pipelines.io.kafka._health import BrokerWatch
from schemas.internal_records import PartitionOffset

_LOGGER = logging.getLogger(__name__)
OFFSETS = "offsets"  # the reader's tagged output of PartitionOffsets (deferred commits)
_COMMIT_POLL_SECONDS = 0.2


def latest_offsets(offsets: Iterable[PartitionOffset]) -> Dict[Tuple[str, int], int]:
    """The highest next offset per partition (calls on one partition read consecutive ranges)."""
    latest: Dict[Tuple[str, int], int] = {}
    for topic, partition, next_offset in offsets:
        key = (topic, partition)
        latest[key] = max(latest.get(key, -1), next_offset)
    return latest


def commit_and_wait(consumer, offsets: Dict[Tuple[str, int], int], timeout_seconds: float, outcome: list) -> None:
    """Commits asynchronously and serves callbacks until `outcome` (filled by on_commit) says how it went.

    A synchronous commit can wait for a group coordinator indefinitely while the brokers are
    down; this waits at most `timeout_seconds`, then raises TimeoutError.
    """
    from confluent_kafka import KafkaException, TopicPartition

    consumer.commit(offsets=[TopicPartition(topic, partition, offset)
                             for (topic, partition), offset in sorted(offsets.items())], asynchronous=True)
    waited = 0.0
    while not outcome:
        if waited >= timeout_seconds:
            raise TimeoutError(f"the offset commit was not acknowledged within {timeout_seconds:g} s")
        consumer.poll(_COMMIT_POLL_SECONDS)
        waited += _COMMIT_POLL_SECONDS
    error, partitions = outcome[0]
    if error is not None:
        raise KafkaException(error)
    failed = [f"{p.topic}/{p.partition}: {p.error}" for p in partitions or () if p.error is not None]
    if failed:
        raise RuntimeError("offsets not committed: " + "; ".join(failed))


class _CommitWhenWrittenFn(beam.DoFn):
    """Main input: the one "every output is written" element; side input: the offsets. Commits them."""

    def __init__(self, config):
        self._config = config

    def process(self, unused_written, offsets) -> Iterator[PartitionOffset]:
        latest = latest_offsets(offsets)
        if not latest:
            return
        config = self._config
        outcome: list = []
        watch = BrokerWatch(config.bootstrap_servers, config.broker_timeout_seconds)
        consumer = source_consumer(config, "commit", watch,
                                   on_commit=lambda error, parts: outcome.append((error, parts)))
        try:
            try:
                commit_and_wait(consumer, latest, config.broker_timeout_seconds, outcome)
            except TimeoutError:
                raise watch.unavailable() from None
        finally:
            consumer.close()
        _LOGGER.info("committed %s for group %s", ", ".join(f"{t}/{p}@{o}" for (t, p), o in sorted(latest.items())),
                     config.group_id)
        for (topic, partition), next_offset in sorted(latest.items()):
            yield PartitionOffset(topic, partition, next_offset)


class AllWritten(beam.PTransform):
    """[completion outputs of sinks] -> one element, in the global window, once every sink has finished.

    Used as a side input it holds a step back until then (a side input is complete before its
    consumer's main input is processed); as a main input it starts a step only then.
    """

    def expand(self, written):
        written = list(written.values()) if isinstance(written, dict) else list(written)
        signals = [pcoll | f"Global[{index}]" >> beam.WindowInto(GlobalWindows())
                   | f"One[{index}]" >> beam.Map(lambda unused: 1)
                   for index, pcoll in enumerate(written)]
        return signals | "Flatten" >> beam.Flatten() | "Count" >> beam.CombineGlobally(sum)


class CommitOffsetsWhenWritten(beam.PTransform):
    """(offsets, written_1, …, written_n) -> the committed PartitionOffsets, after every write finished.

    `offsets`: the PartitionOffsets of the reads (one group: `config`'s). `written_i`: each sink's
    completion output (any elements, any windowing). Nothing is committed if a sink fails.
    """

    def __init__(self, config):
        super().__init__()
        self._config = config

    def expand(self, inputs):
        offsets, *written = inputs
        everything_written = {str(index): pcoll for index, pcoll in enumerate(written)} | "AllWritten" >> AllWritten()
        offsets = offsets | "GlobalOffsets" >> beam.WindowInto(GlobalWindows())
        return everything_written | "Commit" >> beam.ParDo(
            _CommitWhenWrittenFn(self._config), beam.pvalue.AsList(offsets))


class CommitOnFinalize:
    """A bundle-finalization callback; a failed commit is logged (the records are re-read: at-least-once)."""

    def __init__(self, reader, topic: str, partition: int, next_offset: int):
        self._reader, self._topic, self._partition, self._next_offset = reader, topic, partition, next_offset

    def __call__(self) -> None:
        try:
            self._reader.commit(self._topic, self._partition, self._next_offset)
        except Exception:  # pylint: disable=broad-except
            _LOGGER.warning("could not commit %s/%s@%s to group %s; those records will be read again",
                            self._topic, self._partition, self._next_offset, self._reader._config.group_id,
                            exc_info=True)
