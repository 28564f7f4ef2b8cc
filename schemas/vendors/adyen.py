"""Adyen Settlement details report rows <-> canonical settlement fields.

Columns follow Adyen's settlement detail report structure (positions 1-23,
then Reserved4..Reserved10),
https://docs.adyen.com/developers/reporting/settlement-detail-report/settlement-detail-report-structure
its journal types (the ``Type`` column),
https://docs.adyen.com/developers/reporting/settlement-detail-report/settlement-detail-report-structure/journal-types
the deposit correction line,
https://docs.adyen.com/developers/reporting/settlement-detail-report/settlement-detail-report-deposit-correction-line
and the sample rows on
https://docs.adyen.com/reporting/settlement-reconciliation/transaction-level/settlement-details-report .
Two optional columns an account can add to the report, ``Booking Date`` and
``Booking Date TimeZone``, are appended: when present they give the day the
line was booked into the payout batch, which is the settlement date. Columns
are found by name, so reordered, extra and missing optional columns are fine.

Amounts are unsigned decimal MAJOR units split into debit/credit columns:
``Gross Debit (GC)``/``Gross Credit (GC)`` in the gross currency and
``Net Debit (NC)``/``Net Credit (NC)`` in the net currency; a line may fill
both (credit - debit: a DepositCorrection of debit 5.00 and credit 3.00 is
-2.00). The cost columns ``Commission``, ``Markup``, ``Scheme Fees`` and
``Interchange (NC)`` are costs (positive when Adyen takes money), so in
signed terms (credit +, debit -) ``net = gross - fee``: a Settled row is
``Gross Credit 5.00, Net Credit 4.88`` with 0.12 of costs, a Chargeback
``Gross Debit 349.99, Net Debit 357.49, Commission 7.50``.

Currencies: a line is in the net currency (what the account was credited or
debited; what the daily totals sum) with ``gross = net + fee`` there when
the gross side is in another currency, every amount read from the row. The
gross side is the ledger's (the currency the shopper paid in): when it is in
another currency (iDEAL EUR paid out in USD) a matched line carries it as
``matched_minor``/``matched_currency``, and the matcher compares the ledger
with it (DESIGN 3.2). ``Exchange Rate`` is not needed for either.
Account-level bookings (Fee, MerchantPayout, ...) often report only a net
amount; their gross is then ``net + fee`` (fee is usually empty, so gross =
net).

Sign convention (canonical side), with ``s`` applied to Adyen's signed
(credit +) gross, fee and net: matched kinds (Settled, Refunded, Chargeback)
are positive with the record type giving the direction (``s = -1`` for a
debit); account-level lines keep their direction in a signed gross: FEE and
PAYOUT lines count a debit as positive (``s = -1``; a credited invoice or a
returned payout is negative), ADJUSTMENT lines a credit (``s = 1``; a
withheld deposit or a SecondChargeback is negative). ``net_minor =
gross_minor - fee_minor`` holds for every consistent row. Every documented
Type and its kind are in ``TYPE_RECORD_TYPES``, the sign of each kind in
``schemas/rules.py`` (``canonical_direction``, shared with Stripe), all tested.

Time: ``Creation Date`` is local wall-clock time in the zone ``TimeZone``
names. Adyen writes abbreviations (the structure page lists e.g. BST, CET,
CEST; US accounts write PST/PDT), and an abbreviation names a fixed UTC
offset, not a zone: CET is UTC+01:00 also in July (CEST is the summer one).
``_ABBREVIATION_OFFSETS`` lists them; ``UTC+hh:mm``/``GMT+hh:mm`` and IANA
names (with their own daylight-saving rules: an ambiguous wall time is read
as the first occurrence, one in a spring gap is rejected) are accepted too.

Identity: a payment-level line (it has a ``Psp Reference``) is identified by
its ``Modification Reference``, the PSP reference of the modification, its
Type (the modification reference alone is shared by e.g. a refund and its
later reversal) and its values, since Adyen's published sample reuses
placeholder references: ``settlement_id = adyen:<Modification
Reference>:<Type>:<digest>``. Account-level lines have no PSP reference and
reuse texts such as "Deposit Correction" or "Transaction Fees January 2024"
in every batch, so their id is ``adyen:<Type>:<Batch Number>:<digest>``
with the row's line in the file in the digest: a later batch's line is a
new line, the same file delivered again is a re-delivery. ``<digest>`` is
the sha1 of the 23 standard columns' values (not the Reserved or Booking
Date ones)[:20], written in the letters a-p so that it never holds digits. ``processor_reference`` is ``Psp
Reference``, which for refunds and chargebacks is the ORIGINAL payment's
reference, so those lines match the ledger's payment.

Round trip: the writer puts the canonical ``settlement_id`` into
``Modification Reference``, so reading the written row yields
``adyen:<settlement_id>:<Type>:<digest>`` (or the account-level form when the
line has no payment reference); every other field reads back unchanged.
Payout ids must look like ``batch-<Batch Number>``.
"""
from __future__ import annotations

import hashlib
import re
from datetime import timedelta, timezone, tzinfo
from typing import Any, FrozenSet, Mapping, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas.money import to_major_units
from schemas.records import SettlementLine
from schemas.rules import MATCHED_RECORD_TYPES, SIGNED_RECORD_TYPES, canonical_direction, vendor_direction
from schemas.timestamps import TimestampError, datetime_to_millis, format_timestamp, millis_to_datetime
from schemas.vendors.common import (
    VendorRowError,
    cell_text,
    currency_cell,
    format_wall_clock,
    minor_units_cell,
    parse_wall_clock,
    required_cell,
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
# reference inside an Adyen `settlement_id` (adyen:<reference>:<Type>[:<digest>]).
PSP_REFERENCE = re.compile(r"[0-9]{16}")
_SETTLEMENT_ID = re.compile(r"adyen:([0-9]{16}):[A-Za-z]+(?::[a-p]{20})?")


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

# Every journal type Adyen documents for this report (journal-types page), so an
# unseen one fails loudly. Keys are lower-cased without spaces because spellings
# vary ("Balancetransfer", "Chargeback Reversed"). The direction of a line is
# never taken from its Type: debit and credit columns give it (see the module
# docstring), so a Type documented as "Debit/Credit" works both ways.
TYPE_RECORD_TYPES: dict[str, tuple[str, str]] = {
    name.lower(): (name, record_type)
    for name, record_type in (
        ("Settled", "CAPTURE"),
        ("Refunded", "REFUND"),
        # Older reports' names for payments settled or refunded in a bulk batch: the same payment-level
        # lines, with the payment's PSP reference, so they match like Settled and Refunded.
        ("SettledBulk", "CAPTURE"),
        ("RefundedBulk", "REFUND"),
        ("Chargeback", "CHARGEBACK"),
        # Costs booked on the account rather than on one payment; a credit
        # (an invoice credited back, MiscCosts returned) is a negative fee.
        ("Fee", "FEE"),
        ("InvoiceDeduction", "FEE"),
        ("MiscCosts", "FEE"),
        ("PaymentCost", "FEE"),
        ("AuthorisationSchemeFee", "FEE"),
        # Payouts leave the account as debits; a returned payout is a credit,
        # i.e. a negative payout that cancels the one it returns.
        ("MerchantPayout", "PAYOUT"),
        ("BankInstructionReturned", "PAYOUT"),
        # Reversals and re-debits stay out of the matched keys: the ledger has
        # one chargeback per payment. A defended dispute is credited back
        # (ChargebackReversed, +) and a lost defence debited again
        # (SecondChargeback, -), so the pair nets to one chargeback.
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

# TimeZone holds abbreviations (the structure page lists e.g. BST, CET, CEST;
# US accounts carry PST/PDT). An abbreviation names an offset, not a zone:
# "CET" in July is UTC+01:00, whatever Amsterdam's clocks say. Minutes east of
# UTC. Where an abbreviation is used for two offsets we take the one Java (and
# so Adyen's Customer Area) prints: CST = North American Central, IST = India.
_ABBREVIATION_OFFSETS: dict[str, int] = {
    "UTC": 0, "GMT": 0, "Z": 0, "WET": 0, "WEST": 60, "BST": 60,
    "CET": 60, "CEST": 120, "MET": 60, "MEST": 120, "EET": 120, "EEST": 180, "MSK": 180,
    "IST": 330, "SGT": 480, "HKT": 480, "AWST": 480, "JST": 540, "KST": 540,
    "ACST": 570, "ACDT": 630, "AEST": 600, "AEDT": 660, "NZST": 720, "NZDT": 780,
    "HST": -600, "AKST": -540, "AKDT": -480, "PST": -480, "PDT": -420, "MST": -420, "MDT": -360,
    "CST": -360, "CDT": -300, "EST": -300, "EDT": -240, "NST": -210, "NDT": -150, "BRT": -180,
}
# "GMT+01:00", "UTC-5", "UTC+0530": an explicit offset.
_EXPLICIT_OFFSET = re.compile(r"(?:UTC|GMT)([+-])([0-9]{1,2})(?::?([0-9]{2}))?")


def _journal_type(row: Mapping[str, str]) -> tuple[str, str]:
    """(documented Type spelling, canonical record type)."""
    found = TYPE_RECORD_TYPES.get(required_cell(row, "Type").replace(" ", "").lower())
    if found is None:
        raise VendorRowError("unknown Adyen Type (journal type); add a mapping before loading this report")
    return found


def _fixed_offset(name: str) -> Optional[tzinfo]:
    """The fixed offset an abbreviation or explicit 'UTC+hh:mm' names, else None."""
    minutes = _ABBREVIATION_OFFSETS.get(name.upper())
    if minutes is None:
        match = _EXPLICIT_OFFSET.fullmatch(name.upper())
        if match is None or int(match.group(2)) > 14 or int(match.group(3) or 0) > 59:
            return None
        minutes = (-1 if match.group(1) == "-" else 1) * (int(match.group(2)) * 60 + int(match.group(3) or 0))
    return timezone(timedelta(minutes=minutes))


def _zone(name: str, column: str) -> tzinfo:
    if not name:
        raise VendorRowError(f"{column} is missing")
    fixed = _fixed_offset(name)
    if fixed is not None:
        return fixed
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise VendorRowError(f"{column} is not a known time zone (an abbreviation such as CET or PST, "
                             "UTC+hh:mm, or an IANA name)") from None


def _local_millis(row: Mapping[str, str], column: str, zone_column: str, fallback_zone_column: str) -> int:
    wall = parse_wall_clock(required_cell(row, column), column)
    zone = _zone(cell_text(row, zone_column) or cell_text(row, fallback_zone_column), zone_column)
    aware = wall.replace(tzinfo=zone)  # fold=0: the first of two repeated wall times
    if aware.astimezone(timezone.utc).astimezone(zone).replace(tzinfo=None) != wall:
        raise VendorRowError(f"{column} falls in a daylight-saving gap of its time zone")
    try:
        return datetime_to_millis(aware, column)
    except TimestampError:
        raise VendorRowError(f"{column} is not a valid time") from None


def _unsigned(row: Mapping[str, str], column: str, currency: str) -> Optional[int]:
    text = cell_text(row, column)
    if not text:
        return None
    amount = minor_units_cell(text, currency, column)
    if amount < 0:
        raise VendorRowError(f"{column} is negative; debits and credits are unsigned")
    return amount


def _signed(row: Mapping[str, str], debit: str, credit: str, currency: str) -> Optional[int]:
    """Credit - debit (a line may fill both: a DepositCorrection of debit 5.00
    and credit 3.00 is -2.00), None when neither column is filled."""
    debit_amount = _unsigned(row, debit, currency)
    credit_amount = _unsigned(row, credit, currency)
    if debit_amount is None and credit_amount is None:
        return None
    return (credit_amount or 0) - (debit_amount or 0)


def _amounts(row: Mapping[str, str]) -> tuple[str, int, int, int, Optional[tuple[str, int]]]:
    """(currency, signed gross, fee as a cost, signed net, gross side or None) in Adyen's credit-positive terms.

    The line is the net side, in the net currency (what the account was
    credited or debited, what the totals sum): gross = net + fee there, all
    read from the row. When the gross side is in another currency (iDEAL EUR
    paid out in USD), it is returned as (gross currency, signed gross): the
    ledger's side, which the payment is matched on. A row with only a net side
    (Fee, MerchantPayout, ...) has none."""
    net_currency = currency_cell(cell_text(row, "Net Currency"), "Net Currency")
    net = _signed(row, "Net Debit (NC)", "Net Credit (NC)", net_currency)
    if net is None:
        raise VendorRowError("Net Debit (NC) and Net Credit (NC) are both missing")
    fee = sum(minor_units_cell(cell_text(row, c), net_currency, c) for c in _FEE_COLUMNS if cell_text(row, c))
    gross_text = cell_text(row, "Gross Currency")
    gross_currency = currency_cell(gross_text, "Gross Currency") if gross_text else net_currency
    gross = _signed(row, "Gross Debit (GC)", "Gross Credit (GC)", gross_currency)
    if gross is None:
        return net_currency, net + fee, fee, net, None
    if gross_currency == net_currency:
        return net_currency, gross, fee, net, None
    return net_currency, net + fee, fee, net, (gross_currency, gross)


_HEX_AS_LETTERS = str.maketrans("0123456789abcdef", "abcdefghijklmnop")
# What makes a line this line: the documented standard columns, not the
# Reserved ones nor the optional Booking Date pair, so the same batch report
# generated with other optional columns gives the same ids.
_IDENTITY_COLUMNS = ADYEN_COLUMNS[:23]


def _row_digest(row: Mapping[str, str], position: Optional[int]) -> str:
    # Unit separator: cannot appear in report text, so distinct rows never
    # join to the same string. The row's position in its file tells apart two
    # identical lines of one batch; re-reading the same file gives the same ids.
    # Written with the letters a-p instead of hex digits: an id never holds a
    # digit run that could pass for a card number (schemas/pan.py).
    values = [cell_text(row, column) for column in _IDENTITY_COLUMNS]
    if position is not None:
        values.append(str(position))
    digest = hashlib.sha1("\x1f".join(values).encode("utf-8")).hexdigest()[:20]
    return digest.translate(_HEX_AS_LETTERS)


def _settlement_id(row: Mapping[str, str], journal_type: str, position: Optional[int]) -> str:
    """A payment-level line's Modification Reference is its own PSP reference,
    unique in a real report; Adyen's published sample reuses placeholder
    references, so the row's values are part of the id too (a re-delivered
    row is still the same line). Account-level lines (no Psp Reference: Fee,
    MerchantPayout, DepositCorrection, Balancetransfer, ...) reuse texts like
    "Deposit Correction" in every batch, so their identity is the batch, the
    Type and the row (its values and position)."""
    modification_reference = cell_text(row, "Modification Reference")
    if modification_reference and cell_text(row, "Psp Reference"):
        return f"adyen:{modification_reference}:{journal_type}:{_row_digest(row, None)}"
    batch = cell_text(row, "Batch Number") or "-"
    return f"adyen:{journal_type}:{batch}:{_row_digest(row, position)}"


def settlement_fields_from_adyen_row(row: Mapping[str, str], position: Optional[int] = None,
                                     options: Any = None) -> dict:
    """Canonical settlement fields for one Settlement details report row
    (`position`: its line in the file, part of an account-level line's id;
    `options`: schemas.vendors.VendorOptions, none of which concern Adyen)."""
    journal_type, record_type = _journal_type(row)
    currency, gross, fee, net, gross_side = _amounts(row)
    sign = canonical_direction(record_type, gross)

    booked = _local_millis(row, "Creation Date", "TimeZone", "TimeZone")
    booking = booked
    if cell_text(row, "Booking Date"):
        booking = _local_millis(row, "Booking Date", "Booking Date TimeZone", "TimeZone")

    modification_reference = cell_text(row, "Modification Reference")
    batch = cell_text(row, "Batch Number")
    reference = cell_text(row, "Psp Reference") or modification_reference or batch
    if not reference:
        raise VendorRowError("Psp Reference, Modification Reference and Batch Number are all missing")
    return {
        "settlement_id": _settlement_id(row, journal_type, position),
        "processor": PROCESSOR,
        "processor_reference": reference,
        "merchant_id": required_cell(row, "Merchant Account"),
        "record_type": record_type,
        "gross_minor": sign * gross,
        "fee_minor": sign * fee,
        "net_minor": sign * net,
        "currency": currency,
        "settlement_date": millis_to_datetime(booking).date().isoformat(),
        "booked_time": format_timestamp(booked),
        "payout_id": f"{PAYOUT_PREFIX}{batch}" if batch else None,
        **_matched_side(record_type, gross_side),
    }


def _matched_side(record_type: str, gross_side: Optional[tuple[str, int]]) -> dict:
    """The matched_* fields of a matched line whose gross side is in another currency (else none)."""
    if gross_side is None or record_type not in MATCHED_RECORD_TYPES or gross_side[1] == 0:
        return {}
    return {"matched_minor": abs(gross_side[1]), "matched_currency": gross_side[0]}


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
    currency = currency_cell(line.currency, "currency")
    sign = vendor_direction(line.record_type, line.gross_minor)
    account_level = line.record_type in SIGNED_RECORD_TYPES
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
            "Creation Date": format_wall_clock(line.booked_time),
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
