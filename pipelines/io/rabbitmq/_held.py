"""A bounded run's input from queues: what the queues hold at launch, held unacked until the run succeeded.

The launcher (not a worker) consumes the run's messages (docs/DESIGN.md 5.2, "Bounded runs"):

* per queue, the count of ready messages at launch (`--bounded`, like Kafka's end offsets) or its share
  of `--max-records`, and as many of the queue the broker dead-letters it into (`<queue>.dead-lettered`,
  when that exists; into the same spill file, flagged); on channels whose prefetch windows add up to
  exactly that count (one window is at most 50,000: AMQP's prefetch count is 16 bits, and quorum queues
  stop a consumer with an unlimited window at their own credit), then the consumers are cancelled, so
  nothing that arrives later is taken;
* every delivery is written to a spill file (Arrow IPC: body, content type, AMQP timestamp), which the
  pipeline reads (`ReadHeldDeliveries`), so workers that share this disk see them;
* after the pipeline has succeeded (every output confirmed by its broker) `ack()` acks each channel's
  deliveries (`multiple`); a failed run `release()`s them: the channels close, the broker requeues every
  message and the next run reads them again (flagged redelivered; the deduplication drops copies).

The connection has no heartbeats (nobody serves it while the pipeline runs); RabbitMQ's own
`consumer_timeout` (30 min by default in 3.10) closes a channel whose deliveries stay unacked longer,
so a bounded run longer than that fails its acks: nothing is lost, the next run reads everything again.
"""
from __future__ import annotations

import math
import os
import time
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import TimestampedValue

from pipelines.io.rabbitmq._config import AmqpEndpoint, RabbitReadConfig, describe_error, quiet_client_logs
from pipelines.io.rabbitmq._consumer import Delivery
from pipelines.io.rabbitmq._source import broker_dead_lettered_counter, record_of_delivery
from schemas.records import RawRecord
from transforms.counting import METRICS_NAMESPACE
from transforms.event_time import millis_to_beam_timestamp

WINDOW_PER_CHANNEL = 50_000
SPILL_SCHEMA = pa.schema([("body", pa.binary()), ("content_type", pa.string()), ("timestamp", pa.int64()),
                           ("redelivered", pa.bool_()), ("dead_lettered", pa.bool_())])
_SPILL_BATCH = 10_000
_NOT_FOUND = 404


class HoldFailed(RuntimeError):
    """The messages could not be taken (the broker gone, a queue missing): nothing was acked."""


class HeldQueue:
    """One queue's held deliveries: the spill file and, per channel, the last delivery tag."""

    def __init__(self, queue: str, path: str):
        self.queue = queue
        self.path = path
        self.count = 0
        self.redelivered = 0
        self.dead_lettered = 0  # read back from the queue the broker dead-lettered them to
        self.last_tags: List[Tuple[object, int]] = []  # (channel, last delivery tag)
        self.last_offset: Optional[int] = None  # a stream's: the offset of the last message read


class HeldBacklog:
    """The messages of a bounded run, held unacked on one connection (see the module docstring)."""

    def __init__(self, endpoint: AmqpEndpoint, timeout_seconds: float = 60.0, idle_seconds: float = 2.0):
        quiet_client_logs()
        self._endpoint = endpoint
        self._timeout = timeout_seconds
        self._idle = idle_seconds
        self._connection = None
        self.queues: Dict[str, HeldQueue] = {}
        self.store: List[bytes] = []  # the open-items store's messages (`hold_store`)
        self._store_tags: List[Tuple[object, int]] = []
        # Run after the acks, in order (a stream read's offset store): what a succeeded run still commits.
        self.after_ack: List[Callable[[], None]] = []

    def connect(self) -> "HeldBacklog":
        import pika

        try:
            self._connection = pika.BlockingConnection(self._endpoint.parameters(min(self._timeout, 30.0),
                                                                                 heartbeat_seconds=0))
        except Exception as error:  # noqa: BLE001 — unreachable, refused: one line
            raise HoldFailed(f"cannot connect to RabbitMQ {self._endpoint.redacted()}: {describe_error(error)}") from None
        return self

    def ready(self, queue: str) -> int:
        """Messages ready in `queue` now (HoldFailed when it does not exist)."""
        return self._ready(queue, missing_ok=False)

    def ready_if_exists(self, queue: str) -> Optional[int]:
        """Messages ready in `queue` now, None when it does not exist."""
        return self._ready(queue, missing_ok=True)

    def _ready(self, queue: str, missing_ok: bool) -> Optional[int]:
        import pika

        try:
            channel = self._connection.channel()
            count = channel.queue_declare(queue, passive=True).method.message_count
            channel.close()
            return count
        except Exception as error:  # noqa: BLE001 — a missing queue closes the channel; the broker gone: one line
            if missing_ok and isinstance(error, pika.exceptions.ChannelClosedByBroker) \
                    and error.reply_code == _NOT_FOUND:
                return None
            raise HoldFailed(f"cannot read queue {queue!r} on RabbitMQ {self._endpoint.redacted()}: "
                             f"{describe_error(error)}") from None

    def hold(self, name: str, queue: str, count: int, spill_dir: str,
             dead_lettered: Optional[Tuple[str, int]] = None) -> HeldQueue:
        """Takes `count` messages of `queue` (fewer if no more come for `idle_seconds`) into a spill file; with
        `dead_lettered` = (queue, count), that many of the queue the broker dead-lettered `queue`'s messages
        to, into the same file (flagged)."""
        held = HeldQueue(queue, os.path.join(spill_dir, f"{name}.arrows"))
        with SpillWriter(held.path) as spill:
            def on_delivery(delivery: Delivery) -> None:
                spill.add(delivery)
                held.redelivered += delivery.redelivered

            held.count, held.last_tags = self._take(queue, count, on_delivery)
            if dead_lettered is not None:
                def on_dead_lettered(delivery: Delivery) -> None:
                    on_delivery(delivery._replace(dead_lettered=True))

                held.dead_lettered, tags = self._take(*dead_lettered, on_dead_lettered)
                held.count += held.dead_lettered
                held.last_tags += tags
        self.queues[name] = held
        return held

    def hold_store(self, queue: str) -> List[bytes]:
        """Takes every message of the open-items store `queue` (declared if missing), held like the inputs."""
        channel = self._connection.channel()
        channel.queue_declare(queue, durable=True)
        channel.close()
        count = self.ready(queue)
        bodies: List[bytes] = []
        _, self._store_tags = self._take(queue, count, lambda delivery: bodies.append(delivery.body))
        self.store = bodies
        return bodies

    def _take(self, queue: str, count: int, on_delivery) -> Tuple[int, List[Tuple[object, int]]]:
        if count <= 0:
            return 0, []
        channels = math.ceil(count / WINDOW_PER_CHANNEL)
        taken = [0]
        last: Dict[int, Tuple[object, int]] = {}
        try:
            consumers = []
            for index in range(channels):
                channel = self._connection.channel()
                # Windows adding up to `count`: the broker delivers no more than that, unacked.
                channel.basic_qos(prefetch_count=min(WINDOW_PER_CHANNEL, count - index * WINDOW_PER_CHANNEL))

                def on_message(ch, method, properties, body, index=index):
                    taken[0] += 1
                    last[index] = (ch, method.delivery_tag)
                    on_delivery(Delivery(method.delivery_tag, body, properties.content_type, properties.timestamp,
                                         bool(method.redelivered)))

                consumers.append((channel, channel.basic_consume(queue, on_message, auto_ack=False)))
            idle_since = time.monotonic()
            while taken[0] < count:
                before = taken[0]
                self._connection.process_data_events(time_limit=0.1)
                if taken[0] > before:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since >= self._idle:
                    break  # others took the rest: the run reads what it got
            for channel, tag in consumers:
                channel.basic_cancel(tag)
        except HoldFailed:
            raise
        except Exception as error:  # noqa: BLE001 — the broker gone while taking: one line, nothing acked
            raise HoldFailed(f"RabbitMQ {self._endpoint.redacted()} while taking {queue!r}: "
                             f"{describe_error(error)}") from None
        return taken[0], list(last.values())

    def ack(self) -> None:
        """Acks everything held (each channel up to its last tag); HoldFailed when the connection was lost
        (the broker has requeued it all: the next run reads it again)."""
        try:
            for held in self.queues.values():
                for channel, tag in held.last_tags:
                    channel.basic_ack(tag, multiple=True)
            for channel, tag in self._store_tags:
                channel.basic_ack(tag, multiple=True)
            self._connection.process_data_events(time_limit=0)
            self._connection.close()  # a clean close flushes the acks before the broker drops the channels
        except Exception as error:  # noqa: BLE001 — lost during the run: requeued by the broker
            raise HoldFailed(f"the run's messages could not be acked ({describe_error(error)}); the broker has "
                             "requeued them and the next run reads them again") from None
        finally:
            self._connection = None
        for step in self.after_ack:
            step()

    def release(self) -> None:
        """Gives everything back: the connection closes and the broker requeues every held message."""
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                if connection.is_open:
                    connection.close()
            except Exception:  # noqa: BLE001 — already broken: requeued anyway
                pass


class SpillWriter:
    """A spill file being written (Arrow IPC stream, SPILL_SCHEMA): deliveries added one by one, written in
    batches of 10,000; `with` closes it, the last batch written."""

    def __init__(self, path: str):
        self._sink = pa.OSFile(path, "wb")
        self._writer = pa.ipc.new_stream(self._sink, SPILL_SCHEMA)
        self._columns: Dict[str, list] = {field: [] for field in SPILL_SCHEMA.names}

    def add(self, delivery: Delivery) -> None:
        columns = self._columns
        columns["body"].append(delivery.body)
        columns["content_type"].append(delivery.content_type)
        columns["timestamp"].append(delivery.timestamp_seconds)
        columns["redelivered"].append(delivery.redelivered)
        columns["dead_lettered"].append(delivery.dead_lettered)
        if len(columns["body"]) >= _SPILL_BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._columns["body"]:
            self._writer.write_batch(pa.record_batch(
                [pa.array(self._columns[field.name], field.type) for field in SPILL_SCHEMA], schema=SPILL_SCHEMA))
            for values in self._columns.values():
                values.clear()

    def __enter__(self) -> "SpillWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self._flush()
        finally:
            self._writer.close()
            self._sink.close()


def held_deliveries(path: str) -> Iterator[Delivery]:
    """The deliveries of a spill file, in the order they were taken; the tag is the position (from 1)."""
    position = 0
    with pa.OSFile(path, "rb") as source, pa.ipc.open_stream(source) as reader:
        for batch in reader:
            columns = batch.to_pydict()
            for body, content_type, timestamp, redelivered, dead_lettered in zip(
                    columns["body"], columns["content_type"], columns["timestamp"], columns["redelivered"],
                    columns["dead_lettered"]):
                position += 1
                yield Delivery(position, body, content_type, timestamp, redelivered, dead_lettered)


class ReadHeldDeliveries(beam.PTransform):
    """PBegin -> the RawRecords of a held spill file (bounded), timestamped as the queue source does."""

    def __init__(self, path: str, config: RabbitReadConfig):
        super().__init__()
        self._path = path
        self._config = config

    def expand(self, pbegin):
        config = self._config
        dead_lettered = Metrics.counter(METRICS_NAMESPACE, broker_dead_lettered_counter(config.input_name))

        def records(path: str) -> Iterator[TimestampedValue]:
            for delivery in held_deliveries(path):
                record, millis = record_of_delivery(delivery, config)
                if delivery.dead_lettered:
                    dead_lettered.inc()
                yield TimestampedValue(record, millis_to_beam_timestamp(millis))

        return (pbegin | "Spill" >> beam.Create([self._path])
                | "Records" >> beam.FlatMap(records).with_output_types(RawRecord))


def held_count(backlog: Optional[HeldBacklog]) -> int:
    return 0 if backlog is None else sum(held.count for held in backlog.queues.values())
