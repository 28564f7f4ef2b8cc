"""The generator's bank statement files: planned bank lines as camt.053.001.08 or BAI2 text (issue 21).

`datagen.bank_statements` decides what the bank booked (`BankLine`: an account, a day, a credit or a
debit, its amount and where each reference sits); this module only writes it down, the way banks do,
and gives each line the `entry_ref` the readers in `schemas/bank/` will give it back (docs/DESIGN.md 3.7):

* camt.053: one file per booking day, `camt053_<day>.xml`, one `Stmt` per account with entries that day
  (`Id` `ST<yyyymmdd>A<account>`), opening and closing booked balances and a transactions summary. A
  credit is one `Ntry` with one `TxDtls`; credits marked `batchable` of the same account and day (two or
  more) are one batch `Ntry` with a `TxDtls` each (`entry_ref` `<statement>/<entry>/<detail>`).
  Counterparty names (`RltdPties`) are written, as banks do; the reader never reads them.
* BAI2: one file per booking day, `bai2_<day>.bai2`, created the morning after: a 01 header, one 02
  group (as-of date = the booking day), per account an 03 with its opening and closing ledger and
  credit and debit totals, a 16 per line (funds type V with the value date for credits) with its text
  continued in 88 records, and the 49/98/99 trailers with their control totals and record counts.

Amounts are integer minor units, written as decimal text with the currency's exponent (camt.053,
`schemas.money.to_major_units`) or as implied-decimal integers (BAI2). No value holds 13 digits joined
by nothing, a space or a dash (nothing looks like a card number), and no text holds a comma or a slash
(BAI2 delimiters). Same lines, same bytes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Dict, Iterable, List, Tuple
from xml.sax.saxutils import escape

from schemas.money import to_major_units

CAMT_NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"
BAI2_SENDER, BAI2_RECEIVER = "PAYBANK", "PAYBEAM"
# File names this module writes (also what an earlier run's stale files look like).
FILE_PATTERN = r"(camt053_\d{4}-\d{2}-\d{2}\.xml|bai2_\d{4}-\d{2}-\d{2}\.bai2)"

# Bank transaction codes: camt.053 domain/family/sub-family, BAI2 type codes (Appendix A).
_CAMT_CREDIT = ("PMNT", "RCDT")  # payments, received credit transfers
_CAMT_FEE = ("ACMT", "MDOP", "CHRG")  # account management, miscellaneous debit operations, charges
_BAI2_CREDIT, _BAI2_ACH_CREDIT, _BAI2_FEE = "195", "165", "698"  # incoming transfer, ACH credit, fees


@dataclass(frozen=True)
class Account:
    """A bank account that receives payouts: its IBAN (camt.053), account number (BAI2) and currency."""

    iban: str
    number: str
    currency: str
    bic: str
    opening_minor: int  # the booked balance before the first statement


@dataclass
class BankLine:
    """One booking on a statement; `entry_ref` is filled in when its file is written."""

    account: int  # position in the accounts list
    day: date  # booking date, also the value date
    credit: bool
    amount_minor: int
    bank_reference: str  # camt AcctSvcrRef (the detail's in a batch), BAI2 bank reference
    remittance: Tuple[str, ...] = ()  # camt one Ustrd each; BAI2 the 16 text, then one 88 each
    end_to_end_id: str = ""  # camt only; "" is written as NOTPROVIDED
    customer_reference: str = ""  # camt Refs/InstrId, BAI2 customer reference
    structured_reference: str = ""  # camt RmtInf/Strd/CdtrRefInf/Ref
    payer: str = ""  # camt Dbtr name (a company: the processor)
    ach: bool = False  # BAI2: an ACH credit (165) rather than a transfer (195)
    batchable: bool = False  # camt: may share a batch entry with others of its account and day
    entry_ref: str = ""


def write_statements(fmt: str, directory: str, accounts: List[Account], lines: List[BankLine]) -> List[str]:
    """Writes the statement files of `lines` (any order) into `directory`; the paths, in day order."""
    os.makedirs(directory, exist_ok=True)
    days: Dict[date, Dict[int, List[BankLine]]] = {}
    for line in sorted(lines, key=lambda line: (line.day, line.account)):  # stable: plan order within
        days.setdefault(line.day, {}).setdefault(line.account, []).append(line)
    balances = [account.opening_minor for account in accounts]
    sequence = [0] * len(accounts)
    paths = []
    for day in sorted(days):
        statements = []
        for number in sorted(days[day]):
            booked = days[day][number]
            opening = balances[number]
            balances[number] += sum(line.amount_minor if line.credit else -line.amount_minor for line in booked)
            sequence[number] += 1
            statements.append(_Statement(number, accounts[number], booked, opening, balances[number],
                                         sequence[number]))
        if fmt == "camt053":
            path, text = os.path.join(directory, f"camt053_{day.isoformat()}.xml"), _camt_file(day, statements)
        else:
            path, text = os.path.join(directory, f"bai2_{day.isoformat()}.bai2"), _bai2_file(day, statements)
        with open(path, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        paths.append(path)
    return paths


@dataclass
class _Statement:
    number: int
    account: Account
    lines: List[BankLine]
    opening_minor: int
    closing_minor: int
    sequence: int  # electronic sequence number of the account's statements


# ------------------------------------------------------------------ camt.053


def _amount(amount_minor: int, currency: str) -> str:
    return f'<Amt Ccy="{currency}">{to_major_units(amount_minor, currency)}</Amt>'


def _balance(code: str, amount_minor: int, currency: str, day: date) -> str:
    indicator = "CRDT" if amount_minor >= 0 else "DBIT"
    return (f"      <Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp>{_amount(abs(amount_minor), currency)}"
            f"<CdtDbtInd>{indicator}</CdtDbtInd><Dt><Dt>{day.isoformat()}</Dt></Dt></Bal>\n")


def _transaction_code(domain: str, family: str, sub_family: str) -> str:
    return f"<BkTxCd><Domn><Cd>{domain}</Cd><Fmly><Cd>{family}</Cd><SubFmlyCd>{sub_family}</SubFmlyCd></Fmly></Domn></BkTxCd>"


def _code_of(line: BankLine, currency: str) -> str:
    if not line.credit:
        return _transaction_code(*_CAMT_FEE)
    # SEPA credit transfer in euro, a domestic credit transfer in any other currency
    return _transaction_code(*_CAMT_CREDIT, "ESCT" if currency == "EUR" else "DMCT")


def _details(line: BankLine, currency: str, in_batch: bool) -> str:
    """A TxDtls: references, amount, the payer (a company), remittance information."""
    refs = f"<AcctSvcrRef>{escape(line.bank_reference)}</AcctSvcrRef>" if in_batch else ""
    if line.customer_reference:
        refs += f"<InstrId>{escape(line.customer_reference)}</InstrId>"
    refs += f"<EndToEndId>{escape(line.end_to_end_id or 'NOTPROVIDED')}</EndToEndId>"
    indicator = "CRDT" if line.credit else "DBIT"
    parties = f"<RltdPties><Dbtr><Pty><Nm>{escape(line.payer)}</Nm></Pty></Dbtr></RltdPties>" if line.payer else ""
    remittance = "".join(f"<Ustrd>{escape(piece)}</Ustrd>" for piece in line.remittance)
    if line.structured_reference:
        remittance += (f"<Strd><CdtrRefInf><Ref>{escape(line.structured_reference)}</Ref></CdtrRefInf>"
                       f"</Strd>")
    remittance = f"<RmtInf>{remittance}</RmtInf>" if remittance else ""
    return (f"          <TxDtls><Refs>{refs}</Refs>{_amount(line.amount_minor, currency)}"
            f"<CdtDbtInd>{indicator}</CdtDbtInd>{parties}{remittance}</TxDtls>\n")


def _entry(lines: List[BankLine], currency: str, batch_reference: str) -> str:
    """One Ntry: a single line, or a batch of credits (one TxDtls each) booked as one amount."""
    first, batch = lines[0], len(lines) > 1
    total = sum(line.amount_minor for line in lines)
    indicator = "CRDT" if first.credit else "DBIT"
    day = first.day.isoformat()
    reference = batch_reference if batch else first.bank_reference
    header = (f"      <Ntry>\n        {_amount(total, currency)}<CdtDbtInd>{indicator}</CdtDbtInd>"
              f"<Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>{day}</Dt></BookgDt><ValDt><Dt>{day}</Dt></ValDt>"
              f"<AcctSvcrRef>{escape(reference)}</AcctSvcrRef>{_code_of(first, currency)}\n        <NtryDtls>\n")
    if batch:
        header += (f"          <Btch><NbOfTxs>{len(lines)}</NbOfTxs><TtlAmt Ccy=\"{currency}\">"
                   f"{to_major_units(total, currency)}</TtlAmt><CdtDbtInd>{indicator}</CdtDbtInd></Btch>\n")
    body = "".join(_details(line, currency, batch) for line in lines)
    extra = "" if first.credit else "        <AddtlNtryInf>CHARGES</AddtlNtryInf>\n"
    return f"{header}{body}        </NtryDtls>\n{extra}      </Ntry>\n"


def _entries(statement: _Statement) -> List[List[BankLine]]:
    """The statement's entries in booking order: batchable credits together (two or more), the rest alone."""
    batchable = [line for line in statement.lines if line.batchable and line.credit]
    entries: List[List[BankLine]] = []
    for line in statement.lines:
        if len(batchable) > 1 and line.batchable and line.credit:
            if line is batchable[0]:
                entries.append(batchable)
        else:
            entries.append([line])
    return entries


def _camt_statement(day: date, statement: _Statement) -> str:
    account, currency = statement.account, statement.account.currency
    statement_id = f"ST{day:%Y%m%d}A{statement.number + 1:03d}"
    entries = _entries(statement)
    parts = []
    for index, lines in enumerate(entries, start=1):
        for detail, line in enumerate(lines, start=1):
            line.entry_ref = f"{statement_id}/{index}" + (f"/{detail}" if len(lines) > 1 else "")
        parts.append(_entry(lines, currency, f"{statement_id}B{index:03d}"))
    credits = [line.amount_minor for lines in entries for line in lines if line.credit]
    debits = [line.amount_minor for lines in entries for line in lines if not line.credit]
    net = sum(credits) - sum(debits)
    created = f"{day + timedelta(days=1)}T06:00:00+00:00"
    summary = (f"      <TxsSummry><TtlNtries><NbOfNtries>{len(entries)}</NbOfNtries>"
               f"<TtlNetNtry><Amt>{to_major_units(abs(net), currency)}</Amt>"
               f"<CdtDbtInd>{'CRDT' if net >= 0 else 'DBIT'}</CdtDbtInd></TtlNetNtry></TtlNtries>"
               f"<TtlCdtNtries><NbOfNtries>{len(credits)}</NbOfNtries>"
               f"<Sum>{to_major_units(sum(credits), currency)}</Sum></TtlCdtNtries>"
               f"<TtlDbtNtries><NbOfNtries>{len(debits)}</NbOfNtries>"
               f"<Sum>{to_major_units(sum(debits), currency)}</Sum></TtlDbtNtries></TxsSummry>\n")
    return (f"    <Stmt>\n      <Id>{statement_id}</Id>\n      <ElctrncSeqNb>{statement.sequence}</ElctrncSeqNb>\n"
            f"      <CreDtTm>{created}</CreDtTm>\n"
            f"      <FrToDt><FrDtTm>{day}T00:00:00+00:00</FrDtTm><ToDtTm>{day}T23:59:59+00:00</ToDtTm></FrToDt>\n"
            f"      <Acct><Id><IBAN>{account.iban}</IBAN></Id><Ccy>{currency}</Ccy>"
            f"<Svcr><FinInstnId><BICFI>{account.bic}</BICFI></FinInstnId></Svcr></Acct>\n"
            + _balance("OPBD", statement.opening_minor, currency, day)
            + _balance("CLBD", statement.closing_minor, currency, day)
            + summary + "".join(parts) + "    </Stmt>\n")


def _camt_file(day: date, statements: Iterable[_Statement]) -> str:
    created = f"{day + timedelta(days=1)}T06:00:00+00:00"
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<Document xmlns="{CAMT_NAMESPACE}">\n  <BkToCstmrStmt>\n'
            f"    <GrpHdr><MsgId>PB{day:%Y%m%d}C053</MsgId><CreDtTm>{created}</CreDtTm>"
            "<MsgPgntn><PgNb>1</PgNb><LastPgInd>true</LastPgInd></MsgPgntn></GrpHdr>\n"
            + "".join(_camt_statement(day, statement) for statement in statements)
            + "  </BkToCstmrStmt>\n</Document>\n")


# ------------------------------------------------------------------ BAI2


def _yymmdd(day: date) -> str:
    return f"{day:%y%m%d}"


def _bai2_detail(line: BankLine, day: date) -> List[str]:
    """A 16 record and its 88 continuations (the text's later pieces)."""
    if line.credit:
        head = f"16,{_BAI2_ACH_CREDIT if line.ach else _BAI2_CREDIT},{line.amount_minor},V,{_yymmdd(day)},"
    else:
        head = f"16,{_BAI2_FEE},{line.amount_minor},0"
    pieces = [piece for piece in line.remittance if piece]
    # A 16 whose text is empty ends with "/"; one with text ends inside it, so that an 88 goes on with it.
    first = pieces[0] if pieces else "/"
    return [f"{head},{line.bank_reference},{line.customer_reference},{first}", *(f"88,{piece}" for piece in pieces[1:])]


def _bai2_file(day: date, statements: List[_Statement]) -> str:
    created = day + timedelta(days=1)  # the prior-day report, sent the morning after
    records = [f"01,{BAI2_SENDER},{BAI2_RECEIVER},{_yymmdd(created)},0600,1,,,2/",
               f"02,{BAI2_RECEIVER},{BAI2_SENDER},1,{_yymmdd(day)},2400,,2/"]
    statement_id = f"{BAI2_SENDER}/{_yymmdd(created)}/1"
    group_total = 0
    group_records = 1  # the 02
    for account_index, statement in enumerate(statements, start=1):
        credits = [line.amount_minor for line in statement.lines if line.credit]
        debits = [line.amount_minor for line in statement.lines if not line.credit]
        summary = ((10, statement.opening_minor, ""), (15, statement.closing_minor, ""),
                   (100, sum(credits), str(len(credits))), (400, sum(debits), str(len(debits))))
        account_records = [f"03,{statement.account.number},{statement.account.currency},"
                           + ",".join(f"{code:03d},{amount},{count}," for code, amount, count in summary) + "/"]
        total = sum(amount for _, amount, _ in summary)
        for detail, line in enumerate(statement.lines, start=1):
            line.entry_ref = f"{statement_id}/1/{account_index}/{detail}"
            account_records += _bai2_detail(line, day)
            total += line.amount_minor
        account_records.append(f"49,{total},{len(account_records) + 1}/")
        records += account_records
        group_total += total
        group_records += len(account_records)
    records.append(f"98,{group_total},{len(statements)},{group_records + 1}/")
    records.append(f"99,{group_total},1,{len(records) + 1}/")
    return "\n".join(records) + "\n"
