"""Queues by hand: declare one, publish a batch of values to it, read one to its end (CLI tools, tests)."""
from __future__ import annotations

from typing import Iterable, List, NamedTuple, Optional

from pipelines.io.rabbitmq._config import AmqpEndpoint
from pipelines.io.rabbitmq._publisher import ConfirmingPublisher

QUEUE_TYPES = ("classic", "quorum", "stream")  # stream: a RabbitMQ stream, read by --streams runs
DEAD_LETTERED_SUFFIX = ".dead-lettered"
_NOT_FOUND = 404
_PRECONDITION_FAILED = 406


class Message(NamedTuple):
    body: bytes
    headers: dict
    content_type: Optional[str]
    redelivered: bool
    timestamp_seconds: Optional[int] = None  # the AMQP timestamp property


def dead_lettered_queue(queue: str) -> str:
    """Where the broker dead-letters `queue`'s messages when paybeam declared it, and where runs read them back
    as part of the same input (docs/DESIGN.md 5.2, "Messages the broker dead-letters")."""
    return f"{queue}{DEAD_LETTERED_SUFFIX}"


def declare_queue(endpoint: AmqpEndpoint, queue: str, queue_type: str = "classic", timeout_seconds: float = 30.0) -> int:
    """Declares a durable queue of `queue_type` (an existing one must have that type); returns its message count.

    A new classic or quorum queue dead-letters (an expired message, one over a length limit, a quorum
    queue's delivery limit) into `<queue>.dead-lettered` (declared too) through the default exchange; an
    existing queue keeps the arguments it was declared with."""
    import pika

    if queue_type not in QUEUE_TYPES:
        raise ValueError(f"unknown queue type {queue_type!r}; choose one of {', '.join(QUEUE_TYPES)}")
    arguments = {"x-queue-type": queue_type}
    connection = pika.BlockingConnection(endpoint.parameters(timeout_seconds))
    try:
        if queue_type == "stream":  # a stream never dead-letters
            return connection.channel().queue_declare(queue, durable=True, arguments=arguments).method.message_count
        connection.channel().queue_declare(dead_lettered_queue(queue), durable=True, arguments=arguments)
        wired = dict(arguments, **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead_lettered_queue(queue)})
        try:
            return connection.channel().queue_declare(queue, durable=True, arguments=wired).method.message_count
        except pika.exceptions.ChannelClosedByBroker as error:
            if error.reply_code != _PRECONDITION_FAILED:
                raise
        # Declared before (by paybeam before it wired dead letters, or by someone else): as it is, if the type fits.
        return connection.channel().queue_declare(queue, durable=True, arguments=arguments).method.message_count
    finally:
        connection.close()


def existing_queues(endpoint: AmqpEndpoint, queues: Iterable[str], timeout_seconds: float = 30.0) -> List[str]:
    """Those of `queues` that exist on the broker now."""
    import pika

    connection = pika.BlockingConnection(endpoint.parameters(timeout_seconds))
    try:
        found = []
        for queue in queues:
            try:
                connection.channel().queue_declare(queue, passive=True)
                found.append(queue)
            except pika.exceptions.ChannelClosedByBroker as error:
                if error.reply_code != _NOT_FOUND:
                    raise
        return found
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
                   timeout_seconds: float = 60.0, batch: int = 10_000,
                   timestamps_seconds: Optional[Iterable[Optional[int]]] = None,
                   content_type: Optional[str] = None) -> int:
    """Publishes each value to `queue` (default exchange), persistent and confirmed; returns how many. With
    `timestamps_seconds` (one per value) each carries that AMQP timestamp; `content_type` overrides the
    value format's."""
    publisher = ConfirmingPublisher(endpoint, timeout_seconds).open()
    total = 0
    timestamps = iter(timestamps_seconds) if timestamps_seconds is not None else None
    try:
        for value in values:
            publisher.publish("", queue, value, value_format, timestamp_seconds=next(timestamps) if timestamps else None,
                              content_type=content_type)
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
                                    bool(method.redelivered), properties.timestamp))
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
                                bool(method.redelivered), properties.timestamp))
    return messages
