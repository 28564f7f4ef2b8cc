"""The canonical bank entry: one movement on a bank account as a statement reports it (issue 21).

Both statement readers (`schemas/bank/camt053.py`, `schemas/bank/bai2.py`) turn a file into
`BankEntry` values and hand each on as a `RawRecord` of input `bank_statements` whose `fields` is
the entry as a dict (`BankEntry._asdict()`); what they share (exact amounts, dates, masking, the
records) is here. Fields, with their source in camt.053 (per `Ntry`, or per `TxDtls` of a batched
entry) and in BAI2 (per 16 record with its 88 continuations):

- `statement_format`: "camt053" or "bai2".
- `statement_id`: camt `Stmt/Id`; BAI2 `<sender>/<file creation date YYMMDD>/<file id>` of the 01 record
  (the spec makes a file id unique per sender and creation date).
- `account`: the account as the bank names it, never masked: camt `Acct/Id/IBAN`, else
  `Acct/Id/Othr/Id`; BAI2 the 03 customer account number.
- `account_currency`: camt `Acct/Ccy`, else the currency of the statement's first balance (`Bal`),
  else None; BAI2 the 03 currency, else the 02 group currency, else USD (the spec's default).
- `entry_ref`: a stable id of the entry within its file: camt `<statement id>/<Ntry index in the
  statement>` and `/<TxDtls index>` for an entry of a batch; BAI2 `<statement id>/<group>/<account>/<16
  index in the account>`; indexes start at 1.
- `status`: camt `Sts` (or `Sts/Cd`, .001.08 on): BOOK, PDNG, INFO, FUTR; BAI2 always BOOK (a group with
  status 2 deletion or 4 test only is rejected, see bai2.py).
- `credit_debit`: CRDT or DBIT, the direction of this booking (camt `CdtDbtInd`, a batch entry's own
  when it has one; BAI2 from the type code).
- `amount_minor`: unsigned integer minor units in `currency`, exact (never a float, never rounded);
  `credit_debit` gives the sign.
- `currency`: ISO 4217 (camt `Amt/@Ccy`; BAI2 the account's currency).
- `booking_date`: ISO date: camt `BookgDt` (`Dt`, or the date written in `DtTm`); BAI2 the 02 as-of
  date. None only for a camt entry that is not booked (PDNG, INFO, FUTR) and has none.
- `value_date`: ISO date or None: camt `ValDt`; BAI2 the date of funds type V.
- `bank_reference`: camt `TxDtls/Refs/AcctSvcrRef`, else `Ntry/AcctSvcrRef`, else `Ntry/NtryRef`;
  BAI2 the bank reference number.
- `end_to_end_id`: camt `TxDtls/Refs/EndToEndId` ("NOTPROVIDED", the ISO placeholder, is None);
  BAI2 None.
- `customer_reference`: camt the first of `TxDtls/Refs/InstrId`, `PmtInfId`, `MsgId`, `TxId`,
  `Prtry/Ref`; BAI2 the customer reference number.
- `remittance_unstructured`: camt every `RmtInf/Ustrd`, joined by a space; BAI2 the 16 text with its
  continuations. Kept (it carries the references matching needs), card numbers masked.
- `remittance_structured`: camt per `RmtInf/Strd`: `CdtrRefInf/Ref`, `RfrdDocInf/Nb`, `AddtlRmtInf`,
  joined by a space, card numbers masked; BAI2 None.
- `bank_transaction_code`: camt `BkTxCd/Domn` as `<domain>/<family>/<sub-family>` (a batch entry's own
  when it has one), else `BkTxCd/Prtry/Cd`; BAI2 the three-digit type code.
- `reversal`: camt `RvslInd`; BAI2 False.
- `original_amount_minor`, `original_currency`: the movement's amount in the currency it was made in,
  when that differs from `currency` (camt `InstdAmt`, `TxAmt` or `TxDtls/Amt`, e.g. a EUR transfer
  booked in CHF); else None. BAI2 None.

Personal data: names, addresses and the bank's own free text (`AddtlNtryInf`, `AddtlTxInf`, where
banks write counterparty names) are never read into fields, and are left out of camt raw payloads.
Card numbers: text fields go through `mask_pans`; a reference is masked only when the whole reference
is a card number (a long bank reference often holds a Luhn-valid window by chance, ~10% of them, and a
rewritten reference matches nothing); `account` is never masked (an IBAN is not a card number); raw
payloads are masked whole.
"""
from __future__ import annotations

import re
from datetime import date
from typing import NamedTuple, Optional

from schemas.codecs import capped
from schemas.money import MAX_MINOR_UNITS, MoneyError, currency_exponent, normalize_currency, to_minor_units
from schemas.pan import find_pan_spans, mask_pans
from schemas.records import RawRecord

BANK_STATEMENTS = "bank_statements"
# A bank-statements topic's message holds a whole statement document (camt.053 XML or BAI2 text): its
# RawRecord's one field (schemas/kafka_values.py), read into entries by schemas/bank/formats.py.
STATEMENT_DOCUMENT = "document"
CAMT053, BAI2 = "camt053", "bai2"
CREDIT, DEBIT = "CRDT", "DBIT"
BOOKED = "BOOK"


class BankEntry(NamedTuple):
    statement_format: str
    statement_id: str
    account: str
    account_currency: Optional[str]
    entry_ref: str
    status: str
    credit_debit: str
    amount_minor: int
    currency: str
    booking_date: Optional[str]
    value_date: Optional[str]
    bank_reference: Optional[str]
    end_to_end_id: Optional[str]
    customer_reference: Optional[str]
    remittance_unstructured: Optional[str]
    remittance_structured: Optional[str]
    bank_transaction_code: Optional[str]
    reversal: bool
    original_amount_minor: Optional[int] = None
    original_currency: Optional[str] = None


BANK_ENTRY_FIELDS = BankEntry._fields


class EntryProblem(ValueError):
    """Why an entry (or a file) cannot be read: the reason only, never the entry's values."""


# xs:decimal as camt.053 writes amounts: no sign (amounts are unsigned there), no exponent. The digit
# counts are bounded before Decimal sees the text: its 28-digit context would round a longer number.
_DECIMAL = re.compile(r"\+?([0-9]*)(?:\.([0-9]*))?")
_MAX_INTEGER_DIGITS = 17
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def known_currency(text: Optional[str], what: str) -> str:
    try:
        return normalize_currency(text)
    except MoneyError:
        raise EntryProblem(f"{what} is missing or not a known ISO 4217 currency") from None


def decimal_minor_units(text: Optional[str], currency: str, what: str) -> int:
    """Unsigned decimal major units ("474.4") -> exact minor units; too many decimals is an error, never rounded."""
    value = (text or "").strip()
    match = _DECIMAL.fullmatch(value)
    if not value:
        raise EntryProblem(f"{what} is missing")
    if value.startswith("-"):
        raise EntryProblem(f"{what} is negative (the credit/debit indicator gives the direction)")
    if match is None or not (match.group(1) or match.group(2)):
        raise EntryProblem(f"{what} is not a decimal number")
    integer, fraction = match.group(1).lstrip("0"), (match.group(2) or "").rstrip("0")
    if len(fraction) > currency_exponent(currency):
        raise EntryProblem(f"{what} has more decimal places than {currency} allows")
    if len(integer) > _MAX_INTEGER_DIGITS:
        raise EntryProblem(f"{what} is out of range")
    return checked_minor_units(to_minor_units(f"{integer or '0'}.{fraction or '0'}", currency), what)


def checked_minor_units(amount: int, what: str) -> int:
    if abs(amount) > MAX_MINOR_UNITS:
        raise EntryProblem(f"{what} is out of range (at most {MAX_MINOR_UNITS:,} minor units)")
    return amount


def iso_date(text: Optional[str], what: str) -> str:
    """A 'YYYY-MM-DD' date (or the date a 'YYYY-MM-DDThh:mm:ss...' time is written on, as written)."""
    value = (text or "").strip()[:10]
    if not _ISO_DATE.fullmatch(value):
        raise EntryProblem(f"{what} is missing or not a YYYY-MM-DD date")
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise EntryProblem(f"{what} is not a valid calendar date") from None


def masked_text(text: Optional[str]) -> Optional[str]:
    """Free text as kept in fields: stripped, None when empty, every card number masked."""
    value = (text or "").strip()
    return mask_pans(value)[0] if value else None


def masked_reference(text: Optional[str]) -> Optional[str]:
    """A reference as kept in fields: stripped, None when empty, masked only when it is a card number whole."""
    value = (text or "").strip()
    if not value:
        return None
    spans = find_pan_spans(value)
    return mask_pans(value)[0] if spans and spans[0] == (0, len(value)) else value


def raw_payload(text: str) -> str:
    """What a record shows of the statement text it came from: cut at 64 Ki characters, card numbers masked."""
    return mask_pans(capped(text))[0]


def one_line(reason: str) -> str:
    text = " ".join(reason.split())
    return text if len(text) <= 500 else text[:497] + "..."


def entry_record(source: str, entry: BankEntry, raw: str) -> RawRecord:
    return RawRecord(BANK_STATEMENTS, source, entry._asdict(), raw_payload(raw), None)


def problem_record(source: str, reason: str, raw: str) -> RawRecord:
    return RawRecord(BANK_STATEMENTS, source, None, raw_payload(raw), one_line(reason))
