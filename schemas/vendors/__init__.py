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

What both modules share (options, the row error, cell readers) is in
``schemas/vendors/common.py``.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

from schemas.records import SettlementLine
from schemas.vendors import adyen as _adyen
from schemas.vendors import stripe as _stripe
from schemas.vendors.common import (
    DEFAULT_VENDOR_OPTIONS,
    STRIPE_LEDGER_REFERENCES,
    UNKNOWN_CATEGORY,
    VENDORS,
    WARNING_FIELD,
    VendorOptions,
    VendorRowError,
)

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
