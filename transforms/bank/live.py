"""The state of three-way reconciliation in a stream (issue 21, docs/DESIGN.md 3.8): pure Python, no Beam.

A stream judges the same rules as a batch run (transforms/bank/payouts.py's `balance_payout`,
transforms/bank/matching.py's `match_bank_credits`), but over what has arrived so far, and says so again
whenever its judgement changes:

* Revisions. Every output row has a key (a payout: (processor, payout id); a bank match: its row key,
  `bank_match_key`). A key's rows are numbered 1, 2, 3, ... without gaps; a new revision is emitted only
  when the row (every field but `revision` and `is_final`) differs from the key's last one, and the last
  revision of a key is `is_final` (always emitted, changed or not). A key that comes back after its final
  revision starts afresh at revision 1.
* The clock is the latest timer that fired (an event-time timer: never ahead of the watermark), passed in
  by the caller; `None` before the first one. Arrivals are judged at the clock as it is, so a verdict that
  waits for a deadline (LINES_WITHOUT_PAYOUT, PAYOUT_NOT_RECEIVED, UNEXPECTED_BANK_CREDIT) is given only
  once the watermark has passed it; `next_due_millis` says when the next timer should fire.
* `LivePayouts` folds each payout's lines into a `PayoutTally` (O(1) per payout, whatever its line count)
  and gives a payout its final revision `lifetime_millis` after its latest line; a heap of due times
  (pending deadlines and expiries, invalidated lazily) keeps a timer from scanning every payout.
* `LiveBankMatches` is one stateful key holding every open payout and bank entry, since bank matching is
  one decision over all of them (a credit may name any payout, an amount candidate is only unambiguous
  when no other payout wants it). It re-matches after every change and every new day (deadlines are
  days). WITHDRAWN (streams only) is the revision of a row key that had a row and has none now: a credit
  that was PENDING alone until a payout took it into the payout's row, a payout that no longer pays
  anything out. It is the previous row with status WITHDRAWN; if the key gets a row again, its revisions
  go on.
* Expiry by tied groups. A payout and the credits its decision tied to it (a credit naming it, an amount
  candidate: `match_bank_credits_with_links`) are one group, and so, transitively, is everything tied to
  them; a group leaves the state, every row key of its members getting its final revision, once the
  clock's day is more than `lifetime_days` after the group's latest day (payout date, credit value date).
  Forgetting a whole group never changes another group's rows (ties are all that join rows), so the
  rows of what stays open are still `match_bank_credits` of what stays open. `lifetime_days` must exceed
  the bank SLA's longest calendar span and the credit grace, so every row is decided before it is final.
"""
from __future__ import annotations

import heapq
from datetime import date, timedelta
from typing import Dict, FrozenSet, Iterable, List, NamedTuple, Optional, Set, Tuple

from schemas.internal_records import Judged
from schemas.payouts import BankMatch, PayoutBalance
from schemas.records import SettlementLine
from schemas.rules import (
    BALANCE_SIGN,
    LINES_WITHOUT_PAYOUT,
    PAYOUT_BALANCED,
    PAYOUT_LINES_DIFFER,
    PAYOUT_RECORD_TYPE,
    PAYOUT_WITHOUT_LINES,
    PENDING,
    WITHDRAWN,
)
from transforms.bank.intake import Entry, SourcedEntry, as_of_day, conflict_letter, entry_key
from transforms.bank.matching import (
    BankPolicy,
    CreditKey,
    PayoutKey,
    add_business_days,
    credit_day,
    is_matchable_credit,
    match_bank_credits_with_links,
)
from transforms.bank.payouts import PayoutPolicy, published_sum

NEVER_MILLIS = -2 ** 62  # the clock before the first timer: nothing is due yet
DAY_MILLIS = 86_400_000
_EPOCH_DAY = date(1970, 1, 1)

# ---------------------------------------------------------------------------------------------- payout tallies

# A line as the tie-break of `balance_payout`'s order sees it: (booked_time, settlement_id, merchant_id, currency).
_FirstLine = Tuple[int, str, Optional[str], Optional[str]]


class PayoutTally(NamedTuple):
    """What `balance_payout` needs from a payout's lines, in O(1): merged in any order and grouping."""
    payout_count: int  # PAYOUT lines
    payout_gross: int  # their gross
    payout_date: Optional[str]  # their earliest settlement date
    payout_first: Optional[_FirstLine]  # the first PAYOUT line by (booked_time, settlement_id)
    line_count: int  # the other lines
    lines_minor: int  # their BALANCE_SIGN x net
    lines_first: Optional[_FirstLine]
    lines_latest_millis: Optional[int]  # their latest booked_time (the pending deadline counts from it)
    currencies: FrozenSet[Optional[str]]  # of every line
    latest_millis: int  # the latest booked_time of every line (the payout's expiry counts from it)


def _first_line(line: SettlementLine) -> _FirstLine:
    return line.booked_time, line.settlement_id, line.merchant_id, line.currency


def _line_order(first: _FirstLine) -> tuple:
    # (booked_time, settlement_id) decides; equal ones (never, between distinct lines) are still ordered
    # whatever the merge order, so merging stays commutative.
    booked_time, settlement_id, merchant_id, currency = first
    return booked_time, settlement_id, merchant_id is None, merchant_id or "", currency is None, currency or ""


def _earlier(a: Optional[_FirstLine], b: Optional[_FirstLine]) -> Optional[_FirstLine]:
    if a is None or b is None:
        return b if a is None else a
    return a if _line_order(a) <= _line_order(b) else b


def _least(a, b):
    return b if a is None else a if b is None else min(a, b)


def _most(a, b):
    return b if a is None else a if b is None else max(a, b)


def tally_of_line(line: SettlementLine) -> PayoutTally:
    """One line's tally (merge them with `merged_tally`)."""
    if line.record_type == PAYOUT_RECORD_TYPE:
        return PayoutTally(1, line.gross_minor, line.settlement_date, _first_line(line), 0, 0, None, None,
                           frozenset((line.currency,)), line.booked_time)
    return PayoutTally(0, 0, None, None, 1, BALANCE_SIGN[line.record_type] * line.net_minor, _first_line(line),
                       line.booked_time, frozenset((line.currency,)), line.booked_time)


def merged_tally(a: PayoutTally, b: PayoutTally) -> PayoutTally:
    """The tally of both tallies' lines (associative and commutative: lines may come in any order)."""
    return PayoutTally(
        payout_count=a.payout_count + b.payout_count, payout_gross=a.payout_gross + b.payout_gross,
        payout_date=_least(a.payout_date, b.payout_date), payout_first=_earlier(a.payout_first, b.payout_first),
        line_count=a.line_count + b.line_count, lines_minor=a.lines_minor + b.lines_minor,
        lines_first=_earlier(a.lines_first, b.lines_first),
        lines_latest_millis=_most(a.lines_latest_millis, b.lines_latest_millis),
        currencies=a.currencies | b.currencies, latest_millis=max(a.latest_millis, b.latest_millis))


def balance_of_tally(processor: str, payout_id: str, tally: PayoutTally, as_of_millis: int,
                     policy: PayoutPolicy) -> PayoutBalance:
    """`balance_payout` of the tallied lines, field for field (the rule restated on sums, not lines)."""
    first = tally.payout_first or tally.lines_first
    currency = first[3]
    payout_minor = tally.payout_gross if tally.payout_count else None
    lines_minor = tally.lines_minor if tally.line_count else None
    one_currency = tally.currencies == {currency}
    difference = payout_minor - lines_minor if (
        payout_minor is not None and lines_minor is not None and one_currency) else None
    if tally.payout_count and tally.line_count:
        status = PAYOUT_BALANCED if difference == 0 else PAYOUT_LINES_DIFFER
    elif tally.payout_count:
        status = PAYOUT_WITHOUT_LINES
    else:
        due = as_of_millis >= tally.lines_latest_millis + policy.payout_grace_millis
        status = LINES_WITHOUT_PAYOUT if due else PENDING
    return PayoutBalance(
        processor=processor, payout_id=payout_id, merchant_id=first[2], currency=currency,
        payout_minor=published_sum(payout_minor), lines_minor=published_sum(lines_minor if one_currency else None),
        difference_minor=published_sum(difference), line_count=tally.line_count,
        payout_line_count=tally.payout_count, payout_date=tally.payout_date, status=status)


def pending_deadline(tally: PayoutTally, policy: PayoutPolicy) -> Optional[int]:
    """When a payout without a PAYOUT line turns from PENDING to LINES_WITHOUT_PAYOUT (None with one)."""
    if tally.payout_count:
        return None
    return tally.lines_latest_millis + policy.payout_grace_millis


# ---------------------------------------------------------------------------------------------- live payouts


class _OpenPayout:
    __slots__ = ("tally", "revision", "last", "due")

    def __init__(self, tally: PayoutTally):
        self.tally = tally
        self.revision = 0
        self.last: Optional[PayoutBalance] = None  # the last revision emitted
        self.due: Optional[int] = None  # the due time pushed on the heap for it (older entries are stale)


def _same_row(a: tuple, b: tuple) -> bool:
    """Equal in every field but the trailing revision and is_final."""
    return a[:-2] == b[:-2]


class LivePayouts:
    """The open payouts of one stateful key: their tallies, revisions and due times (picklable)."""

    def __init__(self, policy: PayoutPolicy, lifetime_millis: int):
        if lifetime_millis < policy.payout_grace_millis:
            # A payout must be decided (LINES_WITHOUT_PAYOUT) before its final revision, never final PENDING.
            raise ValueError("a payout's lifetime must be at least its payout grace")
        self.policy = policy
        self.lifetime_millis = int(lifetime_millis)
        self.clock: Optional[int] = None  # the latest timer seen
        self._open: Dict[PayoutKey, _OpenPayout] = {}
        self._due: List[Tuple[int, PayoutKey]] = []  # heap of (due, key); entries whose key moved on are stale

    def add(self, lines: Iterable[SettlementLine], clock_millis: Optional[int]) -> List[PayoutBalance]:
        """New lines -> the new revisions of the payouts they touch, judged at the clock (None: at
        NEVER_MILLIS, nothing due). Lines without a payout id belong to no payout and are ignored."""
        now = NEVER_MILLIS if clock_millis is None else clock_millis
        touched: Dict[PayoutKey, None] = {}
        for line in lines:
            if not line.payout_id:
                continue
            key = (line.processor, line.payout_id)
            tally = tally_of_line(line)
            payout = self._open.get(key)
            if payout is None:
                self._open[key] = _OpenPayout(tally)
            else:
                payout.tally = merged_tally(payout.tally, tally)
            touched[key] = None
        return [balance for key in touched for balance in self._judge(key, now, final=False)]

    def advance(self, clock_millis: int) -> List[PayoutBalance]:
        """The clock moved to a timer's time -> final revisions of the payouts that expired by then, new
        revisions of those a deadline changed. Only due keys are looked at; a clock going back is ignored."""
        if self.clock is not None and clock_millis < self.clock:
            return []
        self.clock = clock_millis
        due: Dict[PayoutKey, None] = {}
        while self._due and self._due[0][0] <= clock_millis:
            when, key = heapq.heappop(self._due)
            payout = self._open.get(key)
            if payout is not None and payout.due == when:
                payout.due = None  # popped: judging it pushes its next due time
                due[key] = None
        emitted = []
        for key in due:
            expired = self._open[key].tally.latest_millis + self.lifetime_millis <= clock_millis
            emitted += self._judge(key, clock_millis, final=expired)
        return emitted

    def next_due_millis(self) -> Optional[int]:
        """The earliest pending deadline or expiry still open (when the next timer should fire), else None."""
        while self._due:
            when, key = self._due[0]
            payout = self._open.get(key)
            if payout is not None and payout.due == when:
                return when
            heapq.heappop(self._due)
        return None

    def open_keys(self) -> int:
        return len(self._open)

    def _judge(self, key: PayoutKey, now: int, final: bool) -> List[PayoutBalance]:
        payout = self._open[key]
        balance = balance_of_tally(key[0], key[1], payout.tally, now, self.policy)
        emitted = []
        if final or payout.last is None or not _same_row(balance, payout.last):
            payout.revision += 1
            payout.last = balance._replace(revision=payout.revision, is_final=final)
            emitted.append(payout.last)
        if final:
            del self._open[key]
        else:
            self._schedule(key, payout, now)
        return emitted

    def _schedule(self, key: PayoutKey, payout: _OpenPayout, now: int) -> None:
        due = payout.tally.latest_millis + self.lifetime_millis
        deadline = pending_deadline(payout.tally, self.policy)
        if deadline is not None and deadline > now:
            due = min(due, deadline)
        if due != payout.due:
            payout.due = due
            heapq.heappush(self._due, (due, key))


# ---------------------------------------------------------------------------------------------- live bank matches

RowKey = Tuple[str, str, str]  # ("payout", processor, payout_id) | ("credit", account, entry_ref)


def bank_match_key(row: BankMatch) -> RowKey:
    """The key a BankMatch row is revised under: its payout's, else its credit's (a credit taken by a payout
    is in the payout's row)."""
    if row.payout_id is not None:
        return "payout", row.processor, row.payout_id
    return "credit", str(row.account), str(row.entry_ref)


def sla_span_days(policy: BankPolicy) -> int:
    """The most calendar days the bank SLA spans, from any weekday (weekends are not business days)."""
    monday = date(2024, 1, 1)
    return max((add_business_days(monday + timedelta(days=offset), policy.bank_sla_business_days)
                - (monday + timedelta(days=offset))).days for offset in range(7))


BankView = Optional[Tuple[Optional[str], str, int, str]]  # what a paid payout's bank match shows of it


def bank_view(balance: PayoutBalance) -> BankView:
    """All that bank matching reads of a payout (its row copies these; `match_bank_credits` matches on them):
    None for a payout that pays nothing out (it has no row)."""
    if not _is_paid(balance):
        return None
    return balance.merchant_id, balance.currency, balance.payout_minor, balance.payout_date


def for_bank_matching(revisions: Iterable[PayoutBalance], sent: Dict[PayoutKey, BankView]) -> List[PayoutBalance]:
    """Of one payout step's revisions (in revision order per payout), those LiveBankMatches needs: its bank view
    changed (unpaid counts as None), or it is final and a view was sent (the bank key then knows the payout's
    generation ended). A payout's lines move its balance, not its bank match: without this, every line would
    re-match the one bank key. `sent` (the last view sent per payout) is the caller's state; the bank key given
    only these revisions emits exactly what it emits given all of them (tests/test_live_bank.py)."""
    needed = []
    for balance in revisions:
        key = (balance.processor, balance.payout_id)
        view = bank_view(balance)
        if view != sent.get(key) or (balance.is_final and key in sent):
            needed.append(balance)
            sent[key] = view
        if balance.is_final:
            sent.pop(key, None)
    return needed


def _is_paid(balance: PayoutBalance) -> bool:
    """Whether a payout expects a credit (match_bank_credits gives the others no row)."""
    return balance.payout_minor is not None and balance.payout_minor > 0 and balance.payout_date is not None


def _day_of(text: object) -> Optional[date]:
    try:
        return date.fromisoformat(str(text))
    except ValueError:
        return None


def next_midnight(millis: int) -> int:
    """The first UTC midnight strictly after an instant (epoch millis)."""
    return (millis // DAY_MILLIS + 1) * DAY_MILLIS


def _midnight_after(day: date) -> int:
    return _midnight_of(day + timedelta(days=1))


def _midnight_of(day: date) -> int:
    return (day - _EPOCH_DAY).days * DAY_MILLIS


class _Seen:
    """An entry seen (any kind), as it first arrived; its day is when it may be forgotten from."""
    __slots__ = ("source", "entry", "day")

    def __init__(self, source: str, entry: Entry, day: Optional[date]):
        self.source, self.entry, self.day = source, entry, day


class LiveBankMatches:
    """The one stateful key holding every open payout and bank entry, and what was emitted per row key
    (picklable)."""

    def __init__(self, policy: BankPolicy, lifetime_days: int):
        longest = max(sla_span_days(policy), policy.credit_grace.days) + 1
        if lifetime_days <= longest:
            raise ValueError(f"lifetime_days must exceed {longest}: the longest calendar span of the bank SLA "
                             "and the credit grace, plus one day (a row is decided before it is final)")
        self.policy = policy
        self.lifetime_days = int(lifetime_days)
        self.clock: Optional[int] = None  # the latest clock given
        self._payouts: Dict[PayoutKey, PayoutBalance] = {}  # the latest revision of each open payout
        self._credits: Dict[CreditKey, Entry] = {}  # matchable credits, first arrivals
        self._entries: Dict[CreditKey, _Seen] = {}  # every entry seen, for de-duplication
        self._dayless: Set[CreditKey] = set()  # seen entries without a day, given the clock's day when there is one
        self._emitted: Dict[RowKey, BankMatch] = {}  # the last revision per row key
        self._links: Set[Tuple[PayoutKey, CreditKey]] = set()  # of the last match (no day in them)
        self._matched_day: Optional[date] = None  # the day of the last match
        self._expiry_day: Optional[date] = None  # the day expiry last ran on

    # ------------------------------------------------------------------ arrivals

    def add_payouts(self, balances: Iterable[PayoutBalance], clock_millis: Optional[int]) -> List[BankMatch]:
        """Payout revisions (LivePayouts' output) -> the bank-match revisions they cause. The highest revision
        of a payout wins (an older one arriving late is ignored), except that revision 1 after a final one
        is the payout coming back; a payout that pays nothing out is dropped at its final revision."""
        self._tick(clock_millis)
        changed = False
        closing: Set[RowKey] = set()
        for balance in balances:
            key = (balance.processor, balance.payout_id)
            held = self._payouts.get(key)
            if held is not None and not (balance.revision > held.revision
                                         or (held.is_final and balance.revision == 1 and not balance.is_final)):
                continue
            changed = True
            row_key = ("payout", balance.processor, balance.payout_id)
            if balance.is_final and not _is_paid(balance):
                self._payouts.pop(key, None)
                closing.add(row_key)
            else:
                self._payouts[key] = balance
                closing.discard(row_key)
        return self._rematch(changed, final_keys=closing)

    def add_entries(self, entries: Iterable[SourcedEntry], clock_millis: Optional[int]
                    ) -> Tuple[List[BankMatch], List[Judged], Dict[str, int]]:
        """Bank entries as read -> (bank-match revisions, dead letters of conflicting re-deliveries, counts of
        this call: unique, deduplicated, conflicting). The first arrival of an entry is kept (a stream cannot
        wait for a copy read earlier from another file), worded as first_copies words its letters."""
        self._tick(clock_millis)
        counts = {"unique": 0, "deduplicated": 0, "conflicting": 0}
        letters: List[Judged] = []
        changed = False
        for source, entry in entries:
            key = entry_key((source, entry))
            seen = self._entries.get(key)
            if seen is not None:
                letter = conflict_letter(seen.source, seen.entry, source, entry)
                if letter is None:
                    counts["deduplicated"] += 1
                else:
                    counts["conflicting"] += 1
                    letters.append(letter)
                continue
            counts["unique"] += 1
            day = _day_of(credit_day(entry))
            if day is None and self.clock is not None:
                day = as_of_day(self.clock)
            self._entries[key] = _Seen(source, dict(entry), day)
            if day is None:
                self._dayless.add(key)
            if is_matchable_credit(entry):
                self._credits[key] = self._entries[key].entry
                changed = True
        return self._rematch(changed), letters, counts

    # ------------------------------------------------------------------ the clock

    def advance(self, clock_millis: int) -> List[BankMatch]:
        """A timer fired -> rows whose deadline passed with the new day, and the final revisions of groups
        that expired. Nothing changes within a day; a clock going back is ignored."""
        if self.clock is not None and clock_millis < self.clock:
            return []
        self._tick(clock_millis)
        today = as_of_day(self.clock)
        if today == self._matched_day and today == self._expiry_day:
            return []
        self._expiry_day = today
        payouts, credits = self._expired_groups(today)
        final_keys = {("payout",) + key for key in payouts} | {("credit",) + key for key in credits}
        emitted = self._rematch(True, final_keys=final_keys)
        for key in payouts:
            del self._payouts[key]
        for key in credits:
            del self._credits[key]
        if payouts or credits:
            self._links = {(p, c) for p, c in self._links if p not in payouts and c not in credits}
        for key in [key for key, seen in self._entries.items()
                    if key not in self._credits and seen.day is not None
                    and (today - seen.day).days > self.lifetime_days]:
            del self._entries[key]
        return emitted

    def next_due_millis(self) -> Optional[int]:
        """The next UTC midnight at which something open changes with the day: a payout's SLA or a credit's
        grace ends (rows depend on the day through those two comparisons only), a member's lifetime ends
        (its group may expire then), a seen entry is forgotten. Before the first clock, the midnight after the
        earliest day open (nothing is due before). None when nothing is open. A stream's watermark far ahead of
        its data (a catch-up, a replay of last month) then costs a firing per deadline, not per day."""
        if not (self._payouts or self._credits or self._entries):
            return None
        if self.clock is None:
            days = [_day_of(payout.payout_date) for payout in self._payouts.values()]
            days += [seen.day for seen in self._entries.values()]
            known = [day for day in days if day is not None]
            return _midnight_after(min(known)) if known else None
        today = as_of_day(self.clock)
        lifetime = timedelta(days=self.lifetime_days + 1)
        changes = []
        for payout in self._payouts.values():
            day = _day_of(payout.payout_date) if _is_paid(payout) else None
            if day is not None:
                changes += [add_business_days(day, self.policy.bank_sla_business_days) + timedelta(days=1),
                            day + lifetime]
        for seen in self._entries.values():
            if seen.day is not None:
                changes += [seen.day + self.policy.credit_grace + timedelta(days=1), seen.day + lifetime]
        ahead = [day for day in changes if day > today]
        # Nothing ahead (an unreadable day): the next midnight, as before the deadlines were known.
        return _midnight_of(min(ahead)) if ahead else next_midnight(self.clock)

    def open_counts(self) -> Dict[str, int]:
        return {"payouts": len(self._payouts), "credits": len(self._credits), "entries": len(self._entries)}

    def open_payouts(self) -> List[PayoutBalance]:
        """The latest revision of every open payout, by key: what the rows are matched from (with the credits)."""
        return [self._payouts[key] for key in sorted(self._payouts)]

    def open_credits(self) -> List[Entry]:
        """The first arrival of every open matchable credit, by (entry_ref, account)."""
        return [self._credits[key] for key in sorted(self._credits, key=lambda key: (key[1], key[0]))]

    # ------------------------------------------------------------------ judging

    def _tick(self, clock_millis: Optional[int]) -> None:
        if clock_millis is not None and (self.clock is None or clock_millis > self.clock):
            self.clock = clock_millis
        if self.clock is not None and self._dayless:
            today = as_of_day(self.clock)
            for key in self._dayless:
                self._entries[key].day = today
            self._dayless.clear()

    def _today(self) -> date:
        return date.min if self.clock is None else as_of_day(self.clock)

    def _rematch(self, changed: bool, final_keys: Set[RowKey] = frozenset()) -> List[BankMatch]:
        """Re-match everything open at the clock's day -> the revisions of row keys whose row changed, appeared
        or went (WITHDRAWN); `final_keys` get their final revision whatever changed."""
        today = self._today()
        if not changed and not final_keys and today == self._matched_day:
            return []  # rows depend on the open payouts, credits and the day only
        rows, self._links = match_bank_credits_with_links(self.open_payouts(), self.open_credits(), today,
                                                          self.policy)
        self._matched_day = today
        current = {bank_match_key(row): row for row in rows}
        emitted = []
        for key in sorted(current.keys() | self._emitted.keys()):
            row, last, final = current.get(key), self._emitted.get(key), key in final_keys
            if row is None:
                if last is None or (last.status == WITHDRAWN and not final):
                    continue
                row = last._replace(status=WITHDRAWN)
            elif last is not None and not final and _same_row(row, last):
                continue
            row = row._replace(revision=(last.revision if last is not None else 0) + 1, is_final=final)
            emitted.append(row)
            if final:
                self._emitted.pop(key, None)
            else:
                self._emitted[key] = row
        return emitted

    def _expired_groups(self, today: date) -> Tuple[Set[PayoutKey], Set[CreditKey]]:
        """The open paid payouts and credits of the tied groups whose latest day is more than lifetime_days
        before today (union-find over the last match's ties)."""
        parent: Dict[tuple, tuple] = {}

        def root(node: tuple) -> tuple:
            while parent[node] != node:
                parent[node] = parent[parent[node]]
                node = parent[node]
            return node

        days: Dict[tuple, date] = {}
        for key, payout in self._payouts.items():
            if _is_paid(payout):
                node = ("payout",) + key
                parent[node] = node
                days[node] = _day_of(payout.payout_date) or today  # an unreadable day (never ISO): counts as today
        for key in self._credits:
            node = ("credit",) + key
            parent[node] = node
            days[node] = self._entries[key].day or today
        for payout_key, credit_key in self._links:
            a, b = ("payout",) + payout_key, ("credit",) + credit_key
            if a in parent and b in parent:
                a, b = root(a), root(b)
                if a != b:
                    parent[a] = b
        group_day: Dict[tuple, date] = {}
        for node, day in days.items():
            top = root(node)
            group_day[top] = max(group_day.get(top, day), day)
        payouts: Set[PayoutKey] = set()
        credits: Set[CreditKey] = set()
        for node in days:
            if (today - group_day[root(node)]).days > self.lifetime_days:
                (payouts if node[0] == "payout" else credits).add(node[1:])
        return payouts, credits
