"""`paybeam rabbitmq produce` / `consume`: replay payment and settlement files into queues, print a queue."""
from __future__ import annotations

from typing import Iterator, Optional, Sequence

from pipelines.io.rabbitmq import AmqpEndpoint, declare_queue, publish_values, read_queue
from pipelines.kafka_tools import ReplayReport, collect_input_messages, send_order
from schemas.errors import RunFailed
from schemas.records import PAYMENTS, SETTLEMENTS
from schemas.vendors import DEFAULT_VENDOR_OPTIONS, VendorOptions


def replay_files_to_queues(endpoint: AmqpEndpoint, payment_patterns: Sequence[str],
                           settlement_patterns: Sequence[str], payments_queue: str, settlements_queue: str,
                           value_format: str = "json", queue_type: str = "classic", include_invalid: bool = True,
                           vendor_options: VendorOptions = DEFAULT_VENDOR_OPTIONS,
                           timeout_seconds: float = 60.0) -> ReplayReport:
    """The files' records to the two queues (declared durable, `queue_type`), in event-time order, as
    `paybeam kafka produce` sends them to topics: the same values, the same invalid rows."""
    messages: list = []
    payments, rejected_payments = collect_input_messages(PAYMENTS, payment_patterns, payments_queue, value_format,
                                                         include_invalid, messages)
    settlements, rejected_settlements = collect_input_messages(
        SETTLEMENTS, settlement_patterns, settlements_queue, value_format, include_invalid, messages, vendor_options)
    ordered, _ = send_order(messages, 0.0, 0.0, 0.0, 0)
    try:
        for queue in (payments_queue, settlements_queue):
            declare_queue(endpoint, queue, queue_type, timeout_seconds)
        for queue in (payments_queue, settlements_queue):
            publish_values(endpoint, queue, (message.value for message in ordered if message.topic == queue),
                           value_format, timeout_seconds)
    except Exception as error:  # noqa: BLE001 — unreachable, refused, a queue of another type: one line, exit 1
        raise RunFailed(f"cannot publish to RabbitMQ {endpoint.redacted()}: {type(error).__name__}: {error}") from None
    return ReplayReport(payments, settlements, rejected_payments, rejected_settlements, 0,
                        invalid_sent=include_invalid and value_format == "json")


def consume_queue(endpoint: AmqpEndpoint, queue: str, value_format: str = "json",
                  schema_name: str = "reconciliation_result", limit: Optional[int] = None,
                  keep: bool = False) -> Iterator[dict]:
    """The decoded messages in `queue` now (up to `limit`); taken off the queue unless `keep`."""
    from schemas.kafka_values import decode_value

    try:
        messages = read_queue(endpoint, queue, ack=not keep, limit=limit)
    except Exception as error:  # noqa: BLE001 — unreachable, no such queue: one line, exit 1
        raise RunFailed(f"cannot read queue {queue!r} on RabbitMQ {endpoint.redacted()}: "
                        f"{type(error).__name__}: {error}") from None
    for message in messages:
        yield decode_value(message.body, value_format, schema_name)
