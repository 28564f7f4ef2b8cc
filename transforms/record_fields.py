"""Field-level parsing shared by every input's validation: text, enums, money, timestamps.

Pure functions over a raw field mapping; each raises `InvalidRecord` with a
human reason, which validation turns into a dead letter (transforms/validate.py).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

from schemas.money import MoneyError, normalize_currency, parse_minor_units
from schemas.pan import find_pan_spans
from schemas.timestamps import TimestampError, parse_timestamp_millis


class InvalidRecord(ValueError):
    """A record that breaks the data contract; the message is the reason."""


# The longest free text per field, in characters once trimmed (docs/DESIGN.md 3): ids and references
# get 256 (real ones are far shorter: Stripe's are at most 255), a processor's name 64. A longer value is
# garbage or an attack on outputs and Kafka keys; it rejects its record. Enums, currencies and dates are
# checked against their fixed forms instead.
TEXT_LIMITS = {"event_id": 256, "payment_id": 256, "settlement_id": 256, "processor_reference": 256,
               "merchant_id": 256, "payout_id": 256, "processor": 64,
               "attempt_id": 256, "card_fingerprint": 256, "customer_id": 256, "device_id": 256, "decline_code": 64,
               "ip": 64}
PAN_IN_IDENTIFIER = "looks like a card number (PAN); not published"


def required_text(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidRecord(f"{name} is missing")
    if not isinstance(value, str):
        raise InvalidRecord(f"{name} must be text, got {type(value).__name__}")
    text = value.strip()
    limit = TEXT_LIMITS.get(name)
    if limit is not None and len(text) > limit:
        raise InvalidRecord(f"{name} is {len(text)} characters long, longer than {limit}")
    return text


def optional_text(fields: Mapping[str, Any], name: str) -> Optional[str]:
    value = fields.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return required_text(fields, name)


def choice(fields: Mapping[str, Any], name: str, allowed: tuple) -> str:
    value = required_text(fields, name).upper()
    if value not in allowed:
        raise InvalidRecord(f"{name} {fields[name]!r} is not one of {', '.join(allowed)}")
    return value


def check_missing_columns(fields: Mapping[str, Any], expected: tuple, optional: tuple = ()) -> None:
    missing = [name for name in expected if name not in fields and name not in optional]
    if missing:
        raise InvalidRecord(f"missing field(s): {', '.join(missing)}")


def money_field(fields: Mapping[str, Any], name: str) -> int:
    try:
        return parse_minor_units(fields.get(name), name)
    except MoneyError as error:
        raise InvalidRecord(str(error)) from None


def currency_field(fields: Mapping[str, Any]) -> str:
    try:
        return normalize_currency(fields.get("currency"))
    except MoneyError as error:
        raise InvalidRecord(str(error)) from None


def timestamp_field(fields: Mapping[str, Any], name: str) -> int:
    try:
        return parse_timestamp_millis(fields.get(name), name)
    except TimestampError as error:
        raise InvalidRecord(str(error)) from None


def refuse_card_numbers_in(record: Any, names: tuple) -> Any:
    """`record`, unless one of its text fields `names` holds a card number: a rewritten identifier would
    name the wrong thing, so the record is refused (its dead letter is masked where dead letters are made)."""
    for name in names:
        value = getattr(record, name)
        if value and find_pan_spans(value):
            raise InvalidRecord(f"{name} {PAN_IN_IDENTIFIER}")
    return record
