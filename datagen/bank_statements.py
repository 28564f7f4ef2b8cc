"""Bank statements consistent with the generated payouts, every bank-matching break injected (issue 21).

With `GeneratorConfig(bank_statements="camt053" | "bai2")` the generator also writes what reached the
bank: `bank_statements/` (`datagen.bank_files`: one file per booking day) and `bank_ground_truth.csv`,
and adds a `bank` section to `expected.json`. The truth is what was *meant*: each payout and each
injected credit gets its break from a draw here, and its expected status is written from that choice,
never from a run of the rules in `transforms/bank/` (docs/DESIGN.md 3.8; 3.9 says how each choice is
kept unambiguous). Nothing here draws from the world's `random.Random(seed)`: a second generator
seeded from the seed (`bank_rng`) makes every bank decision, so the payment and settlement draws,
and every file without this option, stay byte-identical.

The world: one account per (merchant, currency) that received payouts. Every payout (a PAYOUT line
of positive amount, booked at the end of its day) is one bank credit valued 1 or 2 business days
later (Monday to Friday), carrying the payout id in one field (`reference_field`: end-to-end id,
bank reference, customer reference, unstructured remittance text, structured remittance reference)
or in none (found by amount). Credits valued after `as_of`'s date are not on any statement yet (in
transit). Bank fees are debits, read and never matched.

Injected, each at its `BankRates` rate of the payouts and at least once when some payout qualifies:
* payout side (settlement files change only with this option): `lines_differ` (the PAYOUT line's
  amount is off: PAYOUT_LINES_DIFFER), `payout_withheld` (the PAYOUT line left out of the report:
  LINES_WITHOUT_PAYOUT, and no credit), `payout_relabelled` (the PAYOUT line, amount unchanged, carries
  a new payout id of the processor's form that no line carries: the lines' id LINES_WITHOUT_PAYOUT with
  no credit, the new id PAYOUT_WITHOUT_LINES, credited under the new id like any payout; two truth
  rows, one injection);
* bank side: `short_paid` (the credit is lower: PAYOUT_AMOUNT_DIFFERS), `missing_credit` (no
  credit, SLA long past: PAYOUT_NOT_RECEIVED), `ambiguous_amount` (two unreferenced credits of the
  payout's amount) and `ambiguous_reference` (two credits naming it): AMBIGUOUS_BANK_MATCH for the
  payout and both credits; `unreferenced` (no reference: PAYOUT_RECEIVED by amount); `in_transit`
  (not credited yet: PENDING); `unexpected_credit` (no payout, past the grace: UNEXPECTED_BANK_CREDIT)
  and `recent_credit` (no payout, within the grace: PENDING).

`bank_ground_truth.csv`, sorted (payout rows first, by processor and payout id; then credit rows by
entry_ref), one row per payout and one per credit no payout takes:
* `record`: `payout` or `credit`;
* `processor`, `payout_id`: the payout; on a credit row the payout whose ambiguity it was injected
  for, else empty;
* `entry_ref`: the credit (`schemas/bank` `entry_ref`) a payout is expected to match (statuses
  PAYOUT_RECEIVED, PAYOUT_AMOUNT_DIFFERS), or the credit of a credit row; else empty;
* `payout_status`: the payout against its lines (PAYOUT_STATUSES), empty on credit rows;
* `bank_status`: the expected bank-match status (BANK_MATCH_STATUSES); empty for a payout without a
  PAYOUT line (it expects no credit);
* `injected`: the injected kinds, joined by "+" (empty: an ordinary payout, received by reference;
  `payout_relabelled` on the rows of both its ids);
* `reference_field`: the bank entry field that holds `payout_id`'s reference, empty when none does;
* `currency`, `payout_minor` (the PAYOUT line's amount), `credit_minor` (the credit's amount).
"""
from __future__ import annotations

import csv
import os
import re
from bisect import bisect
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import accumulate
from random import Random
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from datagen.bank_files import FILE_PATTERN, Account, BankLine, write_statements
from datagen.scenarios import CARD_LIKE, CURRENCIES, PROCESSORS, RECORD_TYPE_CODE, World, date_text
from datagen.writers import FileRows
from schemas.money import currency_exponent
from schemas.rules import (
    AMBIGUOUS_BANK_MATCH,
    BANK_MATCH_STATUSES,
    LINES_WITHOUT_PAYOUT,
    PAYOUT_AMOUNT_DIFFERS,
    PAYOUT_BALANCED,
    PAYOUT_LINES_DIFFER,
    PAYOUT_NOT_RECEIVED,
    PAYOUT_RECEIVED,
    PAYOUT_STATUSES,
    PAYOUT_WITHOUT_LINES,
    PENDING,
    UNEXPECTED_BANK_CREDIT,
)

BANK_FORMATS = ("camt053", "bai2")
BANK_DIRECTORY = "bank_statements"
BANK_TRUTH_FILE = "bank_ground_truth.csv"
BANK_TRUTH_FIELDS = ("record", "processor", "payout_id", "entry_ref", "payout_status", "bank_status", "injected",
                     "reference_field", "currency", "payout_minor", "credit_minor")
INJECTED_KINDS = ("lines_differ", "payout_withheld", "payout_relabelled", "short_paid", "missing_credit",
                  "ambiguous_amount", "ambiguous_reference", "unreferenced", "in_transit", "unexpected_credit",
                  "recent_credit")

# The policy the truth is written for: the defaults of transforms/bank (DESIGN 3.8).
BANK_SLA_BUSINESS_DAYS = 3
CREDIT_GRACE_DAYS = 3
PAYOUT_GRACE_DAYS = 1
# Injections are placed where their status cannot depend on how `as_of` is read (its date, the day
# after) nor on the calendar: 3 business days are at most 5 calendar days, plus 2 days of margin.
_NOT_RECEIVED_AFTER_DAYS = 7  # a missing credit's payout day is at least this long before as_of's date
_UNEXPECTED_AFTER_DAYS = CREDIT_GRACE_DAYS + 3  # an unexpected credit's day is at least this long before
_RECENT_WITHIN_DAYS = CREDIT_GRACE_DAYS - 1  # a recent credit's day is at most this long before
_WITHHELD_AFTER_DAYS = PAYOUT_GRACE_DAYS + 2  # a withheld payout's day is at least this long before

# Where a credit carries its payout id, per format (BAI2 has no end-to-end id or structured remittance).
_REFERENCE_FIELDS = {
    "camt053": (("end_to_end_id", 35), ("remittance_unstructured", 30), ("customer_reference", 15),
                ("remittance_structured", 10), ("bank_reference", 10)),
    "bai2": (("customer_reference", 40), ("remittance_unstructured", 40), ("bank_reference", 20)),
}
REMITTANCE = "remittance_unstructured"
# What processors write (companies, never people), and their transfer texts without a reference.
_PAYERS = {"stripe": "STRIPE PAYMENTS EUROPE LTD", "adyen": "ADYEN N.V.", "checkout": "CHECKOUT LTD",
           "worldpay": "WORLDPAY (UK) LIMITED"}
_PLAIN_TEXT = {"stripe": "STRIPE PAYMENTS", "adyen": "ADYEN NV SETTLEMENT", "checkout": "CHECKOUT.COM PAYMENTS",
               "worldpay": "WORLDPAY MERCHANT SETTLEMENT"}
_OTHER_CREDITS = ("INTEREST CREDIT", "RETURNED DIRECT DEBIT", "CUSTOMER TRANSFER", "REFUND OF CHARGES")
_BANKS = (("INGB", "INGBNL2A"), ("ABNA", "ABNANL2A"), ("RABO", "RABONL2U"))
_FOREIGN_ADYEN_BATCH = 900_000  # Adyen batch numbers of payouts this run does not know start here


@dataclass(frozen=True)
class BankRates:
    """Per payout (of all payouts with a PAYOUT line): the share of each injected kind; a kind with a
    positive rate is injected at least once when some payout qualifies for it."""

    lines_differ: float = 0.01
    payout_withheld: float = 0.01
    payout_relabelled: float = 0.01
    short_paid: float = 0.02
    missing_credit: float = 0.02
    ambiguous_amount: float = 0.01
    ambiguous_reference: float = 0.01
    unreferenced: float = 0.10
    unexpected_credit: float = 0.02
    recent_credit: float = 0.01
    batched: float = 0.30  # camt.053: a credit booked in a batch entry with others of its account and day
    bank_fee: float = 0.05  # per account and statement day with entries: a bank fee debit


@dataclass
class _Payout:
    index: int  # position in world.payout_ids
    row: int  # its PAYOUT line (world row)
    payout_id: str
    processor: str
    merchant: int
    currency: str
    day: date
    amount: int  # the PAYOUT line's amount, after a lines_differ injection
    account: int = -1
    kinds: List[str] = field(default_factory=list)
    payout_status: str = PAYOUT_BALANCED
    bank_status: str = ""
    reference_field: str = ""
    credit: Optional[BankLine] = None  # the credit it is expected to match
    relabelled_from: str = ""  # a payout_relabelled PAYOUT line's own payout id: the id its lines carry


@dataclass
class _Credit:
    """A credit no payout takes, with its expected row."""

    line: BankLine
    kind: str
    status: str
    payout: Optional[_Payout] = None
    reference_field: str = ""


@dataclass
class BankPlan:
    """Every bank decision of a dataset: made by `plan_bank_statements`, written by `write_bank_statements`."""

    fmt: str
    as_of_date: date
    payouts: List[_Payout]
    accounts: List[Account]
    lines: List[BankLine]
    credits: List[_Credit]
    withheld_rows: np.ndarray  # PAYOUT lines left out of the settlement files


@dataclass(frozen=True)
class BankOutput:
    files: List[str]
    truth_path: str
    expected: dict


def bank_rng(seed: int) -> Random:
    """The bank's own generator: seeded from the dataset's seed, independent of the world's draws."""
    return Random(f"paybeam bank statements {seed}")  # str seeds are hashed with SHA-512: same in every process


def business_days_after(day: date, count: int) -> date:
    """The `count`-th weekday after `day` (a payout of a Saturday arrives from Monday on)."""
    while count:
        day += timedelta(days=1)
        if day.weekday() < 5:
            count -= 1
    return day


def _weekdays(first: date, last: date) -> List[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)
            if (first + timedelta(days=n)).weekday() < 5]


# ------------------------------------------------------------------ planning


def plan_bank_statements(world: World, seed: int, as_of_millis: int, fmt: str,
                         rates: BankRates = BankRates()) -> BankPlan:
    """Decides every payout's and credit's break, and applies the payout-side ones to the world (a PAYOUT
    line's amount, or its payout id; `withheld_rows` for the caller to leave out of the settlement files)."""
    if fmt not in BANK_FORMATS:
        raise ValueError(f"unknown bank statement format {fmt!r}; choose one of {', '.join(BANK_FORMATS)}")
    rng = bank_rng(seed)
    as_of_date = date.fromisoformat(date_text(as_of_millis))
    first_day = date.fromisoformat(date_text(world.start))
    payouts = _payouts(world)
    count = len(payouts)
    taken: Set[int] = set()

    # Payout side, before anything depends on the amounts.
    old_enough = [p for p in payouts if (as_of_date - p.day).days >= _WITHHELD_AFTER_DAYS]
    withheld = _choose(rng, old_enough, rates.payout_withheld, count, taken)
    for payout in withheld:
        payout.kinds.append("payout_withheld")
        payout.payout_status = LINES_WITHOUT_PAYOUT
    # Relabelled: the lines keep their payout id (LINES_WITHOUT_PAYOUT, no credit, as if withheld) and the
    # PAYOUT line names a new payout (PAYOUT_WITHOUT_LINES), which the bank pays like any other.
    relabelled = _choose(rng, old_enough, rates.payout_relabelled, count, taken)
    for payout in relabelled:
        payout.kinds.append("payout_relabelled")
        payout.payout_status = LINES_WITHOUT_PAYOUT
    # Off amounts may also meet a bank-side break (a copy of `taken`): the two legs are independent.
    for payout in _choose(rng, payouts, rates.lines_differ, count, set(taken)):
        payout.amount = _off_amount(rng, payout.amount)
        world.lines["gross"][payout.row] = payout.amount  # PAYOUT lines have no fee: net == gross
        payout.kinds.append("lines_differ")
        payout.payout_status = PAYOUT_LINES_DIFFER
    payouts.extend(_relabel(world, payout) for payout in relabelled)  # after lines_differ: they have no lines
    paid = [payout for payout in payouts if payout.index not in taken]

    # A payout found by amount must be the only payout of its currency and amount, so that its credits
    # are candidates of no other payout whatever the windows.
    amounts = Counter((payout.currency, payout.amount) for payout in paid)
    unique = [payout for payout in paid if amounts[(payout.currency, payout.amount)] == 1]
    delays = {payout.index: 1 if rng.random() < 0.7 else 2 for payout in paid}

    def credited_by(payout: _Payout, days: int = 2) -> bool:
        return business_days_after(payout.day, days) <= as_of_date

    kinds = (("missing_credit", [p for p in paid if (as_of_date - p.day).days >= _NOT_RECEIVED_AFTER_DAYS]),
             ("short_paid", [p for p in paid if credited_by(p, delays[p.index]) and p.amount >= 2]),
             ("ambiguous_amount", [p for p in unique if credited_by(p)]),
             ("ambiguous_reference", [p for p in paid if credited_by(p)]),
             ("unreferenced", unique))
    for kind, pool in kinds:
        for payout in _choose(rng, pool, getattr(rates, kind), count, taken):
            payout.kinds.append(kind)

    accounts, account_of = _accounts(rng, paid)
    lines: List[BankLine] = []
    credits: List[_Credit] = []
    references = _References(rng, fmt)
    for payout in paid:
        payout.account = account_of[(payout.merchant, payout.currency)]
        _plan_payout(rng, payout, delays[payout.index], as_of_date, references, rates, lines, credits)
    _ensure_remittance(references, paid)

    # Credits no payout explains: long past the grace, and within it.
    used = {(payout.currency, payout.amount) for payout in paid}
    known = {payout.payout_id.upper() for payout in payouts}  # reference keys (transforms/bank/references.py)
    for kind, days, rate, status in (
            ("unexpected_credit", _weekdays(first_day, as_of_date - timedelta(days=_UNEXPECTED_AFTER_DAYS)),
             rates.unexpected_credit, UNEXPECTED_BANK_CREDIT),
            ("recent_credit", _weekdays(max(first_day, as_of_date - timedelta(days=_RECENT_WITHIN_DAYS)), as_of_date),
             rates.recent_credit, PENDING)):
        for _ in range(_count(rate, count) if days and accounts else 0):
            line = _stray_credit(rng, accounts, days, references, used, known)
            lines.append(line)
            credits.append(_Credit(line, kind, status))
    _add_fees(rng, accounts, lines, rates.bank_fee, references)
    return BankPlan(fmt, as_of_date, payouts, accounts, lines, credits,
                    np.array(sorted(payout.row for payout in withheld), np.int64))


def _payouts(world: World) -> List[_Payout]:
    lines = world.lines
    rows = np.flatnonzero(lines["record_type"] == RECORD_TYPE_CODE["PAYOUT"])
    payouts = []
    for row in rows.tolist():
        index = int(world.line_payout[row])
        payouts.append(_Payout(
            index=index, row=row, payout_id=world.payout_ids[index], processor=PROCESSORS[lines["processor"][row]],
            merchant=int(lines["merchant"][row]), currency=CURRENCIES[lines["currency"][row]],
            day=date.fromisoformat(date_text(int(lines["booked"][row]))), amount=int(lines["gross"][row])))
    payouts.sort(key=lambda payout: payout.index)
    return payouts


def _relabel(world: World, payout: _Payout) -> _Payout:
    """Puts `payout`'s PAYOUT line (and its re-deliveries, which are the same world row) under a new payout id,
    issued as the processor issues payout ids (the next Adyen batch number; the next `po_`/`pyt_`/`wpo_` id),
    so it is none of the run's; its lines keep theirs. Returns the new id's payout (its PAYOUT line only)."""
    index = len(world.payout_ids)
    world.payout_ids.append(world.ids.payout(payout.processor))
    world.line_payout[payout.row] = index
    return _Payout(index=index, row=payout.row, payout_id=world.payout_ids[index], processor=payout.processor,
                   merchant=payout.merchant, currency=payout.currency, day=payout.day, amount=payout.amount,
                   kinds=["payout_relabelled"], payout_status=PAYOUT_WITHOUT_LINES,
                   relabelled_from=payout.payout_id)


def _count(rate: float, population: int) -> int:
    return max(1, round(rate * population)) if rate > 0 and population else 0


def _choose(rng: Random, pool: Sequence[_Payout], rate: float, population: int, taken: Set[int]) -> List[_Payout]:
    """`rate` of `population` payouts (at least one) from `pool`, none already `taken`; marks them taken."""
    free = [payout for payout in pool if payout.index not in taken]
    chosen = sorted(rng.sample(free, min(len(free), _count(rate, population))), key=lambda payout: payout.index)
    taken.update(payout.index for payout in chosen)
    return chosen


def _off_amount(rng: Random, amount: int) -> int:
    """A PAYOUT amount that differs from its lines: by a few minor units (rounding) or by a few percent."""
    delta = 1 + rng.randrange(9) if rng.random() < 0.6 else max(2, int(amount * (0.01 + 0.04 * rng.random())))
    return amount - delta if amount - delta >= 1 and rng.random() < 0.5 else amount + delta


def _short_amount(rng: Random, amount: int, currency: str) -> int:
    """What a short-paid credit brings: the payout less a bank charge (a fixed fee or a few percent)."""
    fee = (5 + rng.randrange(21)) * 10 ** currency_exponent(currency) if rng.random() < 0.5 \
        else int(amount * (0.005 + 0.045 * rng.random()))
    return amount - min(max(1, fee), amount - 1)


def _accounts(rng: Random, paid: Sequence[_Payout]) -> Tuple[List[Account], Dict[Tuple[int, str], int]]:
    """One account per (merchant, currency) that received payouts, in that order."""
    keys = sorted({(payout.merchant, payout.currency) for payout in paid},
                  key=lambda key: (key[0], CURRENCIES.index(key[1])))
    accounts, numbers = [], set()
    for merchant, currency in keys:
        bank, bic = _BANKS[rng.randrange(len(_BANKS))]
        while True:
            number = str(rng.randrange(10 ** 9, 10 ** 10))  # ten digits: an IBAN's Dutch account part
            if number not in numbers:
                numbers.add(number)
                break
        opening = rng.randrange(100, 50_000) * 10 ** currency_exponent(currency)
        accounts.append(Account(_iban("NL", bank, number), number, currency, bic, opening))
    return accounts, {key: position for position, key in enumerate(keys)}


def _iban(country: str, bank: str, number: str) -> str:
    """An IBAN with valid check digits (ISO 13616: mod 97 of the rearranged digits is 1)."""
    digits = "".join(str(int(char, 36)) for char in f"{bank}{number}{country}00")
    return f"{country}{98 - int(digits) % 97:02d}{bank}{number}"


class _References:
    """Bank references, payout references in every field and the texts around them."""

    def __init__(self, rng: Random, fmt: str):
        self.rng, self.fmt, self.sequence = rng, fmt, 0
        names, weights = zip(*_REFERENCE_FIELDS[fmt])
        self.fields, self.cumulative = names, list(accumulate(weights))

    def bank_reference(self, day: date) -> str:
        # The bank's own id: 12 digits at most in a row, so it never looks like a card number.
        self.sequence += 1
        return f"{_BANKS[self.sequence % len(_BANKS)][0]}{day:%y%m%d}{self.sequence:06d}"

    def field(self) -> str:
        return self.fields[bisect(self.cumulative, self.rng.random() * self.cumulative[-1])]

    def text_naming(self, processor: str, payout_id: str) -> Tuple[str, ...]:
        """Remittance text that names the payout the way the processor's transfers do; sometimes in two pieces
        (two Ustrd, or a BAI2 16 text continued in an 88), sometimes upper-cased as banks do."""
        rng = self.rng
        if processor == "adyen":
            number = payout_id.split("-", 1)[1]
            head, tail = [("ADYEN PAYOUT", f"BATCH {number}"), ("Adyen N.V. payout", f"Batch:{number}"),
                          ("ADYEN", f"batch-{number}")][rng.randrange(3)]
        else:
            head, tail = {"stripe": "STRIPE PAYOUT", "checkout": "CHECKOUT.COM PAYOUT",
                          "worldpay": "WORLDPAY SETTLEMENT"}[processor], payout_id
        if rng.random() < 0.5:
            head, tail = head.upper(), tail.upper()
        return (head, tail) if rng.random() < 0.5 else (f"{head} {tail}",)

    def foreign_text(self, known: Set[str]) -> Tuple[str, ...]:
        """A transfer naming a payout of another platform account (no payout of this run), or no payout."""
        rng = self.rng
        choice = rng.randrange(3)
        if choice == 0:
            return (_OTHER_CREDITS[rng.randrange(len(_OTHER_CREDITS))],)
        while True:
            if choice == 1:
                number = _FOREIGN_ADYEN_BATCH + rng.randrange(99_999)
                text, key = f"ADYEN BATCH {number}", f"BATCH-{number}"
            else:
                payout_id = "po_" + f"{rng.getrandbits(64):016x}"
                text, key = f"STRIPE PAYOUT {payout_id}", payout_id.upper()
            if key not in known and not CARD_LIKE.search(text):
                return (text,)


def _ensure_remittance(references: _References, paid: Sequence[_Payout]) -> None:
    """References only in remittance text occur at least once (a few payouts may all draw other fields)."""
    named = [payout for payout in paid if payout.credit is not None and payout.reference_field]
    if named and not any(payout.reference_field == REMITTANCE for payout in named):
        _carry(references, named[0].credit, named[0], REMITTANCE)
        named[0].reference_field = REMITTANCE


def _carry(references: _References, line: BankLine, payout: _Payout, where: str) -> None:
    """Puts the payout's reference into one field of `line` (and only there); "" leaves it unreferenced."""
    line.remittance = references.text_naming(payout.processor, payout.payout_id) if where == REMITTANCE \
        else (_PLAIN_TEXT[payout.processor],)
    line.end_to_end_id = payout.payout_id if where == "end_to_end_id" else ""
    line.customer_reference = payout.payout_id if where == "customer_reference" else ""
    line.structured_reference = payout.payout_id if where == "remittance_structured" else ""
    if where == "bank_reference":
        line.bank_reference = payout.payout_id


def _credit_line(references: _References, payout: _Payout, day: date, amount: int, where: str,
                 batchable: bool) -> BankLine:
    line = BankLine(account=payout.account, day=day, credit=True, amount_minor=amount,
                    bank_reference=references.bank_reference(day), payer=_PAYERS[payout.processor],
                    ach=payout.currency == "USD" and payout.processor == "stripe", batchable=batchable)
    _carry(references, line, payout, where)
    return line


def _plan_payout(rng: Random, payout: _Payout, delay: int, as_of_date: date, references: _References,
                 rates: BankRates, lines: List[BankLine], credits: List[_Credit]) -> None:
    """The credits of one paid payout and its expected bank status, from the kinds chosen for it."""
    kinds = payout.kinds
    if "missing_credit" in kinds:
        payout.bank_status = PAYOUT_NOT_RECEIVED
        return
    day = business_days_after(payout.day, delay)
    if "ambiguous_amount" in kinds or "ambiguous_reference" in kinds:
        by_reference = "ambiguous_reference" in kinds
        where = references.field() if by_reference else ""
        payout.reference_field = where
        payout.bank_status = AMBIGUOUS_BANK_MATCH
        second = business_days_after(payout.day, 1 + rng.randrange(2))
        for number, credit_day in enumerate((day, second)):
            line = _credit_line(references, payout, credit_day, payout.amount, where, False)
            if not by_reference and number:
                # Two plain transfers of the same amount: the payout's own, and one from elsewhere.
                line.remittance = (_OTHER_CREDITS[rng.randrange(len(_OTHER_CREDITS))],)
            lines.append(line)
            credits.append(_Credit(line, "ambiguous_reference" if by_reference else "ambiguous_amount",
                                   AMBIGUOUS_BANK_MATCH, payout, where))
        return
    if day > as_of_date:  # not on a statement yet: whatever was meant for its credit has not happened
        kinds[:] = [kind for kind in kinds if kind != "unreferenced"] + ["in_transit"]
        payout.bank_status = PENDING
        return
    where = "" if "unreferenced" in kinds else references.field()
    short = "short_paid" in kinds
    amount = _short_amount(rng, payout.amount, payout.currency) if short else payout.amount
    line = _credit_line(references, payout, day, amount, where, not short and rng.random() < rates.batched)
    lines.append(line)
    payout.credit, payout.reference_field = line, where
    payout.bank_status = PAYOUT_AMOUNT_DIFFERS if short else PAYOUT_RECEIVED


def _stray_credit(rng: Random, accounts: List[Account], days: List[date], references: _References,
                  used: Set[Tuple[str, int]], known: Set[str]) -> BankLine:
    """A credit no payout of the run explains, of an amount no payout has (so no payout may take it)."""
    account = rng.randrange(len(accounts))
    currency = accounts[account].currency
    while True:
        major = int(10 ** (rng.random() * 3.5))  # 1 to about 3,000 units of the currency
        amount = major * 10 ** currency_exponent(currency) + rng.randrange(10 ** currency_exponent(currency))
        if (currency, amount) not in used:
            used.add((currency, amount))
            break
    day = days[rng.randrange(len(days))]
    return BankLine(account=account, day=day, credit=True, amount_minor=amount,
                    bank_reference=references.bank_reference(day), remittance=references.foreign_text(known))


def _add_fees(rng: Random, accounts: List[Account], lines: List[BankLine], rate: float,
              references: _References) -> None:
    """Bank fee debits on some account days with entries (at least one): read, never matched."""
    account_days = sorted({(line.account, line.day) for line in lines})
    chosen = [key for key in account_days if rng.random() < rate]
    if not chosen and account_days and rate > 0:
        chosen = [account_days[rng.randrange(len(account_days))]]
    for account, day in chosen:
        unit = 10 ** currency_exponent(accounts[account].currency)
        lines.append(BankLine(account=account, day=day, credit=False, amount_minor=(1 + rng.randrange(30)) * unit,
                              bank_reference=references.bank_reference(day),
                              remittance=(("ACCOUNT MAINTENANCE FEE", "INCOMING PAYMENT CHARGES")[rng.randrange(2)],)))


# ------------------------------------------------------------------ the settlement files


def without_rows(rows: FileRows, drop: np.ndarray) -> FileRows:
    """A file's rows without the world rows `drop` (and without their re-delivered copies)."""
    if not len(drop):
        return rows
    valid = rows.valid[~np.isin(rows.valid, drop)] if rows.valid is not None else None
    keep = ~np.isin(rows.copies, drop)
    return FileRows(valid, rows.times, rows.copies[keep], rows.copy_times[keep], rows.bad)


# ------------------------------------------------------------------ writing


def remove_bank_outputs(out_dir: str) -> None:
    """Removes the bank files an earlier run wrote (only names this generator writes)."""
    truth = os.path.join(out_dir, BANK_TRUTH_FILE)
    if os.path.isfile(truth):
        os.remove(truth)
    directory = os.path.join(out_dir, BANK_DIRECTORY)
    if os.path.isdir(directory):
        for name in os.listdir(directory):
            if re.fullmatch(FILE_PATTERN, name) and os.path.isfile(os.path.join(directory, name)):
                os.remove(os.path.join(directory, name))


def write_bank_statements(plan: BankPlan, out_dir: str) -> BankOutput:
    """Writes the statements and `bank_ground_truth.csv`; the `bank` section of expected.json."""
    remove_bank_outputs(out_dir)
    files = write_statements(plan.fmt, os.path.join(out_dir, BANK_DIRECTORY), plan.accounts, plan.lines)
    rows = _truth_rows(plan)
    truth_path = os.path.join(out_dir, BANK_TRUTH_FILE)
    with open(truth_path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(BANK_TRUTH_FIELDS)
        writer.writerows(rows)
    payout_statuses = Counter(row[4] for row in rows if row[0] == "payout")
    bank_statuses = Counter(row[5] for row in rows if row[5])
    # Injections, not rows: an ambiguous payout counts once, though it has three rows, and a relabelled
    # payout once, though both its ids have a row (counted on the lines' id).
    injected = Counter(kind for payout in plan.payouts for kind in payout.kinds
                       if not (kind == "payout_relabelled" and payout.relabelled_from))
    injected.update(credit.kind for credit in plan.credits if credit.payout is None)
    expected = {
        "format": plan.fmt,
        "as_of_date": plan.as_of_date.isoformat(),
        "bank_sla_business_days": BANK_SLA_BUSINESS_DAYS,
        "credit_grace_days": CREDIT_GRACE_DAYS,
        "payout_grace_days": PAYOUT_GRACE_DAYS,
        "files": len(files),
        "accounts": len({line.account for line in plan.lines}),  # on the statements
        "entries": len(plan.lines),
        "credits": sum(line.credit for line in plan.lines),
        "debits": sum(not line.credit for line in plan.lines),
        "payouts": len(plan.payouts),
        "payout_statuses": {status: payout_statuses[status] for status in PAYOUT_STATUSES},
        "bank_match_statuses": {status: bank_statuses[status] for status in BANK_MATCH_STATUSES},
        "injected": {kind: injected[kind] for kind in INJECTED_KINDS},
    }
    return BankOutput(files, truth_path, expected)


def _truth_rows(plan: BankPlan) -> List[Tuple[str, ...]]:
    payouts = []
    for payout in plan.payouts:
        credit = payout.credit
        payouts.append(("payout", payout.processor, payout.payout_id, credit.entry_ref if credit else "",
                        payout.payout_status, payout.bank_status, "+".join(payout.kinds), payout.reference_field,
                        payout.currency, "" if payout.payout_status == LINES_WITHOUT_PAYOUT else str(payout.amount),
                        str(credit.amount_minor) if credit else ""))
    credits = []
    for credit in plan.credits:
        payout = credit.payout
        credits.append(("credit", payout.processor if payout else "", payout.payout_id if payout else "",
                        credit.line.entry_ref, "", credit.status, credit.kind, credit.reference_field,
                        plan.accounts[credit.line.account].currency, "", str(credit.line.amount_minor)))
    return sorted(payouts, key=lambda row: (row[1], row[2])) + sorted(credits, key=lambda row: row[3])
