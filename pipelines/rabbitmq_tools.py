"""`paybeam rabbitmq produce` / `consume`: replay payment and settlement files into queues, print a queue."""
from __future__ import annotations

from typing import Iterator, Optional, Sequence

from pipelines.io.rabbitmq import AmqpEndpoint, declare_queue, publish_values, read_queue
from pipelines.kafka_tools import ReplayReport, collect_input_messages, collect_statement_messages, send_order
from schemas.errors import RunFailed
from schemas.records import PAYMENTS, SETTLEMENTS
from schemas.vendors import DEFAULT_VENDOR_OPTIONS, VendorOptions

# A statement message is a whole camt.053 (XML) or BAI2 (text) document, told apart by what it holds.
STATEMENT_CONTENT_TYPE = "application/octet-stream"


def replay_files_to_queues(endpoint: AmqpEndpoint, payment_patterns: Sequence[str],
                           settlement_patterns: Sequence[str], payments_queue: str, settlements_queue: str,
                           value_format: str = "json", queue_type: str = "classic", include_invalid: bool = True,
                           vendor_options: VendorOptions = DEFAULT_VENDOR_OPTIONS,
                           timeout_seconds: float = 60.0, bank_patterns: Sequence[str] = (),
                           bank_queue: str = "bank_statements") -> ReplayReport:
    """The files' records to the two queues (declared durable, `queue_type`), in event-time order, as
    `paybeam kafka produce` sends them to topics: the same values, the same invalid rows. Bank statement
    files go to `bank_queue`, one message per file (its whole document), the AMQP timestamp the end of the
    last day it reports (what `kafka produce` gives as the broker timestamp: the stream's event time)."""
    messages: list = []
    payments, rejected_payments = collect_input_messages(PAYMENTS, payment_patterns, payments_queue, value_format,
                                                         include_invalid, messages)
    settlements, rejected_settlements = collect_input_messages(
        SETTLEMENTS, settlement_patterns, settlements_queue, value_format, include_invalid, messages, vendor_options)
    statements = collect_statement_messages(bank_patterns, bank_queue, messages) if bank_patterns else 0
    ordered, _ = send_order(messages, 0.0, 0.0, 0.0, 0)
    queues = [payments_queue, settlements_queue, *([bank_queue] if bank_patterns else [])]
    try:
        for queue in queues:
            declare_queue(endpoint, queue, queue_type, timeout_seconds)
        for queue in (payments_queue, settlements_queue):
            publish_values(endpoint, queue, (message.value for message in ordered if message.topic == queue),
                           value_format, timeout_seconds)
        if bank_patterns:
            documents = [message for message in ordered if message.topic == bank_queue]
            publish_values(endpoint, bank_queue, [message.value for message in documents], value_format,
                           timeout_seconds, content_type=STATEMENT_CONTENT_TYPE,
                           timestamps_seconds=[(message.timestamp or 0) // 1000 or None for message in documents])
    except Exception as error:  # noqa: BLE001 — unreachable, refused, a queue of another type: one line, exit 1
        raise RunFailed(f"cannot publish to RabbitMQ {endpoint.redacted()}: {type(error).__name__}: {error}") from None
    return ReplayReport(payments, settlements, rejected_payments, rejected_settlements, 0,
                        invalid_sent=include_invalid and value_format == "json", bank_statements=statements)


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
