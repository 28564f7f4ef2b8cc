"""Validation of authorization attempts (docs/DESIGN.md 3.6): raw field mappings into AuthorizationAttempts.

The same contract for every format and for Kafka, through the same
dead-letter path as payments and settlements (transforms/validate.py
registers `parse_authorization_attempt` for the `attempts` input).
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any, Mapping, Optional

from schemas.attempts import (
    APPROVED,
    ATTEMPT_FIELDS,
    ATTEMPT_TYPES,
    BIN_DIGITS,
    OPTIONAL_ATTEMPT_FIELDS,
    OUTCOMES,
    THREE_DS_RESULTS,
    AuthorizationAttempt,
)
from transforms.record_fields import (
    InvalidRecord,
    check_missing_columns,
    choice,
    currency_field,
    money_field,
    optional_text,
    refuse_card_numbers_in,
    required_text,
    timestamp_field,
)

# Text fields that identify something: a card number in one refuses the record.
ATTEMPT_IDENTIFIERS = ("attempt_id", "merchant_id", "card_fingerprint", "customer_id", "device_id", "decline_code",
                       "payment_id")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


def _bin(fields: Mapping[str, Any]) -> Optional[str]:
    value = optional_text(fields, "card_bin")
    if value is None:
        return None
    low, high = BIN_DIGITS
    if not (value.isascii() and value.isdigit() and low <= len(value) <= high):
        raise InvalidRecord(f"card_bin must be {low} to {high} digits (the issuer's prefix, never a card number), "
                            f"got {len(value)} characters")
    return value


def _ip(fields: Mapping[str, Any]) -> Optional[str]:
    value = optional_text(fields, "ip")
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InvalidRecord(f"ip {value[:64]!r} is not an IPv4 or IPv6 address") from None


def _country(fields: Mapping[str, Any], name: str) -> Optional[str]:
    value = optional_text(fields, name)
    if value is None:
        return None
    if not _COUNTRY.match(value.upper()):
        raise InvalidRecord(f"{name} {value[:16]!r} is not an ISO 3166-1 alpha-2 country code")
    return value.upper()


def parse_authorization_attempt(fields: Mapping[str, Any]) -> AuthorizationAttempt:
    """Validates one attempt against docs/DESIGN.md 3.6 (and refuses card numbers in identifiers)."""
    check_missing_columns(fields, ATTEMPT_FIELDS, optional=OPTIONAL_ATTEMPT_FIELDS)
    amount = money_field(fields, "amount_minor")
    if amount <= 0:
        raise InvalidRecord(f"amount_minor must be positive (the attempt_type gives the direction), got {amount}")
    outcome = choice(fields, "outcome", OUTCOMES)
    decline_code = optional_text(fields, "decline_code")
    if outcome == APPROVED and decline_code is not None:
        raise InvalidRecord("decline_code is given for an APPROVED attempt")
    three_ds = optional_text(fields, "three_ds")
    if three_ds is not None:
        three_ds = choice(fields, "three_ds", THREE_DS_RESULTS)
    return refuse_card_numbers_in(AuthorizationAttempt(
        attempt_id=required_text(fields, "attempt_id"),
        attempt_type=choice(fields, "attempt_type", ATTEMPT_TYPES),
        event_time=timestamp_field(fields, "event_time"),
        merchant_id=required_text(fields, "merchant_id"),
        amount_minor=amount,
        currency=currency_field(fields),
        card_fingerprint=required_text(fields, "card_fingerprint"),
        card_bin=_bin(fields),
        customer_id=optional_text(fields, "customer_id"),
        ip=_ip(fields),
        device_id=optional_text(fields, "device_id"),
        billing_country=_country(fields, "billing_country"),
        issuing_country=_country(fields, "issuing_country"),
        outcome=outcome,
        decline_code=decline_code,
        three_ds=three_ds,
        payment_id=optional_text(fields, "payment_id"),
    ), ATTEMPT_IDENTIFIERS)
