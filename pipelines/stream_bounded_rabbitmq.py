"""The output side of a `paybeam stream --source rabbitmq --bounded` run (docs/DESIGN.md 5.2).

Order of things, each step waiting for the one before (Beam's "wait on", as the Kafka run's):

1. results (new revisions of keys whose rows changed), daily totals, alerts and dead letters are
   published, every message confirmed (a refused one fails the run);
2. then the open-items snapshot: an entry for every key still open (pipelines/io/rabbitmq/_store.py);
3. then its marker, the snapshot's commit point;
4. only after the pipeline has succeeded does the launcher ack the run's input messages and the older
   snapshots it held (pipelines/io/rabbitmq/_held.py); a run that fails acks nothing.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, NamedTuple, Optional, Tuple

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from pipelines.io.kafka import AllWritten, allocate_max_records
from pipelines.io.rabbitmq import (
    AmqpEndpoint,
    HeldBacklog,
    HoldFailed,
    RabbitWriteConfig,
    StoreCorrupt,
    StreamStart,
    WriteSnapshotMarker,
    WriteToRabbitMQ,
    dead_lettered_queue,
    latest_snapshot,
    read_streams,
    snapshot_entry,
    store_offset,
)
from pipelines.stream_bounded import judge_open_items
from schemas.errors import RunFailed
from schemas.internal_records import OpenItem
from schemas.records import PAYMENTS, SETTLEMENTS

WriteConfigFor = Callable[[str], RabbitWriteConfig]


def write_then_mark(outputs: Dict[str, beam.PCollection], raw: Dict[str, beam.PCollection],
                    carried_items: Dict[str, OpenItem], write_config: WriteConfigFor, store_config: RabbitWriteConfig,
                    alerts: Callable[[beam.PCollection], beam.PCollection], horizon_millis: int,
                    snapshot: str, started_millis: int) -> None:
    """Steps 1-3 of the module docstring."""
    outputs, tracked = judge_open_items(outputs, raw, carried_items, alerts, horizon_millis)
    written = [outputs[name] | f"Write[{name}]" >> WriteToRabbitMQ(write_config(name))
               for name in ("results", "daily_totals", "alerts")]
    letters = outputs["dead_letters"] | "DeadLettersGlobal" >> beam.WindowInto(GlobalWindows())
    written.append(letters | "Write[dead_letters]" >> WriteToRabbitMQ(write_config("dead_letters")))
    outputs_written = {str(index): pcoll for index, pcoll in enumerate(written)} | "OutputsWritten" >> AllWritten()
    # The snapshot says which rows were written: it is published only once they are.
    entries = (tracked["items"]
               | "StillOpen" >> beam.Filter(lambda item: not item.closed)
               | "AfterOutputs" >> beam.Map(lambda item, unused: snapshot_entry(item, snapshot),
                                            beam.pvalue.AsSingleton(outputs_written))
               | "Write[open_items]" >> WriteToRabbitMQ(store_config))
    count = (entries | "EntriesGlobal" >> beam.WindowInto(GlobalWindows())
             | "EntryCount" >> beam.CombineGlobally(sum))
    everything = {"outputs": outputs_written, "entries": entries} | "EverythingWritten" >> AllWritten()
    _ = (everything, count) | "Marker" >> WriteSnapshotMarker(store_config, snapshot, started_millis)


def hold_inputs(endpoint: AmqpEndpoint, queues: Dict[str, str], store_queue: str, max_records: Optional[int],
                spill_dir: str, timeout_seconds: float, streams: Optional[StreamsRead] = None
                ) -> Tuple[HeldBacklog, Dict[str, OpenItem]]:
    """Takes the run's input messages (spilled to `spill_dir`) and the store, unacked; returns the holding
    and the carried open items. RunFailed (nothing acked) when the broker or the store fails. With
    `streams`, the inputs are streams read to their end, whose offsets are stored after the acks."""
    backlog = HeldBacklog(endpoint, timeout_seconds)
    try:
        backlog.connect()
        if streams is None:
            _hold_queues(backlog, queues, max_records, spill_dir)
        else:
            _read_streams(backlog, endpoint, queues, streams, max_records, spill_dir, timeout_seconds)
        carried = latest_snapshot(backlog.hold_store(store_queue))
    except (HoldFailed, StoreCorrupt) as error:
        backlog.release()
        raise RunFailed(f"{error}; nothing was acked") from None
    except BaseException:
        backlog.release()
        raise
    return backlog, carried


def _hold_queues(backlog: HeldBacklog, queues: Dict[str, str], max_records: Optional[int], spill_dir: str) -> None:
    """Each input queue's ready messages and those of the queue the broker dead-letters it into (when that
    exists), or their shares of `max_records`."""
    names = (PAYMENTS, SETTLEMENTS)
    dead_lettered = [dead_lettered_queue(queues[name]) for name in names]
    dead_ready = [backlog.ready_if_exists(queue) for queue in dead_lettered]
    ready = [backlog.ready(queues[name]) for name in names] + [count or 0 for count in dead_ready]
    counts = ready if max_records is None else allocate_max_records(max_records, ready)
    for index, name in enumerate(names):
        also = None if dead_ready[index] is None else (dead_lettered[index], counts[len(names) + index])
        backlog.hold(name, queues[name], counts[index], spill_dir, also)


class StreamsRead(NamedTuple):
    """A bounded run's RabbitMQ streams: the stream protocol port, the consumer name, where to start."""

    port: int
    subscriber: str
    start: StreamStart


def _read_streams(backlog: HeldBacklog, endpoint: AmqpEndpoint, streams_by_input: Dict[str, str],
                  streams: StreamsRead, max_records: Optional[int], spill_dir: str, timeout_seconds: float) -> None:
    """The input streams read to their end (each up to its share of `max_records`), at once; their offsets are
    stored after the acks."""
    names = (PAYMENTS, SETTLEMENTS)
    shares = [None, None] if max_records is None else allocate_max_records(max_records, [max_records, max_records])
    reads = [(streams_by_input[name], os.path.join(spill_dir, f"{name}.arrows"), share)
             for name, share in zip(names, shares)]
    for name, held in zip(names, read_streams(endpoint, streams.port, reads, streams.subscriber, streams.start,
                                              timeout_seconds=timeout_seconds)):
        backlog.queues[name] = held
        if held.last_offset is not None:
            backlog.after_ack.append(lambda stream=held.queue, offset=held.last_offset: store_offset(
                endpoint, streams.port, stream, streams.subscriber, offset, timeout_seconds))
