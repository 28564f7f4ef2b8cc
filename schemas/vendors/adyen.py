"""Adyen Settlement details report rows <-> canonical settlement fields.

Columns follow Adyen's settlement detail report structure (positions 1-23,
then Reserved4..Reserved10),
https://docs.adyen.com/developers/reporting/settlement-detail-report/settlement-detail-report-structure
and the sample rows on
https://docs.adyen.com/reporting/settlement-reconciliation/transaction-level/settlement-details-report .
Two optional columns an account can add to the report, ``Booking Date`` and
``Booking Date TimeZone``, are appended: when present they give the day the
line was booked into the payout batch, which is the settlement date.

Amounts are unsigned decimal MAJOR units split into debit/credit columns:
``Gross Debit (GC)``/``Gross Credit (GC)`` in the gross currency and
``Net Debit (NC)``/``Net Credit (NC)`` in the net currency. The cost columns
``Commission``, ``Markup``, ``Scheme Fees`` and ``Interchange (NC)`` are
costs (positive when Adyen takes money), so in signed terms (credit +,
debit -) ``net = gross - fee``: a Settled row is ``Gross Credit 5.00, Net
Credit 4.88`` with 0.12 of costs, a Chargeback ``Gross Debit 349.99, Net
Debit 357.49, Commission 7.50``.

Sign convention (canonical side), as for Stripe: with ``s = -1`` when the
signed gross is a debit (else ``1``), ``gross_minor = |gross|``,
``fee_minor = s * fee`` and ``net_minor = s * net``; multiplying
``net = gross - fee`` by ``s`` keeps ``net_minor = gross_minor - fee_minor``
for every consistent row. Account-level bookings (Fee, MerchantPayout, ...)
often report only a net amount; their gross is then ``net + fee`` (fee is
usually empty, so gross = net), i.e. derived from the identity, not checked.

Time: ``Creation Date`` is local wall-clock time in the zone named by
``TimeZone``. Adyen writes "CET"/"CEST" for Amsterdam time (including its
summer time), so both map to Europe/Amsterdam; anything else must be an IANA
zone name. An ambiguous wall time (the repeated hour in autumn) is read as
the first occurrence; a wall time that does not exist (the skipped hour in
spring) is rejected.

Identity: ``settlement_id`` is ``adyen:<Modification Reference>:<Type>``
(the modification reference alone is shared by e.g. a refund and its later
reversal) or, for rows without a modification reference,
``adyen:<sha1 of the row's ADYEN_COLUMNS values>[:20]``; both are stable under
re-delivery. ``processor_reference`` is ``Psp Reference``, which for refunds
and chargebacks is the ORIGINAL payment's reference, so those lines match the
ledger's payment.

Round trip: the writer puts the canonical ``settlement_id`` into
``Modification Reference``, so reading the written row yields
``adyen:<settlement_id>:<Type>``; every other field reads back unchanged.
Payout ids must look like ``batch-<Batch Number>``.
"""
from __future__ import annotations

import hashlib
import re
from datetime import timezone, tzinfo
from typing import Any, FrozenSet, Mapping, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas.money import to_major_units
from schemas.records import SettlementLine
from schemas.timestamps import TimestampError, datetime_to_millis, format_timestamp, millis_to_datetime
from schemas.vendors import (
    VendorRowError,
    _currency,
    _format_wall_clock,
    _minor_units,
    _parse_wall_clock,
    _required,
    _text,
)

PROCESSOR = "adyen"
# The writer's company account: Adyen always fills it, we have no real one.
COMPANY_ACCOUNT = "PaybeamCompany"
PAYOUT_PREFIX = "batch-"

ADYEN_COLUMNS: tuple[str, ...] = (
    "Company Account",
    "Merchant Account",
    "Psp Reference",
    "Merchant Reference",
    "Payment Method",
    "Creation Date",
    "TimeZone",
    "Type",
    "Modification Reference",
    "Gross Currency",
    "Gross Debit (GC)",
    "Gross Credit (GC)",
    "Exchange Rate",
    "Net Currency",
    "Net Debit (NC)",
    "Net Credit (NC)",
    "Commission (NC)",
    "Markup (NC)",
    "Scheme Fees (NC)",
    "Interchange (NC)",
    "Payment Method Variant",
    "Modification Merchant Reference",
    "Batch Number",
    "Reserved4",
    "Reserved5",
    "Reserved6",
    "Reserved7",
    "Reserved8",
    "Reserved9",
    "Reserved10",
    # Optional columns (added per account in the report settings).
    "Booking Date",
    "Booking Date TimeZone",
)

# Adyen documents PSP references as 16-digit numbers (a modification reference is
# the PSP reference of the modification). About one in ten passes the Luhn
# check, so they are told from card numbers by where they stand, never by
# their digits: `processor_reference` of an Adyen record, and the modification
# reference inside an Adyen `settlement_id` (adyen:<reference>:<Type>).
PSP_REFERENCE = re.compile(r"[0-9]{16}")
_SETTLEMENT_ID = re.compile(r"adyen:([0-9]{16}):[A-Za-z]+")


def psp_references_in(name: str, value: str) -> FrozenSet[str]:
    """The PSP references that canonical field `name` of an Adyen record holds in Adyen's documented form."""
    if name == "processor_reference" and PSP_REFERENCE.fullmatch(value):
        return frozenset((value,))
    match = _SETTLEMENT_ID.fullmatch(value) if name == "settlement_id" else None
    return frozenset((match.group(1),)) if match else frozenset()


def psp_references(fields: Mapping[str, Any]) -> FrozenSet[str]:
    """The PSP references of a canonical field mapping whose processor is adyen (none for other processors)."""
    processor = fields.get("processor")
    if not isinstance(processor, str) or processor.strip().lower() != PROCESSOR:
        return frozenset()
    found: FrozenSet[str] = frozenset()
    for name in ("processor_reference", "settlement_id"):
        value = fields.get(name)
        if isinstance(value, str):
            found |= psp_references_in(name, value.strip())
    return found


_FEE_COLUMNS = ("Commission (NC)", "Markup (NC)", "Scheme Fees (NC)", "Interchange (NC)")

# Every journal type Adyen documents for this report, so an unseen one fails
# loudly. Keys are lower-cased because spellings vary ("Balancetransfer").
_TYPE_RECORD_TYPES: dict[str, tuple[str, str]] = {
    name.lower(): (name, record_type)
    for name, record_type in (
        ("Settled", "CAPTURE"),
        ("Refunded", "REFUND"),
        ("Chargeback", "CHARGEBACK"),
        # Costs booked on the account rather than on one payment.
        ("Fee", "FEE"),
        ("InvoiceDeduction", "FEE"),
        ("MiscCosts", "FEE"),
        ("PaymentCost", "FEE"),
        ("AuthorisationSchemeFee", "FEE"),
        ("MerchantPayout", "PAYOUT"),
        # A payout the bank returned belongs with payouts in the totals.
        ("BankInstructionReturned", "PAYOUT"),
        # Reversals and re-debits stay out of the matched keys: the ledger has
        # one chargeback per payment, and a defended-then-lost dispute
        # (ChargebackReversed + SecondChargeback) nets out as adjustments.
        ("SecondChargeback", "ADJUSTMENT"),
        ("ChargebackReversed", "ADJUSTMENT"),
        ("ChargebackReversal", "ADJUSTMENT"),
        ("RefundedReversed", "ADJUSTMENT"),
        ("DepositCorrection", "ADJUSTMENT"),
        ("MatchedStatement", "ADJUSTMENT"),
        ("ManualCorrected", "ADJUSTMENT"),
        ("Balancetransfer", "ADJUSTMENT"),
        ("InternalCompanyPayout", "ADJUSTMENT"),
        ("EpaPaid", "ADJUSTMENT"),
        ("PaidOut", "ADJUSTMENT"),
        ("PaidOutReversed", "ADJUSTMENT"),
    )
}

_RECORD_TYPE_TYPES: dict[str, str] = {
    "CAPTURE": "Settled",
    "REFUND": "Refunded",
    "CHARGEBACK": "Chargeback",
    "FEE": "Fee",
    "ADJUSTMENT": "DepositCorrection",
    "PAYOUT": "MerchantPayout",
}
# Record types Adyen books as debits on the merchant account.
_OUTGOING = frozenset({"REFUND", "CHARGEBACK", "FEE", "PAYOUT"})
_ACCOUNT_LEVEL = frozenset({"FEE", "ADJUSTMENT", "PAYOUT"})

_ZONE_ALIASES = {"CET": "Europe/Amsterdam", "CEST": "Europe/Amsterdam"}


def _journal_type(row: Mapping[str, str]) -> tuple[str, str]:
    """(documented Type spelling, canonical record type)."""
    found = _TYPE_RECORD_TYPES.get(_required(row, "Type").lower())
    if found is None:
        raise VendorRowError("unknown Adyen Type (journal type); add a mapping before loading this report")
    return found


def _zone(name: str, column: str) -> tzinfo:
    if not name:
        raise VendorRowError(f"{column} is missing")
    key = _ZONE_ALIASES.get(name.upper(), name)
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise VendorRowError(f"{column} is not a known time zone (CET, CEST or an IANA name)") from None


def _local_millis(row: Mapping[str, str], column: str, zone_column: str, fallback_zone_column: str) -> int:
    wall = _parse_wall_clock(_required(row, column), column)
    zone = _zone(_text(row, zone_column) or _text(row, fallback_zone_column), zone_column)
    aware = wall.replace(tzinfo=zone)  # fold=0: the first of two repeated wall times
    if aware.astimezone(timezone.utc).astimezone(zone).replace(tzinfo=None) != wall:
        raise VendorRowError(f"{column} falls in a daylight-saving gap of its time zone")
    try:
        return datetime_to_millis(aware, column)
    except TimestampError:
        raise VendorRowError(f"{column} is not a valid time") from None


def _unsigned(row: Mapping[str, str], column: str, currency: str) -> Optional[int]:
    text = _text(row, column)
    if not text:
        return None
    amount = _minor_units(text, currency, column)
    if amount < 0:
        raise VendorRowError(f"{column} is negative; debits and credits are unsigned")
    return amount


def _signed(row: Mapping[str, str], debit: str, credit: str, currency: str) -> Optional[int]:
    """Credit as +, debit as -, None when neither column is filled."""
    debit_amount = _unsigned(row, debit, currency)
    credit_amount = _unsigned(row, credit, currency)
    if debit_amount is not None and credit_amount is not None:
        raise VendorRowError(f"both {debit} and {credit} are filled")
    if debit_amount is not None:
        return -debit_amount
    return credit_amount


def _currencies(row: Mapping[str, str]) -> str:
    net_currency = _currency(_text(row, "Net Currency"), "Net Currency")
    gross_text = _text(row, "Gross Currency")
    # Account-level bookings leave the gross side empty.
    if gross_text and _currency(gross_text, "Gross Currency") != net_currency:
        raise VendorRowError("Gross Currency differs from Net Currency; cross-currency settlement is not supported")
    return net_currency


def _row_digest(row: Mapping[str, str]) -> str:
    # Unit separator: cannot appear in report text, so distinct rows never
    # join to the same string.
    joined = "\x1f".join(_text(row, column) for column in ADYEN_COLUMNS)
    return hashlib.sha1(joined.encode("utf-8")).hexdigest()[:20]


def settlement_fields_from_adyen_row(row: Mapping[str, str]) -> dict:
    """Canonical settlement fields for one Settlement details report row."""
    journal_type, record_type = _journal_type(row)
    currency = _currencies(row)
    net = _signed(row, "Net Debit (NC)", "Net Credit (NC)", currency)
    if net is None:
        raise VendorRowError("Net Debit (NC) and Net Credit (NC) are both missing")
    fee = sum(_minor_units(_text(row, c), currency, c) for c in _FEE_COLUMNS if _text(row, c))
    gross = _signed(row, "Gross Debit (GC)", "Gross Credit (GC)", currency)
    if gross is None:
        gross = net + fee
    sign = -1 if gross < 0 else 1

    booked = _local_millis(row, "Creation Date", "TimeZone", "TimeZone")
    booking = booked
    if _text(row, "Booking Date"):
        booking = _local_millis(row, "Booking Date", "Booking Date TimeZone", "TimeZone")

    modification_reference = _text(row, "Modification Reference")
    batch = _text(row, "Batch Number")
    reference = _text(row, "Psp Reference") or modification_reference or batch
    if not reference:
        raise VendorRowError("Psp Reference, Modification Reference and Batch Number are all missing")
    if modification_reference:
        settlement_id = f"adyen:{modification_reference}:{journal_type}"
    else:
        settlement_id = f"adyen:{_row_digest(row)}"
    return {
        "settlement_id": settlement_id,
        "processor": PROCESSOR,
        "processor_reference": reference,
        "merchant_id": _required(row, "Merchant Account"),
        "record_type": record_type,
        "gross_minor": abs(gross),
        "fee_minor": sign * fee,
        "net_minor": sign * net,
        "currency": currency,
        "settlement_date": millis_to_datetime(booking).date().isoformat(),
        "booked_time": format_timestamp(booked),
        "payout_id": f"{PAYOUT_PREFIX}{batch}" if batch else None,
    }


def _debit_credit(amount: int, currency: str) -> tuple[str, str]:
    """(debit text, credit text) for a signed minor amount."""
    text = to_major_units(abs(amount), currency)
    return (text, "") if amount < 0 else ("", text)


def _batch_number(payout_id: Optional[str]) -> str:
    if not payout_id:
        return ""
    number = payout_id[len(PAYOUT_PREFIX):] if payout_id.startswith(PAYOUT_PREFIX) else ""
    if not number:
        raise VendorRowError("payout_id must look like 'batch-<Batch Number>' to be written as an Adyen row")
    return number


def adyen_row_from_settlement(line: SettlementLine) -> dict[str, str]:
    """A Settlement details row (every ADYEN_COLUMNS key, all text) for a line."""
    journal_type = _RECORD_TYPE_TYPES.get(line.record_type)
    if journal_type is None:
        raise VendorRowError("record_type has no Adyen journal type")
    if not line.settlement_id:
        raise VendorRowError("settlement_id is required to write an Adyen row")
    currency = _currency(line.currency, "currency")
    sign = -1 if line.record_type in _OUTGOING and line.gross_minor != 0 else 1
    account_level = line.record_type in _ACCOUNT_LEVEL
    fee = sign * line.fee_minor
    net_debit, net_credit = _debit_credit(sign * line.net_minor, currency)

    row = dict.fromkeys(ADYEN_COLUMNS, "")
    row.update(
        {
            "Company Account": COMPANY_ACCOUNT,
            "Merchant Account": line.merchant_id,
            # Account-level bookings carry no payment reference; the reader
            # then falls back to Modification Reference (= settlement_id).
            "Psp Reference": ""
            if account_level and line.processor_reference == line.settlement_id
            else line.processor_reference,
            "Creation Date": _format_wall_clock(line.booked_time),
            "TimeZone": "UTC",
            "Type": journal_type,
            "Modification Reference": line.settlement_id,
            "Net Currency": currency,
            "Net Debit (NC)": net_debit,
            "Net Credit (NC)": net_credit,
            "Commission (NC)": to_major_units(fee, currency) if fee else "",
            "Batch Number": _batch_number(line.payout_id),
            "Booking Date": f"{line.settlement_date} 00:00:00",
            "Booking Date TimeZone": "UTC",
        }
    )
    # Like Adyen, leave the gross side empty on account-level bookings when it
    # is implied (gross = net + fee); write it whenever it carries information.
    if not (account_level and line.gross_minor == line.net_minor + line.fee_minor):
        gross_debit, gross_credit = _debit_credit(sign * line.gross_minor, currency)
        row.update(
            {
                "Gross Currency": currency,
                "Gross Debit (GC)": gross_debit,
                "Gross Credit (GC)": gross_credit,
                "Exchange Rate": "1",
            }
        )
    return row
