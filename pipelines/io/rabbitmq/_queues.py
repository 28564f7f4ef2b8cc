"""Queues by hand: declare one, publish a batch of values to it, read one to its end (CLI tools, tests)."""
from __future__ import annotations

from typing import Iterable, List, NamedTuple, Optional

from pipelines.io.rabbitmq._config import AmqpEndpoint
from pipelines.io.rabbitmq._publisher import ConfirmingPublisher

QUEUE_TYPES = ("classic", "quorum", "stream")  # stream: a RabbitMQ stream, read by --streams runs


class Message(NamedTuple):
    body: bytes
    headers: dict
    content_type: Optional[str]
    redelivered: bool


def declare_queue(endpoint: AmqpEndpoint, queue: str, queue_type: str = "classic", timeout_seconds: float = 30.0) -> int:
    """Declares a durable queue of `queue_type` (an existing one must have that type); returns its message count."""
    import pika

    if queue_type not in QUEUE_TYPES:
        raise ValueError(f"unknown queue type {queue_type!r}; choose one of {', '.join(QUEUE_TYPES)}")
    arguments = {"x-queue-type": queue_type}
    connection = pika.BlockingConnection(endpoint.parameters(timeout_seconds))
    try:
        declared = connection.channel().queue_declare(queue, durable=True, arguments=arguments)
        return declared.method.message_count
    finally:
        connection.close()


def declare_outputs(endpoint: AmqpEndpoint, exchange: str, queues: Iterable[str], timeout_seconds: float = 30.0) -> None:
    """The durable direct `exchange` and each durable queue bound to it under its own name as routing key
    (what the sink declares too): a run's outputs exist, and can be consumed, before it writes any."""
    publisher = ConfirmingPublisher(endpoint, timeout_seconds).open()
    try:
        for queue in queues:
            publisher.declare_output(exchange, queue, queue)
    finally:
        publisher.close()


def publish_values(endpoint: AmqpEndpoint, queue: str, values: Iterable[bytes], value_format: str = "json",
                   timeout_seconds: float = 60.0, batch: int = 10_000) -> int:
    """Publishes each value to `queue` (default exchange), persistent and confirmed; returns how many."""
    publisher = ConfirmingPublisher(endpoint, timeout_seconds).open()
    total = 0
    try:
        for value in values:
            publisher.publish("", queue, value, value_format)
            total += 1
            if total % batch == 0:
                publisher.wait_confirmed()
        publisher.wait_confirmed()
    finally:
        publisher.close()
    return total


def read_queue(endpoint: AmqpEndpoint, queue: str, ack: bool = True, idle_seconds: float = 1.0,
               timeout_seconds: float = 30.0, limit: Optional[int] = None) -> List[Message]:
    """The messages in `queue` now (up to `limit`), acked (or, `ack=False`, left for others: requeued when
    the connection closes). Stops once the queue's count at the start is read, or nothing came for `idle_seconds`."""
    import pika

    connection = pika.BlockingConnection(endpoint.parameters(timeout_seconds))
    try:
        channel = connection.channel()
        expected = channel.queue_declare(queue, passive=True).method.message_count
        if limit is not None:
            expected = min(expected, limit)
        if not ack:
            return _peek(channel, queue, expected)
        messages: List[Message] = []
        channel.basic_qos(prefetch_count=1_000)
        last_tag = acked = None
        for method, properties, body in channel.consume(queue, inactivity_timeout=idle_seconds):
            if method is None:
                break
            messages.append(Message(body, dict(properties.headers or {}), properties.content_type,
                                    bool(method.redelivered)))
            last_tag = method.delivery_tag
            if len(messages) % 500 == 0:
                channel.basic_ack(last_tag, multiple=True)
                acked = last_tag
            if len(messages) >= expected:
                break
        if last_tag is not None and last_tag != acked:
            channel.basic_ack(last_tag, multiple=True)
        channel.cancel()
        return messages
    finally:
        connection.close()


def _peek(channel, queue: str, expected: int) -> List[Message]:
    """Up to `expected` messages, unacked (the broker requeues them when the connection closes). One
    `basic.get` each: a consumer's window would stop a quorum queue at its credit (about 2,000)."""
    messages: List[Message] = []
    while len(messages) < expected:
        method, properties, body = channel.basic_get(queue, auto_ack=False)
        if method is None:
            break
        messages.append(Message(body, dict(properties.headers or {}), properties.content_type,
                                bool(method.redelivered)))
    return messages
