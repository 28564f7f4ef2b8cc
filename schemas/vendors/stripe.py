"""Stripe itemized payout reconciliation rows <-> canonical settlement fields.

Report types ``payout_reconciliation.itemized.5`` and the itemized balance
change from activity report (``balance_change_from_activity.itemized.*``):
the same per-balance-transaction columns. Column names follow Stripe's
report-type reference,
https://docs.stripe.com/reports/report-types/payout-reconciliation and
https://docs.stripe.com/reports/report-types/balance ; reporting categories
follow https://docs.stripe.com/reports/reporting-categories and the
report-run API's ``reporting_category`` enum
(https://docs.stripe.com/api/reporting/report_run). Users pick a report's
columns, so columns are found by name and any optional one may be missing:
the settlement date is the first filled of ``automatic_payout_effective_at_utc``,
``automatic_payout_effective_at``, ``available_on_utc``, ``available_on``; the
booking time ``created_utc``, else ``created`` (the report run's time zone,
which Stripe defaults to UTC).

Amounts are decimal MAJOR units as text, signed from the Stripe balance's
point of view: a charge is ``gross=100.00 fee=3.20 net=96.80``, a refund
``gross=-50.00 fee=0.00 net=-50.00``, a dispute ``gross=-100.00 fee=15.00
net=-115.00``. ``fee`` is a cost (positive when Stripe takes money) and
``net = gross - fee`` in those signed terms.

Sign convention (canonical side), with ``s`` applied to Stripe's gross, fee
and net: matched kinds (charge, refund, dispute) are positive with the
record type giving the direction (``s = -1`` when the Stripe gross is
negative); account-level lines keep their direction in a signed gross: FEE
and PAYOUT count money leaving the balance as positive (``s = -1``; a fee
refund or a payout_reversal is negative and cancels what it reverses),
ADJUSTMENT keeps Stripe's sign (``s = 1``; -16.00 stays -16.00). Multiplying
Stripe's identity by ``s`` keeps ``net_minor = gross_minor - fee_minor``.
The dispute above becomes ``gross_minor=10000 fee_minor=-1500
net_minor=11500``: the fee adds to what leaves the balance. The writer
applies the same ``s``, so ``reading(writing(line)) == line`` also for lines
that are deliberately inconsistent. ``s`` is the rules table's
(``schemas/rules.py``: ``canonical_direction``, ``vendor_direction``).

Matching and attribution: ``processor_reference`` is the id the ledger keys
payments by: ``charge_id`` (``ch_...``) by default, ``payment_intent_id``
(``pi_...``) with ``VendorOptions.stripe_ledger_reference = "payment_intent"``
(``--stripe-ledger-reference``); a row without it falls back to the other,
then ``source_id``, then its own balance transaction id. ``merchant_id`` is
the ``payment_metadata[<key>]`` column (``--stripe-merchant-metadata-key``,
default ``merchant_id``), else ``connected_account_id``, else UNATTRIBUTED.
A charge, refund or dispute whose ``customer_facing_currency`` differs from
``currency`` (a EUR charge settled in USD) carries ``customer_facing_amount``
as its matched side (``matched_minor``/``matched_currency``): the ledger is
compared with it, while gross, fee and net stay in the balance currency for
the totals.

A reporting_category this module does not know (one Stripe adds later) is
read as an ADJUSTMENT with Stripe's sign, so its money reaches the totals,
and is counted as a warning (``settlements.unknown_vendor_categories``).

Personal data: the report can carry customer names, e-mails and addresses,
and a free-text ``description`` that often names the customer. The reader
never looks at those columns, the writer always leaves them empty and dead
letters never show them (``PERSONAL_DATA_COLUMNS``).
"""
from __future__ import annotations

from datetime import timezone
from typing import Any, Mapping, Optional

from schemas.money import to_major_units
from schemas.records import UNATTRIBUTED, SettlementLine
from schemas.rules import MATCHED_RECORD_TYPES, canonical_direction, vendor_direction
from schemas.timestamps import TimestampError, datetime_to_millis, format_timestamp
from schemas.vendors.common import (
    VendorRowError,
    cell_text,
    currency_cell,
    first_filled_cell,
    format_wall_clock,
    minor_units_cell,
    parse_day,
    parse_wall_clock,
    required_cell,
)

PROCESSOR = "stripe"
REPORT_TYPE = "payout_reconciliation.itemized.5"
# The report's metadata columns are templated (payment_metadata[<key>]); the
# platform stores its merchant id under this key on every PaymentIntent.
MERCHANT_METADATA_COLUMN = "payment_metadata[merchant_id]"


def _address_columns(prefix: str) -> tuple[str, ...]:
    return tuple(
        f"{prefix}_{part}" for part in ("line1", "line2", "city", "state", "postal_code", "country")
    )


STRIPE_COLUMNS: tuple[str, ...] = (
    "automatic_payout_id",
    "automatic_payout_effective_at",
    "balance_transaction_id",
    "created_utc",
    "created",
    "available_on_utc",
    "available_on",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "description",
    "customer_facing_amount",
    "customer_facing_currency",
    "regulatory_tag",
    "automatic_payout_effective_at_utc",
    "customer_id",
    "customer_email",
    "customer_name",
    "customer_description",
    *_address_columns("customer_shipping_address"),
    *_address_columns("customer_address"),
    *_address_columns("shipping_address"),
    *_address_columns("card_address"),
    "charge_id",
    "payment_intent_id",
    "charge_created_utc",
    "charge_created",
    "invoice_id",
    "invoice_number",
    "subscription_id",
    "order_id",
    "payment_method_type",
    "is_link",
    "card_brand",
    "card_funding",
    "card_country",
    "statement_descriptor",
    "dispute_reason",
    "connected_account_id",
    "connected_account_name",
    "connected_account_country",
    "connected_account_direct_charge_id",
    "destination_payment_id",
    MERCHANT_METADATA_COLUMN,
)

PERSONAL_DATA_COLUMNS: frozenset[str] = frozenset(
    (
        "description",
        "customer_id",
        "customer_email",
        "customer_name",
        "customer_description",
        *_address_columns("customer_shipping_address"),
        *_address_columns("customer_address"),
        *_address_columns("shipping_address"),
        *_address_columns("card_address"),
    )
)

# Every reporting_category Stripe documents (the reporting-categories page and
# the report-run API's reporting_category enum). Only the payment-level ones are
# matched against the ledger; the rest count in totals. A category Stripe adds
# later is read as an ADJUSTMENT (its signed amount still reaches the totals)
# and counted as a warning, never rejected: see `is_unknown_category`.
CATEGORY_RECORD_TYPES: dict[str, str] = {
    "charge": "CAPTURE",
    "refund": "REFUND",
    "dispute": "CHARGEBACK",
    # Costs Stripe books on the balance: its own fees (a fee refund is a
    # credit, i.e. a negative fee), card-network costs passed through on IC+
    # pricing, and taxes on those fees.
    "fee": "FEE",
    "network_cost": "FEE",
    "tax": "FEE",
    "payout": "PAYOUT",
    # A payout that bounced back: a credit, i.e. a negative payout that
    # cancels the one it reverses.
    "payout_reversal": "PAYOUT",
    # Balance movements with no ledger event of their own. Reversals of
    # payment-level lines are adjustments rather than negative matches, so a
    # won dispute or failed refund never cancels the original matched key.
    "other_adjustment": "ADJUSTMENT",
    "dispute_reversal": "ADJUSTMENT",
    "refund_failure": "ADJUSTMENT",
    "charge_failure": "ADJUSTMENT",
    "partial_capture_reversal": "ADJUSTMENT",
    "transfer": "ADJUSTMENT",
    "transfer_reversal": "ADJUSTMENT",
    "topup": "ADJUSTMENT",
    "topup_reversal": "ADJUSTMENT",
    "platform_earning": "ADJUSTMENT",
    "platform_earning_refund": "ADJUSTMENT",
    "connect_collection_transfer": "ADJUSTMENT",
    "connect_reserved_funds": "ADJUSTMENT",
    "risk_reserved_funds": "ADJUSTMENT",
    "unreconciled_customer_funds": "ADJUSTMENT",
    "contribution": "ADJUSTMENT",
    "climate_order_purchase": "ADJUSTMENT",
    "climate_order_refund": "ADJUSTMENT",
    "advance": "ADJUSTMENT",
    "advance_funding": "ADJUSTMENT",
    "anticipation_repayment": "ADJUSTMENT",
    "financing_paydown": "ADJUSTMENT",
    "financing_paydown_reversal": "ADJUSTMENT",
    "financing_payout": "ADJUSTMENT",
    "financing_payout_reversal": "ADJUSTMENT",
    "issuing_authorization_hold": "ADJUSTMENT",
    "issuing_authorization_release": "ADJUSTMENT",
    "issuing_dispute": "ADJUSTMENT",
    "issuing_transaction": "ADJUSTMENT",
    # Not a documented category (Stripe's is other_adjustment), but older
    # exports and hand-made files use it; kept so they read without a warning.
    "adjustment": "ADJUSTMENT",
}
UNKNOWN_CATEGORY_RECORD_TYPE = "ADJUSTMENT"

# What the writer emits per record type (Stripe's own name for a generic
# adjustment is other_adjustment).
_RECORD_TYPE_CATEGORIES: dict[str, str] = {
    "CAPTURE": "charge",
    "REFUND": "refund",
    "CHARGEBACK": "dispute",
    "FEE": "fee",
    "ADJUSTMENT": "other_adjustment",
    "PAYOUT": "payout",
}
# Where the ledger's processor_reference for the original payment can be.
_REFERENCE_COLUMNS = ("charge_id", "payment_intent_id", "source_id")
# Time columns, in the order they are used. A report's columns are chosen by
# its user, so any of them may be missing. *_utc columns are UTC by
# definition; the others are in the report run's time zone, which Stripe
# defaults to UTC, so they are read as UTC when their twin is not there.
_BOOKED_COLUMNS = ("created_utc", "created")
# The payout's arrival date is the settlement date; a line not (yet) in an
# automatic payout settles when its funds become available.
_SETTLEMENT_DATE_COLUMNS = (
    "automatic_payout_effective_at_utc",
    "automatic_payout_effective_at",
    "available_on_utc",
    "available_on",
)


def is_unknown_category(row: Mapping[str, str]) -> bool:
    """A reporting_category this module does not know (read as an adjustment, counted as a warning)."""
    category = cell_text(row, "reporting_category").lower()
    return bool(category) and category not in CATEGORY_RECORD_TYPES


def _record_type(row: Mapping[str, str]) -> str:
    category = cell_text(row, "reporting_category").lower()
    if not category:
        raise VendorRowError("reporting_category is missing")
    return CATEGORY_RECORD_TYPES.get(category, UNKNOWN_CATEGORY_RECORD_TYPE)


def _first_column(row: Mapping[str, str], columns: tuple[str, ...]) -> tuple[str, str]:
    """(column, text) of the first filled column, or a reason naming them all."""
    for column in columns:
        text = cell_text(row, column)
        if text:
            return column, text
    raise VendorRowError(f"{', '.join(columns[:-1])} and {columns[-1]} are all missing")


def _booked_millis(row: Mapping[str, str]) -> int:
    column, text = _first_column(row, _BOOKED_COLUMNS)
    wall = parse_wall_clock(text, column)
    try:
        return datetime_to_millis(wall.replace(tzinfo=timezone.utc), column)
    except TimestampError:
        raise VendorRowError(f"{column} is not a valid UTC time") from None


def _settlement_date(row: Mapping[str, str]) -> str:
    column, text = _first_column(row, _SETTLEMENT_DATE_COLUMNS)
    return parse_day(text, column).isoformat()


def _reference_columns(options: Any) -> tuple[str, ...]:
    """Where processor_reference comes from: the id the ledger keys payments by
    first (charge_id by default, payment_intent_id with
    --stripe-ledger-reference payment_intent), then the other, then source_id."""
    if getattr(options, "stripe_ledger_reference", "charge") == "payment_intent":
        return ("payment_intent_id", "charge_id", "source_id")
    return _REFERENCE_COLUMNS


def merchant_column(options: Any) -> str:
    """The templated metadata column holding the platform's merchant id (--stripe-merchant-metadata-key)."""
    return f"payment_metadata[{getattr(options, 'stripe_merchant_metadata_key', 'merchant_id')}]"


def settlement_fields_from_stripe_row(row: Mapping[str, str], position: Optional[int] = None,
                                      options: Any = None) -> dict:
    """Canonical settlement fields for one itemized Stripe row (`position` is
    unused: balance_transaction_id is unique; `options`:
    schemas.vendors.VendorOptions, the defaults when None)."""
    record_type = _record_type(row)
    currency = currency_cell(cell_text(row, "currency"), "currency")
    gross = minor_units_cell(required_cell(row, "gross"), currency, "gross")
    fee = minor_units_cell(required_cell(row, "fee"), currency, "fee")
    net = minor_units_cell(required_cell(row, "net"), currency, "net")
    sign = canonical_direction(record_type, gross)
    balance_transaction_id = required_cell(row, "balance_transaction_id")
    return {
        "settlement_id": balance_transaction_id,
        "processor": PROCESSOR,
        "processor_reference": first_filled_cell(row, _reference_columns(options)) or balance_transaction_id,
        "merchant_id": first_filled_cell(row, (merchant_column(options), "connected_account_id")) or UNATTRIBUTED,
        "record_type": record_type,
        "gross_minor": sign * gross,
        "fee_minor": sign * fee,
        "net_minor": sign * net,
        "currency": currency,
        "settlement_date": _settlement_date(row),
        "booked_time": format_timestamp(_booked_millis(row)),
        "payout_id": cell_text(row, "automatic_payout_id") or None,
        **_customer_facing_side(row, record_type, currency),
    }


def _customer_facing_side(row: Mapping[str, str], record_type: str, currency: str) -> dict:
    """The matched_* fields of a matched row charged in another currency than it settled in: a EUR charge
    settled in USD is compared with the ledger in EUR (customer_facing_amount), summed in USD."""
    text = cell_text(row, "customer_facing_currency")
    if record_type not in MATCHED_RECORD_TYPES or not text or not cell_text(row, "customer_facing_amount"):
        return {}
    facing_currency = currency_cell(text, "customer_facing_currency")
    if facing_currency == currency:
        return {}
    amount = abs(minor_units_cell(cell_text(row, "customer_facing_amount"), facing_currency, "customer_facing_amount"))
    return {"matched_minor": amount, "matched_currency": facing_currency} if amount else {}


def stripe_row_from_settlement(line: SettlementLine) -> dict[str, str]:
    """An itemized Stripe row (every STRIPE_COLUMNS key, all text) for a line."""
    category = _RECORD_TYPE_CATEGORIES.get(line.record_type)
    if category is None:
        raise VendorRowError("record_type has no Stripe reporting_category")
    if not line.settlement_id:
        raise VendorRowError("settlement_id is required to write a Stripe row")
    currency = currency_cell(line.currency, "currency")
    sign = vendor_direction(line.record_type, line.gross_minor)
    created = format_wall_clock(line.booked_time)
    settles = f"{line.settlement_date} 00:00:00"
    payout_effective = settles if line.payout_id else ""

    row = dict.fromkeys(STRIPE_COLUMNS, "")
    row.update(
        {
            "automatic_payout_id": line.payout_id or "",
            "automatic_payout_effective_at": payout_effective,
            "automatic_payout_effective_at_utc": payout_effective,
            "balance_transaction_id": line.settlement_id,
            # We request the report in UTC, so the local-time twins match.
            "created_utc": created,
            "created": created,
            "available_on_utc": settles,
            "available_on": settles,
            "currency": currency.lower(),
            "gross": to_major_units(sign * line.gross_minor, currency),
            "fee": to_major_units(sign * line.fee_minor, currency),
            "net": to_major_units(sign * line.net_minor, currency),
            "reporting_category": category,
            MERCHANT_METADATA_COLUMN: "" if line.merchant_id == UNATTRIBUTED else line.merchant_id,
        }
    )
    if line.record_type in MATCHED_RECORD_TYPES:
        row["charge_id"] = line.processor_reference
    elif line.processor_reference != line.settlement_id:
        # An account-level line tied to some other object (a payout, a
        # transfer): Stripe names that object in source_id.
        row["source_id"] = line.processor_reference
    return row
