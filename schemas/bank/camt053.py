"""ISO 20022 camt.053 (BankToCustomerStatement) -> canonical bank entries, streaming and safely (issue 21).

`read_camt053(source, path)` takes the file's bytes or a binary file object (read in 16 KiB chunks, so a
1 GB statement never sits in memory, neither as bytes nor as a tree) and yields one `RawRecord` per entry
(`schemas/bank/entry.py` lists the fields and their sources). Every version is read (.001.02 to .001.13 and later): elements are matched
by local name, and the root must be a `Document` in a `urn:iso:std:iso:20022:tech:xsd:camt.053.001.NN`
namespace; any other document (camt.052, camt.054, pain, no namespace) is refused with that reason.

Entries: one per `Ntry`; an entry whose `NtryDtls` hold several `TxDtls` (a batch) gives one per `TxDtls`.
An unbatched entry (no `TxDtls` or exactly one) is what was booked: `Ntry/Amt` in its currency, with the
transaction's own amount as the original side when it was made in another currency (a EUR transfer booked
in CHF). A batch entry's amount is the first of `TxDtls/AmtDtls/TxAmt/Amt`, `TxDtls/Amt`,
`TxDtls/AmtDtls/CntrValAmt/Amt`, `TxDtls/AmtDtls/InstdAmt/Amt` that is in the entry's currency; one with
none is rejected. A batch's amounts are not checked against `Ntry/Amt` (charges may be booked apart), nor
balances against entries (statements come paginated and hold pending entries).

Safety: defusedxml's `iterparse` with DTDs, entities and external references forbidden (a billion-laughs
or external-entity file fails at its DOCTYPE, at once); an element ends, is read and is removed from the
tree, so what is held is one statement's header and the current entry; an entry (outside the transaction
details already handed on) may hold at most `MAX_ENTRY_ELEMENTS` elements and the document nest at most
`MAX_DEPTH` deep. Records are handed on as soon as they are known: a batch's transaction details one
behind the one being read (an entry with exactly one is unbatched, which is known only at the second).

Bad input never raises: a problem in an entry rejects that entry's records only (one per transaction
detail of a batch, else one); a file that is not XML, not camt.053, has a DTD, or stops being well-formed
(truncated, corrupt) ends in one problem record, after the good records of the entries before the fault.
Records of entries are numbered in file order from 1 (`source` = `<path>#<n>`); a problem record of the
file takes the next number. Raw payloads are the entry's XML re-serialised compactly with local names,
without names, addresses, related parties or the bank's free text (`Nm`, `PstlAdr`, `RltdPties`, ...),
cut at 64 Ki characters, card numbers masked.
"""
from __future__ import annotations

import io
import re
from typing import BinaryIO, Iterator, List, NamedTuple, Optional, Tuple, Union
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape, quoteattr

from defusedxml.common import DefusedXmlException
from defusedxml.ElementTree import iterparse

from schemas.bank.entry import (
    BOOKED,
    CAMT053,
    CREDIT,
    DEBIT,
    BankEntry,
    EntryProblem,
    decimal_minor_units,
    entry_record,
    iso_date,
    known_currency,
    masked_reference,
    masked_text,
    problem_record,
)
from schemas.codecs import CUT_SHORT
from schemas.records import RawRecord

NAMESPACE = re.compile(r"urn:iso:std:iso:20022:tech:xsd:camt\.053\.001\.[0-9]{2}")
MAX_DEPTH = 64
MAX_ENTRY_ELEMENTS = 20_000
# What a statement may hold outside its entries at once (a GrpHdr, an Acct, a Bal): far above any real one.
MAX_HEADER_ELEMENTS = 50_000
# Elements whose content is personal data or free text banks fill with it: never read, never shown.
PERSONAL_ELEMENTS = frozenset({"RltdPties", "Ownr", "Nm", "PstlAdr", "CtctDtls", "Orgtr", "AddtlTxInf",
                               "AddtlNtryInf", "AddtlStmtInf", "AddtlInf"})
NOT_PROVIDED = "NOTPROVIDED"  # the ISO placeholder for an end-to-end id the payer did not give
BATCH_AMOUNTS = ("AmtDtls/TxAmt/Amt", "Amt", "AmtDtls/CntrValAmt/Amt", "AmtDtls/InstdAmt/Amt")
ORIGINAL_AMOUNTS = ("AmtDtls/InstdAmt/Amt", "AmtDtls/TxAmt/Amt", "Amt")
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}

Source = Union[bytes, bytearray, memoryview, BinaryIO]


def read_camt053(source: Source, path: str) -> Iterator[RawRecord]:
    """The entries of a camt.053 file (its bytes, or a binary file object read in chunks) as RawRecords."""
    stream = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else source
    return _Reader(path).records(stream)


def _local(tag: object) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _children(nodes: List[Element], name: str) -> List[Element]:
    return [child for node in nodes for child in node if _local(child.tag) == name]


def _find_all(element: Optional[Element], path: str) -> List[Element]:
    nodes = [] if element is None else [element]
    for name in path.split("/"):
        nodes = _children(nodes, name)
    return nodes


def _find(element: Optional[Element], path: str) -> Optional[Element]:
    found = _find_all(element, path)
    return found[0] if found else None


def _text(element: Optional[Element], path: str) -> Optional[str]:
    node = _find(element, path)
    text = None if node is None or node.text is None else node.text.strip()
    return text or None


def _texts(element: Optional[Element], path: str) -> List[str]:
    return [node.text.strip() for node in _find_all(element, path) if node.text and node.text.strip()]


def _amount(element: Optional[Element], path: str) -> Optional[Tuple[str, str]]:
    """(text, currency as written) of an amount element, or None when there is none."""
    node = _find(element, path)
    return None if node is None else ((node.text or "").strip(), (node.get("Ccy") or "").strip())


def _xml(element: Element, skip: frozenset = PERSONAL_ELEMENTS) -> str:
    """An element as compact XML with local names, without the subtrees named in `skip` (iterative: any depth)."""
    parts: List[str] = []
    stack = [(element, False)]
    while stack:
        node, closing = stack.pop()
        name = _local(node.tag)
        if closing:
            parts.append(f"</{name}>")
            continue
        attributes = "".join(f" {_local(key)}={quoteattr(value)}" for key, value in node.attrib.items())
        parts.append(f"<{name}{attributes}>{escape((node.text or '').strip())}")
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(node) if _local(child.tag) not in skip)
    return "".join(parts)


def _root_problem(tag: object) -> Optional[str]:
    namespace, _, name = tag.rpartition("}") if isinstance(tag, str) else ("", "", "")
    namespace = namespace.lstrip("{")
    expected = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.NN"
    if not namespace:
        return f"is not a camt.053 statement: the root element {name[:64]!r} has no namespace (expected {expected})"
    if not NAMESPACE.fullmatch(namespace):
        return f"is not a camt.053 statement: the root element is in namespace {namespace[:100]!r}, not {expected}"
    if name != "Document":
        return f"is not a camt.053 statement: the root element is {name[:64]!r}, not Document"
    return None


class _Statement:
    """What a statement says before its entries, which every entry of it carries."""

    def __init__(self) -> None:
        self.id: Optional[str] = None
        self.account: Optional[str] = None
        self.account_currency: Optional[str] = None
        self.account_currency_problem: Optional[str] = None
        self.balance_currency: Optional[str] = None
        self.entries = 0

    def read(self, name: str, element: Element) -> None:
        if name == "Id":
            self.id = (element.text or "").strip() or None
        elif name == "Acct":
            self.account = _text(element, "Id/IBAN") or _text(element, "Id/Othr/Id")
            currency = _text(element, "Ccy")
            if currency is not None:
                try:
                    self.account_currency = known_currency(currency, "the account currency (Acct/Ccy)")
                except EntryProblem as problem:
                    self.account_currency_problem = str(problem)
        elif name == "Bal" and self.balance_currency is None:
            amount = _amount(element, "Amt")
            try:
                self.balance_currency = known_currency(amount[1] if amount else None, "the balance currency")
            except EntryProblem:
                pass  # only a stand-in for a missing Acct/Ccy: without it the account currency stays unknown

    def problem(self) -> Optional[str]:
        if self.id is None:
            return "the statement has no Id (Stmt/Id) before its entries"
        if self.account is None:
            return "the statement names no account (Acct/Id/IBAN or Acct/Id/Othr/Id) before its entries"
        return self.account_currency_problem

    def currency(self) -> Optional[str]:
        return self.account_currency or self.balance_currency


class _Booking(NamedTuple):
    """The entry-level values (`Ntry`) every record of the entry shares."""

    amount_minor: int
    currency: str
    credit_debit: str
    status: str
    booking_date: Optional[str]
    value_date: Optional[str]
    reversal: bool
    bank_reference: Optional[str]
    transaction_code: Optional[str]
    original_amounts: Tuple[Optional[Tuple[str, str]], ...]


def _credit_debit(text: Optional[str], what: str) -> str:
    if text not in (CREDIT, DEBIT):
        raise EntryProblem(f"{what} is missing or not CRDT or DBIT")
    return text


def _status(entry: Element) -> str:
    status = _find(entry, "Sts")
    text = None if status is None else ((status.text or "").strip() or _text(status, "Cd") or _text(status, "Prtry"))
    if not text:
        raise EntryProblem("the entry has no status (Ntry/Sts)")
    return text.upper()


def _date(element: Element, name: str, what: str) -> Optional[str]:
    node = _find(element, name)
    if node is None:
        return None
    text = _text(node, "Dt") or _text(node, "DtTm")
    if text is None:
        raise EntryProblem(f"{what} has neither Dt nor DtTm")
    return iso_date(text, what)


def _transaction_code(element: Optional[Element]) -> Optional[str]:
    code = _find(element, "BkTxCd")
    domain = _text(code, "Domn/Cd")
    if domain:
        return "/".join(part for part in (domain, _text(code, "Domn/Fmly/Cd"), _text(code, "Domn/Fmly/SubFmlyCd"))
                        if part)
    return _text(code, "Prtry/Cd")


def _booking(entry: Element) -> _Booking:
    amount = _amount(entry, "Amt")
    currency = known_currency(amount[1] if amount else None, "the entry currency (Ntry/Amt/@Ccy)")
    amount_minor = decimal_minor_units(amount[0] if amount else None, currency, "the entry amount (Ntry/Amt)")
    credit_debit = _credit_debit(_text(entry, "CdtDbtInd"), "the entry's credit/debit indicator (Ntry/CdtDbtInd)")
    status = _status(entry)
    booking_date = _date(entry, "BookgDt", "the booking date (Ntry/BookgDt)")
    if booking_date is None and status == BOOKED:
        raise EntryProblem("the booked entry has no booking date (Ntry/BookgDt)")
    reversal = _text(entry, "RvslInd")
    if reversal is not None and reversal.lower() not in _BOOLEANS:
        raise EntryProblem("the reversal indicator (Ntry/RvslInd) is not true or false")
    return _Booking(amount_minor, currency, credit_debit, status, booking_date,
                    _date(entry, "ValDt", "the value date (Ntry/ValDt)"),
                    reversal is not None and _BOOLEANS[reversal.lower()],
                    _text(entry, "AcctSvcrRef") or _text(entry, "NtryRef"), _transaction_code(entry),
                    tuple(_amount(entry, path) for path in ("AmtDtls/InstdAmt/Amt", "AmtDtls/TxAmt/Amt")))


class _Transaction(NamedTuple):
    """A transaction detail (`TxDtls`) as read, its values still text: the element is gone once it is read."""

    amounts: Tuple[Optional[Tuple[str, str]], ...]  # BATCH_AMOUNTS, in that order
    originals: Tuple[Optional[Tuple[str, str]], ...]  # ORIGINAL_AMOUNTS, in that order
    credit_debit: Optional[str]
    bank_reference: Optional[str]
    end_to_end_id: Optional[str]
    customer_reference: Optional[str]
    remittance_unstructured: Optional[str]
    remittance_structured: Optional[str]
    transaction_code: Optional[str]
    raw: str


def _transaction(element: Element) -> _Transaction:
    end_to_end = _text(element, "Refs/EndToEndId")
    references = ("Refs/InstrId", "Refs/PmtInfId", "Refs/MsgId", "Refs/TxId", "Refs/Prtry/Ref")
    structured = [text for strd in _find_all(element, "RmtInf/Strd")
                  for path in ("CdtrRefInf/Ref", "RfrdDocInf/Nb", "AddtlRmtInf") for text in _texts(strd, path)]
    return _Transaction(
        tuple(_amount(element, path) for path in BATCH_AMOUNTS),
        tuple(_amount(element, path) for path in ORIGINAL_AMOUNTS),
        _text(element, "CdtDbtInd"),
        _text(element, "Refs/AcctSvcrRef"),
        None if end_to_end is None or end_to_end.upper() == NOT_PROVIDED else end_to_end,
        next((text for text in (_text(element, path) for path in references) if text), None),
        " ".join(_texts(element, "RmtInf/Ustrd")) or None,
        " ".join(structured) or None,
        _transaction_code(element),
        _xml(element))


def _original(candidates, currency: str) -> Tuple[Optional[int], Optional[str]]:
    """The first amount given in another currency than the booked one: the movement as it was made."""
    for candidate in candidates:
        if candidate is not None and candidate[1] and candidate[1].upper() != currency:
            original_currency = known_currency(candidate[1], "the original currency")
            return decimal_minor_units(candidate[0], original_currency, "the original amount"), original_currency
    return None, None


def _batch_amount(transaction: _Transaction, currency: str) -> int:
    amounts = [amount for amount in transaction.amounts if amount is not None]
    if not amounts:
        raise EntryProblem("the transaction detail of a batch entry carries no amount (TxDtls/Amt, TxDtls/AmtDtls)")
    for text, amount_currency in amounts:
        if amount_currency.upper() == currency:
            return decimal_minor_units(text, currency, "the transaction amount (TxDtls)")
    raise EntryProblem(f"the transaction detail of a batch entry carries no amount in the entry's currency {currency}")


class _Reader:
    def __init__(self, path: str):
        self.path = path
        self.stack: List[list] = []  # [element, local name, elements held before it]
        self.held = 0
        self.number = 0  # records handed on so far
        self.statement: Optional[_Statement] = None
        self.in_entry = self.oversized = False

    # -- the file ------------------------------------------------------------------------------------
    def records(self, stream: BinaryIO) -> Iterator[RawRecord]:
        events = iterparse(stream, events=("start", "end"), forbid_dtd=True, forbid_entities=True,
                           forbid_external=True)
        try:
            for event, element in events:
                if event == "start":
                    problem = self._started(element)
                    if problem is not None:
                        yield self._file_problem(problem)
                        return
                else:
                    yield from self._ended(element)
        except DefusedXmlException:
            yield self._file_problem("has a DTD (<!DOCTYPE>) or an entity declaration, which a camt.053 statement "
                                     "may not have: entity expansion and external entities are refused")
        except ParseError as error:
            yield self._file_problem(self._parse_failure(error))
        except Exception as error:  # an unreadable stream, a codec the XML declaration names: the file
            yield self._file_problem(f"cannot be read ({type(error).__name__})")

    def _parse_failure(self, error: ParseError) -> str:
        # expat's messages are fixed texts with a position ("no element found: line 12, column 0"): no values
        if self.held == 0:
            return f"is not an XML document, or is cut before its root element ({error})"
        if not self.stack:
            return f"has data after the end of its XML document ({error})"
        return f"{CUT_SHORT}: its XML stops being well-formed {self._after()} ({error})"

    def _after(self) -> str:
        return f"after record {self.number}" if self.number else "before its first record"

    def _file_problem(self, reason: str) -> RawRecord:
        raw = f"<{self.path}: not read {self._after()}>"
        self.number += 1
        return problem_record(f"{self.path}#{self.number}", f"{self.path} {reason}", raw)

    # -- the tree, element by element ---------------------------------------------------------------
    def _started(self, element: Element) -> Optional[str]:
        depth, name = len(self.stack), _local(element.tag)
        if depth == 0:
            problem = _root_problem(element.tag)
            if problem is not None:
                return problem
        elif depth == 1 and name != "BkToCstmrStmt":
            return f"is not a bank-to-customer statement: the Document holds {name[:64]!r}, not BkToCstmrStmt"
        elif depth >= MAX_DEPTH:
            return f"nests elements more than {MAX_DEPTH} deep"
        self.stack.append([element, name, self.held])
        self.held += 1
        if depth == 2 and name == "Stmt":
            self.statement = _Statement()
        elif depth == 3 and name == "Ntry" and self.stack[-2][1] == "Stmt" and self.statement is not None:
            self._begin_entry()
        if self.in_entry:
            self.oversized = self.oversized or self.held - self.entry_held > MAX_ENTRY_ELEMENTS
        elif self.held > MAX_HEADER_ELEMENTS:
            return f"holds more than {MAX_HEADER_ELEMENTS:,} elements outside its entries"
        return None

    def _ended(self, element: Element) -> Iterator[RawRecord]:
        _, name, held_before = self.stack.pop()
        depth = len(self.stack)
        parent, parent_name = (self.stack[-1][0], self.stack[-1][1]) if self.stack else (None, "")
        if depth == 3 and parent_name == "Stmt":
            if name == "Ntry" and self.in_entry:
                yield from self._end_entry(element)
            elif self.statement is not None:
                self.statement.read(name, element)
            self._drop(parent, element, held_before)
        elif depth == 2:
            self._drop(parent, element, held_before)
            if name == "Stmt":
                self.statement = None
        elif self.in_entry and name == "TxDtls" and depth == 5 and parent_name == "NtryDtls":
            yield from self._end_transaction(parent, element, held_before)
        elif self.in_entry and self.oversized:
            self._drop(parent, element, held_before)

    def _drop(self, parent: Optional[Element], element: Element, held_before: int) -> None:
        if parent is not None:
            parent.remove(element)
        self.held = held_before

    # -- entries ------------------------------------------------------------------------------------
    def _begin_entry(self) -> None:
        self.in_entry, self.oversized = True, False
        self.entry_held = self.held
        self.statement.entries += 1
        self.entry_index = self.statement.entries
        self.transactions = 0
        self.entry: Optional[Element] = self.stack[-1][0]
        self.booking: Optional[_Booking] = None
        self.booking_problem: Optional[str] = None
        self.header_raw: Optional[str] = None
        # The first transaction detail waits for the second: alone, it belongs to an unbatched entry.
        self.first: Optional[Tuple[Element, Element, int, _Transaction]] = None

    def _end_transaction(self, parent: Element, element: Element, held_before: int) -> Iterator[RawRecord]:
        self.transactions += 1
        if self.oversized:  # every record of the entry is rejected; a lone detail waits for the entry's end
            self._drop(parent, element, held_before)
            if self.first is not None:
                self._drop_first()
            if self.transactions == 2:
                yield self._entry_record(None, 1)
            if self.transactions >= 2:
                yield self._entry_record(None, self.transactions)
            return
        transaction = _transaction(element)
        if self.transactions == 1:
            self.first = (parent, element, self.held - held_before, transaction)
            return
        self._drop(parent, element, held_before)
        if self.first is not None:
            yield self._entry_record(self._drop_first(), 1)
        yield self._entry_record(transaction, self.transactions)

    def _drop_first(self) -> _Transaction:
        parent, element, size, transaction = self.first
        parent.remove(element)
        self.held -= size
        self.first = None
        return transaction

    def _end_entry(self, entry: Element) -> Iterator[RawRecord]:
        self.in_entry = False
        if self.transactions > 1:
            return
        transaction = self.first[3] if self.first is not None else None
        yield self._entry_record(transaction, None)

    def _entry_record(self, transaction: Optional[_Transaction], index: Optional[int]) -> RawRecord:
        """The record of an unbatched entry (`index` None) or of a batch entry's `index`-th transaction detail."""
        self.number += 1
        source = f"{self.path}#{self.number}"
        raw = self._raw(transaction, index)
        try:
            if self.oversized:
                raise EntryProblem(f"the entry holds more than {MAX_ENTRY_ELEMENTS:,} XML elements")
            return entry_record(source, self._bank_entry(transaction, index), raw)
        except EntryProblem as problem:
            where = "entry" if index is None else f"transaction detail {index} of a batch entry"
            return problem_record(source, f"camt.053 {where}: {problem}", raw)

    def _raw(self, transaction: Optional[_Transaction], index: Optional[int]) -> str:
        if self.oversized:
            return f"<{self.path}: entry {self.entry_index} of a statement, too large to show>"
        if index is None:
            return _xml(self.entry)
        if self.header_raw is None:
            self.header_raw = _xml(self.entry, PERSONAL_ELEMENTS | {"TxDtls"})
        return f"{self.header_raw}\n{transaction.raw}"

    def _bank_entry(self, transaction: Optional[_Transaction], index: Optional[int]) -> BankEntry:
        statement_problem = self.statement.problem()
        if statement_problem is not None:
            raise EntryProblem(statement_problem)
        if self.booking is None and self.booking_problem is None:
            try:
                self.booking = _booking(self.entry)
            except EntryProblem as problem:
                self.booking_problem = str(problem)
        if self.booking_problem is not None:
            raise EntryProblem(self.booking_problem)
        booking = self.booking
        reference = f"{self.statement.id}/{self.entry_index}"
        if index is None:
            amount, credit_debit, entry_ref = booking.amount_minor, booking.credit_debit, reference
            candidates = (transaction.originals if transaction else ()) + booking.original_amounts
        else:
            amount = _batch_amount(transaction, booking.currency)
            credit_debit = booking.credit_debit if transaction.credit_debit is None else _credit_debit(
                transaction.credit_debit, "the transaction's credit/debit indicator (TxDtls/CdtDbtInd)")
            entry_ref, candidates = f"{reference}/{index}", transaction.originals
        original_amount, original_currency = _original(candidates, booking.currency)
        return BankEntry(
            statement_format=CAMT053,
            statement_id=masked_reference(self.statement.id),
            account=self.statement.account,
            account_currency=self.statement.currency(),
            entry_ref=masked_reference(entry_ref),
            status=booking.status,
            credit_debit=credit_debit,
            amount_minor=amount,
            currency=booking.currency,
            booking_date=booking.booking_date,
            value_date=booking.value_date,
            bank_reference=masked_reference((transaction and transaction.bank_reference) or booking.bank_reference),
            end_to_end_id=masked_reference(transaction and transaction.end_to_end_id),
            customer_reference=masked_reference(transaction and transaction.customer_reference),
            remittance_unstructured=masked_text(transaction and transaction.remittance_unstructured),
            remittance_structured=masked_text(transaction and transaction.remittance_structured),
            bank_transaction_code=(transaction and transaction.transaction_code) or booking.transaction_code,
            reversal=booking.reversal,
            original_amount_minor=original_amount,
            original_currency=original_currency,
        )
