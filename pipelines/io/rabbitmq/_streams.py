"""RabbitMQ Streams for bounded catch-up runs: read from an offset, spill, store the offset after success.

A stream is an append-only log with offsets, read over the stream protocol (port 5552 by default) with
`rstream`. A bounded run's launcher reads each input stream from its start position (docs/DESIGN.md
5.2, "Streams"):

* `committed`: after the offset stored for the consumer name (`--group-id`), or from the first offset
  when none is stored; `earliest`: the first offset kept; `latest`: only what is appended from now;
  `timestamp`: the first chunk at or after `--start-time`; `offset`: `--start-offset N`;
* to the end it finds: RabbitMQ 3.10's stream protocol has no command that tells a stream's last offset
  (StreamStats came with 3.11), so the read ends once nothing has come for `idle_seconds` after the
  last message (the broker pushes a backlog as fast as the credit allows), or at `max_records`;
* into the same spill file as a held queue's (`_held.py`), read by `ReadHeldDeliveries`;
* only after the run succeeded does the launcher store, per stream, the offset of the last message it
  read (`store_offset`), so the next `committed` run starts after it. A failed run stores nothing: the
  next run reads the same messages again (nothing to requeue: a stream keeps its messages).
"""
from __future__ import annotations

import asyncio
import os
import time
import urllib.parse
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from pipelines.io.rabbitmq._config import AmqpEndpoint, describe_error
from pipelines.io.rabbitmq._consumer import Delivery
from pipelines.io.rabbitmq._held import HeldQueue, HoldFailed, SpillWriter

STREAM_STARTS = ("committed", "earliest", "latest", "timestamp", "offset")
DEFAULT_STREAM_PORT = 5552
_CREDIT = 100  # chunks the broker may push ahead of the consumer


@dataclass(frozen=True)
class StreamStart:
    """Where a stream read starts: one of STREAM_STARTS, with its offset or time when it takes one."""

    kind: str = "committed"
    offset: Optional[int] = None
    timestamp_millis: Optional[int] = None


def client_settings(endpoint: AmqpEndpoint, port: int) -> dict:
    parsed = urllib.parse.urlsplit(endpoint.url)
    vhost = urllib.parse.unquote(parsed.path[1:]) if parsed.path not in ("", "/") else "/"
    settings = {"host": parsed.hostname, "port": port, "username": urllib.parse.unquote(parsed.username or "guest"),
                "password": urllib.parse.unquote(parsed.password or "guest"), "vhost": vhost or "/"}
    if endpoint.uses_tls:
        import ssl

        context = ssl.create_default_context(cafile=endpoint.tls_ca_file)
        if endpoint.tls_cert_file:
            context.load_cert_chain(endpoint.tls_cert_file, endpoint.tls_key_file)
        settings["ssl_context"] = context
    return settings


async def offset_specification(consumer, stream: str, subscriber: str, start: StreamStart):
    """Where `start` says a subscription to `stream` begins (committed: after the offset stored for
    `subscriber`, else the first)."""
    from rstream import ConsumerOffsetSpecification, OffsetType
    from rstream.exceptions import OffsetNotFound

    if start.kind == "committed":
        try:
            return ConsumerOffsetSpecification(OffsetType.OFFSET, await consumer.query_offset(stream, subscriber) + 1)
        except OffsetNotFound:
            return ConsumerOffsetSpecification(OffsetType.FIRST, None)
    if start.kind == "earliest":
        return ConsumerOffsetSpecification(OffsetType.FIRST, None)
    if start.kind == "latest":
        return ConsumerOffsetSpecification(OffsetType.NEXT, None)
    if start.kind == "timestamp":
        return ConsumerOffsetSpecification(OffsetType.TIMESTAMP, start.timestamp_millis)
    return ConsumerOffsetSpecification(OffsetType.OFFSET, start.offset)


def read_streams(endpoint: AmqpEndpoint, port: int, reads: Sequence[Tuple[str, str, Optional[int]]], subscriber: str,
                 start: StreamStart, idle_seconds: float = 1.0, timeout_seconds: float = 60.0) -> List[HeldQueue]:
    """Reads each (stream, spill path, most records) from `start` to the end it finds, all at once; each
    HeldQueue's `last_offset` is the offset of the last message read (None: none). HoldFailed when the
    broker or a stream fails."""
    async def read_all():
        return await asyncio.gather(*(_read(endpoint, port, stream, subscriber, start, path, most, idle_seconds,
                                            timeout_seconds) for stream, path, most in reads))

    try:
        return list(asyncio.run(read_all()))
    except HoldFailed:
        raise
    except Exception as error:  # noqa: BLE001 — unreachable, refused: one line
        raise HoldFailed(f"cannot read streams {', '.join(repr(stream) for stream, _, _ in reads)} on RabbitMQ "
                         f"{endpoint.redacted()} (stream port {port}): {describe_error(error)}") from None


async def _read(endpoint, port, stream, subscriber, start, spill_path, max_records, idle_seconds, timeout_seconds):
    from rstream import Consumer, amqp_decoder

    consumer = Consumer(**client_settings(endpoint, port))
    held = HeldQueue(stream, spill_path)
    await asyncio.wait_for(consumer.start(), timeout_seconds)
    try:
        if not await consumer.stream_exists(stream):
            raise HoldFailed(f"stream {stream!r} does not exist on RabbitMQ {endpoint.redacted()}")
        specification = await offset_specification(consumer, stream, subscriber, start)
        last_message = [time.monotonic()]
        done = asyncio.Event()
        with SpillWriter(spill_path) as spill:
            async def on_message(message, context):
                if done.is_set() or (max_records is not None and held.count >= max_records):
                    done.set()
                    return
                properties = getattr(message, "properties", None)
                content_type = getattr(properties, "content_type", None) if properties else None
                if isinstance(content_type, bytes):
                    content_type = content_type.decode()
                held.count += 1
                spill.add(Delivery(held.count, bytes(message.body), content_type, None, False))
                held.last_offset = context.offset
                last_message[0] = time.monotonic()

            await consumer.subscribe(stream, on_message, decoder=amqp_decoder, offset_specification=specification,
                                     subscriber_name=subscriber, initial_credit=_CREDIT)
            while not done.is_set() and time.monotonic() - last_message[0] < idle_seconds:
                await asyncio.sleep(0.05)
            done.set()
    finally:
        await consumer.close()
    return held


def store_offset(endpoint: AmqpEndpoint, port: int, stream: str, subscriber: str, offset: int,
                 timeout_seconds: float = 60.0) -> None:
    """Stores `offset` (the last one a run read) for `subscriber` on `stream`."""
    async def store():
        from rstream import Consumer

        consumer = Consumer(**client_settings(endpoint, port))
        await asyncio.wait_for(consumer.start(), timeout_seconds)
        try:
            await consumer.store_offset(stream, subscriber, offset)
            await consumer.query_offset(stream, subscriber)  # a round trip: the store has reached the broker
        finally:
            await consumer.close()

    try:
        asyncio.run(store())
    except Exception as error:  # noqa: BLE001 — the broker gone after the run: one line
        raise HoldFailed(f"the offset of stream {stream!r} could not be stored ({describe_error(error)}); the next "
                         "run reads its messages again") from None


def spill_path(spill_dir: str, name: str) -> str:
    return os.path.join(spill_dir, f"{name}.arrows")
