"""RabbitMQ source, classic and quorum queues: a Splittable DoFn over a shared push consumer (docs/DESIGN.md 5.2).

    chunks = pipeline | ReadRawChunksFromRabbitMQ(RabbitReadConfig(AmqpEndpoint(url), "payments", PAYMENTS))

Shape: Impulse -> the queue's name -> ReadQueue (SDF, unbounded) -> RawChunk (or RawRecord); the same for
its dead-lettered queue, flattened into one input.

* A queue has no offsets: the restriction only counts the deliveries a reader claimed (so a runner can
  checkpoint it, never split it: one reader per queue, like one per Kafka partition).
* Deliveries come from the process's `QueueConsumer` of that queue (_consumer.py), pushed by the broker
  within the prefetch window. A call takes what is buffered, waiting at most 0.5 s for the first
  delivery and `linger_millis` for more, and ends when the buffer is empty, after `read_call_millis`
  or after max(10,000, `chunk_max_records`) records.
* Acks: every call registers a bundle-finalization callback that settles what it took; the consumer
  acks settled deliveries in order. Beam finalizes a bundle only once its outputs are durable (on
  Flink, after the checkpoint holding them), so a message is acked only after the records made from
  it are safe. A re-delivered message (a crash before its ack) is read again and the pipeline's
  deduplication drops the copy.
* Poison: every delivery becomes a record; one over `max_message_bytes`, of a content type the value
  format cannot be, or that does not decode, becomes a dead letter downstream (its raw payload kept,
  cut at 64 Ki characters) and is acked like the rest: never requeued for ever.
* Messages the broker dead-letters (expired, over a length limit, a quorum queue's delivery limit): with
  `dead_lettered_queue` set, that queue is read too, by a second reader, into the same input (counted in
  `<input>.broker_dead_lettered`); they are payments and settlements like the others, arriving late.
* Event time: the payload's (docs/DESIGN.md 4.1), else the message's AMQP `timestamp`, else the time it
  was read. Watermark: the smallest time of each chunk, never backwards; an idle queue advances it to
  now minus `idle_timeout_seconds`, as an idle Kafka partition does.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Iterator, List, Optional, Tuple

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from pipelines.io.kafka import SYSTEM_CLOCK, UNBOUNDED_STOP, WATERMARKS, CheckpointOnlyOffsetTracker, Clock
from pipelines.io.rabbitmq._config import CONTENT_TYPES, RabbitReadConfig
from pipelines.io.rabbitmq._consumer import Delivery, Take, shared_consumer
from schemas.arrow_readers import tabulate_records
from schemas.bank.entry import BANK_STATEMENTS
from schemas.codecs import capped
from schemas.kafka_values import payload_time_millis, raw_record_from_message, raw_text
from schemas.raw_chunks import RawChunk
from schemas.records import RawRecord
from schemas.timestamps import EARLIEST_MILLIS, LATEST_MILLIS
from transforms.counting import METRICS_NAMESPACE
from transforms.event_time import millis_to_beam_timestamp

_MAX_RECORDS_PER_CALL = 10_000
_FIRST_WAIT_SECONDS = 0.5  # a call with nothing to read returns after this long (or read_call_millis)
_IDLE_RESUME_SECONDS = 0.05  # the consumer wakes a waiting call as soon as a delivery comes
_ACCEPTED = {value_format: frozenset((*types, "application/octet-stream"))
             for value_format, types in CONTENT_TYPES.items()}


def record_of_delivery(delivery: Delivery, config: RabbitReadConfig,
                       clock: Clock = SYSTEM_CLOCK) -> Tuple[RawRecord, int]:
    """A delivery as (RawRecord, output time in epoch millis); never raises on what the message holds."""
    queue = config.dead_lettered_queue if delivery.dead_lettered and config.dead_lettered_queue else config.queue
    source = f"{queue}#{delivery.tag}"
    body = delivery.body
    payload_millis = None
    refusal = _refusal(delivery, config)
    if refusal:
        record = RawRecord(config.input_name, source, None,
                           capped(raw_text(body[:config.max_message_bytes], config.value_format)), refusal)
    else:
        try:
            record = raw_record_from_message(config.input_name, source, body, config.value_format)
            payload_millis = payload_time_millis(record)
        except Exception as error:  # noqa: BLE001 — a decoder bug: keep the message, say why
            record = RawRecord(config.input_name, source, None, capped(raw_text(body, config.value_format)),
                               f"cannot decode the value ({type(error).__name__})")
    millis = payload_millis
    if millis is None and delivery.timestamp_seconds is not None:
        stamped = delivery.timestamp_seconds * 1000
        millis = stamped if EARLIEST_MILLIS <= stamped < LATEST_MILLIS else None
    if millis is None:
        millis = int(clock.time() * 1000)
    return record, millis


def broker_dead_lettered_counter(input_name: str) -> str:
    """The metric counting an input's messages read back from the queue the broker dead-lettered them to."""
    return f"{input_name}.broker_dead_lettered"


def _refusal(delivery: Delivery, config: RabbitReadConfig) -> str:
    """Why a delivery cannot be a record of `config.value_format` before decoding it ('' when it can be)."""
    size = len(delivery.body)
    if size > config.max_message_bytes:
        return f"message of {size:,} bytes is over the {config.max_message_bytes:,}-byte limit (--max-message-bytes)"
    if not delivery.content_type or delivery.content_type in _ACCEPTED[config.value_format] \
            or config.input_name == BANK_STATEMENTS:  # a whole document, XML or text: told apart downstream
        return ""
    content_type = delivery.content_type.split(";")[0].strip().lower()
    if content_type and content_type not in _ACCEPTED[config.value_format]:
        return (f"content type {content_type!r} is not {' or '.join(CONTENT_TYPES[config.value_format])} "
                f"(--value-format {config.value_format})")
    return ""


class _QueueRestrictions(RestrictionProvider):
    def initial_restriction(self, queue: str) -> OffsetRange:
        return OffsetRange(0, UNBOUNDED_STOP)

    def create_tracker(self, restriction: OffsetRange) -> CheckpointOnlyOffsetTracker:
        return CheckpointOnlyOffsetTracker(restriction)

    def split(self, queue: str, restriction: OffsetRange):
        yield restriction  # one reader per queue

    def restriction_size(self, queue: str, restriction: OffsetRange) -> float:
        return 1.0  # the backlog is the broker's to know

    def truncate(self, queue: str, restriction: OffsetRange):
        return None  # on drain the read stops; what it did not take stays in the queue


_RESTRICTIONS = _QueueRestrictions()


class ReadQueueFn(beam.DoFn):
    """Reads one queue (the element is its name) into timestamped RawChunks, or RawRecords with `chunks=False`."""

    def __init__(self, config: RabbitReadConfig, clock: Clock = SYSTEM_CLOCK, chunks: bool = True,
                 dead_lettered: bool = False):
        self._config = config
        self._clock = clock
        self._chunks = chunks
        self._read_counter = Metrics.counter(METRICS_NAMESPACE, f"{config.input_name}.read")
        # `config.queue` is where the broker dead-lettered the input's messages: what it reads is counted apart.
        self._dead_lettered_counter = Metrics.counter(METRICS_NAMESPACE, broker_dead_lettered_counter(
            config.input_name)) if dead_lettered else None
        self._redelivered_counter = Metrics.counter(METRICS_NAMESPACE, f"{config.input_name}.redelivered")
        self._watermark_gauge = Metrics.gauge(METRICS_NAMESPACE, f"{config.input_name}.watermark_millis")

    # `fin` must come before the RestrictionParam argument (docs/DESIGN.md 7).
    @beam.DoFn.unbounded_per_element()
    def process(self, queue: str, fin=beam.DoFn.BundleFinalizerParam,
                tracker=beam.DoFn.RestrictionParam(_RESTRICTIONS),
                watermark=beam.DoFn.WatermarkEstimatorParam(WATERMARKS)) -> Iterator[TimestampedValue]:
        config, clock = self._config, self._clock
        consumer = shared_consumer(config, clock)
        takes: List[Take] = []
        # Registered first, so a bundle that emits nothing still has a callback (Prism finalizes every
        # bundle of a stage whose DoFn takes a finalizer: docs/DESIGN.md 5); filled as the call takes.
        fin.register(lambda: [consumer.settle(take) for take in takes])
        position = tracker.current_restriction().start
        held: List[RawRecord] = []
        held_min: Optional[int] = None
        held_since = 0.0
        emitted = 0
        max_per_call = max(_MAX_RECORDS_PER_CALL, config.chunk_max_records)
        began = clock.monotonic()
        stopped = False
        while True:
            wait = min(_FIRST_WAIT_SECONDS, config.read_call_millis / 1000) if not emitted and not held \
                else config.linger_millis / 1000
            generation, deliveries = consumer.take(max_per_call - emitted - len(held), wait)
            if deliveries:
                watermark.mark_active()
                # One claim covers the whole take (positions up to its last); a refused one means the runner
                # checkpointed the restriction: the next call takes these again.
                if not tracker.try_claim(position + len(deliveries) - 1):
                    consumer.give_back(generation, deliveries)
                    deliveries = []
                    stopped = True
                position += len(deliveries)
            redelivered = 0
            for delivery in deliveries:
                record, millis = record_of_delivery(delivery, config, clock)
                redelivered += delivery.redelivered
                if not self._chunks:
                    emitted += 1
                    yield TimestampedValue(record, millis_to_beam_timestamp(millis))
                    held_min = millis if held_min is None or millis < held_min else held_min
                    continue
                if not held:
                    held_since = clock.monotonic()
                held.append(record)
                held_min = millis if held_min is None or millis < held_min else held_min
            if deliveries:
                takes.append(Take(generation, deliveries[0].tag, deliveries[-1].tag))
                self._redelivered_counter.inc(redelivered)
                if self._dead_lettered_counter is not None:
                    self._dead_lettered_counter.inc(len(deliveries))
            now = clock.monotonic()
            ending = (stopped or not deliveries or emitted + len(held) >= max_per_call
                      or now - began >= config.read_call_millis / 1000)
            if held and (ending or len(held) >= config.chunk_max_records
                         or (now - held_since) * 1000 >= config.chunk_max_millis):
                emitted += len(held)
                yield TimestampedValue(tabulate_records(held, path=config.queue, input_name=config.input_name),
                                       millis_to_beam_timestamp(held_min))
                self._read_counter.inc(len(held))
                self._advance(watermark, held_min)
                held, held_min = [], None
            elif not self._chunks and held_min is not None:
                self._read_counter.inc(len(deliveries))
                self._advance(watermark, held_min)
                held_min = None
            if ending:
                break
        if not stopped:  # else the runner holds the rest of the restriction (no `return`: Beam warns on it)
            if not emitted:
                self._idle_release(watermark)
            tracker.defer_remainder(Duration(seconds=(config.resume_millis / 1000) if emitted
                                             else _IDLE_RESUME_SECONDS))

    def _advance(self, watermark, millis: int) -> None:
        watermark.advance_to(millis_to_beam_timestamp(millis))
        self._watermark_gauge.set(watermark.current_watermark().micros // 1000)

    def _idle_release(self, watermark) -> None:
        now = self._clock.time()
        if watermark.idle_seconds(now) >= self._config.idle_timeout_seconds:
            watermark.advance_to(Timestamp.of(now - self._config.idle_timeout_seconds))
            self._watermark_gauge.set(watermark.current_watermark().micros // 1000)


class ReadRawChunksFromRabbitMQ(beam.PTransform):
    """PBegin -> RawChunks of one queue (unbounded), acked on bundle finalization."""

    def __init__(self, config: RabbitReadConfig, clock: Clock = SYSTEM_CLOCK, chunks: bool = True):
        super().__init__()
        self._config = config
        self._clock = clock
        self._chunks = chunks

    def expand(self, pbegin):
        config = self._config
        read = self._read(pbegin, "", config, dead_lettered=False)
        if not config.dead_lettered_queue:
            return read
        dead_lettered = replace(config, queue=config.dead_lettered_queue, dead_lettered_queue=None)
        return (read, self._read(pbegin, "DeadLettered", dead_lettered, dead_lettered=True)) | beam.Flatten()

    def _read(self, pbegin, prefix: str, config: RabbitReadConfig, dead_lettered: bool):
        output_type = RawChunk if self._chunks else RawRecord
        return (pbegin
                | f"{prefix}Impulse" >> beam.Impulse()
                | f"{prefix}Queue" >> beam.Map(lambda unused, queue=config.queue: queue)
                | f"{prefix}ReadQueue" >> beam.ParDo(ReadQueueFn(config, self._clock, self._chunks, dead_lettered))
                .with_output_types(output_type))


class ReadRawRecordsFromRabbitMQ(ReadRawChunksFromRabbitMQ):
    """PBegin -> RawRecords of one queue (unbounded; the per-element engine's input)."""

    def __init__(self, config: RabbitReadConfig, clock: Clock = SYSTEM_CLOCK):
        super().__init__(config, clock, chunks=False)
