"""What both vendor adapters share: the options, the error a row raises, and cell readers.

A module of its own so that `schemas.vendors` can import the adapters at its top and the adapters
import these from here (no import cycle between the package and its modules).
"""
from __future__ import annotations

import re
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Mapping, NamedTuple, Sequence

from schemas.money import MoneyError, normalize_currency, to_minor_units
from schemas.timestamps import millis_to_datetime


class VendorRowError(ValueError):
    """A vendor report row that cannot be turned into settlement fields."""


VENDORS = ("stripe", "adyen")
# A vendor row that converts but deserves a look (a Stripe reporting_category
# newer than this code) carries this extra key in its fields: the validator
# ignores unknown keys, and both engines count such records
# (`settlements.unknown_vendor_categories`, schemas/rules.py; DESIGN 3.2).
WARNING_FIELD = "_vendor_warning"
UNKNOWN_CATEGORY = "unknown_vendor_category"

# Which Stripe id a ledger keys its payments by (docs/formats.md): the
# adapter emits that one as processor_reference, so the matcher needs no
# second key.
STRIPE_LEDGER_REFERENCES = ("charge", "payment_intent")


class VendorOptions(NamedTuple):
    """How an account's reports relate to its ledger (CLI: --stripe-ledger-reference,
    --stripe-merchant-metadata-key); plain values, so they travel to workers."""

    stripe_ledger_reference: str = "charge"
    stripe_merchant_metadata_key: str = "merchant_id"


DEFAULT_VENDOR_OPTIONS = VendorOptions()

# "YYYY-MM-DD HH:MM:SS" with optional fractional seconds. Reports carry no
# offset in these columns; the zone comes from the column's definition
# (Stripe *_utc) or from a companion column (Adyen TimeZone).
_WALL_CLOCK = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,6})?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def cell_text(row: Mapping[str, object], column: str) -> str:
    """A cell as stripped text; csv.DictReader gives None for short rows."""
    value = row.get(column)
    return "" if value is None else str(value).strip()


def required_cell(row: Mapping[str, object], column: str) -> str:
    value = cell_text(row, column)
    if not value:
        raise VendorRowError(f"{column} is missing")
    return value


def first_filled_cell(row: Mapping[str, object], columns: Sequence[str]) -> str:
    for column in columns:
        value = cell_text(row, column)
        if value:
            return value
    return ""


def currency_cell(text: str, column: str) -> str:
    try:
        return normalize_currency(text)
    except MoneyError:
        raise VendorRowError(f"{column} is missing or not a known ISO-4217 currency") from None


def minor_units_cell(text: str, currency: str, column: str) -> int:
    """Exact major -> minor conversion with a reason that does not echo the value."""
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation:
        raise VendorRowError(f"{column} is not a decimal number") from None
    if not value.is_finite():
        raise VendorRowError(f"{column} is not a finite number")
    try:
        return to_minor_units(text, currency)
    except MoneyError:
        # The text parsed and the currency is known, so the only failure
        # left is precision: the vendor sent sub-minor-unit digits.
        raise VendorRowError(f"{column} has more decimal places than {currency} allows") from None


def parse_wall_clock(text: str, column: str) -> datetime:
    """A naive 'YYYY-MM-DD HH:MM:SS[.ffffff]' time; its zone is the caller's business."""
    if not _WALL_CLOCK.fullmatch(text):
        raise VendorRowError(f"{column} is not a 'YYYY-MM-DD HH:MM:SS' time")
    normalized = text.replace("T", " ")
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in normalized else "%Y-%m-%d %H:%M:%S"
    try:
        return datetime.strptime(normalized, fmt)
    except ValueError:
        raise VendorRowError(f"{column} is not a valid calendar time") from None


def parse_day(text: str, column: str) -> date:
    """The calendar date of a 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS' cell."""
    if _DATE.fullmatch(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise VendorRowError(f"{column} is not a valid calendar date") from None
    return parse_wall_clock(text, column).date()


def format_wall_clock(millis: int) -> str:
    """UTC wall-clock text as the reports write it; millis only when present so
    ordinary rows look like the vendor's, yet round trips lose nothing."""
    moment = millis_to_datetime(millis).astimezone(timezone.utc)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return text if millis % 1000 == 0 else f"{text}.{millis % 1000:03d}"
