"""Vendor settlement reports <-> canonical settlement lines (docs/DESIGN.md 3.2).

Each vendor module reads one row of a real report format (a ``Mapping`` of
column name to text, as ``csv.DictReader`` yields it) into the canonical
settlement field mapping, and writes a canonical ``SettlementLine`` back as
such a row (the data generator uses that direction to produce realistic
reports):

* ``stripe``: the itemized payout reconciliation report
  (``payout_reconciliation.itemized.5``) / balance-transaction exports.
* ``adyen``: the Settlement details report (``settlement_detail_report``).

The readers convert, they do not validate: a row whose net differs from
gross - fee is converted as reported, so the shared validator can reject it
to dead letters with everything else. A row that cannot be converted at all
raises ``VendorRowError`` whose message is the reason only, never the row's
values (the raw payload travels separately, in the dead letter).

The small helpers below are shared by both vendor modules; they are defined
before those modules are imported because the modules import them from here.
"""
from __future__ import annotations

import re
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Mapping, NamedTuple, Optional, Sequence

from schemas.money import MoneyError, normalize_currency, to_minor_units
from schemas.records import SettlementLine
from schemas.timestamps import millis_to_datetime


class VendorRowError(ValueError):
    """A vendor report row that cannot be turned into settlement fields."""


VENDORS = ("stripe", "adyen")
# A vendor row that converts but deserves a look (a Stripe reporting_category
# newer than this code) carries this extra key in its fields: the validator
# ignores unknown keys, and both engines count such records
# (`settlements.unknown_vendor_categories`, DESIGN 3.2).
WARNING_FIELD = "_vendor_warning"
UNKNOWN_CATEGORY = "unknown_vendor_category"
UNKNOWN_CATEGORY_COUNT = "unknown_vendor_categories"

# Which Stripe id a ledger keys its payments by (README, Formats): the
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


def _text(row: Mapping[str, object], column: str) -> str:
    """A cell as stripped text; csv.DictReader gives None for short rows."""
    value = row.get(column)
    return "" if value is None else str(value).strip()


def _required(row: Mapping[str, object], column: str) -> str:
    value = _text(row, column)
    if not value:
        raise VendorRowError(f"{column} is missing")
    return value


def _first_filled(row: Mapping[str, object], columns: Sequence[str]) -> str:
    for column in columns:
        value = _text(row, column)
        if value:
            return value
    return ""


def _currency(text: str, column: str) -> str:
    try:
        return normalize_currency(text)
    except MoneyError:
        raise VendorRowError(f"{column} is missing or not a known ISO-4217 currency") from None


def _minor_units(text: str, currency: str, column: str) -> int:
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


def _parse_wall_clock(text: str, column: str) -> datetime:
    """A naive 'YYYY-MM-DD HH:MM:SS[.ffffff]' time; its zone is the caller's business."""
    if not _WALL_CLOCK.fullmatch(text):
        raise VendorRowError(f"{column} is not a 'YYYY-MM-DD HH:MM:SS' time")
    normalized = text.replace("T", " ")
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in normalized else "%Y-%m-%d %H:%M:%S"
    try:
        return datetime.strptime(normalized, fmt)
    except ValueError:
        raise VendorRowError(f"{column} is not a valid calendar time") from None


def _parse_day(text: str, column: str) -> date:
    """The calendar date of a 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS' cell."""
    if _DATE.fullmatch(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise VendorRowError(f"{column} is not a valid calendar date") from None
    return _parse_wall_clock(text, column).date()


def _format_wall_clock(millis: int) -> str:
    """UTC wall-clock text as the reports write it; millis only when present so
    ordinary rows look like the vendor's, yet round trips lose nothing."""
    moment = millis_to_datetime(millis).astimezone(timezone.utc)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return text if millis % 1000 == 0 else f"{text}.{millis % 1000:03d}"


# Imported here, not at the top: both modules import the helpers above.
from schemas.vendors import adyen as _adyen  # noqa: E402
from schemas.vendors import stripe as _stripe  # noqa: E402

_READERS = {
    "stripe": _stripe.settlement_fields_from_stripe_row,
    "adyen": _adyen.settlement_fields_from_adyen_row,
}
_WRITERS = {
    "stripe": _stripe.stripe_row_from_settlement,
    "adyen": _adyen.adyen_row_from_settlement,
}
_COLUMNS = {"stripe": _stripe.STRIPE_COLUMNS, "adyen": _adyen.ADYEN_COLUMNS}
# What a dead letter's raw payload may show of a vendor row: the documented
# columns without personal data. The Adyen settlement details report documents
# none; columns a format does not document (an account's extra columns, other
# payment_metadata keys) may hold anything, so they are not shown either.
_SHOWN_COLUMNS = {"stripe": frozenset(_stripe.STRIPE_COLUMNS) - _stripe.PERSONAL_DATA_COLUMNS,
                  "adyen": frozenset(_adyen.ADYEN_COLUMNS)}


def _known_vendor(vendor: str) -> str:
    # A wrong vendor name is a configuration mistake, not a bad row: it is a
    # plain ValueError so it fails the job instead of dead-lettering every row.
    if vendor not in VENDORS:
        raise ValueError(f"unknown vendor {vendor!r}; expected one of {', '.join(VENDORS)}")
    return vendor


def detect_vendor(header: Sequence[str]) -> Optional[str]:
    """Which vendor wrote a CSV header, or None for anything else (e.g. canonical)."""
    names = {str(name).strip().lstrip("\ufeff").strip() for name in header}
    if {"balance_transaction_id", "reporting_category"} <= names:
        return "stripe"
    if {"Psp Reference", "Type"} <= names:
        return "adyen"
    return None


def settlement_fields_from_vendor_row(vendor: str, row: Mapping[str, str], position: Optional[int] = None,
                                      options: VendorOptions = DEFAULT_VENDOR_OPTIONS) -> dict:
    """Canonical settlement fields for one vendor row; raises VendorRowError.

    `position` is the row's line in its file: Adyen's account-level lines have
    no unique id of their own, so their settlement id includes it."""
    fields = _READERS[_known_vendor(vendor)](row, position, options)
    if vendor == "stripe" and _stripe.is_unknown_category(row):
        fields[WARNING_FIELD] = UNKNOWN_CATEGORY
    return fields


def has_unknown_category(fields: object) -> bool:
    """Whether decoded record fields come from a vendor row whose category this code does not know."""
    return isinstance(fields, dict) and fields.get(WARNING_FIELD) == UNKNOWN_CATEGORY


def vendor_columns(vendor: str) -> tuple[str, ...]:
    """The columns the vendor's writer emits, in the vendor's documented order."""
    return _COLUMNS[_known_vendor(vendor)]


def shown_columns(vendor: str) -> frozenset[str]:
    """The columns of a vendor row that a dead letter's raw payload may show (the others are left empty)."""
    return _SHOWN_COLUMNS[_known_vendor(vendor)]


def vendor_row_from_settlement(vendor: str, line: SettlementLine) -> dict[str, str]:
    """A vendor report row that reads back to the line (see each module for the
    one documented difference: Adyen settlement ids gain an 'adyen:' form)."""
    return _WRITERS[_known_vendor(vendor)](line)


__all__ = [
    "DEFAULT_VENDOR_OPTIONS",
    "STRIPE_LEDGER_REFERENCES",
    "UNKNOWN_CATEGORY_COUNT",
    "VENDORS",
    "VendorOptions",
    "VendorRowError",
    "has_unknown_category",
    "detect_vendor",
    "settlement_fields_from_vendor_row",
    "shown_columns",
    "vendor_columns",
    "vendor_row_from_settlement",
]
