"""What every paybeam Kafka client shares: a clock, quiet logs, error classes, and a bound on broker outages.

librdkafka retries a lost broker forever and logs every failed connect (observed:
8.6 MB of "Connection refused" in nine minutes). So each client gets

* `logger`/`error_cb` that pass each distinct message (digits ignored: "after 3ms",
  "5 identical error(s)") at most once per `LOG_INTERVAL_SECONDS`;
* a `BrokerWatch`: the first transport-level error starts an outage clock, and once it has
  run for the broker timeout a caller asks the broker directly (`probe`); if that fails too
  the client gives up with `BrokerUnavailable`, one sentence the CLI prints as its error line.

The clock is injectable (tests pass a fake one, as tfx-bsl's run_inference_base does), so
nothing here depends on how fast a test machine happens to be.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from typing import Callable, Dict, Optional

_LOGGER = logging.getLogger(__name__)
LOG_INTERVAL_SECONDS = 30.0
DEFAULT_BROKER_TIMEOUT_SECONDS = 60.0


class Clock:
    """Wall-clock and monotonic time; a test passes a subclass that it moves by hand."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK = Clock()


class BrokerUnavailable(RuntimeError):
    """The brokers did not answer for longer than the broker timeout."""


class RateLimitedLog:
    """Passes a message unless the same message (digits ignored) passed within `interval` seconds."""

    def __init__(self, interval: float = LOG_INTERVAL_SECONDS, clock: Clock = SYSTEM_CLOCK):
        self._interval = interval
        self._clock = clock
        self._last: Dict[str, float] = {}
        self._lock = threading.Lock()

    def allows(self, message: str) -> bool:
        shape = re.sub(r"\d+", "#", message)
        now = self._clock.monotonic()
        with self._lock:
            last = self._last.get(shape)
            if last is not None and now - last < self._interval:
                return False
            self._last[shape] = now
            return True


_PROCESS_LIMIT = RateLimitedLog()


class _ClientLogger:
    """The `logger` librdkafka's log lines go to (instead of its own stderr writer), rate-limited."""

    def __init__(self, limit: RateLimitedLog):
        self._limit = limit

    def log(self, level: int, message: str, *args) -> None:
        text = message % args if args else message
        if self._limit.allows(text):
            _LOGGER.log(level, "%s", text)


def is_outage(error) -> bool:
    from confluent_kafka import KafkaError

    return error.code() in {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE,
                            KafkaError._TIMED_OUT, KafkaError._MSG_TIMED_OUT}


class BrokerWatch:
    """Error callback + outage clock of one client (see the module docstring)."""

    def __init__(self, bootstrap_servers: str, timeout_seconds: float, clock: Clock = SYSTEM_CLOCK):
        self._servers = bootstrap_servers
        self.timeout_seconds = timeout_seconds
        self._clock = clock
        # One limiter per process for real time, so a dozen clients repeating one outage print it once.
        self._limit = _PROCESS_LIMIT if type(clock) is Clock else RateLimitedLog(clock=clock)  # noqa: E721
        self._down_since: Optional[float] = None

    def client_settings(self) -> dict:
        """The confluent-kafka settings that route this client's logs and errors here."""
        return {"logger": _ClientLogger(self._limit), "error_cb": self.on_error}

    def on_error(self, error) -> None:
        if is_outage(error) and self._down_since is None:
            self._down_since = self._clock.monotonic()
        text = f"Kafka client reports: {error.str() if hasattr(error, 'str') else error}"
        if self._limit.allows(text):
            _LOGGER.warning("%s", text)

    def on_error_seen(self) -> None:
        """A call failed in a way that may be an outage: the next check() asks the broker at once."""
        self._down_since = self._clock.monotonic() - self.timeout_seconds

    def healthy(self) -> None:
        """The broker answered (a message, an end-of-partition event, a metadata reply)."""
        self._down_since = None

    def check(self, probe: Callable[[float], None]) -> None:
        """Raises BrokerUnavailable once an outage has lasted the timeout and `probe(timeout)` fails too."""
        if self._down_since is None or self._clock.monotonic() - self._down_since < self.timeout_seconds:
            return
        try:
            probe(min(5.0, self.timeout_seconds))
        except Exception:  # pylint: disable=broad-except  (any failure to answer is the outage going on)
            raise self.unavailable() from None
        self.healthy()

    def unavailable(self) -> BrokerUnavailable:
        return BrokerUnavailable(f"Kafka brokers {self._servers} did not answer for {self.timeout_seconds:g} s "
                                 "(--broker-timeout)")


def is_partition_eof(error) -> bool:
    from confluent_kafka import KafkaError

    return error.code() == KafkaError._PARTITION_EOF


def raise_if_fatal(error) -> None:
    """Fails the bundle (Beam retries it) on errors the client cannot recover from; logs the rest.

    librdkafka reports transient errors (a broker connection lost, a leader moving) through the
    consumer too and recovers by itself, so those are only logged.
    """
    from confluent_kafka import KafkaError, KafkaException

    permanent = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.TOPIC_AUTHORIZATION_FAILED,
                 KafkaError.GROUP_AUTHORIZATION_FAILED, KafkaError.SASL_AUTHENTICATION_FAILED,
                 KafkaError._UNKNOWN_PARTITION, KafkaError._UNKNOWN_TOPIC, KafkaError._AUTHENTICATION,
                 KafkaError._SSL, KafkaError.OFFSET_OUT_OF_RANGE}
    if error.fatal() or error.code() in permanent:
        raise KafkaException(error)
    _LOGGER.debug("Kafka consumer error (the client retries): %s", error)  # error_cb logs it, rate-limited
