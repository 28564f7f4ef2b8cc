"""BAI2 (BAI Cash Management Balance Reporting Specifications, Version 2) -> canonical bank entries (issue 21).

`read_bai2(data, path)` takes a file's bytes and yields one `RawRecord` per transaction detail: a 16
record with its 88 continuations (`schemas/bank/entry.py` lists the fields). The records of a file are
handed on when its 99 trailer has been checked (whether an entry may be used depends on every trailer
above it), in line order; `source` is `<path>:<line of the 16 record>`.

Reading (one record per line; CRLF, CR or LF; UTF-8, else Latin-1; blank lines skipped and not counted):
- A record's fields end at "," and its data at "/" or the end of the line; an 88 continues the
  record before it with the next field. A 16's text field is the rest of the record, commas and all:
  a 16 (or 88) that ends inside its text continues the text in the next 88, one that ends with "/"
  continues with the next field. Text pieces are stripped, a trailing "/" dropped, joined by a space.
- Funds types on 03 and 16 records: 0, 1, 2, Z or empty carry no extra field, V a value date and time,
  S three amounts, D a count n and n (days, amount) pairs. A 16's value date is its V date.
- Amounts are integers in minor units: the implied decimals are the currency's exponent
  (schemas/money.py), so "001" GBP is 0.01. A 16 amount is unsigned (the type code gives the direction):
  a minus sign, a decimal point or anything else than digits (and a leading "+") rejects it.
- Currency: the 03's, else the 02 group's, else USD (the spec's default).
- Type codes (Appendix A and its ranges): 100-399, 720-728 and 920-959 are credits; 400-699, 760 and
  960-999 debits. Any other (account status 001-099 and 900-919, loan status 701-719, non-monetary 890)
  moves no money: such a 16 is rejected, saying so.
- Booking date: the 02 as-of date (YYMMDD; 00-68 is 20xx, 69-99 19xx).

Checks, and what is rejected why:
- 49: the account control total must equal the sum of the 03 amounts (summary and status, not the funds
  type distributions) and the 16 amounts, and the record count the account's records (03 to 49, 88s
  included). 98: the group control total must equal the sum of its 49 totals, the account count its 03
  records, the record count its records (02 to 98). 99: the file control total the sum of its 98 totals,
  the group count its 02 records, the record count all records (01 to 99). A failed check rejects every
  entry it covers, with a reason naming the check and both numbers: a wrong total means lost or
  corrupted lines, and such entries must not feed matching. A check that covers no entry is one problem
  record of its own.
- An account without its 49 trailer has nothing that vouches for its entries: they are rejected. A
  missing 98 or 99 does not reject entries their 49s verified: a file that ends early (truncated) ends in
  one problem record that says so, and a group or file closed by the next header without its trailer is
  one problem record.
- A group whose status is 2 (deletion) or 4 (test only) holds no new bookings: its entries are rejected.
- Records out of place are problem records: a 16 outside an account (its own record), an 03 outside a
  group or an 02 outside a file (what they hold is rejected), a trailer without its header, a line that
  is no BAI2 record (inside an account it rejects the account's entries; between accounts the trailers
  judge). A file whose first record is not a 01 file header is not read (one problem record); a 01 that
  names another BAI version than 2 rejects its file's entries.

Physical records of a fixed length without line breaks (`01` physical record length and block size) are
not split: such a file is read as one line and rejected.
"""
from __future__ import annotations

import re
from datetime import date
from typing import Iterator, List, NamedTuple, Optional, Tuple

from schemas.bank.entry import (
    BAI2,
    BOOKED,
    CREDIT,
    DEBIT,
    BankEntry,
    EntryProblem,
    checked_minor_units,
    entry_record,
    known_currency,
    masked_reference,
    masked_text,
    problem_record,
)
from schemas.codecs import CUT_SHORT
from schemas.records import RawRecord

DEFAULT_CURRENCY = "USD"
VERSION = "2"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_RECORD_CODE = re.compile(r"(0[123]|16|88|49|98|99)(?=[,/]|$)")
_SIGNED = re.compile(r"[+-]?[0-9]{1,30}")
_UNSIGNED = re.compile(r"\+?[0-9]{1,30}")
_TYPE_CODE = re.compile(r"[0-9]{3}")
_YYMMDD = re.compile(r"[0-9]{6}")
_PLAIN_FUNDS_TYPES = {"", "Z", "0", "1", "2"}
MAX_DISTRIBUTIONS = 100  # funds type D: far above the handful of availability days a bank reports
_GROUP_STATUS = {"1": None, "3": None,
                 "2": "has status 2 (deletion): it withdraws data sent before, its entries are no new bookings",
                 "4": "has status 4 (test only): its entries are no real bookings"}


def read_bai2(data: bytes, path: str) -> Iterator[RawRecord]:
    """The transaction details of a BAI2 file as RawRecords: every 16 record is one, good or rejected."""
    reader = _Reader(path)
    record: List[_Line] = []
    for number, text in enumerate(_LINE_BREAK.split(_decoded(data)), start=1):
        if not text.strip():
            continue
        match = _RECORD_CODE.match(text)
        line = _Line(number, match.group(1) if match else None, text.rstrip())
        if line.code == "88" and record:
            record.append(line)
            continue
        if record:
            yield from reader.record(record)
        record = [line]
    if record:
        yield from reader.record(record)
    yield from reader.end()


def direction(type_code: str) -> Optional[str]:
    """CRDT or DBIT for a BAI2 type code, None for one that moves no money (status, non-monetary)."""
    code = int(type_code)
    if 100 <= code <= 399 or 720 <= code <= 728 or 920 <= code <= 959:
        return CREDIT
    if 400 <= code <= 699 or code == 760 or 960 <= code <= 999:
        return DEBIT
    return None


def _decoded(data: bytes) -> str:
    data = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:  # BAI2 is ASCII; an old bank's accented letters are Latin-1, never an error
        return data.decode("latin-1")


class _Line(NamedTuple):
    number: int
    code: Optional[str]
    text: str

    @property
    def data(self) -> str:
        return self.text[3:]


def _fields(lines: List[_Line]) -> List[str]:
    """The fields of a record and its continuations (not a 16's: its text keeps its commas)."""
    fields: List[str] = []
    for line in lines:
        data, slash, _ = line.data.partition("/")
        parts = data.split(",")
        if not slash and len(parts) > 1 and parts[-1] == "":
            parts.pop()  # "...,x," with no "/": the delimiter before a field the next 88 holds
        fields.extend(parts)
    return fields


def _field(fields: List[str], index: int) -> str:
    return fields[index].strip() if index < len(fields) else ""


def _yymmdd(text: str, what: str) -> str:
    if not _YYMMDD.fullmatch(text):
        raise EntryProblem(f"{what} is missing or not a YYMMDD date")
    year = int(text[:2])
    try:
        return date(year + (2000 if year < 69 else 1900), int(text[2:4]), int(text[4:])).isoformat()
    except ValueError:
        raise EntryProblem(f"{what} is not a valid calendar date") from None


def _signed(text: str, what: str) -> int:
    if not _SIGNED.fullmatch(text.strip()):
        raise EntryProblem(f"{what} is not an integer amount")
    return int(text)


def _funds_extras(funds_type: str, fields: List[str], at: int) -> int:
    """How many fields follow a funds type (`fields[at]` is the first of them)."""
    funds_type = funds_type.strip().upper()
    if funds_type in _PLAIN_FUNDS_TYPES:
        return 0
    if funds_type == "V":
        return 2
    if funds_type == "S":
        return 3
    if funds_type == "D":
        count = _field(fields, at)
        if not count.isdigit() or int(count) > MAX_DISTRIBUTIONS:
            raise EntryProblem(f"a funds type D distribution count is not a number up to {MAX_DISTRIBUTIONS}")
        return 1 + 2 * int(count)
    raise EntryProblem("a funds type is not one of 0, 1, 2, V, S, D, Z")


def _summary_total(fields: List[str]) -> int:
    """The sum of an 03's amounts: (type code, amount, item count, funds type and its extras) repeated.

    An empty field where a type code belongs is skipped: writers end records with ",/" after a group
    (a defaulted next field, "015,35217175,,,/") and then continue in an 88, or write an empty group
    ",,,,"; neither has an amount."""
    total, at = 0, 0
    while at < len(fields):
        if not fields[at].strip():
            at += 1
            continue
        amount, funds_type = _field(fields, at + 1), _field(fields, at + 3)
        if amount:
            total += _signed(amount, "an 03 amount")
        at += 4
        at += _funds_extras(funds_type, fields, at)
    return total


def _detail_fields(lines: List[_Line]) -> Tuple[List[str], str, Optional[str]]:
    """(type code, amount, funds type, its extras, bank reference, customer reference), the text of a 16, and
    why they cannot be read (the fields then stop where reading did: the amount still counts in the 49 total)."""
    fixed: List[str] = []
    pieces: List[str] = []
    try:
        needed = _read_detail(lines, fixed, pieces)
    except EntryProblem as problem:
        return fixed + [""] * (2 - len(fixed)), "", str(problem)
    fixed += [""] * (needed - len(fixed))
    text = " ".join(piece for piece in (_text_piece(piece) for piece in pieces) if piece)
    return fixed, text, None


def _read_detail(lines: List[_Line], fixed: List[str], pieces: List[str]) -> int:
    """Reads a 16's fixed fields into `fixed` and its text pieces into `pieces`; how many fixed fields it has."""
    needed = 3
    for line in lines:
        data, at, ended = line.data, 0, False
        while len(fixed) < needed:
            end = min((index for index in (data.find(",", at), data.find("/", at)) if index >= 0), default=len(data))
            if end == len(data):
                if at < len(data):
                    fixed.append(data[at:])
                ended = True  # the next 88 goes on with the next field
            else:
                fixed.append(data[at:end])
                at, ended = end + 1, data[end] == "/"
            if len(fixed) >= 3:
                needed = _fixed_count(fixed)
            if ended:
                break
        if not ended and len(fixed) >= needed:
            pieces.append(data[at:])
    return needed


def _fixed_count(fixed: List[str]) -> int:
    """How many fixed fields a 16 has, once its funds type (and for D its distribution count) is read."""
    if len(fixed) == 3 and fixed[2].strip().upper() == "D":
        return 4  # the count comes first
    return 5 + _funds_extras(fixed[2], fixed, 3)


def _text_piece(piece: str) -> str:
    piece = piece.strip()
    return (piece[:-1] if piece.endswith("/") else piece).strip()


class _Section:
    """A file (01..99), group (02..98) or account (03..49) and what its trailer is checked against."""

    def __init__(self, kind: str, line: int, parent: Optional["_Section"]):
        self.kind, self.line, self.parent = kind, line, parent
        self.problem: Optional[str] = None  # rejects every entry inside
        self.records = 0
        self.entries = 0  # 16 records inside, at any depth
        self.total = 0  # account: its 03 and 16 amounts; group, file: the totals of what it holds
        self.children = 0  # closed groups of a file, accounts of a group: what the trailer counts
        self.opened = 0
        self.index = 1 if parent is None else parent.opened + 1  # position in the parent, from 1 (entry_ref)
        if parent is not None:
            parent.opened += 1
        self.header_ok = False
        self.open = True
        self.statement_id = self.as_of = self.currency = self.account = None
        self.status_problem: Optional[str] = None
        self.details = 0

    def chain(self) -> "Iterator[_Section]":
        section: Optional[_Section] = self
        while section is not None:
            yield section
            section = section.parent

    def reason(self) -> Optional[str]:
        for section in self.chain():
            if section.problem is not None:
                return section.problem
            if section.status_problem is not None:
                return section.status_problem
        return None


class _Detail:
    """A 16 record with its continuations, until its file's checks say whether it may be used."""

    def __init__(self, lines: List[_Line], section: Optional[_Section]):
        self.line, self.section = lines[0].number, section
        self.raw = "\n".join(line.text for line in lines)
        self.entry: Optional[BankEntry] = None
        self.problem: Optional[str] = None

    def record(self, path: str) -> RawRecord:
        source = f"{path}:{self.line}"
        if self.problem is not None:
            return problem_record(source, f"BAI2 transaction detail: {self.problem}", self.raw)
        reason = self.section.reason() if self.section is not None else None
        if reason is not None or self.entry is None:
            reason = reason or "its file, group or account header cannot be read"
            return problem_record(source, f"BAI2 transaction detail rejected: {reason}", self.raw)
        return entry_record(source, self.entry, self.raw)


class _Reader:
    def __init__(self, path: str):
        self.path = path
        self.file: Optional[_Section] = None
        self.group: Optional[_Section] = None
        self.account: Optional[_Section] = None
        self.pending: List[Tuple[int, object]] = []  # (line, _Detail or RawRecord) until a file is checked
        self.last_line = 0
        self.started = self.refused = False

    # -- records in, records out ----------------------------------------------------------------------
    def record(self, lines: List[_Line]) -> Iterator[RawRecord]:
        if self.refused:
            return
        self.last_line = lines[-1].number
        code = lines[0].code
        if not self.started:
            self.started = True
            if code != "01":
                self.refused = True
                yield problem_record(f"{self.path}:{lines[0].number}", f"{self.path} is not a BAI2 file: its first "
                                    "record is not a 01 file header", _raw(lines))
                return
        handler = {"01": self._file_header, "02": self._group_header, "03": self._account_header,
                   "16": self._detail, "49": self._account_trailer, "98": self._group_trailer,
                   "99": self._file_trailer}.get(code, self._unknown)
        handler(lines)
        if code == "99" and not self.refused:
            yield from self._flush()

    def end(self) -> Iterator[RawRecord]:
        if self.refused:
            return
        if not self.started:
            yield problem_record(f"{self.path}:1", f"{self.path} is empty: not a BAI2 file", f"<{self.path}: empty>")
            return
        if any(section is not None and section.open for section in (self.file, self.group, self.account)):
            self._close_open(self.last_line, at_end=True)
            self._problem(self.last_line, f"{self.path} {CUT_SHORT}: it ends without a 99 file trailer after "
                          f"line {self.last_line}", f"<{self.path}: ends after line {self.last_line}>")
        yield from self._flush()

    def _flush(self) -> Iterator[RawRecord]:
        pending, self.pending = sorted(self.pending, key=lambda item: item[0]), []
        for _, item in pending:
            yield item.record(self.path) if isinstance(item, _Detail) else item

    def _problem(self, line: int, reason: str, raw: str) -> None:
        self.pending.append((line, problem_record(f"{self.path}:{line}", reason, raw)))

    def _count(self, lines: List[_Line], *sections: Optional[_Section]) -> None:
        for section in sections:
            if section is not None and section.open:
                section.records += len(lines)

    # -- headers ----------------------------------------------------------------------------------------
    def _file_header(self, lines: List[_Line]) -> None:
        self._close_open(lines[0].number)
        self.file = section = _Section("file", lines[0].number, None)
        self._count(lines, section)
        fields = _fields(lines)
        sender, created, file_id, version = (_field(fields, index) for index in (0, 2, 4, 7))
        try:
            if version != VERSION:
                raise EntryProblem(f"the file header (01) names BAI version {version[:8]!r}; only version 2 is read")
            if not sender:
                raise EntryProblem("the file header (01) has no sender identification")
            _yymmdd(created, "the file creation date (01)")
            section.statement_id = f"{sender}/{created}/{file_id}"
            section.header_ok = True
        except EntryProblem as problem:
            section.problem = f"{problem} (line {lines[0].number})"

    def _group_header(self, lines: List[_Line]) -> None:
        self._close_account(lines[0].number)
        self._close_group(lines[0].number)
        file = self._open(self.file)
        self.group = section = _Section("group", lines[0].number, file)
        self._count(lines, section, file)
        if file is None:
            section.problem = f"the group header (02, line {section.line}) is not inside a file (no 01 before it)"
            return
        fields = _fields(lines)
        status, as_of, currency = (_field(fields, index) for index in (2, 3, 5))
        try:
            if status not in _GROUP_STATUS:
                raise EntryProblem("the group status (02) is not 1, 2, 3 or 4")
            section.as_of = _yymmdd(as_of, "the group as-of date (02)")
            section.currency = known_currency(currency, "the group currency (02)") if currency else None
            section.header_ok = True
        except EntryProblem as problem:
            section.problem = f"{problem} (line {section.line})"
            return
        if _GROUP_STATUS[status] is not None:
            section.status_problem = f"the group (02, line {section.line}) {_GROUP_STATUS[status]}"

    def _account_header(self, lines: List[_Line]) -> None:
        self._close_account(lines[0].number)
        group = self._open(self.group)
        self.account = section = _Section("account", lines[0].number, group)
        self._count(lines, section, group, group and group.parent)
        if group is None:
            section.problem = f"the account identifier (03, line {section.line}) is not inside a group (no 02 before it)"
            return
        fields = _fields(lines)
        section.account = _field(fields, 0)
        try:
            section.total = _summary_total(fields[2:])
            if not section.account:
                raise EntryProblem("the account identifier (03) has no account number")
            currency = _field(fields, 1)
            section.currency = (known_currency(currency, "the account currency (03)") if currency
                                else group.currency or DEFAULT_CURRENCY)
            section.header_ok = True
        except EntryProblem as problem:
            section.problem = f"{problem} (line {section.line})"

    # -- transaction details -------------------------------------------------------------------------------
    def _detail(self, lines: List[_Line]) -> None:
        account = self._open(self.account)
        group = account.parent if account is not None else self._open(self.group)
        self._count(lines, account, group, group and group.parent)
        detail = _Detail(lines, account)
        self.pending.append((detail.line, detail))
        if account is None:
            detail.problem = "the transaction detail (16) is not inside an account (no 03 before it)"
            return
        for section in account.chain():
            section.entries += 1
        account.details += 1
        fixed, text, unreadable = _detail_fields(lines)
        try:
            amount = self._amount(fixed[1], account)
            if unreadable is not None:
                raise EntryProblem(unreadable)
            type_code = fixed[0].strip()
            if not _TYPE_CODE.fullmatch(type_code):
                raise EntryProblem("the type code is not three digits")
            credit_debit = direction(type_code)
            if credit_debit is None:
                raise EntryProblem(f"type code {type_code} is no credit or debit (account status or "
                                   "non-monetary information, BAI2 Appendix A): it moves no money")
            funds_type = fixed[2].strip().upper()
            value_date = _yymmdd(fixed[3].strip(), "the value date (funds type V)") if funds_type == "V" else None
        except EntryProblem as problem:
            detail.problem = str(problem)
            return
        if not all(section.header_ok for section in account.chain()):
            return  # the broken header's problem rejects it
        statement_id = group.parent.statement_id
        detail.entry = BankEntry(
            statement_format=BAI2,
            statement_id=masked_reference(statement_id),
            account=account.account,
            account_currency=account.currency,
            entry_ref=masked_reference(f"{statement_id}/{group.index}/{account.index}/{account.details}"),
            status=BOOKED,
            credit_debit=credit_debit,
            amount_minor=amount,
            currency=account.currency,
            booking_date=group.as_of,
            value_date=value_date,
            bank_reference=masked_reference(fixed[-2]),
            end_to_end_id=None,
            customer_reference=masked_reference(fixed[-1]),
            remittance_unstructured=masked_text(text),
            remittance_structured=None,
            bank_transaction_code=type_code,
            reversal=False,
        )

    @staticmethod
    def _amount(text: str, account: _Section) -> int:
        text = text.strip()
        if _SIGNED.fullmatch(text):
            account.total += int(text)  # the 49 total sums the amounts as written, readable or not as entries
        if not text:
            raise EntryProblem("the amount is missing")
        if text.startswith("-"):
            raise EntryProblem("the amount is signed (the type code gives the direction)")
        if not _UNSIGNED.fullmatch(text):
            raise EntryProblem("the amount is not an integer number of minor units (BAI2 amounts have no "
                               "decimal point: the currency's exponent gives the decimals)")
        return checked_minor_units(int(text), "the amount")

    # -- trailers and their checks ------------------------------------------------------------------------
    def _account_trailer(self, lines: List[_Line]) -> None:
        account = self._open(self.account)
        group = account.parent if account is not None else self._open(self.group)
        self._count(lines, account, group, group and group.parent)
        line = lines[0].number
        if account is None:
            self._problem(line, f"BAI2: an account trailer (49, line {line}) without an account (no 03 before it)",
                          _raw(lines))
            return
        fields = _fields(lines)
        self._check(account, line, [
            ("control total", _field(fields, 0), account.total, "the account's 03 and 16 amounts sum to {}"),
            ("record count", _field(fields, 1), account.records, "the account has {} records")],
            "lines were lost or corrupted: none of the account's entries is used", lines)

    def _group_trailer(self, lines: List[_Line]) -> None:
        self._close_account(lines[0].number)
        group = self._open(self.group)
        file = group.parent if group is not None else self._open(self.file)
        self._count(lines, group, file)
        line = lines[0].number
        if group is None:
            self._problem(line, f"BAI2: a group trailer (98, line {line}) without a group (no 02 before it)",
                          _raw(lines))
            return
        fields = _fields(lines)
        self._check(group, line, [
            ("control total", _field(fields, 0), group.total, "its account control totals (49) sum to {}"),
            ("account count", _field(fields, 1), group.children, "the group has {} accounts (03)"),
            ("record count", _field(fields, 2), group.records, "the group has {} records")],
            "none of the group's entries is used", lines)

    def _file_trailer(self, lines: List[_Line]) -> None:
        self._close_account(lines[0].number)
        self._close_group(lines[0].number)
        file = self._open(self.file)
        self._count(lines, file)
        line = lines[0].number
        if file is None:
            self._problem(line, f"BAI2: a file trailer (99, line {line}) without a file (no 01 before it)",
                          _raw(lines))
            return
        fields = _fields(lines)
        self._check(file, line, [
            ("control total", _field(fields, 0), file.total, "its group control totals (98) sum to {}"),
            ("group count", _field(fields, 1), file.children, "the file has {} groups (02)"),
            ("record count", _field(fields, 2), file.records, "the file has {} records")],
            "none of the file's entries is used", lines)

    def _check(self, section: _Section, line: int, checks: List[Tuple[str, str, int, str]], consequence: str,
               lines: List[_Line]) -> None:
        """A trailer's numbers against what was read; the first failure of a section rejects what it holds."""
        trailer = {"account": "49", "group": "98", "file": "99"}[section.kind]
        failed, declared_total = [], None
        for name, text, actual, saying in checks:
            if not _SIGNED.fullmatch(text):
                failed.append(f"the {section.kind} {name} ({trailer}, line {line}) is missing or not a number")
                continue
            declared = int(text)
            if name == "control total":
                declared_total = declared
            if declared != actual:
                failed.append(f"the {section.kind} {name} ({trailer}, line {line}) is {declared}, but "
                              + saying.format(actual))
        if failed and section.problem is None:
            section.problem = f"{'; '.join(failed)}: {consequence}"
        self._close(section, line, _raw(lines), declared_total)

    # -- sections -----------------------------------------------------------------------------------------
    @staticmethod
    def _open(section: Optional[_Section]) -> Optional[_Section]:
        return section if section is not None and section.open else None

    def _close(self, section: _Section, line: int, raw: str, declared_total: Optional[int] = None,
               at_end: bool = False) -> None:
        """Close a section; the parent adds what its trailer declared (what was counted when there is none)."""
        section.open = False
        if section.parent is not None:
            section.parent.total += section.total if declared_total is None else declared_total
            section.parent.children += 1
        if section.problem is not None and section.entries == 0 and not at_end:
            self._problem(line, f"BAI2: {section.problem}", raw)

    def _close_account(self, line: int, at_end: bool = False) -> None:
        account = self._open(self.account)
        if account is not None:
            if account.problem is None:
                account.problem = (f"the account (03, line {account.line}) has no account trailer (49): "
                                   "nothing vouches for its entries")
            self._close(account, line, f"<{self.path}: account from line {account.line}>", at_end=at_end)

    def _close_group(self, line: int, at_end: bool = False) -> None:
        group = self._open(self.group)
        if group is not None:  # no problem of its own: its accounts' 49s vouch for their entries
            raw = f"<{self.path}: group from line {group.line}>"
            self._close(group, line, raw, at_end=at_end)
            if not at_end:
                self._problem(line, f"BAI2: the group (02, line {group.line}) has no group trailer (98)", raw)

    def _close_open(self, line: int, at_end: bool = False) -> None:
        self._close_account(line, at_end)
        self._close_group(line, at_end)
        file = self._open(self.file)
        if file is not None:
            raw = f"<{self.path}: file from line {file.line}>"
            self._close(file, line, raw, at_end=at_end)
            if not at_end:
                self._problem(line, f"BAI2: the file (01, line {file.line}) has no file trailer (99)", raw)

    def _unknown(self, lines: List[_Line]) -> None:
        # Inside an account it is a line of the account's data that cannot be read: the account is rejected.
        # Between accounts the group and file trailers judge (a cut file's last, partial line is one).
        line = lines[0].number
        account = self._open(self.account)
        if account is not None and account.problem is None:
            account.problem = f"the account from line {account.line} holds a line that is no BAI2 record (line {line})"
        self._problem(line, f"BAI2: line {line} is no BAI2 record (01, 02, 03, 16, 88, 49, 98, 99)", _raw(lines))


def _raw(lines: List[_Line]) -> str:
    return "\n".join(line.text for line in lines)
