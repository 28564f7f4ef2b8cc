"""A queue's push consumer, shared by every reader of that queue in a process (docs/DESIGN.md 5.2).

One thread owns the connection (pika's BlockingConnection is not thread-safe): it consumes with a
prefetch window into a buffer, sends the acks readers ask for, keeps the heartbeats, and reconnects
after a drop. Readers `take()` deliveries from the buffer on their own threads and, once the runner
says their outputs are durable (bundle finalization), `settle()` what they took.

Why per process and not per DoFn instance: a runner moves a reader's restriction between DoFn
instances (bundle processors), and deliveries prefetched by an instance nobody calls again would sit
unacked for good. Why acks only of a settled prefix: an ack with `multiple` covers every earlier tag
of the channel, and the takes of a failed bundle are never settled; they hold the prefix back until
`stale_take_seconds`, when the channel is closed and the broker redelivers everything unacked on it
(the deduplication downstream drops what had got through).
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Deque, Dict, List, NamedTuple, Optional, Tuple

from pipelines.io.kafka import SYSTEM_CLOCK, BrokerUnavailable, Clock, RateLimitedLog
from pipelines.io.rabbitmq._config import RabbitReadConfig, describe_error, quiet_client_logs

_LOG = logging.getLogger(__name__)
_IO_SLICE_SECONDS = 0.02  # how long the I/O thread waits for frames before it looks at its ack queue
_RECONNECT_DELAYS = (0.1, 0.5, 1.0, 2.0)


class Delivery(NamedTuple):
    tag: int
    body: bytes
    content_type: Optional[str]
    timestamp_seconds: Optional[int]
    redelivered: bool
    dead_lettered: bool = False  # read back from the queue the broker dead-lettered it to


class Take(NamedTuple):
    """What one read call took: deliveries `first_tag`..`last_tag` of channel `generation`."""

    generation: int
    first_tag: int
    last_tag: int


class QueueConsumer:
    """The push consumer of one queue (see the module docstring)."""

    def __init__(self, config: RabbitReadConfig, clock: Clock = SYSTEM_CLOCK):
        quiet_client_logs()
        self._config = config
        self._log_limit = RateLimitedLog(clock=clock)
        self._clock = clock
        self._lock = threading.Condition()
        self._buffer: Deque[Delivery] = collections.deque()
        self._generation = 0
        self._open_takes: Dict[int, Tuple[Take, float, bool]] = {}  # first_tag -> (take, taken at, settled)
        self._acked_through = 0
        self._outage_since: Optional[float] = None
        self._last_error: Optional[str] = None
        self._recycle = False
        self._closed = False
        self._thread: Optional[threading.Thread] = None
        self.redelivered = 0

    # --- the readers' side -------------------------------------------------------------------
    def start(self) -> "QueueConsumer":
        self._thread = threading.Thread(target=self._run, name=f"paybeam-amqp-{self._config.queue}", daemon=True)
        self._thread.start()
        return self

    def take(self, max_count: int, wait_seconds: float) -> Tuple[int, List[Delivery]]:
        """Up to `max_count` buffered deliveries, waiting up to `wait_seconds` for the first; with their
        channel generation. Raises BrokerUnavailable once the broker has been gone `broker_timeout`."""
        deadline = time.monotonic() + wait_seconds
        with self._lock:
            while not self._buffer:
                self._raise_if_gone()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return self._generation, []
                self._lock.wait(min(remaining, 0.5))
            count = min(max_count, len(self._buffer))
            taken = [self._buffer.popleft() for _ in range(count)]
            take = Take(self._generation, taken[0].tag, taken[-1].tag)
            self._open_takes[take.first_tag] = (take, self._clock.monotonic(), False)
            self.redelivered += sum(1 for delivery in taken if delivery.redelivered)
            return self._generation, taken

    def wait_buffered(self, count: int, timeout_seconds: float) -> bool:
        """Waits until at least `count` deliveries are buffered (False when `timeout_seconds` pass first)."""
        return wait_for_count(self._lock, self._buffer, count, timeout_seconds)

    def give_back(self, generation: int, deliveries: List[Delivery]) -> None:
        """Deliveries a call took but did not read (its restriction was checkpointed) go back to the front."""
        with self._lock:
            if generation != self._generation or not deliveries:
                return  # that channel is gone: the broker redelivers them
            entry = self._open_takes.pop(deliveries[0].tag, None)
            if entry is not None and entry[0].last_tag != deliveries[-1].tag:
                raise ValueError("only the end of a take can be given back")
            if entry is None:
                self._shorten_take(deliveries[0].tag)
            self._buffer.extendleft(reversed(deliveries))
            self._lock.notify_all()

    def _shorten_take(self, first_returned: int) -> None:
        for first, (take, taken_at, settled) in list(self._open_takes.items()):
            if take.first_tag < first_returned <= take.last_tag:
                self._open_takes[first] = (take._replace(last_tag=first_returned - 1), taken_at, settled)

    def settle(self, take: Take) -> None:
        """The outputs of `take` are durable: its deliveries may be acked (in order, see the module docstring)."""
        with self._lock:
            entry = self._open_takes.get(take.first_tag)
            if take.generation != self._generation or entry is None:
                return  # an earlier channel's: closed already, the broker redelivered them
            self._open_takes[take.first_tag] = (entry[0], entry[1], True)

    def pending_takes(self) -> int:
        with self._lock:
            return len(self._open_takes)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _raise_if_gone(self) -> None:
        if self._outage_since is not None and \
                self._clock.monotonic() - self._outage_since >= self._config.broker_timeout_seconds:
            raise BrokerUnavailable(
                f"RabbitMQ {self._config.endpoint.redacted()} did not answer for "
                f"{self._config.broker_timeout_seconds:g} s (--broker-timeout): {self._last_error}")

    # --- the I/O thread ----------------------------------------------------------------------
    def _run(self) -> None:
        attempt = 0
        while not self._closed:
            try:
                connection, channel = self._connect()
            except Exception as error:  # noqa: BLE001 — refused, unreachable, a wrong vhost: retried until the timeout
                self._mark_outage(error)
                time.sleep(_RECONNECT_DELAYS[min(attempt, len(_RECONNECT_DELAYS) - 1)])
                attempt += 1
                continue
            attempt = 0
            try:
                self._serve(connection, channel)
            except Exception as error:  # noqa: BLE001 — a dropped connection: its unacked deliveries come back
                self._mark_outage(error)
            finally:
                self._drop_channel_state()
                try:
                    if connection.is_open:
                        connection.close()
                except Exception:  # noqa: BLE001 — closing a broken connection
                    pass

    def _connect(self):
        import pika

        config = self._config
        connection = pika.BlockingConnection(config.endpoint.parameters(min(config.broker_timeout_seconds, 10.0)))
        channel = connection.channel()
        channel.basic_qos(prefetch_count=config.prefetch)
        with self._lock:
            self._generation += 1
            self._acked_through = 0
            self._outage_since = None
            self._recycle = False
            generation = self._generation

        def on_message(unused_channel, method, properties, body):
            delivery = Delivery(method.delivery_tag, body, properties.content_type, properties.timestamp,
                                bool(method.redelivered))
            with self._lock:
                if self._generation == generation:
                    self._buffer.append(delivery)
                    self._lock.notify_all()

        channel.basic_consume(config.queue, on_message, auto_ack=False)
        _LOG.info("consuming %s on %s (prefetch %d)", config.queue, config.endpoint.redacted(), config.prefetch)
        return connection, channel

    def _serve(self, connection, channel) -> None:
        while not self._closed:
            connection.process_data_events(time_limit=_IO_SLICE_SECONDS)
            tag, recycle = self._settled_prefix()
            if tag:
                channel.basic_ack(delivery_tag=tag, multiple=True)
            if recycle:
                _LOG.warning("closing the channel of %s: a read's deliveries were not finalized within %g s; the "
                             "broker redelivers what the channel held", self._config.queue,
                             self._config.stale_take_seconds)
                return

    def _settled_prefix(self) -> Tuple[int, bool]:
        """The highest tag whose takes, and all before it, are settled (0: none new); and whether an unsettled
        take is older than `stale_take_seconds` (the channel must go)."""
        with self._lock:
            through = self._acked_through
            now = self._clock.monotonic()
            stale = False
            for first in sorted(self._open_takes):
                take, taken_at, settled = self._open_takes[first]
                if not settled:
                    stale = now - taken_at >= self._config.stale_take_seconds
                    break
                through = take.last_tag
                del self._open_takes[first]
            new = through if through > self._acked_through else 0
            self._acked_through = through
            return new, stale

    def _drop_channel_state(self) -> None:
        """The channel is gone: the broker requeues what it held unacked; nothing of it may be acked later."""
        with self._lock:
            self._buffer.clear()
            self._open_takes.clear()
            self._generation += 1

    def _mark_outage(self, error: Exception) -> None:
        with self._lock:
            if self._outage_since is None:
                self._outage_since = self._clock.monotonic()
            self._last_error = describe_error(error)
            self._lock.notify_all()
        message = f"RabbitMQ {self._config.endpoint.redacted()}: {self._last_error}; reconnecting"
        if self._log_limit.allows(message):
            _LOG.warning(message)


def wait_for_count(condition: threading.Condition, buffer, count: int, timeout_seconds: float,
                   poll_seconds: Optional[float] = None) -> bool:
    """Whether `buffer` (guarded by `condition`) holds `count` items within `timeout_seconds` (tests,
    benchmarks); `poll_seconds` for a buffer whose writer notifies only when it fills from empty."""
    deadline = time.monotonic() + timeout_seconds
    with condition:
        while len(buffer) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            condition.wait(remaining if poll_seconds is None else min(remaining, poll_seconds))
        return True


class PerProcess:
    """One started reader per config in this process (a worker's bundles of one stage share it), closed by
    `close_all` (tests, benchmarks; a worker's exit closes them anyway)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._started: Dict[object, object] = {}

    def get(self, config, start):
        with self._lock:
            reader = self._started.get(config)
            if reader is None:
                reader = self._started[config] = start()
            return reader

    def close_all(self) -> None:
        with self._lock:
            readers = list(self._started.values())
            self._started.clear()
        for reader in readers:
            reader.close()


_CONSUMERS = PerProcess()


def shared_consumer(config: RabbitReadConfig, clock: Clock = SYSTEM_CLOCK) -> QueueConsumer:
    """This process's consumer of `config.queue`, started on first use."""
    return _CONSUMERS.get(config, lambda: QueueConsumer(config, clock).start())


def close_shared_consumers() -> None:
    """Closes every shared consumer of this process (tests; a worker's exit closes them anyway)."""
    _CONSUMERS.close_all()
