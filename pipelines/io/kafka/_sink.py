"""Kafka sink: NamedTuple records -> a Kafka topic, never losing one silently (docs/DESIGN.md 5).

A record may also come encoded already (`schemas.kafka_values.EncodedMessage`: key and value bytes; or
`EncodedMessages`, a columnar step's table encoded at once by `table_messages`, one element for all its
rows); it is produced as it is.

`WriteToKafka` is a pure-Python composite on confluent-kafka, so it runs on
every Beam runner (including the local ones). Each DoFn instance owns one
idempotent producer (`enable.idempotence=true`, `acks=all`): retries inside
the client cannot duplicate or reorder messages of a partition. Messages are
keyed by the reconciliation key, so every revision of a key's result lands in
one partition, in the order it was produced.

Delivery guarantee: `finish_bundle` flushes the producer and raises if any
message of the bundle failed or is still undelivered when the flush times
out. The runner then retries the bundle (at-least-once: a retried bundle may
re-send messages that did get through; consumers keep the highest revision
per key, and the stream source deduplicates inputs by id).

One exception, `WriteToKafkaWithDeadLetters`: a message the client or the
broker refuses *for what it is* (too large, an invalid record, a policy
violation; `REJECTED_RECORD_ERRORS`) would fail every retry the same way, so
it becomes a DeadLetter (stage "produce", the reason, the value as text cut at
64 Ki characters) and the run goes on. Every other failure (a broker down, an
unknown or invalid topic, a timeout) still fails the bundle.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import apache_beam as beam
from apache_beam.utils.windowed_value import WindowedValue

from pipelines.io.kafka._clients import new_producer
from pipelines.io.kafka._health import BrokerWatch
from schemas.avro import avro_schema
from schemas.codecs import capped
from schemas.kafka_values import VALUE_FORMATS, encode_value, raw_text, sink_messages
from schemas.records import DeadLetter

_LOG = logging.getLogger(__name__)

# Settings the sink owns: overriding them would void the no-loss, in-order guarantee.
_ENFORCED = {"enable.idempotence": True, "acks": "all"}
# Defaults the caller may override through producer_config.
_DEFAULTS = {
    # The Java client's partitioner, so keys land where Java producers/Streams put them.
    "partitioner": "murmur2_random",
    "linger.ms": "20",
}
_KEY_SEPARATOR = "|"
_MSG_TIMED_OUT = -192  # KafkaError._MSG_TIMED_OUT: not acknowledged within message.timeout.ms
REJECTED = "rejected"  # the tagged output of records the client or broker refused (dead letters)


class KafkaDeliveryError(RuntimeError):
    """Messages of a bundle that the broker did not acknowledge; the bundle must be retried."""


@dataclass(frozen=True)
class KafkaWriteConfig:
    bootstrap_servers: str
    topic: str
    value_format: str = "json"  # json | avro | confluent-avro
    schema_name: str = "reconciliation_result"  # an .avsc name in schemas/avro (for the Avro formats)
    schema_id: int = 1  # Confluent wire-format schema id
    # Passthrough client settings (security, tuning). Values are never logged, only the keys.
    producer_config: Mapping[str, str] = field(default_factory=dict)
    # How long finish_bundle waits for acknowledgements before failing the bundle. Keep it above
    # the producer's delivery/message timeout (librdkafka default 300 s) so a slow broker shows up
    # as a delivery error rather than as "unflushed".
    flush_timeout_seconds: float = 330.0
    # Set: undelivered messages fail after this long (message.timeout.ms, unless producer_config sets
    # it), flush waits a little longer, and an outage ends the bundle instead of a 5-minute hang.
    broker_timeout_seconds: Optional[float] = None

    def __post_init__(self) -> None:
        if not self.bootstrap_servers:
            raise ValueError("bootstrap_servers is required")
        if not self.topic:
            raise ValueError("topic is required")
        if self.value_format not in VALUE_FORMATS:
            raise ValueError(f"unknown value format {self.value_format!r}; choose one of {', '.join(VALUE_FORMATS)}")
        if self.value_format != "json":
            avro_schema(self.schema_name)  # raises KeyError for an unknown schema, at construction time
        for name, value in _ENFORCED.items():
            given = self.producer_config.get(name)
            if given is not None and str(given).lower() not in (str(value).lower(), "-1" if name == "acks" else ""):
                raise ValueError(f"producer_config may not override {name} (the sink requires {value})")

    def client_config(self) -> dict:
        """The full confluent-kafka producer configuration (contains secrets: do not log it)."""
        timeouts = ({} if self.broker_timeout_seconds is None
                    else {"message.timeout.ms": str(int(self.broker_timeout_seconds * 1000))})
        return {**_DEFAULTS, **timeouts, **dict(self.producer_config), **_ENFORCED,
                "bootstrap.servers": self.bootstrap_servers}

    @property
    def flush_seconds(self) -> float:
        """How long finish_bundle waits: past the message timeout, so failures arrive as delivery errors."""
        if self.broker_timeout_seconds is None:
            return self.flush_timeout_seconds
        return self.broker_timeout_seconds + 10.0

    def describe(self) -> str:
        """A loggable description: producer_config keys only, never values."""
        keys = ", ".join(sorted(self.producer_config)) or "none"
        return (f"topic={self.topic} bootstrap={self.bootstrap_servers} format={self.value_format} "
                f"schema={self.schema_name} producer_config keys: {keys}")


def _field(record: Any, name: str) -> Any:
    if isinstance(record, Mapping):
        return record.get(name)
    return getattr(record, name, None)


def reconciliation_message_key(record: Any) -> Optional[bytes]:
    """The message key of a record.

    Results: "processor|processor_reference|kind" (all revisions of a key in one
    partition, in order); payouts and bank matches: their row key, "processor|payout_id", else
    a credit's "account|entry_ref" (docs/DESIGN.md 3.8); daily totals: "merchant_id|currency";
    anything else (e.g. dead letters): None (the producer spreads those over partitions).
    """
    for names in (("processor", "processor_reference", "kind"), ("processor", "payout_id"), ("account", "entry_ref")):
        parts = [_field(record, name) for name in names]
        if all(part is not None for part in parts):
            return _KEY_SEPARATOR.join(str(part) for part in parts).encode("utf-8")
    parts = [_field(record, name) for name in ("merchant_id", "currency")]
    if all(part is not None for part in parts):
        return _KEY_SEPARATOR.join(str(part) for part in parts).encode("utf-8")
    return None


def is_rejected_record(error) -> bool:
    """Whether a produce error is about the message itself (retrying cannot help), not the broker or topic."""
    from confluent_kafka import KafkaError

    return error.code() in {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_RECORD,
                            KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_MSG_SIZE,
                            KafkaError.POLICY_VIOLATION}


def rejected_letter(output_name: str, topic: str, value: Optional[bytes], value_format: str, error) -> DeadLetter:
    """The dead letter of an output message that cannot be produced; the value is cut at 64 Ki characters."""
    size = 0 if value is None else len(value)
    reason = f"cannot be produced to {topic}: {error.str() if hasattr(error, 'str') else error} ({size:,} bytes)"
    return DeadLetter(output_name, f"{topic} (output)", "produce", reason, capped(raw_text(value, value_format)))


class _BundleDeliveries:
    """Delivery outcomes of one bundle; written from the client's callback, read in finish_bundle."""

    def __init__(self, rejects: bool) -> None:
        self._lock = threading.Lock()
        self._rejects = rejects
        self.produced = 0
        self.delivered = 0
        self.failures = 0
        self.timed_out = 0
        self.errors: List[str] = []
        self.rejected: List[Tuple[Any, Any, Any]] = []  # (error, value, windowed place) of refused records

    def callback(self, error, message, place=None) -> None:
        with self._lock:
            if error is None:
                self.delivered += 1
            elif self._rejects and is_rejected_record(error):
                self.rejected.append((error, message.value(), place))
            else:
                if len(self.errors) < 10:  # keep the first few reasons; the count says the rest
                    self.errors.append(f"{message.topic()}[{message.partition()}]: {error}")
                self.failures += 1
                self.timed_out += error.code() == _MSG_TIMED_OUT


class _KafkaWriteFn(beam.DoFn):
    """Produces each record; finish_bundle flushes and fails the bundle unless every message was acknowledged."""

    def __init__(self, config: KafkaWriteConfig, key_fn: Callable[[Any], Optional[bytes]],
                 output_name: Optional[str] = None):
        super().__init__()
        self._config = config
        self._key_fn = key_fn
        self._output_name = output_name  # set: refused records become dead letters (REJECTED output)
        self._producer = None
        self._bundle: Optional[_BundleDeliveries] = None
        self._produced_per_window: Dict[Any, int] = {}

    def _new_producer(self):
        _LOG.info("Kafka sink producer: %s", self._config.describe())
        watch = BrokerWatch(self._config.bootstrap_servers, self._config.broker_timeout_seconds or 300.0)
        return new_producer({**self._config.client_config(), **watch.client_settings()})

    def setup(self) -> None:
        self._producer = self._new_producer()

    def start_bundle(self) -> None:
        if self._producer is None:  # dropped after a failed bundle (e.g. a fatal idempotence error)
            self._producer = self._new_producer()
        self._bundle = _BundleDeliveries(rejects=self._output_name is not None)
        self._produced_per_window = {}

    def process(self, record, window=beam.DoFn.WindowParam, timestamp=beam.DoFn.TimestampParam):
        config = self._config
        place = (window, timestamp)
        for key, value in sink_messages(record, self._key_fn, lambda one: encode_value(
                one._asdict(), config.value_format, config.schema_name, config.schema_id)):
            letter = self._produce(key, value, place)
            if letter is not None:
                yield beam.pvalue.TaggedOutput(REJECTED, letter)
        self._producer.poll(0)

    def _produce(self, key: Optional[bytes], value: bytes, place) -> Optional[DeadLetter]:
        """Hands one message to the producer; a message it refuses before sending is a dead letter (with a
        dead-letter output) and not counted."""
        from confluent_kafka import KafkaException

        bundle = self._bundle
        while True:
            try:
                self._producer.produce(self._config.topic, value=value, key=key,
                                       on_delivery=lambda error, message: bundle.callback(error, message, place))
                break
            except BufferError:  # the local queue is full: serve deliveries, then try again
                self._producer.poll(0.5)
            except KafkaException as error:  # refused before sending (e.g. larger than message.max.bytes)
                if self._output_name is None or not is_rejected_record(error.args[0]):
                    raise
                return rejected_letter(self._output_name, self._config.topic, value, self._config.value_format,
                                       error.args[0])
        bundle.produced += 1
        window = place[0]
        self._produced_per_window[window] = self._produced_per_window.get(window, 0) + 1
        return None

    def finish_bundle(self):
        bundle, self._bundle = self._bundle, None
        if bundle is None or bundle.produced == 0:
            return
        remaining = self._producer.flush(self._config.flush_seconds)
        if remaining or bundle.failures or bundle.delivered + len(bundle.rejected) != bundle.produced:
            self._discard_producer()
            if bundle.timed_out and bundle.timed_out == bundle.failures and not bundle.delivered:
                timeout = int(self._config.client_config().get("message.timeout.ms", 300_000)) / 1000
                raise KafkaDeliveryError(  # the usual outage: say it as the sources do
                    f"Kafka brokers {self._config.bootstrap_servers} did not answer: 0 of {bundle.produced} messages "
                    f"to {self._config.topic!r} delivered within {timeout:g} s (--broker-timeout)")
            raise KafkaDeliveryError(
                f"Kafka sink to {self._config.topic!r}: {bundle.produced} produced, {bundle.delivered} delivered, "
                f"{bundle.failures} failed, {remaining} unflushed after {self._config.flush_seconds}s"
                + (f"; first errors: {'; '.join(bundle.errors)}" if bundle.errors else ""))
        for error, value, (window, timestamp) in bundle.rejected:
            self._produced_per_window[window] -= 1
            letter = rejected_letter(self._output_name, self._config.topic, value, self._config.value_format, error)
            yield beam.pvalue.TaggedOutput(REJECTED, WindowedValue(letter, timestamp, [window]))
        # One count per window, so the output is windowed like the input (global, daily, sliding…).
        for window, delivered in self._produced_per_window.items():
            yield WindowedValue(delivered, window.max_timestamp(), [window])

    def _discard_producer(self) -> None:
        """Drops a producer after a failed bundle, so a retry starts clean (and sheds a fatal error state)."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            producer.purge()
            producer.flush(0)
        except Exception:  # best effort: the bundle is failing anyway
            _LOG.debug("purging the Kafka producer failed", exc_info=True)

    def teardown(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            remaining = producer.flush(min(self._config.flush_seconds, 30.0))
            if remaining:
                _LOG.warning("Kafka sink to %r: %d messages undelivered at teardown (their bundle will have failed)",
                             self._config.topic, remaining)


class WriteToKafka(beam.PTransform):
    """NamedTuple records -> messages on `config.topic`, keyed by `key_fn`, value `encode_value(record._asdict())`.

    Returns a PCollection of ints: the number of messages delivered (acknowledged by the
    broker) per bundle, in the global window. Summing it gives the total written; it can be
    ignored. A bundle with any failed or unacknowledged message raises `KafkaDeliveryError`.
    """

    def __init__(self, config: KafkaWriteConfig, key_fn: Callable[[Any], Optional[bytes]] = reconciliation_message_key):
        super().__init__()
        self._config = config
        self._key_fn = key_fn

    def expand(self, records):
        return records | "Produce" >> beam.ParDo(_KafkaWriteFn(self._config, self._key_fn)).with_output_types(int)


class WriteToKafkaWithDeadLetters(beam.PTransform):
    """WriteToKafka whose refused records (too large, invalid, against policy) become dead letters.

    Returns {"delivered": per-bundle delivered counts, "rejected": DeadLetter records with
    input = `output_name`, stage "produce"}. Any other failure still fails the bundle.
    """

    def __init__(self, config: KafkaWriteConfig, output_name: str,
                 key_fn: Callable[[Any], Optional[bytes]] = reconciliation_message_key):
        super().__init__()
        self._config = config
        self._output_name = output_name
        self._key_fn = key_fn

    def expand(self, records):
        outputs = records | "Produce" >> beam.ParDo(
            _KafkaWriteFn(self._config, self._key_fn, self._output_name)).with_outputs(REJECTED, main="delivered")
        return {"delivered": outputs.delivered, "rejected": outputs[REJECTED]}
