"""Parse + validate: raw field mappings into typed records, or dead letters.

The same rules for every format and for Kafka, because every reader yields
`RawRecord`s. The pure functions raise `InvalidRecord` with a human reason;
`ParseAndValidate` routes failures to a dead-letter output with the reason,
the stage and the raw payload, so nothing is dropped silently.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, Optional, Union

import apache_beam as beam
from apache_beam import pvalue

from schemas.money import MoneyError, normalize_currency, parse_minor_units
from schemas.records import (
    EVENT_TYPES,
    PAYMENT_FIELDS,
    PAYMENTS,
    RECORD_TYPES,
    SETTLEMENT_FIELDS,
    SETTLEMENTS,
    DeadLetter,
    PaymentEvent,
    RawRecord,
    SettlementLine,
)
from schemas.timestamps import TimestampError, parse_date, parse_timestamp_millis

DEAD_LETTERS = "dead_letters"
STAGE_DECODE = "decode"
STAGE_VALIDATE = "validate"


class InvalidRecord(ValueError):
    """A record that breaks the data contract; the message is the reason."""


def _required_text(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidRecord(f"{name} is missing")
    if not isinstance(value, str):
        raise InvalidRecord(f"{name} must be text, got {type(value).__name__}")
    return value.strip()


def _optional_text(fields: Mapping[str, Any], name: str) -> Optional[str]:
    value = fields.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _required_text(fields, name)


def _choice(fields: Mapping[str, Any], name: str, allowed: tuple) -> str:
    value = _required_text(fields, name).upper()
    if value not in allowed:
        raise InvalidRecord(f"{name} {fields[name]!r} is not one of {', '.join(allowed)}")
    return value


def _check_missing_columns(fields: Mapping[str, Any], expected: tuple, optional: tuple = ()) -> None:
    missing = [name for name in expected if name not in fields and name not in optional]
    if missing:
        raise InvalidRecord(f"missing field(s): {', '.join(missing)}")


def _money(fields: Mapping[str, Any], name: str) -> int:
    try:
        return parse_minor_units(fields.get(name), name)
    except MoneyError as error:
        raise InvalidRecord(str(error)) from None


def _currency(fields: Mapping[str, Any]) -> str:
    try:
        return normalize_currency(fields.get("currency"))
    except MoneyError as error:
        raise InvalidRecord(str(error)) from None


def _timestamp(fields: Mapping[str, Any], name: str) -> int:
    try:
        return parse_timestamp_millis(fields.get(name), name)
    except TimestampError as error:
        raise InvalidRecord(str(error)) from None


def parse_payment_event(fields: Mapping[str, Any]) -> PaymentEvent:
    """Validates one ledger event against docs/DESIGN.md 3.1."""
    _check_missing_columns(fields, PAYMENT_FIELDS)
    amount = _money(fields, "amount_minor")
    if amount <= 0:
        raise InvalidRecord(f"amount_minor must be positive (the event_type gives the direction), got {amount}")
    return PaymentEvent(
        event_id=_required_text(fields, "event_id"),
        payment_id=_required_text(fields, "payment_id"),
        event_type=_choice(fields, "event_type", EVENT_TYPES),
        processor=_required_text(fields, "processor").lower(),
        processor_reference=_required_text(fields, "processor_reference"),
        merchant_id=_required_text(fields, "merchant_id"),
        amount_minor=amount,
        currency=_currency(fields),
        event_time=_timestamp(fields, "event_time"),
    )


def parse_settlement_line(fields: Mapping[str, Any]) -> SettlementLine:
    """Validates one settlement line against docs/DESIGN.md 3.2 (incl. net = gross - fee)."""
    _check_missing_columns(fields, SETTLEMENT_FIELDS, optional=("payout_id",))
    gross = _money(fields, "gross_minor")
    fee = _money(fields, "fee_minor")
    net = _money(fields, "net_minor")
    if gross <= 0:
        raise InvalidRecord(f"gross_minor must be positive (the record_type gives the direction), got {gross}")
    if net != gross - fee:
        raise InvalidRecord(f"net_minor {net} != gross_minor {gross} - fee_minor {fee}")
    try:
        settlement_date = parse_date(fields.get("settlement_date"), "settlement_date").isoformat()
    except TimestampError as error:
        raise InvalidRecord(str(error)) from None
    return SettlementLine(
        settlement_id=_required_text(fields, "settlement_id"),
        processor=_required_text(fields, "processor").lower(),
        processor_reference=_required_text(fields, "processor_reference"),
        merchant_id=_required_text(fields, "merchant_id"),
        record_type=_choice(fields, "record_type", RECORD_TYPES),
        gross_minor=gross,
        fee_minor=fee,
        net_minor=net,
        currency=_currency(fields),
        settlement_date=settlement_date,
        booked_time=_timestamp(fields, "booked_time"),
        payout_id=_optional_text(fields, "payout_id"),
    )


PARSERS: dict[str, Callable[[Mapping[str, Any]], Union[PaymentEvent, SettlementLine]]] = {
    PAYMENTS: parse_payment_event,
    SETTLEMENTS: parse_settlement_line,
}


def validate_raw_record(raw: RawRecord) -> Union[PaymentEvent, SettlementLine, DeadLetter]:
    """A typed record, or the dead letter that explains why there is none."""
    if raw.decode_error is not None or raw.fields is None:
        return DeadLetter(raw.input, raw.source, STAGE_DECODE, raw.decode_error or "no fields", raw.raw_payload)
    try:
        return PARSERS[raw.input](raw.fields)
    except InvalidRecord as error:
        return DeadLetter(raw.input, raw.source, STAGE_VALIDATE, str(error), raw.raw_payload)


def _route(raw: RawRecord) -> Iterator[Any]:
    outcome = validate_raw_record(raw)
    if isinstance(outcome, DeadLetter):
        yield pvalue.TaggedOutput(DEAD_LETTERS, outcome)
    else:
        yield outcome


class ParseAndValidate(beam.PTransform):
    """RawRecords of one input -> typed records (main) and DeadLetters (`dead_letters`)."""

    def __init__(self, input_name: str):
        super().__init__()
        if input_name not in PARSERS:
            raise ValueError(f"unknown input {input_name!r}")
        self._record_type = PaymentEvent if input_name == PAYMENTS else SettlementLine

    def expand(self, raw_records):
        outputs = raw_records | "Validate" >> beam.FlatMap(_route).with_outputs(DEAD_LETTERS, main="valid")
        outputs.valid.element_type = self._record_type
        outputs[DEAD_LETTERS].element_type = DeadLetter
        return outputs
