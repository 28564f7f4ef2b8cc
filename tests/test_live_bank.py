"""The state of three-way reconciliation in a stream (transforms/bank/live.py) against the batch rules
(transforms/bank/payouts.py's balance_payout, transforms/bank/matching.py's match_bank_credits): payout tallies
field for field, live payouts and live bank matches after every call of hypothesis-drawn interleavings of
arrivals, re-deliveries and timers, revisions without gaps, and the final rows once everything expired."""
from __future__ import annotations

import pickle
import random
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta, timezone
from typing import Dict, List, Optional, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.bank.entry import BANK_ENTRY_FIELDS, BOOKED, CREDIT
from schemas.payouts import BankMatch, PayoutBalance
from schemas.records import SettlementLine
from schemas.rules import (
    LINES_WITHOUT_PAYOUT,
    PAYOUT_RECEIVED,
    PAYOUT_RECORD_TYPE,
    PENDING,
    RECORD_TYPES,
    UNEXPECTED_BANK_CREDIT,
    WITHDRAWN,
)
from tests.test_columnar_bank_matching import _entry, entry_rows, payout_rows
from tests.test_payout_rules import payout
from transforms.bank.intake import as_of_day, first_copies
from transforms.bank.live import (
    NEVER_MILLIS,
    LiveBankMatches,
    LivePayouts,
    balance_of_tally,
    bank_match_key,
    for_bank_matching,
    merged_tally,
    sla_span_days,
    tally_of_line,
)
from transforms.bank.matching import BankPolicy, match_bank_credits
from transforms.bank.payouts import PayoutPolicy, balance_payout

HOUR = 3_600_000
DAY = 24 * HOUR


def _in_order(lines: List[SettlementLine]) -> List[SettlementLine]:
    return sorted(lines, key=lambda line: (line.booked_time, line.settlement_id))


def _fields(row: tuple) -> tuple:
    """A row without its revision and is_final."""
    return tuple(row[:-2])


# ---------------------------------------------------------------------------------------------- tallies

_AMOUNTS = st.integers(-20_000, 20_000) | st.sampled_from([0, 2 ** 62, -(2 ** 62), 2 ** 63 - 1, -(2 ** 63)])


@st.composite
def lines_of_a_payout(draw, processor: str = "stripe", payout_id: str = "po_AAAA1111", max_size: int = 10,
                      hours: int = 6) -> List[SettlementLine]:
    """Lines of one payout: distinct settlement ids, every record type (PAYOUT lines often), booked_time ties,
    sometimes two currencies, merchants or settlement days, sums that leave int64 now and then."""
    ids = draw(st.lists(st.integers(0, 999), min_size=1, max_size=max_size, unique=True))
    currencies = draw(st.sampled_from([["EUR"], ["EUR"], ["EUR", "USD"]]))
    lines = []
    for number in ids:
        record_type = draw(st.sampled_from(RECORD_TYPES + (PAYOUT_RECORD_TYPE,)))
        gross = draw(_AMOUNTS)
        lines.append(SettlementLine(
            settlement_id=f"s{number}", processor=processor, processor_reference=f"r{number}",
            merchant_id=draw(st.sampled_from(["m1", "m2"])), record_type=record_type, gross_minor=gross,
            fee_minor=0, net_minor=draw(st.sampled_from([gross, gross - 30])) if gross < 2 ** 62 else gross,
            currency=draw(st.sampled_from(currencies)),
            settlement_date=draw(st.sampled_from(["2026-03-02", "2026-03-03", "2026-02-27"])),
            booked_time=draw(st.integers(0, hours)) * HOUR, payout_id=payout_id))
    return lines


def _fold(lines: List[SettlementLine], rnd: random.Random):
    """The lines' tallies merged in a random order and grouping."""
    tallies = [tally_of_line(line) for line in lines]
    rnd.shuffle(tallies)
    while len(tallies) > 1:
        i, j = rnd.sample(range(len(tallies)), 2)
        a, b = tallies[i], tallies[j]
        merged = merged_tally(a, b) if rnd.random() < 0.5 else merged_tally(b, a)
        tallies = [tally for k, tally in enumerate(tallies) if k not in (i, j)] + [merged]
    return tallies[0]


@settings(max_examples=400, deadline=None)
@given(lines_of_a_payout(), st.integers(0, 3), st.sampled_from([-HOUR, -1, 0, 0, 1, 5 * HOUR]),
       st.randoms(use_true_random=False))
def test_a_tally_balances_a_payout_as_balance_payout_does_in_every_field(lines, grace_hours, offset, rnd):
    policy = PayoutPolicy(payout_grace=timedelta(hours=grace_hours))
    settled = [line.booked_time for line in lines if line.record_type != PAYOUT_RECORD_TYPE]
    as_of = (max(settled) if settled else 0) + policy.payout_grace_millis + offset  # at, before, after the grace
    tally = _fold(lines, rnd)
    assert balance_of_tally("stripe", "po_AAAA1111", tally, as_of, policy) == balance_payout(
        "stripe", "po_AAAA1111", _in_order(lines), as_of, policy)


def test_a_tally_is_pending_before_the_grace_and_lines_without_payout_at_it():
    lines = [SettlementLine("s1", "stripe", "r", "m1", "CAPTURE", 500, 0, 500, "EUR", "2026-03-02", 10 * HOUR, "p")]
    policy = PayoutPolicy(payout_grace=timedelta(hours=2))
    tally = tally_of_line(lines[0])
    assert balance_of_tally("stripe", "p", tally, 12 * HOUR - 1, policy).status == PENDING
    assert balance_of_tally("stripe", "p", tally, 12 * HOUR, policy).status == LINES_WITHOUT_PAYOUT


# ---------------------------------------------------------------------------------------------- live payouts

_KEYS = [("stripe", "po_AAAA1111"), ("stripe", "po_BBBB2222"), ("adyen", "po_AAAA1111")]
_GRACE = PayoutPolicy(payout_grace=timedelta(hours=2))
_LIFETIME = 5 * HOUR


@st.composite
def payout_streams(draw) -> List[Tuple[str, object]]:
    """("add", lines) and ("advance", clock) steps: lines of three payouts (and some of none) booked on an hourly
    grid, a clock on the same grid give or take a millisecond (deadlines and expiries hit exactly), now and
    then a timer behind the clock (ignored)."""
    steps: List[Tuple[str, object]] = []
    clock: Optional[int] = None
    number = 0
    for _ in range(draw(st.integers(1, 14))):
        if draw(st.integers(0, 2)):
            batch = []
            for _ in range(draw(st.integers(0, 4))):
                processor, payout_id = draw(st.sampled_from(_KEYS + [("stripe", None)]))
                number += 1
                gross = draw(st.sampled_from([500, 1_000, -200, 2 ** 63 - 1]))
                batch.append(SettlementLine(
                    settlement_id=f"s{number:03d}", processor=processor, processor_reference=f"r{number}",
                    merchant_id=draw(st.sampled_from(["m1", "m2"])),
                    record_type=draw(st.sampled_from(["CAPTURE", "CAPTURE", "REFUND", "FEE", PAYOUT_RECORD_TYPE])),
                    gross_minor=gross, fee_minor=0, net_minor=gross,
                    currency=draw(st.sampled_from(["EUR", "EUR", "EUR", "USD"])),
                    settlement_date=draw(st.sampled_from(["2026-03-02", "2026-03-03"])),
                    booked_time=draw(st.integers(0, 12)) * HOUR, payout_id=payout_id))
            steps.append(("add", batch))
        else:
            step = draw(st.integers(0, 3)) * HOUR + draw(st.sampled_from([0, 0, 1, -1]))
            at = draw(st.integers(-1, 6)) * HOUR + step if clock is None else clock + step
            if clock is not None and at < clock and not draw(st.integers(0, 3)):
                steps.append(("advance", at))  # a timer behind the clock
                continue
            clock = at if clock is None else max(clock, at)
            steps.append(("advance", clock))
    steps.append(("advance", 10 ** 9))  # far beyond every line: everything expires
    return steps


def _next_due(lines_of: Dict[tuple, List[SettlementLine]], now: int) -> Optional[int]:
    due = []
    for lines in lines_of.values():
        due.append(max(line.booked_time for line in lines) + _LIFETIME)
        settled = [line.booked_time for line in lines if line.record_type != PAYOUT_RECORD_TYPE]
        if len(settled) == len(lines) and max(settled) + _GRACE.payout_grace_millis > now:
            due.append(max(settled) + _GRACE.payout_grace_millis)
    return min(due, default=None)


def _run_payouts(state: LivePayouts, steps) -> List[List[PayoutBalance]]:
    return [state.add(arg, state.clock) if step == "add" else state.advance(arg) for step, arg in steps]


@settings(max_examples=300, deadline=None)
@given(payout_streams())
def test_live_payouts_revise_every_open_payout_to_balance_payout_at_the_clock(steps):
    state = LivePayouts(_GRACE, _LIFETIME)
    lines_of: Dict[tuple, List[SettlementLine]] = {}  # the open payouts' lines (this generation)
    last: Dict[tuple, PayoutBalance] = {}  # the last revision emitted per payout, this generation
    clock: Optional[int] = None
    for step, arg in steps:
        if step == "advance" and clock is not None and arg < clock:
            assert state.advance(arg) == [] and state.clock == clock
            continue
        if step == "add":
            emitted = state.add(arg, clock)
            for line in arg:
                if line.payout_id:
                    lines_of.setdefault((line.processor, line.payout_id), []).append(line)
            expiring = set()
        else:
            clock = arg
            expiring = {key for key, lines in lines_of.items()
                        if max(line.booked_time for line in lines) + _LIFETIME <= clock}
            emitted = state.advance(clock)
        now = NEVER_MILLIS if clock is None else clock
        keys = [(balance.processor, balance.payout_id) for balance in emitted]
        assert len(keys) == len(set(keys)) and set(keys) <= set(lines_of)
        for key, balance in zip(keys, emitted):
            previous = last.get(key)
            assert balance.revision == (previous.revision if previous else 0) + 1  # 1, 2, 3, ... no gaps
            if previous is not None and not balance.is_final:
                assert _fields(balance) != _fields(previous)  # a revision says something new
            last[key] = balance
        assert {key for key, balance in zip(keys, emitted) if balance.is_final} == expiring
        for key in expiring:  # judged at the clock, then gone: a later line starts a new generation
            assert _fields(last.pop(key)) == _fields(balance_payout(*key, _in_order(lines_of.pop(key)), now, _GRACE))
        for key, lines in lines_of.items():
            assert not last[key].is_final
            assert _fields(last[key]) == _fields(balance_payout(*key, _in_order(lines), now, _GRACE))
        assert state.open_keys() == len(lines_of)
        assert state.next_due_millis() == _next_due(lines_of, now)
    assert state.open_keys() == 0 and state.next_due_millis() is None


def test_a_payout_turns_lines_without_payout_on_its_deadline_and_is_final_at_its_expiry():
    line = SettlementLine("s1", "stripe", "r", "m1", "CAPTURE", 500, 0, 500, "EUR", "2026-03-02", 10 * HOUR, "p")
    state = LivePayouts(_GRACE, _LIFETIME)
    [first] = state.add([line], None)
    assert (first.status, first.revision, first.is_final) == (PENDING, 1, False)
    assert state.next_due_millis() == 12 * HOUR
    assert state.advance(12 * HOUR - 1) == []
    [due] = state.advance(12 * HOUR)
    assert (due.status, due.revision, due.is_final) == (LINES_WITHOUT_PAYOUT, 2, False)
    assert state.next_due_millis() == 15 * HOUR
    [final] = state.advance(15 * HOUR)
    assert (final.status, final.revision, final.is_final) == (LINES_WITHOUT_PAYOUT, 3, True)
    assert state.open_keys() == 0
    [again] = state.add([line._replace(settlement_id="s2")], 15 * HOUR)  # a late line: a new generation
    assert (again.status, again.revision, again.is_final) == (LINES_WITHOUT_PAYOUT, 1, False)
    with pytest.raises(ValueError):
        LivePayouts(_GRACE, HOUR)


@settings(max_examples=20, deadline=None)
@given(payout_streams(), st.integers(0, 14))
def test_live_payouts_continue_identically_after_pickling(steps, cut):
    state = LivePayouts(_GRACE, _LIFETIME)
    _run_payouts(state, steps[:cut])
    restored = pickle.loads(pickle.dumps(state))
    assert _run_payouts(restored, steps[cut:]) == _run_payouts(state, steps[cut:])


# ---------------------------------------------------------------------------------------------- live bank matches

_START = datetime(2026, 2, 27, tzinfo=timezone.utc)  # the worlds' days are 26 Feb .. 13 Mar
_LIFETIME_DAYS = 30  # no group can expire before 29 Mar: the clocks below stay before it
_FAR = int(datetime(2030, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@st.composite
def bank_streams(draw, days: int = 28):
    """Steps of a stream: ("payouts", balances), ("entries", sourced entries), ("advance", clock); then the
    revisions still undelivered. Payouts come as revisions (paid or not, the last one final), now and then an
    older revision again, late; entries as the columnar tests draw them (names in every searched field, two
    names, debits, pending and dayless entries, colliding entry keys), some delivered again, identical or not."""
    rnd = draw(st.randoms(use_true_random=False))
    firsts, laters = draw(payout_rows()), draw(payout_rows())
    revisions: Dict[tuple, List[dict]] = defaultdict(list)
    for row in firsts:
        revisions[(row["processor"], row["payout_id"])].append(row)
    for row in laters:
        if revisions:
            key = rnd.choice(sorted(revisions))
            revisions[key].append({**row, "processor": key[0], "payout_id": key[1]})
    sequences = {key: [PayoutBalance(**{**row, "revision": index + 1, "is_final": index + 1 == len(rows)})
                       for index, row in enumerate(rows)] for key, rows in revisions.items()}
    entries = draw(entry_rows())
    dayless = {**_entry("pending", 1_000, status="PDNG"), "booking_date": None, "value_date": None}
    entries += [dayless] if draw(st.booleans()) else []
    for entry in list(entries):
        kind = rnd.random()
        if kind < 0.2:
            entries.append(dict(entry))  # an identical re-delivery
        elif kind < 0.35:
            entries.append({**entry, "amount_minor": entry["amount_minor"] + 1})  # a conflicting one
    rnd.shuffle(entries)

    # Each payout's revisions in order (an older one again now and then), some held back to the end.
    deliveries: Dict[tuple, List[PayoutBalance]] = {}
    held_back: List[PayoutBalance] = []
    for key, sequence in sorted(sequences.items()):
        cut = rnd.randint(0, len(sequence))
        delivered = []
        for balance in sequence[:cut]:
            delivered.append(balance)
            if balance.revision > 1 and not balance.is_final and rnd.random() < 0.4:
                delivered.append(sequence[balance.revision - 2])  # late
        deliveries[key] = delivered
        held_back += sequence[cut:]
    tokens = [key for key, delivered in deliveries.items() for _ in delivered] + ["entry"] * len(entries)
    rnd.shuffle(tokens)
    position = {key: 0 for key in deliveries}
    items = []
    for token in tokens:
        if token == "entry":
            items.append(("entry", entries.pop()))
        else:
            items.append(("payout", deliveries[token][position[token]]))
            position[token] += 1

    steps = []
    clock: Optional[int] = None
    sequence_number = 0
    while items:
        size = rnd.randint(1, 4)
        batch, items = items[:size], items[size:]
        balances = [item for kind, item in batch if kind == "payout"]
        sourced = []
        for kind, item in batch:
            if kind == "entry":
                sequence_number += 1
                sourced.append((f"bank/statements.xml:{sequence_number}", item))  # read in arrival order
        calls = [("payouts", balances), ("entries", sourced)]
        rnd.shuffle(calls)
        steps += [call for call in calls if call[1] or rnd.random() < 0.2]
        if rnd.random() < 0.4:
            at = _millis(_START + timedelta(hours=rnd.randint(0, days * 24 - 1), milliseconds=rnd.randint(0, 9)))
            if clock is not None and at < clock and rnd.random() < 0.7:
                at = clock + rnd.randint(0, 2 * DAY)
            steps.append(("advance", at))
            clock = at if clock is None else max(clock, at)
    policy = BankPolicy(bank_sla_business_days=draw(st.integers(0, 4)),
                        credit_grace=timedelta(days=draw(st.integers(0, 4))))
    return policy, steps, held_back


class _Model:
    """What the state should hold, by the rules stated plainly: the highest revision of each payout (one that
    pays nothing out gone at its final revision), the first arrival of each entry."""

    def __init__(self, policy: BankPolicy):
        self.policy = policy
        self.clock: Optional[int] = None
        self.payouts: Dict[tuple, PayoutBalance] = {}
        self.first: Dict[tuple, Tuple[str, dict]] = {}

    def open_payouts(self) -> List[PayoutBalance]:
        return [balance for balance in self.payouts.values() if not (balance.is_final and not (
            balance.payout_minor is not None and balance.payout_minor > 0 and balance.payout_date is not None))]

    def credits(self) -> List[dict]:
        return [entry for _, entry in self.first.values()
                if entry["credit_debit"] == CREDIT and not entry["reversal"] and entry["status"] == BOOKED]

    def day(self) -> date:
        return date.min if self.clock is None else as_of_day(self.clock)

    def rows(self, day: date) -> Counter:
        return Counter(match_bank_credits(self.open_payouts(), self.credits(), day, self.policy))


class _Stream:
    """The revisions a consumer of the state has seen: the last one per row key, and the final ones."""

    def __init__(self, may_reopen: bool = False):
        self.latest: Dict[tuple, BankMatch] = {}
        self.finals: Dict[tuple, BankMatch] = {}
        self.may_reopen = may_reopen  # a key may come back after its final revision (starting at 1)

    def take(self, rows: List[BankMatch]) -> List[BankMatch]:
        keys = [bank_match_key(row) for row in rows]
        assert len(keys) == len(set(keys))
        for key, row in zip(keys, rows):
            previous = self.latest.get(key)
            assert row.revision == (previous.revision if previous else 0) + 1  # 1, 2, 3, ... no gaps
            if previous is not None and not row.is_final:
                assert _fields(row) != _fields(previous)
            if previous is None:
                assert row.status != WITHDRAWN  # a key withdraws a row it had
            if row.is_final:
                del self.latest[key]
                assert self.may_reopen or key not in self.finals
                self.finals[key] = row
            else:
                self.latest[key] = row
        return [row for key, row in zip(keys, rows) if row.is_final]

    def rows(self) -> Counter:
        return Counter(row._replace(revision=1, is_final=True) for row in self.latest.values()
                       if row.status != WITHDRAWN)


def _deliver(state: LiveBankMatches, model: _Model, stream: _Stream, step: str, arg) -> List[BankMatch]:
    if step == "payouts":
        for balance in arg:
            key = (balance.processor, balance.payout_id)
            if key not in model.payouts or balance.revision > model.payouts[key].revision:
                model.payouts[key] = balance
        return stream.take(state.add_payouts(arg, model.clock))
    if step == "entries":
        rows, letters, counts = state.add_entries(arg, model.clock)
        expected_letters, expected = [], Counter()
        for source, entry in arg:
            key = (str(entry["account"]), str(entry["entry_ref"]))
            if key not in model.first:
                model.first[key] = (source, entry)
                expected["unique"] += 1
                continue
            letter = first_copies([model.first[key], (source, entry)])[1]  # the first arrival kept
            expected["conflicting" if letter else "deduplicated"] += 1
            expected_letters += letter
            assert bool(letter) == any(entry.get(name) != model.first[key][1].get(name) for name in BANK_ENTRY_FIELDS)
        assert letters == expected_letters
        assert counts == {"unique": expected["unique"], "deduplicated": expected["deduplicated"],
                          "conflicting": expected["conflicting"]}
        assert sum(counts.values()) == len(arg)
        return stream.take(rows)
    if model.clock is not None and arg < model.clock:
        assert state.advance(arg) == []
        return []
    model.clock = arg
    return stream.take(state.advance(arg))


@settings(max_examples=250, deadline=None)
@given(bank_streams())
def test_live_bank_matches_are_match_bank_credits_of_what_is_open_after_every_call(stream_steps):
    policy, steps, held_back = stream_steps
    state = LiveBankMatches(policy, _LIFETIME_DAYS)
    model, stream = _Model(policy), _Stream()
    for step, arg in steps:
        finals = _deliver(state, model, stream, step, arg)
        # Nothing expires before 29 Mar: the only final revisions close a payout that pays nothing out.
        for row in finals:
            assert row.status == WITHDRAWN and row.payout_id is not None
            assert model.payouts[(row.processor, row.payout_id)].is_final
        assert stream.rows() == model.rows(model.day())
        assert state.open_counts() == {"payouts": len(model.open_payouts()), "credits": len(model.credits()),
                                       "entries": len(model.first)}
        if model.clock is not None and any(state.open_counts().values()):
            due = state.next_due_millis()
            assert due is not None and due > model.clock
            # No day before the next due one changes a row: advancing a copy to each of them emits nothing.
            copy = pickle.loads(pickle.dumps(state))
            midnight = (model.clock // DAY + 1) * DAY
            while midnight < due and midnight <= model.clock + 40 * DAY:
                assert copy.advance(midnight) == [], f"a row changed at {midnight}, before the next due {due}"
                midnight += DAY
    _deliver(state, model, stream, "payouts", held_back)  # every payout's final revision
    assert stream.rows() == model.rows(model.day())
    _deliver(state, model, stream, "advance", _FAR)
    assert stream.latest == {}  # every key's last revision is final
    assert Counter(row._replace(revision=1, is_final=True) for row in stream.finals.values()
                   if row.status != WITHDRAWN) == model.rows(as_of_day(_FAR))
    # A dayless entry (pending, no booking date) counts from the first clock after it: one lifetime more.
    assert state.advance(_FAR + (_LIFETIME_DAYS + 1) * DAY) == []
    assert state.open_counts() == {"payouts": 0, "credits": 0, "entries": 0}
    assert state.next_due_millis() is None


@settings(max_examples=100, deadline=None)
@given(bank_streams(days=45))
def test_live_bank_matches_that_expire_leave_the_rows_of_what_stays_open_as_they_were(stream_steps):
    """A short lifetime, a clock over 45 days: groups expire mid-stream (and entries or revisions arriving after
    their group left come back as new keys); the rows of what stays open are still its matches."""
    policy, steps, held_back = stream_steps
    state = LiveBankMatches(policy, 8)
    stream, clock = _Stream(may_reopen=True), None
    for step, arg in steps + [("payouts", held_back), ("advance", _FAR), ("advance", _FAR + 9 * DAY)]:
        if step == "payouts":
            finals = stream.take(state.add_payouts(arg, clock))
        elif step == "entries":
            rows, _, counts = state.add_entries(arg, clock)
            assert sum(counts.values()) == len(arg)
            finals = stream.take(rows)
        else:
            finals = stream.take(state.advance(arg))
            clock = state.clock
        day = date.min if clock is None else as_of_day(clock)
        for row in finals:  # decided before it is final, unless withdrawn
            assert row.status != PENDING
        assert stream.rows() == Counter(match_bank_credits(state.open_payouts(), state.open_credits(), day, policy))
    assert stream.latest == {} and state.open_counts() == {"payouts": 0, "credits": 0, "entries": 0}


def _credit(ref: str, amount: int, day: str, text: str = "") -> dict:
    return _entry(ref, amount, day=day, text=text)


def _day_millis(day: str, hour: int = 12) -> int:
    return _millis(datetime.fromisoformat(day).replace(tzinfo=timezone.utc)) + hour * HOUR


def test_a_credit_before_its_payout_is_pending_alone_then_withdrawn_into_the_payouts_row():
    state = LiveBankMatches(BankPolicy(), 10)
    clock = _day_millis("2026-03-03")
    rows, letters, counts = state.add_entries([("bank/a.xml:1", _credit("c1", 1_000, "2026-03-03", "PO_AAAA1111"))],
                                              clock)
    assert (letters, counts) == ([], {"unique": 1, "deduplicated": 0, "conflicting": 0})
    assert [(bank_match_key(row), row.status, row.revision, row.is_final) for row in rows] == [
        (("credit", "NL00BANK0123456789", "c1"), PENDING, 1, False)]
    rows = state.add_payouts([payout("po_AAAA1111", 1_000)._replace(is_final=False)], clock)
    assert [(bank_match_key(row), row.status, row.entry_ref, row.revision, row.is_final) for row in rows] == [
        (("credit", "NL00BANK0123456789", "c1"), WITHDRAWN, "c1", 2, False),
        (("payout", "stripe", "po_AAAA1111"), PAYOUT_RECEIVED, "c1", 1, False)]


def test_a_tied_group_expires_together_on_its_latest_day_and_others_on_their_own():
    state = LiveBankMatches(BankPolicy(bank_sla_business_days=3, credit_grace=timedelta(days=3)), 10)
    named = _credit("late", 1_000, "2026-03-09", "po_AAAA1111")  # names a payout of 2 Mar: one group, day 9 Mar
    alone = _credit("alone", 700, "2026-03-02")
    state.add_entries([("bank/a.xml:1", named), ("bank/a.xml:2", alone)], _day_millis("2026-03-09"))
    state.add_payouts([payout("po_AAAA1111", 1_000, day="2026-03-02")], None)
    assert state.advance(_day_millis("2026-03-12")) == [] and state.advance(_day_millis("2026-03-12", 20)) == []
    [final] = state.advance(_day_millis("2026-03-13"))  # 2 Mar + 10 days is behind: "alone" expires
    assert (final.entry_ref, final.status, final.revision, final.is_final) == (
        "alone", UNEXPECTED_BANK_CREDIT, 2, True)
    assert state.advance(_day_millis("2026-03-19")) == []
    assert state.open_counts() == {"payouts": 1, "credits": 1, "entries": 1}  # the seen "alone" is forgotten
    finals = state.advance(_day_millis("2026-03-20"))
    assert [(bank_match_key(row), row.status, row.revision, row.is_final) for row in finals] == [
        (("credit", "NL00BANK0123456789", "late"), WITHDRAWN, 3, True),
        (("payout", "stripe", "po_AAAA1111"), PAYOUT_RECEIVED, 2, True)]
    assert state.open_counts() == {"payouts": 0, "credits": 0, "entries": 0} and state.next_due_millis() is None
    # Forgotten: a re-delivery is new again.
    rows, _, counts = state.add_entries([("bank/b.xml:1", alone)], _day_millis("2026-03-20"))
    assert counts["unique"] == 1 and [(row.status, row.revision) for row in rows] == [(UNEXPECTED_BANK_CREDIT, 1)]


def test_payout_revisions_late_ones_ignored_a_final_one_without_money_withdraws_the_row():
    state = LiveBankMatches(BankPolicy(), 10)
    clock = _day_millis("2026-03-03")
    first = payout("po_AAAA1111", 1_000)._replace(revision=1, is_final=False)
    second = first._replace(payout_minor=1_200, revision=2)
    assert [(row.payout_minor, row.revision) for row in state.add_payouts([first, second], clock)] == [(1_200, 1)]
    assert state.add_payouts([first], clock) == []  # an older revision, late
    returned = second._replace(payout_minor=0, revision=3)
    [withdrawn] = state.add_payouts([returned], clock)
    assert (withdrawn.status, withdrawn.payout_minor, withdrawn.revision, withdrawn.is_final) == (
        WITHDRAWN, 1_200, 2, False)
    assert state.open_counts()["payouts"] == 1  # not final: it may still pay out
    [closed] = state.add_payouts([returned._replace(revision=4, is_final=True)], clock)
    assert (closed.status, closed.revision, closed.is_final) == (WITHDRAWN, 3, True)
    assert state.open_counts()["payouts"] == 0
    paid_final = first._replace(revision=2, is_final=True)
    state.add_payouts([first, paid_final], clock)
    [back] = state.add_payouts([first._replace(payout_minor=900)], clock)  # revision 1 after a final: it came back
    assert (back.payout_minor, back.revision) == (900, 2)


def test_the_lifetime_must_outlast_the_sla_and_the_grace():
    policy = BankPolicy(bank_sla_business_days=3, credit_grace=timedelta(days=2))
    assert sla_span_days(policy) == 5  # a Saturday: Monday then three business days
    with pytest.raises(ValueError):
        LiveBankMatches(policy, 6)
    LiveBankMatches(policy, 7)
    with pytest.raises(ValueError):
        LiveBankMatches(BankPolicy(bank_sla_business_days=0, credit_grace=timedelta(days=10)), 11)
    for sla in range(0, 40):
        span = sla_span_days(BankPolicy(bank_sla_business_days=sla))
        assert sla <= span <= sla + 2 * ((sla + 4) // 5) + 2


@settings(max_examples=20, deadline=None)
@given(bank_streams(), st.integers(0, 30))
def test_live_bank_matches_continue_identically_after_pickling(stream_steps, cut):
    policy, steps, held_back = stream_steps
    steps = steps + [("payouts", held_back), ("advance", _FAR)]

    def run(state: LiveBankMatches, part):
        clock = state.clock
        out = []
        for step, arg in part:
            if step == "payouts":
                out.append(state.add_payouts(arg, clock))
            elif step == "entries":
                out.append(state.add_entries(arg, clock))
            else:
                out.append(state.advance(arg))
                clock = state.clock
        return out

    state = LiveBankMatches(policy, _LIFETIME_DAYS)
    run(state, steps[:cut])
    restored = pickle.loads(pickle.dumps(state))
    assert run(restored, steps[cut:]) == run(state, steps[cut:])


@settings(max_examples=200, deadline=None)
@given(bank_streams())
def test_the_bank_key_fed_only_the_revisions_it_needs_emits_what_it_emits_fed_all(stream_steps):
    """LivePayoutsFn sends bank matching only the revisions `for_bank_matching` keeps (each payout's sequence
    filtered in order, as the payout's key emits it); late copies travel only if their revision was sent."""
    policy, steps, held_back = stream_steps
    steps = steps + [("payouts", held_back), ("advance", _FAR)]
    sequences: Dict[tuple, Dict[int, PayoutBalance]] = defaultdict(dict)
    for step, arg in steps:
        if step == "payouts":
            for balance in arg:
                sequences[(balance.processor, balance.payout_id)][balance.revision] = balance
    sent_revisions = set()
    for key, by_revision in sequences.items():
        needed = for_bank_matching([by_revision[n] for n in sorted(by_revision)], {})
        sent_revisions.update((key, balance.revision) for balance in needed)

    def run(filtered: bool):
        state, out = LiveBankMatches(policy, _LIFETIME_DAYS), []
        for step, arg in steps:
            if step == "payouts":
                given = [b for b in arg if not filtered or ((b.processor, b.payout_id), b.revision) in sent_revisions]
                out.append(state.add_payouts(given, state.clock))
            elif step == "entries":
                out.append(state.add_entries(arg, state.clock))
            else:
                out.append(state.advance(arg))
        return out

    assert run(filtered=True) == run(filtered=False)


def test_for_bank_matching_keeps_bank_view_changes_and_the_final_revision():
    base = PayoutBalance("stripe", "po_1", "m_1", "USD", None, 500, None, 1, 0, None, "PENDING", 1, False)
    paid = base._replace(payout_minor=500, payout_date="2026-03-02", payout_line_count=1, status="PAYOUT_BALANCED",
                         revision=2)
    more_lines = paid._replace(lines_minor=700, line_count=2, difference_minor=-200, status="PAYOUT_LINES_DIFFER",
                               revision=3)
    final = more_lines._replace(revision=4, is_final=True)
    sent = {}
    assert [b.revision for b in for_bank_matching([base, paid, more_lines], sent)] == [2]
    assert [b.revision for b in for_bank_matching([final], sent)] == [4] and sent == {}
    # The bank match shows the payout's merchant: a new first line of another merchant is a new view.
    moved = paid._replace(merchant_id="m_2", revision=3)
    assert [b.revision for b in for_bank_matching([paid, moved], {})] == [2, 3]
    never_paid = base._replace(payout_id="po_2", revision=2, is_final=True)
    assert for_bank_matching([base._replace(payout_id="po_2"), never_paid], {}) == []
