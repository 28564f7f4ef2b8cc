"""Topic creation, file replay and topic reading for the streaming pipeline (plain Python, used by the CLI).

`create_topics` (from `pipelines.io.kafka`) creates topics idempotently. `replay_files` turns historical
files (any format `schemas.codecs` reads, Stripe/Adyen settlement reports
included) into a Kafka stream: payments and settlement lines, each to its
topic, in event-time order, keyed by "processor|processor_reference" so all
records of a reconciliation key share a partition. It can inject
out-of-orderness and lateness, deterministically per seed, so the streaming
pipeline can be tested against the batch answer on the same records.
"""
from __future__ import annotations

import io
import logging
import random
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from confluent_kafka import KafkaException

from pipelines.io.bank_files import expand_bank_patterns
from pipelines.io.files import expand_patterns
from pipelines.io.kafka import (
    DEFAULT_BROKER_TIMEOUT_SECONDS,
    BrokerWatch,
    EndNotReached,
    KafkaToolError,
    ReadError,
    TopicNotFound,
    new_consumer,
    new_producer,
    read_to_end,
)
from schemas.bank.formats import statement_records
from schemas.codecs import detect_format, payload_json, read_records
from schemas.errors import RunFailed, UserError
from schemas.kafka_values import VALUE_FORMATS, encode_value
from schemas.records import MATCHED_SIDE_FIELDS, PAYMENTS, SETTLEMENTS, DeadLetter, RawRecord
from schemas.timestamps import TimestampError, parse_timestamp_millis
from schemas.vendors import DEFAULT_VENDOR_OPTIONS, VendorOptions
from transforms.event_time import event_time_millis
from transforms.validate import validate_raw_record

_LOG = logging.getLogger(__name__)

VALUE_SCHEMA_OF_INPUT = {PAYMENTS: "payment_event", SETTLEMENTS: "settlement_line"}
_TIME_FIELD_OF_INPUT = {PAYMENTS: "event_time", SETTLEMENTS: "booked_time"}
_ENFORCED = {"enable.idempotence": True, "acks": "all"}
_DEFAULTS = {"partitioner": "murmur2_random", "linger.ms": "20"}


# ------------------------------------------------------------------ replay


@dataclass
class ReplayReport:
    """What replay_files sent.

    payments / settlements: valid records sent to each topic. rejected_*: invalid rows
    found (decode errors or failed validation); they were also sent when `invalid_sent`
    (include_invalid with JSON values), otherwise skipped. late_injected: messages that
    were deliberately delayed by late_by_seconds.
    """

    payments: int
    settlements: int
    rejected_payments: int
    rejected_settlements: int
    late_injected: int
    invalid_sent: bool = False
    bank_statements: int = 0  # statement documents sent, one per file

    @property
    def payment_messages(self) -> int:
        return self.payments + (self.rejected_payments if self.invalid_sent else 0)

    @property
    def settlement_messages(self) -> int:
        return self.settlements + (self.rejected_settlements if self.invalid_sent else 0)


@dataclass
class KafkaMessage:
    event_time: int  # epoch millis: the payload time (invalid rows: their place in the file)
    sequence: int  # position in the read order, the tie-breaker that keeps sorting stable
    topic: str
    key: Optional[bytes]
    value: bytes
    timestamp: Optional[int] = None  # the broker timestamp to set (a statement's: it has no payload time)


def _open(path: str):
    return FileSystems.open(path, compression_type=CompressionTypes.AUTO)


def _raw_records(patterns: Sequence[str], input_name: str,
                 vendor_options: VendorOptions = DEFAULT_VENDOR_OPTIONS) -> Iterator[Tuple[str, RawRecord]]:
    for path in expand_patterns(patterns):
        fmt = detect_format(path)
        with _open(path) as handle:
            for raw in read_records(handle, path, fmt, input_name, vendor_options):
                yield fmt, raw


def _invalid_key(fields: Optional[Mapping[str, Any]]) -> Optional[bytes]:
    if not fields:
        return None
    processor, reference = fields.get("processor"), fields.get("processor_reference")
    if isinstance(processor, str) and isinstance(reference, str) and processor.strip() and reference.strip():
        return f"{processor.strip().lower()}|{reference.strip()}".encode("utf-8")
    return None


def _invalid_value(fmt: str, raw: RawRecord) -> bytes:
    """The JSON message of an invalid row, chosen so the stream pipeline dead-letters it like batch does.

    JSON Lines rows and rows that could not be decoded go as their raw payload text. A row
    that decoded but failed validation in another format (a CSV line, an Avro record) goes
    as its fields in JSON, so the stream's validation rejects it with the same reason.
    """
    if fmt == "jsonl" or raw.fields is None:
        return raw.raw_payload.encode("utf-8")
    return payload_json(raw.fields).encode("utf-8")


def _message_fields(record) -> dict:
    """A valid record's fields for its message: a settlement line's optional matched side only when it has one
    (an Avro value without it takes the schema's null default, DESIGN 3.2)."""
    fields = record._asdict()
    for name in MATCHED_SIDE_FIELDS:
        if fields.get(name, 0) is None:
            del fields[name]
    return fields


def collect_input_messages(input_name: str, patterns: Sequence[str], topic: str, value_format: str, include_invalid: bool,
             messages: List[KafkaMessage], vendor_options: VendorOptions = DEFAULT_VENDOR_OPTIONS) -> Tuple[int, int]:
    """Reads one input's files into `messages`; returns (valid, rejected) counts."""
    schema = VALUE_SCHEMA_OF_INPUT[input_name]
    time_field = _TIME_FIELD_OF_INPUT[input_name]
    send_invalid = include_invalid and value_format == "json"
    valid = rejected = 0
    last_time = 0  # an invalid row without a usable time keeps its place after the previous row
    for fmt, raw in _raw_records(patterns, input_name, vendor_options):
        outcome = validate_raw_record(raw)
        if not isinstance(outcome, DeadLetter):
            last_time = event_time_millis(outcome)
            key = f"{outcome.processor}|{outcome.processor_reference}".encode("utf-8")
            value = encode_value(_message_fields(outcome), value_format, schema)
            messages.append(KafkaMessage(last_time, len(messages), topic, key, value))
            valid += 1
            continue
        rejected += 1
        if not send_invalid:
            continue
        time = last_time
        if raw.fields is not None:
            try:
                time = parse_timestamp_millis(raw.fields.get(time_field), time_field)
            except TimestampError:
                pass
        messages.append(KafkaMessage(time, len(messages), topic, _invalid_key(raw.fields), _invalid_value(fmt, raw)))
    return valid, rejected


def send_order(messages: Sequence[KafkaMessage], shuffle_window_seconds: float, late_fraction: float,
               late_by_seconds: float, seed: int) -> Tuple[List[KafkaMessage], int]:
    """The messages in send order and the number made late (deterministic per seed).

    Event-time order, then: each message's sort time gets uniform(0, window) added, which
    permutes messages within about a window of each other; a `late_fraction` sample gets
    `late_by_seconds` added, so it is sent after the records up to that much later.
    """
    ordered = sorted(messages, key=lambda m: (m.event_time, m.sequence))
    if shuffle_window_seconds <= 0 and late_fraction <= 0:
        return ordered, 0
    rng = random.Random(seed)
    window_ms = max(0.0, shuffle_window_seconds) * 1000.0
    sort_times = [m.event_time + (rng.uniform(0.0, window_ms) if window_ms else 0.0) for m in ordered]
    late_count = 0
    if late_fraction > 0 and late_by_seconds > 0 and ordered:
        late_count = min(len(ordered), round(late_fraction * len(ordered)))
        for index in rng.sample(range(len(ordered)), late_count):
            sort_times[index] += late_by_seconds * 1000.0
    order = sorted(range(len(ordered)), key=lambda i: (sort_times[i], i))
    return [ordered[i] for i in order], late_count


def _producer_config(bootstrap_servers: str, producer_config: Mapping[str, str]) -> Dict[str, Any]:
    for name, value in _ENFORCED.items():
        given = producer_config.get(name)
        if given is not None and str(given).lower() not in (str(value).lower(), "-1" if name == "acks" else ""):
            raise ValueError(f"producer_config may not override {name} (replay requires {value})")
    return {**_DEFAULTS, **dict(producer_config), **_ENFORCED, "bootstrap.servers": bootstrap_servers}


def produce_in_order(bootstrap_servers: str, messages: Sequence[KafkaMessage],
                     producer_config: Mapping[str, str] = {},
                     broker_timeout: float = DEFAULT_BROKER_TIMEOUT_SECONDS) -> int:
    """Sends the messages in the given order with an idempotent producer; raises unless all are acknowledged.

    Idempotence keeps the order within each partition equal to the send order, retries included.
    A message not acknowledged within `broker_timeout` seconds fails (message.timeout.ms), so a
    dead broker ends the replay in bounded time with one KafkaToolError.
    """
    from confluent_kafka import KafkaError

    if not messages:
        return 0
    _LOG.info("replay producer: bootstrap=%s producer_config keys: %s", bootstrap_servers,
              ", ".join(sorted(producer_config)) or "none")
    watch = BrokerWatch(bootstrap_servers, broker_timeout)
    producer = new_producer({"message.timeout.ms": str(int(broker_timeout * 1000)),
                             **_producer_config(bootstrap_servers, producer_config), **watch.client_settings()})
    errors: List[str] = []
    failed = delivered = timed_out = 0

    def on_delivery(error, message) -> None:
        nonlocal failed, delivered, timed_out
        if error is None:
            delivered += 1
            return
        failed += 1
        timed_out += error.code() == KafkaError._MSG_TIMED_OUT
        if len(errors) < 10:
            errors.append(f"{message.topic()}[{message.partition()}]: {error}")

    for index, message in enumerate(messages):
        while True:
            try:
                producer.produce(message.topic, value=message.value, key=message.key, on_delivery=on_delivery,
                                 **({"timestamp": message.timestamp} if message.timestamp is not None else {}))
                break
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.5)
        if index % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(broker_timeout + 10.0)
    if failed and timed_out == failed and not delivered:
        raise KafkaToolError(f"{watch.unavailable()}: none of {len(messages)} messages was acknowledged")
    if remaining or failed or delivered != len(messages):
        raise KafkaToolError(
            f"replay: {len(messages)} sent, {delivered} delivered, {failed} failed, {remaining} unflushed"
            + (f"; first errors: {'; '.join(errors)}" if errors else ""))
    return delivered


def collect_statement_messages(patterns: Sequence[str], topic: str, messages: List[KafkaMessage]) -> int:
    """Each bank statement file as one message (its whole document, as banks deliver files), timed at the end
    of the latest day it reports (its entries' booking and value days), so a replay sends it after that day's
    payments; the same time is its broker timestamp, which the stream reads as its event time."""
    paths = expand_bank_patterns(patterns)
    for path in paths:
        with _open(path) as handle:
            document = handle.read()
        days = [day for record in statement_records(io.BytesIO(document), path) if record.fields
                for day in (record.fields.get("booking_date"), record.fields.get("value_date")) if day]
        time = _end_of_day_millis(max(days)) if days else 0
        messages.append(KafkaMessage(time, len(messages), topic, None, document, timestamp=time or None))
    return len(paths)


def _end_of_day_millis(day: str) -> int:
    return parse_timestamp_millis(f"{day}T00:00:00Z") + 86_400_000


def replay_files(bootstrap_servers: str, payment_patterns: Sequence[str], settlement_patterns: Sequence[str],
                 payments_topic: str, settlements_topic: str, value_format: str = "json",
                 shuffle_window_seconds: float = 0.0, late_fraction: float = 0.0, late_by_seconds: float = 0.0,
                 seed: int = 7, include_invalid: bool = True,
                 producer_config: Mapping[str, str] = {},
                 vendor_options: VendorOptions = DEFAULT_VENDOR_OPTIONS,
                 broker_timeout: float = DEFAULT_BROKER_TIMEOUT_SECONDS,
                 bank_patterns: Sequence[str] = (), bank_topic: str = "bank_statements") -> ReplayReport:
    """Sends the records of the files to the two topics in event-time order (see the module doc).

    Payments and settlement lines are merged on one event-time line (payments at event_time,
    settlement lines at booked_time), so both topics advance together. Valid records are
    re-encoded with `encode_value` (same bytes as the stream's own schema); invalid rows are
    sent too when include_invalid and the format is JSON, else skipped (and counted).
    """
    if value_format not in VALUE_FORMATS:
        raise ValueError(f"unknown value format {value_format!r}; choose one of {', '.join(VALUE_FORMATS)}")
    if shuffle_window_seconds < 0 or late_by_seconds < 0:
        raise ValueError("shuffle_window_seconds and late_by_seconds must not be negative")
    if not 0.0 <= late_fraction <= 1.0:
        raise ValueError("late_fraction must be between 0 and 1")
    messages: List[KafkaMessage] = []
    payments, rejected_payments = (
        collect_input_messages(PAYMENTS, payment_patterns, payments_topic, value_format, include_invalid, messages)
        if payment_patterns else (0, 0))
    settlements, rejected_settlements = (
        collect_input_messages(SETTLEMENTS, settlement_patterns, settlements_topic, value_format, include_invalid, messages,
                 vendor_options)
        if settlement_patterns else (0, 0))
    statements = collect_statement_messages(bank_patterns, bank_topic, messages) if bank_patterns else 0
    ordered, late = send_order(messages, shuffle_window_seconds, late_fraction, late_by_seconds, seed)
    produce_in_order(bootstrap_servers, ordered, producer_config, broker_timeout)
    return ReplayReport(payments, settlements, rejected_payments, rejected_settlements, late,
                        invalid_sent=include_invalid and value_format == "json", bank_statements=statements)


class TopicUnreadable(UserError):
    """`paybeam kafka consume` of a topic that does not exist or cannot be read to its end (exit 2)."""


def consume_topic(bootstrap_servers: str, topic: str, value_format: str = "json",
                  schema_name: str = "reconciliation_result", limit: Optional[int] = None,
                  timeout_seconds: float = 30.0, consumer_config: Mapping[str, str] = {}) -> Iterator[dict]:
    """Decoded messages of a topic from the beginning until every partition is exhausted (or `limit`).

    Reads with `assign` (no group, nothing committed): a look at what a topic holds now.
    """
    from schemas.kafka_values import decode_value

    consumer = new_consumer({**dict(consumer_config), "bootstrap.servers": bootstrap_servers,
                             "group.id": "paybeam-consume", "enable.auto.commit": False,
                             "enable.partition.eof": True,
                             **BrokerWatch(bootstrap_servers, timeout_seconds).client_settings()})
    try:
        try:
            messages = read_to_end(consumer, topic, timeout_seconds, metadata_timeout=10)
        except TopicNotFound:
            raise TopicUnreadable(f"topic {topic!r} does not exist") from None
        seen = 0
        while limit is None or seen < limit:
            try:
                message = next(messages, None)
            except EndNotReached:
                raise TopicUnreadable(f"topic {topic!r}: partitions not exhausted within {timeout_seconds}s") from None
            except ReadError as failure:
                raise TopicUnreadable(f"consumer error: {failure.error}") from None
            if message is None:
                return
            seen += 1
            yield decode_value(message.value, value_format, schema_name)
    except KafkaException as error:  # e.g. no broker answering: the environment, one line
        raise RunFailed(f"cannot read {topic!r}: {error.args[0].str() if error.args else error}") from None
    finally:
        consumer.close()
