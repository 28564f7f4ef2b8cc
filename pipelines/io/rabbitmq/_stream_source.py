"""RabbitMQ Streams as an unbounded source: a Splittable DoFn over stream offsets (docs/DESIGN.md 5.2).

    chunks = pipeline | ReadRawChunksFromRabbitMQStream(StreamReadConfig(read_config, port, subscriber, start))

Shape: Impulse -> the stream's name -> ReadStream (SDF, unbounded) -> RawChunk (or RawRecord).

* The restriction is the stream's offsets, like a Kafka partition's: [start, ∞), checkpointed (never split)
  after the last offset claimed. A run that has read nothing yet holds the start -1, meaning "where
  `--start` says" (committed: after the offset stored for the subscriber name, else the first; earliest,
  latest, timestamp, offset); once a message is claimed the restriction holds real offsets, so a runner
  that restores a checkpoint (Flink) or retries a bundle reads again from exactly there.
* Messages come from the process's `StreamTail` of that stream: an I/O thread (asyncio, rstream) keeps at
  most `max_buffered` messages ahead of the readers; a full buffer stops granting the broker credit. A
  read asking for another position than the tail continues from (a retried bundle, a restored checkpoint)
  subscribes again there.
* The offset is stored for the subscriber name on bundle finalization, once the records' outputs are
  durable (on Flink, after the checkpoint holding them): the next run with `--start committed` starts after
  it. Nothing is acked: a stream keeps its messages.
* Poison and event time as the queue source (`record_of_delivery`): a record's source is `<stream>#<offset>`.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Deque, Iterator, List, Optional, Tuple

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from pipelines.io.kafka import UNBOUNDED_STOP, WATERMARKS, BrokerUnavailable, CheckpointOnlyOffsetTracker
from pipelines.io.rabbitmq._config import RabbitReadConfig, describe_error
from pipelines.io.rabbitmq._consumer import Delivery, PerProcess, wait_for_count
from pipelines.io.rabbitmq._source import record_of_delivery
from pipelines.io.rabbitmq._streams import StreamStart, client_settings, offset_specification
from schemas.arrow_readers import tabulate_records
from schemas.raw_chunks import RawChunk
from schemas.records import RawRecord
from transforms.counting import METRICS_NAMESPACE
from transforms.event_time import millis_to_beam_timestamp

FROM_START = -1  # the restriction's start before anything was read: where StreamStart says
_MAX_PER_CALL = 10_000
_FIRST_WAIT_SECONDS = 0.5
_IDLE_RESUME_SECONDS = 0.05
_CREDIT = 100  # chunks the broker may push ahead of the tail, as the bounded read grants
_RETRY_SECONDS = 1.0


@dataclass(frozen=True)
class StreamReadConfig:
    """One input read from one RabbitMQ stream (`read.queue`): the stream protocol port, the subscriber name
    the offsets are stored under, where a run with nothing read starts."""

    read: RabbitReadConfig
    port: int
    subscriber: str
    start: StreamStart = StreamStart()
    max_buffered: int = 50_000


class StreamTail:
    """A stream's messages from a position on, read by an I/O thread; `take` hands them over in order."""

    def __init__(self, config: StreamReadConfig):
        self._config = config
        self._lock = threading.Condition()
        self._buffer: Deque[Tuple[int, bytes, Optional[str]]] = deque()
        self._origin = FROM_START  # where the current subscription started
        self._continues_at: Optional[int] = None  # the offset the next take must ask for to continue
        self._buffered_through: Optional[int] = None  # the current subscription's last buffered offset
        self._generation = 0
        self._outage_since: Optional[float] = None
        self._last_error = ""
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"stream-{config.read.queue}",
                                        daemon=True)
        self._session_task: Optional[asyncio.Task] = None  # owned by the loop's thread
        self._store_wanted: Optional[int] = None  # the latest offset a finalized bundle asked to store
        self._stored: Optional[int] = None
        self._store_consumer = None  # owned by the loop's thread, like the two below
        self._store_lock: Optional[asyncio.Lock] = None

    def start(self) -> "StreamTail":
        self._thread.start()
        self._resubscribe(FROM_START)
        return self

    def take(self, position: int, most: int, wait_seconds: float) -> List[Tuple[int, bytes, Optional[str]]]:
        """Up to `most` messages at `position` and after (FROM_START: where the start says), in offset order;
        waits at most `wait_seconds` for the first. BrokerUnavailable after the broker timeout."""
        with self._lock:
            # Continuing: from where the last take ended or, nothing taken yet, from where the subscription
            # began. Anything else (a retried bundle, even a first one at FROM_START; a restored checkpoint)
            # subscribes again there.
            continuing = position == (self._continues_at if self._continues_at is not None else self._origin)
            if not continuing:
                self._lock.release()
                try:
                    self._resubscribe(position)
                finally:
                    self._lock.acquire()
            deadline = time.monotonic() + wait_seconds
            while not self._buffer and not self._closed:
                self._raise_if_unavailable()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._lock.wait(remaining)
            taken = []
            while self._buffer and len(taken) < most:
                message = self._buffer.popleft()
                if position == FROM_START or message[0] >= position:
                    taken.append(message)
            if taken:
                self._continues_at = taken[-1][0] + 1
            return taken  # the I/O thread sees the room on its next try

    def give_back(self, messages: List[Tuple[int, bytes, Optional[str]]]) -> None:
        """Messages a read took but could not claim: the next take (from the first of them) gets them again."""
        with self._lock:
            self._buffer.extendleft(reversed(messages))
            self._continues_at = messages[0][0]
            self._lock.notify_all()

    def store(self, offset: int) -> None:
        """Stores `offset` for the subscriber name, asynchronously, unless a later one was asked for already
        (bundles finalize in any order; a failure is retried by the next store)."""
        with self._lock:
            if self._store_wanted is not None and offset <= self._store_wanted:
                return
            self._store_wanted = offset
        asyncio.run_coroutine_threadsafe(self._store_latest(), self._loop)

    def wait_buffered(self, count: int, timeout_seconds: float) -> bool:
        """Whether `count` messages are buffered within `timeout_seconds` (tests, benchmarks)."""
        return wait_for_count(self._lock, self._buffer, count, timeout_seconds, poll_seconds=0.05)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        try:  # the session's consumer closes in its `finally`; then whatever rstream left running
            asyncio.run_coroutine_threadsafe(self._shut_down(), self._loop).result(timeout=15)
        except Exception:  # noqa: BLE001 — the loop stops anyway
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

    async def _shut_down(self) -> None:
        if self._session_task is not None:
            self._session_task.cancel()
            await asyncio.gather(self._session_task, return_exceptions=True)
        if self._store_lock is not None:
            async with self._store_lock:  # a store under way finishes first
                if self._store_consumer is not None:
                    await asyncio.gather(asyncio.wait_for(self._store_consumer.close(), 5), return_exceptions=True)
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def _raise_if_unavailable(self) -> None:
        if self._outage_since is not None and \
                time.monotonic() - self._outage_since > self._config.read.broker_timeout_seconds:
            raise BrokerUnavailable(f"RabbitMQ {self._config.read.endpoint.redacted()} (stream port "
                                    f"{self._config.port}) unavailable for over "
                                    f"{self._config.read.broker_timeout_seconds:g}s: {self._last_error}")

    def _resubscribe(self, position: int) -> None:
        with self._lock:
            self._generation += 1
            self._buffer.clear()
            self._origin = position
            self._continues_at = position if position != FROM_START else None
            self._buffered_through = None
            generation = self._generation
        asyncio.run_coroutine_threadsafe(self._start_session(generation, position), self._loop).result(timeout=10)

    async def _start_session(self, generation: int, position: int) -> None:
        if self._session_task is not None:
            self._session_task.cancel()
        self._session_task = asyncio.get_running_loop().create_task(self._serve(generation, position))

    async def _serve(self, generation: int, position: int) -> None:
        """Subscribes at `position` and keeps the buffer filled; reconnects after `_RETRY_SECONDS` when the
        connection fails, from after the last message buffered (the buffer keeps what it holds)."""
        from rstream import Consumer

        config = self._config
        while not self._closed and generation == self._generation:
            lost = asyncio.Event()
            consumer = Consumer(**client_settings(config.read.endpoint, config.port), heartbeat=10,
                                on_close_handler=lambda unused_info: lost.set())
            try:
                await asyncio.wait_for(consumer.start(), min(config.read.broker_timeout_seconds, 10.0))
                if not await consumer.stream_exists(config.read.queue):
                    raise LookupError(f"stream {config.read.queue!r} does not exist")
                specification = await offset_specification(consumer, config.read.queue, config.subscriber,
                                                           config.start if position == FROM_START
                                                           else StreamStart("offset", position))

                def on_message(message, context, generation=generation):
                    return self._buffered(generation, context.offset, message)

                await consumer.subscribe(config.read.queue, on_message, decoder=_amqp_decoder(),
                                         offset_specification=specification, subscriber_name=config.subscriber,
                                         initial_credit=_CREDIT)
                with self._lock:
                    self._outage_since = None
                await lost.wait()
                raise ConnectionError("the stream connection was closed")
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 — reported by take() after the broker timeout
                with self._lock:
                    self._last_error = describe_error(error)
                    if self._outage_since is None:
                        self._outage_since = time.monotonic()
                    self._lock.notify_all()
                    if generation == self._generation and self._buffered_through is not None:
                        # What is buffered stays: go on after it (from an earlier offset it would come twice).
                        position = self._buffered_through + 1
            finally:
                try:
                    await asyncio.wait_for(consumer.close(), 5)
                except Exception:  # noqa: BLE001 — already broken
                    pass
            await asyncio.sleep(_RETRY_SECONDS)

    def _buffered(self, generation: int, offset: int, message):
        """Buffers one message; when the buffer is full, returns what rstream awaits before the next (it grants
        the broker credit only as it handles chunks, so a full buffer stops the broker)."""
        properties = message.properties
        content_type = properties.content_type if properties is not None else None
        if content_type is not None and not isinstance(content_type, str):
            content_type = content_type.decode()
        entry = (offset, bytes(message.body), content_type)
        return None if self._offer(generation, entry) else self._buffered_when_room(generation, entry)

    async def _buffered_when_room(self, generation: int, entry) -> None:
        while True:
            await asyncio.sleep(0.01)
            if self._offer(generation, entry):
                return

    def _offer(self, generation: int, entry) -> bool:
        """Buffers `entry` unless its subscription was replaced (dropped); False when the buffer is full."""
        with self._lock:
            if generation != self._generation or self._closed:
                return True
            if len(self._buffer) >= self._config.max_buffered:
                return False
            self._buffer.append(entry)
            self._buffered_through = entry[0]
            if len(self._buffer) == 1:  # readers wait only for an empty buffer to fill
                self._lock.notify_all()
            return True

    async def _store_latest(self) -> None:
        """Stores the latest offset asked for, one store at a time, on one connection kept for it."""
        from rstream import Consumer

        config = self._config
        if self._store_lock is None:
            self._store_lock = asyncio.Lock()
        async with self._store_lock:
            with self._lock:
                offset = self._store_wanted
            if offset is None or offset == self._stored:
                return
            try:
                if self._store_consumer is None:
                    consumer = Consumer(**client_settings(config.read.endpoint, config.port))
                    await asyncio.wait_for(consumer.start(), 10)
                    self._store_consumer = consumer
                await asyncio.wait_for(self._store_consumer.store_offset(config.read.queue, config.subscriber,
                                                                         offset), 10)
                self._stored = offset
            except Exception as error:  # noqa: BLE001 — the next finalized bundle stores a later offset
                with self._lock:
                    self._last_error = describe_error(error)
                consumer, self._store_consumer = self._store_consumer, None
                if consumer is not None:
                    try:
                        await asyncio.wait_for(consumer.close(), 5)
                    except Exception:  # noqa: BLE001 — already broken
                        pass


def _amqp_decoder():
    from rstream import amqp_decoder

    return amqp_decoder


_TAILS = PerProcess()


def shared_tail(config: StreamReadConfig) -> StreamTail:
    """This process's tail of `config`'s stream, started on first use."""
    return _TAILS.get(config, lambda: StreamTail(config).start())


def close_shared_tails() -> None:
    _TAILS.close_all()


class _StreamRestrictions(RestrictionProvider):
    def initial_restriction(self, stream: str) -> OffsetRange:
        return OffsetRange(FROM_START, UNBOUNDED_STOP)

    def create_tracker(self, restriction: OffsetRange) -> CheckpointOnlyOffsetTracker:
        return CheckpointOnlyOffsetTracker(restriction)

    def split(self, stream: str, restriction: OffsetRange):
        yield restriction  # one reader per stream

    def restriction_size(self, stream: str, restriction: OffsetRange) -> float:
        return 1.0

    def truncate(self, stream: str, restriction: OffsetRange):
        return None


_RESTRICTIONS = _StreamRestrictions()


class ReadStreamFn(beam.DoFn):
    """Reads one stream (the element is its name) into timestamped RawChunks, or RawRecords with `chunks=False`."""

    def __init__(self, config: StreamReadConfig, chunks: bool = True):
        self._config = config
        self._chunks = chunks
        self._read_counter = Metrics.counter(METRICS_NAMESPACE, f"{config.read.input_name}.read")
        self._watermark_gauge = Metrics.gauge(METRICS_NAMESPACE, f"{config.read.input_name}.watermark_millis")

    # `fin` must come before the RestrictionParam argument (docs/DESIGN.md 7).
    @beam.DoFn.unbounded_per_element()
    def process(self, stream: str, fin=beam.DoFn.BundleFinalizerParam,
                tracker=beam.DoFn.RestrictionParam(_RESTRICTIONS),
                watermark=beam.DoFn.WatermarkEstimatorParam(WATERMARKS)) -> Iterator[TimestampedValue]:
        config, read = self._config, self._config.read
        tail = shared_tail(config)
        claimed: List[int] = []
        fin.register(lambda: tail.store(claimed[-1]) if claimed else None)
        began = time.monotonic()
        stopped = False
        records: List[RawRecord] = []
        times: List[int] = []
        while not stopped and len(records) < _MAX_PER_CALL and time.monotonic() - began < read.read_call_millis / 1000:
            wait = min(_FIRST_WAIT_SECONDS, read.read_call_millis / 1000) if not records else read.linger_millis / 1000
            position = claimed[-1] + 1 if claimed else tracker.current_restriction().start
            messages = tail.take(position, _MAX_PER_CALL - len(records), wait)
            if not messages:
                break
            watermark.mark_active()
            # One claim covers the whole take (offsets up to its last); a refused one means the runner
            # checkpointed the restriction: the take goes back to the tail for the next call.
            if not tracker.try_claim(messages[-1][0]):
                tail.give_back(messages)
                stopped = True
                break
            claimed.append(messages[-1][0])
            for offset, body, content_type in messages:
                record, millis = record_of_delivery(Delivery(offset, body, content_type, None, False), read)
                records.append(record)
                times.append(millis)
        if records:
            self._read_counter.inc(len(records))
            if self._chunks:
                for start in range(0, len(records), read.chunk_max_records):
                    part = slice(start, start + read.chunk_max_records)
                    yield TimestampedValue(tabulate_records(records[part], path=read.queue, input_name=read.input_name),
                                           millis_to_beam_timestamp(min(times[part])))
            else:
                for record, millis in zip(records, times):
                    yield TimestampedValue(record, millis_to_beam_timestamp(millis))
            watermark.advance_to(millis_to_beam_timestamp(min(times)))
            self._watermark_gauge.set(watermark.current_watermark().micros // 1000)
        if not stopped:  # else the runner holds the rest of the restriction (no `return`: Beam warns on it)
            if not records:
                now = time.time()
                if watermark.idle_seconds(now) >= read.idle_timeout_seconds:
                    watermark.advance_to(Timestamp.of(now - read.idle_timeout_seconds))
            tracker.defer_remainder(Duration(seconds=(read.resume_millis / 1000) if records
                                             else _IDLE_RESUME_SECONDS))


class ReadRawChunksFromRabbitMQStream(beam.PTransform):
    """PBegin -> RawChunks of one RabbitMQ stream (unbounded), the offset stored on bundle finalization."""

    def __init__(self, config: StreamReadConfig, chunks: bool = True):
        super().__init__()
        self._config = config
        self._chunks = chunks

    def expand(self, pbegin):
        return (pbegin
                | "Impulse" >> beam.Impulse()
                | "Stream" >> beam.Map(lambda unused, stream=self._config.read.queue: stream)
                | "ReadStream" >> beam.ParDo(ReadStreamFn(self._config, self._chunks))
                .with_output_types(RawChunk if self._chunks else RawRecord))


def stream_read_config(read: RabbitReadConfig, port: int, subscriber: str, start: StreamStart) -> StreamReadConfig:
    return StreamReadConfig(replace(read, dead_lettered_queue=None), port, subscriber, start)
