"""Payouts against bank credits (issue 21, docs/DESIGN.md 3.8): the whole rule over lists, pure.

This is the reference the engines' keyed steps are checked against: one BankMatch row per payout that paid
something out and one per bank credit no payout took, so every payout and every credit is in exactly one
row (a credit taken by a payout shares its row).

1. By reference: the credits that name a payout (transforms/bank/references.py). One such credit, naming
   no other payout: PAYOUT_RECEIVED when its amount and currency are the payout's, else
   PAYOUT_AMOUNT_DIFFERS. Several credits naming one payout, or one credit naming several: every one of
   them AMBIGUOUS_BANK_MATCH.
2. By amount: a payout no credit names, against the credits that name none of the run's payouts, of its
   currency and amount, valued from the day before the payout (time zones) to the end of its bank SLA. One
   credit that is the candidate of that payout only: PAYOUT_RECEIVED; otherwise all of them ambiguous.
3. What is left: a payout is PAYOUT_NOT_RECEIVED once its SLA (business days, Monday to Friday, no
   holidays) has passed by `as_of`, else PENDING; a credit UNEXPECTED_BANK_CREDIT once its grace has
   passed, else PENDING.
A reference names a payout by its id alone (`reference_key`: upper-cased, whatever the processor): ids
that two processors, or two cases, share are one key, and a credit naming it is ambiguous between them.
Never a guess: an ambiguous payout or credit is left for a person to resolve. Only payouts that paid
something out (a PAYOUT line, a positive amount) expect a credit; only booked credits that are not reversals
can carry one (debits, returned payouts included, are read and counted, not matched).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Dict, List, Mapping, Optional, Sequence, Set, Tuple

from schemas.bank.entry import BOOKED, CREDIT
from schemas.payouts import BankMatch, PayoutBalance
from schemas.rules import (
    AMBIGUOUS_BANK_MATCH,
    PAYOUT_AMOUNT_DIFFERS,
    PAYOUT_NOT_RECEIVED,
    PAYOUT_RECEIVED,
    PENDING,
    UNEXPECTED_BANK_CREDIT,
)
from transforms.bank.references import credit_references, reference_key

MATCHED_BY_REFERENCE = "reference"
MATCHED_BY_AMOUNT = "amount"


@dataclass(frozen=True)
class BankPolicy:
    bank_sla_business_days: int = 3  # a payout not credited by then is PAYOUT_NOT_RECEIVED
    credit_grace: timedelta = timedelta(days=3)  # a credit no payout took by then is UNEXPECTED_BANK_CREDIT

    def __post_init__(self):
        if self.bank_sla_business_days < 0:
            raise ValueError("the bank SLA cannot be negative")
        if self.credit_grace < timedelta(0) or self.credit_grace % timedelta(days=1):
            raise ValueError("the credit grace is a whole number of days, not negative")


DEFAULT_BANK_POLICY = BankPolicy()


def add_business_days(day: date, business_days: int) -> date:
    """`day` plus that many weekdays (Monday to Friday; a weekend day counts from the Monday after)."""
    while day.weekday() >= 5:
        day += timedelta(days=1)
    for _ in range(business_days):
        day += timedelta(days=1)
        while day.weekday() >= 5:
            day += timedelta(days=1)
    return day


def is_matchable_credit(entry: Mapping[str, object]) -> bool:
    """A bank entry that may carry a payout: a booked credit that is not a reversal (a pending or
    information-only entry may never be booked)."""
    return (entry.get("credit_debit") == CREDIT and not entry.get("reversal")
            and entry.get("status", BOOKED) == BOOKED)


def credit_day(entry: Mapping[str, object]) -> str:
    return str(entry.get("value_date") or entry.get("booking_date"))


def match_bank_credits(payouts: Sequence[PayoutBalance], credits: Sequence[Mapping[str, object]], as_of: date,
                       policy: BankPolicy = DEFAULT_BANK_POLICY) -> List[BankMatch]:
    """The BankMatch rows of these payouts (those with a PAYOUT line) and matchable bank credits."""
    return match_bank_credits_with_links(payouts, credits, as_of, policy)[0]


PayoutKey = Tuple[str, str]  # (processor, payout id)
CreditKey = Tuple[str, str]  # (account, entry_ref)


def match_bank_credits_with_links(payouts: Sequence[PayoutBalance], credits: Sequence[Mapping[str, object]],
                                  as_of: date, policy: BankPolicy = DEFAULT_BANK_POLICY
                                  ) -> Tuple[List[BankMatch], Set[Tuple[PayoutKey, CreditKey]]]:
    """match_bank_credits' rows, and which payout and credit each decision tied together: a credit naming a
    payout, or a credit that is a payout's amount candidate (a stream keeps tied payouts and credits open
    together: transforms/bank/live.py)."""
    paid = [payout for payout in payouts
            if payout.payout_minor is not None and payout.payout_minor > 0 and payout.payout_date is not None]
    credits = [credit for credit in credits if is_matchable_credit(credit)]
    payouts_of_key: Dict[str, List[int]] = defaultdict(list)
    for index, payout in enumerate(paid):
        payouts_of_key[reference_key(payout.payout_id)].append(index)
    named: List[Set[int]] = [{p for key in credit_references(credit) for p in payouts_of_key.get(key, ())}
                             for credit in credits]
    credits_naming: Dict[int, List[int]] = defaultdict(list)
    for credit_index, payout_indexes in enumerate(named):
        for payout_index in payout_indexes:
            credits_naming[payout_index].append(credit_index)

    rows: List[BankMatch] = []
    taken: Set[int] = set()  # credits in a payout's row or in an ambiguous row of their own
    unnamed_payouts = []
    for payout_index, payout in enumerate(paid):
        naming = credits_naming.get(payout_index, [])
        if not naming:
            unnamed_payouts.append(payout_index)
        elif len(naming) == 1 and len(named[naming[0]]) == 1:
            rows.append(_pair(payout, credits[naming[0]], MATCHED_BY_REFERENCE))
            taken.add(naming[0])
        else:
            rows.append(_row(payout, None, None, len(naming), AMBIGUOUS_BANK_MATCH))
    # A credit naming a payout that did not take it names several, or shares its payout with another.
    for credit_index, payout_indexes in enumerate(named):
        if credit_index not in taken and payout_indexes:
            rows.append(_row(None, credits[credit_index], None, len(payout_indexes), AMBIGUOUS_BANK_MATCH))
            taken.add(credit_index)

    # By amount: credits that name no known payout, against payouts no credit names.
    open_credits: Dict[tuple, List[int]] = defaultdict(list)  # by (currency, amount): no payout x credit scan
    for index, payout_indexes in enumerate(named):
        if not payout_indexes:
            open_credits[(credits[index].get("currency"), credits[index].get("amount_minor"))].append(index)
    candidates: Dict[int, List[int]] = {}
    sla_end: Dict[int, date] = {}
    payouts_of_credit: Dict[int, List[int]] = defaultdict(list)
    for payout_index in unnamed_payouts:
        payout = paid[payout_index]
        payout_day = date.fromisoformat(payout.payout_date)
        sla_end[payout_index] = add_business_days(payout_day, policy.bank_sla_business_days)
        first, last = (payout_day - timedelta(days=1)).isoformat(), sla_end[payout_index].isoformat()
        found = [index for index in open_credits.get((payout.currency, payout.payout_minor), ())
                 if first <= credit_day(credits[index]) <= last]
        candidates[payout_index] = found
        for credit_index in found:
            payouts_of_credit[credit_index].append(payout_index)
    for payout_index in unnamed_payouts:
        payout, found = paid[payout_index], candidates[payout_index]
        if len(found) == 1 and len(payouts_of_credit[found[0]]) == 1:
            rows.append(_pair(payout, credits[found[0]], MATCHED_BY_AMOUNT))
            taken.add(found[0])
        elif found:
            rows.append(_row(payout, None, None, len(found), AMBIGUOUS_BANK_MATCH))
        else:
            rows.append(_row(payout, None, None, 0,
                             PAYOUT_NOT_RECEIVED if as_of > sla_end[payout_index] else PENDING))
    for credit_index, payout_indexes in payouts_of_credit.items():
        if credit_index not in taken:
            rows.append(_row(None, credits[credit_index], None, len(payout_indexes), AMBIGUOUS_BANK_MATCH))
            taken.add(credit_index)

    for credit_index, credit in enumerate(credits):
        if credit_index not in taken:
            due = as_of > date.fromisoformat(credit_day(credit)) + policy.credit_grace
            rows.append(_row(None, credit, None, 0, UNEXPECTED_BANK_CREDIT if due else PENDING))
    ties = [(payout_index, credit_index) for credit_index, payout_indexes in enumerate(named)
            for payout_index in payout_indexes]
    ties += [(payout_index, credit_index) for credit_index, payout_indexes in payouts_of_credit.items()
             for payout_index in payout_indexes]
    links = {((paid[p].processor, paid[p].payout_id), (str(credits[c].get("account")), str(credits[c].get("entry_ref"))))
             for p, c in ties}
    return rows, links


def _pair(payout: PayoutBalance, credit: Mapping[str, object], matched_by: str) -> BankMatch:
    """A payout and the one credit it is matched with (the one candidate either has)."""
    same_currency = credit.get("currency") == payout.currency
    difference = int(credit["amount_minor"]) - payout.payout_minor if same_currency else None
    status = PAYOUT_RECEIVED if difference == 0 else PAYOUT_AMOUNT_DIFFERS
    return _row(payout, credit, matched_by, 1, status, difference)


def _row(payout: Optional[PayoutBalance], credit: Optional[Mapping[str, object]], matched_by: Optional[str],
         candidates: int, status: str, difference: Optional[int] = None) -> BankMatch:
    return BankMatch(
        processor=payout.processor if payout else None, payout_id=payout.payout_id if payout else None,
        merchant_id=payout.merchant_id if payout else None,
        payout_currency=payout.currency if payout else None, payout_minor=payout.payout_minor if payout else None,
        payout_date=payout.payout_date if payout else None,
        entry_ref=_text(credit, "entry_ref"), account=_text(credit, "account"),
        credit_currency=_text(credit, "currency"),
        credit_minor=int(credit["amount_minor"]) if credit is not None else None,
        value_date=credit_day(credit) if credit is not None else None,
        matched_by=matched_by, candidate_count=candidates, difference_minor=difference, status=status)


def _text(entry: Optional[Mapping[str, object]], name: str) -> Optional[str]:
    value = entry.get(name) if entry is not None else None
    return None if value is None else str(value)
