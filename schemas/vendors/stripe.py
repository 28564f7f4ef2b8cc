"""Stripe itemized payout reconciliation rows <-> canonical settlement fields.

Report type ``payout_reconciliation.itemized.5`` (the same per-balance-
transaction columns as the balance-transaction exports). Column names and
order follow Stripe's report-type reference,
https://docs.stripe.com/reports/report-types/payout-reconciliation .

Amounts are decimal MAJOR units as text, signed from the Stripe balance's
point of view: a charge is ``gross=100.00 fee=3.20 net=96.80``, a refund
``gross=-50.00 fee=0.00 net=-50.00``, a dispute ``gross=-100.00 fee=15.00
net=-115.00``. ``fee`` is a cost (positive when Stripe takes money) and
``net = gross - fee`` in those signed terms.

Sign convention (canonical side): ``gross_minor`` is always positive and the
record type carries the direction. With ``s = -1`` when the Stripe gross is
negative (else ``1``):

    gross_minor = |gross|,  fee_minor = s * fee,  net_minor = s * net

Multiplying Stripe's own identity ``net = gross - fee`` by ``s`` gives
``net_minor = gross_minor - fee_minor``, so an internally consistent Stripe
row is always a consistent canonical line. The dispute above becomes
``gross_minor=10000 fee_minor=-1500 net_minor=11500``: the fee adds to what
leaves the balance, which is what a negative canonical fee means on an
outgoing line. The writer applies the same ``s`` (negative for REFUND,
CHARGEBACK, FEE and PAYOUT; positive when gross is zero, so the sign of the
fee survives the round trip), so ``reading(writing(line)) == line`` also for
lines that are deliberately inconsistent.

Personal data: the report can carry customer names, e-mails and addresses,
and a free-text ``description`` that often names the customer. The reader
never looks at those columns, the writer always leaves them empty and dead
letters never show them (``PERSONAL_DATA_COLUMNS``).
"""
from __future__ import annotations

from datetime import timezone
from typing import Mapping

from schemas.money import to_major_units
from schemas.records import SettlementLine
from schemas.timestamps import TimestampError, datetime_to_millis, format_timestamp
from schemas.vendors import (
    VendorRowError,
    _currency,
    _first_filled,
    _format_wall_clock,
    _minor_units,
    _parse_day,
    _parse_wall_clock,
    _required,
    _text,
)

PROCESSOR = "stripe"
REPORT_TYPE = "payout_reconciliation.itemized.5"
# The report's metadata columns are templated (payment_metadata[<key>]); the
# platform stores its merchant id under this key on every PaymentIntent.
MERCHANT_METADATA_COLUMN = "payment_metadata[merchant_id]"
UNATTRIBUTED = "UNATTRIBUTED"


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

# Every reporting_category Stripe documents for reports, so that a category we
# have never seen fails loudly instead of being filed under a guess. Only the
# payment-level ones are matched against the ledger; the rest count in totals.
_CATEGORY_RECORD_TYPES: dict[str, str] = {
    "charge": "CAPTURE",
    "refund": "REFUND",
    "dispute": "CHARGEBACK",
    # Costs Stripe books on the balance: its own fees, card-network costs
    # passed through on IC+ pricing, and taxes on those fees.
    "fee": "FEE",
    "network_cost": "FEE",
    "tax": "FEE",
    "payout": "PAYOUT",
    # A payout that bounced back; it belongs with payouts in the totals.
    "payout_reversal": "PAYOUT",
    # Balance movements with no ledger event of their own. Reversals of
    # payment-level lines are adjustments rather than negative matches, so a
    # won dispute or failed refund never cancels the original matched key.
    "adjustment": "ADJUSTMENT",
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
    "contribution": "ADJUSTMENT",
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
}

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
# Record types whose money leaves the Stripe balance (negative gross).
_OUTGOING = frozenset({"REFUND", "CHARGEBACK", "FEE", "PAYOUT"})
_PAYMENT_LEVEL = frozenset({"CAPTURE", "REFUND", "CHARGEBACK"})
# Where the ledger's processor_reference for the original payment can be.
_REFERENCE_COLUMNS = ("charge_id", "payment_intent_id", "source_id")


def _record_type(row: Mapping[str, str]) -> str:
    category = _text(row, "reporting_category").lower()
    if not category:
        raise VendorRowError("reporting_category is missing")
    record_type = _CATEGORY_RECORD_TYPES.get(category)
    if record_type is None:
        raise VendorRowError("unknown Stripe reporting_category; add a mapping before loading this report")
    return record_type


def _utc_millis(row: Mapping[str, str], column: str) -> int:
    # Stripe's *_utc columns are UTC by definition and carry no offset.
    wall = _parse_wall_clock(_required(row, column), column)
    try:
        return datetime_to_millis(wall.replace(tzinfo=timezone.utc), column)
    except TimestampError:
        raise VendorRowError(f"{column} is not a valid UTC time") from None


def _settlement_date(row: Mapping[str, str]) -> str:
    # The payout's arrival date is the settlement date; a line not (yet) in an
    # automatic payout settles when its funds become available.
    for column in ("automatic_payout_effective_at", "available_on_utc"):
        text = _text(row, column)
        if text:
            return _parse_day(text, column).isoformat()
    raise VendorRowError("automatic_payout_effective_at and available_on_utc are both missing")


def settlement_fields_from_stripe_row(row: Mapping[str, str]) -> dict:
    """Canonical settlement fields for one itemized Stripe row."""
    record_type = _record_type(row)
    currency = _currency(_text(row, "currency"), "currency")
    gross = _minor_units(_required(row, "gross"), currency, "gross")
    fee = _minor_units(_required(row, "fee"), currency, "fee")
    net = _minor_units(_required(row, "net"), currency, "net")
    sign = -1 if gross < 0 else 1
    balance_transaction_id = _required(row, "balance_transaction_id")
    booked = _utc_millis(row, "created_utc")
    return {
        "settlement_id": balance_transaction_id,
        "processor": PROCESSOR,
        "processor_reference": _first_filled(row, _REFERENCE_COLUMNS) or balance_transaction_id,
        "merchant_id": _first_filled(row, (MERCHANT_METADATA_COLUMN, "connected_account_id")) or UNATTRIBUTED,
        "record_type": record_type,
        "gross_minor": abs(gross),
        "fee_minor": sign * fee,
        "net_minor": sign * net,
        "currency": currency,
        "settlement_date": _settlement_date(row),
        "booked_time": format_timestamp(booked),
        "payout_id": _text(row, "automatic_payout_id") or None,
    }


def stripe_row_from_settlement(line: SettlementLine) -> dict[str, str]:
    """An itemized Stripe row (every STRIPE_COLUMNS key, all text) for a line."""
    category = _RECORD_TYPE_CATEGORIES.get(line.record_type)
    if category is None:
        raise VendorRowError("record_type has no Stripe reporting_category")
    if not line.settlement_id:
        raise VendorRowError("settlement_id is required to write a Stripe row")
    currency = _currency(line.currency, "currency")
    sign = -1 if line.record_type in _OUTGOING and line.gross_minor != 0 else 1
    created = _format_wall_clock(line.booked_time)
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
    if line.record_type in _PAYMENT_LEVEL:
        row["charge_id"] = line.processor_reference
    elif line.processor_reference != line.settlement_id:
        # An account-level line tied to some other object (a payout, a
        # transfer): Stripe names that object in source_id.
        row["source_id"] = line.processor_reference
    return row
