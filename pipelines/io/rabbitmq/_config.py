"""What a RabbitMQ read or write needs: the broker endpoint (URL, TLS) and the read and write settings."""
from __future__ import annotations

import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Optional

from schemas.kafka_values import VALUE_FORMATS

DEFAULT_PREFETCH = 20_000
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
DEFAULT_EXCHANGE = "paybeam"
# Messages a bundle took but whose finalization never came (a failed bundle) hold their place on the
# channel until it closes; after this long the source closes it, so the broker redelivers them.
DEFAULT_STALE_TAKE_SECONDS = 300.0
CONTENT_TYPES = {"json": ("application/json",), "avro": ("avro/binary", "application/avro"),
                 "confluent-avro": ("avro/binary", "application/vnd.confluent.avro")}


def describe_error(error: BaseException) -> str:
    """An AMQP client error in one line (pika's connection errors often have no text of their own)."""
    text = str(error).strip()
    if text:
        return f"{type(error).__name__}: {text}"
    return f"{type(error).__name__} (the broker refused or dropped the connection)"


def quiet_client_logs() -> None:
    """pika logs every failed connection attempt at ERROR with a traceback; paybeam reports outages itself
    (a rate-limited warning, then one error line), so pika's own records below CRITICAL are dropped."""
    import logging

    logging.getLogger("pika").setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class AmqpEndpoint:
    """A broker: `amqp://user:password@host:port/vhost` (or `amqps://`). The URL holds credentials, so it is
    never logged or printed: `redacted()` is."""

    url: str
    tls_ca_file: Optional[str] = None
    tls_cert_file: Optional[str] = None
    tls_key_file: Optional[str] = None

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlsplit(self.url)
        if parsed.scheme not in ("amqp", "amqps"):
            raise ValueError(f"an AMQP URL starts with amqp:// or amqps://, not {parsed.scheme or 'nothing'!r}")
        if not parsed.hostname:
            raise ValueError("the AMQP URL names no host")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("--amqp-tls-cert and --amqp-tls-key go together")

    @property
    def uses_tls(self) -> bool:
        return urllib.parse.urlsplit(self.url).scheme == "amqps" or self.tls_ca_file is not None

    def redacted(self) -> str:
        """The URL without its credentials: `amqp://***@host:port/vhost`."""
        parsed = urllib.parse.urlsplit(self.url)
        host = parsed.hostname or ""
        port = f":{parsed.port}" if parsed.port else ""
        credentials = "***@" if parsed.username or parsed.password else ""
        return f"{parsed.scheme}://{credentials}{host}{port}{parsed.path or '/'}"

    def parameters(self, timeout_seconds: float = 10.0, heartbeat_seconds: Optional[int] = None):
        """pika connection parameters (credentials, TLS, one connection attempt bounded by `timeout_seconds`)."""
        import pika

        parameters = pika.URLParameters(self.url)
        parameters.connection_attempts = 1
        parameters.socket_timeout = timeout_seconds
        parameters.stack_timeout = timeout_seconds
        parameters.blocked_connection_timeout = timeout_seconds
        if heartbeat_seconds is not None:
            parameters.heartbeat = heartbeat_seconds
        if self.uses_tls:
            context = ssl.create_default_context(cafile=self.tls_ca_file)
            if self.tls_cert_file:
                context.load_cert_chain(self.tls_cert_file, self.tls_key_file)
            parameters.ssl_options = pika.SSLOptions(context, parameters.host)
        return parameters


@dataclass(frozen=True)
class RabbitReadConfig:
    """One input read from one queue (classic or quorum), acked once its records' outputs are durable."""

    endpoint: AmqpEndpoint
    queue: str
    input_name: str
    value_format: str = "json"
    prefetch: int = DEFAULT_PREFETCH
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    idle_timeout_seconds: float = 10.0
    broker_timeout_seconds: float = 60.0
    read_call_millis: int = 500
    linger_millis: int = 0
    resume_millis: int = 50
    chunk_max_records: int = 20_000
    chunk_max_millis: int = 200
    stale_take_seconds: float = DEFAULT_STALE_TAKE_SECONDS
    # The queue `queue` dead-letters into, read as part of the same input (None: not read).
    dead_lettered_queue: Optional[str] = None

    def __post_init__(self) -> None:
        if not self.queue:
            raise ValueError("a queue name is required")
        if self.value_format not in VALUE_FORMATS:
            raise ValueError(f"unknown value format {self.value_format!r}")
        if not 1 <= self.prefetch <= 65_535:
            raise ValueError("--prefetch is between 1 and 65535 (AMQP's prefetch count is 16 bits)")
        if self.max_message_bytes < 1:
            raise ValueError("--max-message-bytes must be at least 1")


@dataclass(frozen=True)
class RabbitWriteConfig:
    """One output: persistent messages to `exchange` under `routing_key`, each confirmed by the broker.

    With `queue` set, the sink declares that durable queue and binds it to the exchange under the routing
    key, so no message is unroutable for want of a consumer's queue."""

    endpoint: AmqpEndpoint
    routing_key: str
    exchange: str = DEFAULT_EXCHANGE
    queue: Optional[str] = None
    value_format: str = "json"
    schema_name: str = "reconciliation_result"
    broker_timeout_seconds: float = 60.0

    def __post_init__(self) -> None:
        if not self.routing_key:
            raise ValueError("a routing key is required")
        if self.value_format not in VALUE_FORMATS:
            raise ValueError(f"unknown value format {self.value_format!r}")

    def describe(self) -> str:
        return (f"exchange={self.exchange!r} routing_key={self.routing_key!r} broker={self.endpoint.redacted()} "
                f"format={self.value_format}")
