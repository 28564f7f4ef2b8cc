"""Three-way reconciliation on an unbounded stream (issue 21, docs/DESIGN.md 3.8): both engines' third leg.

    unique settlement lines with a payout id ─► a key per payout ─► LivePayoutsFn ─► payouts (every revision)
                                                                          └─► revisions whose bank view changed,
                                                                              one list per bundle ─┐
    bank-statements messages ─► statement entries ─► judged (dead letters) ─► one list per message ┤
                                                             one key: LiveBankMatchesFn ◄───────────┘
                                                                 ─► bank_matches (revisions per row key)

The rules are batch's (transforms/bank/payouts.py, matching.py); transforms/bank/live.py keeps their state
open and says what changed. "Now" is a stateful key's latest watermark timer, never ahead of the watermark:
a payout is judged again when its grace ends, the bank matches at every UTC midnight (bank deadlines are
days), and both forget what has been final for their lifetime. Each payout is a key of its own (its state
is a tally: transforms/bank/live.py); the per-element engine sends a line at a time (`lines_by_payout`),
the columnar engine a table's lines of one payout at a time (transforms/columnar/bank_flow.py:
`payout_lines_by_payout`).
"""
from __future__ import annotations

import pickle
import uuid
from datetime import timedelta
from typing import Dict, Iterable, List, Optional, Tuple

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import GlobalWindows

from schemas.bank.entry import BANK_STATEMENTS
from schemas.bank.formats import bank_records_of_message
from schemas.internal_records import Judged
from schemas.payouts import BankMatch, PayoutBalance
from schemas.records import SettlementLine
from schemas.rules import BANK_MATCHES, PAYOUTS, READ, REJECTED, count_name, output_status_count_name
from transforms.bank.intake import judge_bank_record
from transforms.bank.live import (
    DAY_MILLIS,
    LiveBankMatches,
    LivePayouts,
    for_bank_matching,
    next_midnight,
    sla_span_days,
)
from transforms.bank.matching import DEFAULT_BANK_POLICY, BankPolicy
from transforms.bank.payouts import DEFAULT_PAYOUT_POLICY, PayoutPolicy
from transforms.catch_up import CatchUpStride
from transforms.event_time import beam_timestamp_to_millis, millis_to_beam_timestamp
from transforms.reconcile import DEFAULT_RETENTION
from transforms.validate import DEAD_LETTERS

METRICS_NAMESPACE = "paybeam"
LIVE_PREFIX = "live."
_BANK_KEY = "bank"
FOR_BANK = "for_bank"
BANK_MAX_STRIDE_MILLIS = 64 * 86_400_000


def payout_lifetime_millis(policy: PayoutPolicy, retention: timedelta = DEFAULT_RETENTION) -> int:
    """How long a payout stays open after its latest line: the retention after its grace (as a result key's)."""
    return int(retention.total_seconds() * 1000) + policy.payout_grace_millis


def bank_lifetime_days(policy: BankPolicy, retention: timedelta = DEFAULT_RETENTION) -> int:
    """How many days after the latest day of its payouts and credits a bank match stays open: the retention
    after the longer of the bank SLA's calendar span and the credit grace."""
    return max(retention.days, 1) + max(sla_span_days(policy), policy.credit_grace.days) + 1


# ---------------------------------------------------------------- payout lines in


def payout_key_text(processor: str, payout_id: str) -> str:
    """The key of a payout's state (Beam keys: text)."""
    return f"{processor}\x1f{payout_id}"


def lines_by_payout(line: SettlementLine) -> Iterable[Tuple[str, List[SettlementLine]]]:
    """The per-element engine: a unique settlement line with a payout id -> (its payout's key, [line])."""
    if line.payout_id:
        yield payout_key_text(line.processor, line.payout_id), [line]


# ---------------------------------------------------------------- the stateful steps


class LivePayoutsFn(beam.DoFn):
    """(payout key, [SettlementLine]) -> PayoutBalance revisions of the payout (transforms/bank/live.py), and
    tagged FOR_BANK the revisions bank matching needs (`for_bank_matching`: its bank view changed)."""

    # (clock millis or None, LivePayouts, the bank view last sent per payout)
    STATE = ReadModifyWriteStateSpec("payouts", PickleCoder())
    DUE = TimerSpec("due", TimeDomain.WATERMARK)

    def __init__(self, policy: PayoutPolicy, lifetime_millis: int):
        self._policy, self._lifetime_millis = policy, lifetime_millis

    def process(self, element, state=beam.DoFn.StateParam(STATE), due=beam.DoFn.TimerParam(DUE)):
        clock, payouts, sent = state.read() or (None, LivePayouts(self._policy, self._lifetime_millis), {})
        revisions = payouts.add(element[1], clock)
        yield from self._outputs(revisions, sent)
        self._save(state, due, clock, payouts, sent)

    @on_timer(DUE)
    def on_due(self, fired_at=beam.DoFn.TimestampParam, state=beam.DoFn.StateParam(STATE),
               due=beam.DoFn.TimerParam(DUE)):
        stored = state.read()
        if stored is None:
            return
        clock = beam_timestamp_to_millis(fired_at)
        _, payouts, sent = stored
        revisions = payouts.advance(clock)
        yield from self._outputs(revisions, sent)
        self._save(state, due, clock, payouts, sent)

    @staticmethod
    def _outputs(revisions, sent) -> Iterable:
        for needed in for_bank_matching(revisions, sent):
            yield pvalue.TaggedOutput(FOR_BANK, needed)
        yield from _counted(PAYOUTS, revisions)

    @staticmethod
    def _save(state, due, clock, payouts: LivePayouts, sent) -> None:
        if payouts.open_keys() == 0:
            state.clear()  # a payout's state lives only while it is open
            return
        state.write((clock, payouts, sent))
        next_due = payouts.next_due_millis()
        if next_due is not None:
            due.set(millis_to_beam_timestamp(next_due))


class LiveBankMatchesFn(beam.DoFn):
    """(the one key, ("payouts", [PayoutBalance]) or ("entries", [(source, entry)])) -> BankMatch revisions;
    conflicting re-deliveries of an entry tagged as dead letters.

    The state is one value, (token, pickled (clock, LiveBankMatches, timer millis)), written whole per
    element. Unpickling it was most of an element's cost (0.11 s of 0.17 s at 2,500 open payouts and
    credits), so the instance keeps what it last wrote, under that write's random token, and uses it only
    while the state holds that token: a retried bundle (its writes discarded), a restore from a checkpoint or
    another worker finds another token and unpickles the state. The cache hands the value out by removing it
    and gets it back only once the new value is written, before anything is emitted."""

    STATE = ReadModifyWriteStateSpec("bank", PickleCoder())  # (token, pickled (clock, matches, timer millis))
    DUE = TimerSpec("due", TimeDomain.WATERMARK)

    def __init__(self, policy: BankPolicy, lifetime_days: int):
        self._policy, self._lifetime_days = policy, lifetime_days
        self._cache: Dict[object, tuple] = {}

    def setup(self):
        self._cache = {}
        # A replay of last month fires at every deadline day between its data and today: each firing a runner
        # round trip (about 60 of them, 20 s, in a 20-day replay on Prism). Far behind the wall clock, or
        # firing back to back, the next timer may skip ahead (judged at a later day: the final rows are
        # the same, intermediate revisions fewer).
        self._stride = CatchUpStride(DAY_MILLIS, max_stride_millis=BANK_MAX_STRIDE_MILLIS)

    def process(self, element, timestamp=beam.DoFn.TimestampParam, state=beam.DoFn.StateParam(STATE),
                due=beam.DoFn.TimerParam(DUE)):
        key = element[0]
        clock, matches, timer_at = self._load(key, state) or (
            None, LiveBankMatches(self._policy, self._lifetime_days), None)
        if clock is None:
            # No timer has fired yet, so there is no "now": the first is the midnight after the earliest element.
            first = next_midnight(beam_timestamp_to_millis(timestamp))
            timer_at = first if timer_at is None else min(timer_at, first)
        kind, items = element[1]
        letters, counts = [], {}
        if kind == PAYOUTS:
            rows = matches.add_payouts(items, clock)
        else:
            rows, letters, counts = matches.add_entries(items, clock)
        self._save(key, state, due, clock, matches,
                   timer_at if clock is None else self._stride.next_timer(0, matches.next_due_millis(), clock))
        for name, count in counts.items():
            Metrics.counter(METRICS_NAMESPACE, f"{LIVE_PREFIX}{count_name(BANK_STATEMENTS, name)}").inc(count)
        for letter in letters:
            yield pvalue.TaggedOutput(DEAD_LETTERS, letter.outcome)
        yield from _counted(BANK_MATCHES, rows)

    @on_timer(DUE)
    def on_due(self, key=beam.DoFn.KeyParam, fired_at=beam.DoFn.TimestampParam, state=beam.DoFn.StateParam(STATE),
               due=beam.DoFn.TimerParam(DUE)):
        loaded = self._load(key, state)
        if loaded is None:
            return
        clock = beam_timestamp_to_millis(fired_at)
        matches = loaded[1]
        rows = matches.advance(clock)
        self._stride.fired(0, clock)
        self._save(key, state, due, clock, matches, self._stride.next_timer(0, matches.next_due_millis(), clock))
        yield from _counted(BANK_MATCHES, rows)

    def _load(self, key, state) -> Optional[tuple]:
        stored = state.read()
        cached = self._cache.pop(key, None)
        if stored is None:
            return None
        token, blob = stored
        if cached is not None and cached[0] == token:
            return cached[1]
        return pickle.loads(blob)

    def _save(self, key, state, due, clock, matches: LiveBankMatches, timer_at) -> None:
        value = (clock, matches, timer_at)
        token = uuid.uuid4().hex
        state.write((token, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)))
        self._cache[key] = (token, value)
        if timer_at is not None:
            due.set(millis_to_beam_timestamp(timer_at))


def _counted(output: str, rows: list) -> Iterable:
    if rows:
        Metrics.counter(METRICS_NAMESPACE, f"{LIVE_PREFIX}{output}.rows").inc(len(rows))
    for row in rows:
        Metrics.counter(METRICS_NAMESPACE, f"{LIVE_PREFIX}{output_status_count_name(output, row.status)}").inc()
        yield row


# ---------------------------------------------------------------- statements in


def _statement_entries(message) -> Iterable:
    """A bank-statements message -> ("entries", [(source, entry)]) for its good entries (one element per
    statement), its problem records tagged as dead letters."""
    Metrics.counter(METRICS_NAMESPACE, f"{LIVE_PREFIX}{count_name(BANK_STATEMENTS, 'messages')}").inc()
    entries = []
    for record in bank_records_of_message(message):
        Metrics.counter(METRICS_NAMESPACE, f"{LIVE_PREFIX}{count_name(BANK_STATEMENTS, READ)}").inc()
        judged = judge_bank_record(record)
        if isinstance(judged, Judged):
            Metrics.counter(METRICS_NAMESPACE, f"{LIVE_PREFIX}{count_name(BANK_STATEMENTS, REJECTED)}").inc()
            yield pvalue.TaggedOutput(DEAD_LETTERS, judged.outcome)
        else:
            entries.append(judged)
    if entries:
        yield _BANK_KEY, ("entries", entries)


class PayoutsOfBundle(beam.DoFn):
    """Payout revisions (global window) -> one (bank key, ("payouts", [revisions])) per bundle, stamped at the
    bundle's earliest: the bank key pays a re-match and a state write per element, so a catch-up's
    bundles of thousands of payouts cost one each."""

    def start_bundle(self) -> None:
        self._revisions: List[PayoutBalance] = []
        self._earliest = None

    def process(self, revision: PayoutBalance, timestamp=beam.DoFn.TimestampParam):
        self._revisions.append(revision)
        self._earliest = timestamp if self._earliest is None else min(self._earliest, timestamp)
        return []

    def finish_bundle(self):
        if self._revisions:
            revisions, self._revisions = self._revisions, []
            yield GlobalWindows.windowed_value((_BANK_KEY, (PAYOUTS, revisions)), self._earliest)


class LiveReconcileBank(beam.PTransform):
    """{payout_lines: (key, [SettlementLine]) of unique lines, bank_statements: the topic's RawRecords (one
    statement document each)} -> {payouts: PayoutBalance revisions, bank_matches: BankMatch revisions,
    dead_letters}."""

    def __init__(self, payout_policy: PayoutPolicy = DEFAULT_PAYOUT_POLICY,
                 bank_policy: BankPolicy = DEFAULT_BANK_POLICY, retention: timedelta = DEFAULT_RETENTION):
        super().__init__()
        self._payout_policy, self._bank_policy, self._retention = payout_policy, bank_policy, retention

    def expand(self, inputs):
        payouts = (inputs["payout_lines"]
                   | "PayoutsGlobal" >> beam.WindowInto(GlobalWindows())
                   | "LivePayouts" >> beam.ParDo(LivePayoutsFn(
                       self._payout_policy, payout_lifetime_millis(self._payout_policy, self._retention)))
                   .with_outputs(FOR_BANK, main=PAYOUTS))
        payouts[PAYOUTS].element_type = PayoutBalance
        payouts[FOR_BANK].element_type = PayoutBalance
        entries = (inputs[BANK_STATEMENTS]
                   | "StatementEntries" >> beam.FlatMap(_statement_entries).with_outputs(DEAD_LETTERS, main="entries"))
        matched = ([payouts[FOR_BANK] | "PayoutsToMatch" >> beam.ParDo(PayoutsOfBundle()),
                    entries.entries | "EntriesGlobal" >> beam.WindowInto(GlobalWindows())]
                   | "BankInputs" >> beam.Flatten()
                   | "LiveBankMatches" >> beam.ParDo(LiveBankMatchesFn(
                       self._bank_policy, bank_lifetime_days(self._bank_policy, self._retention)))
                   .with_outputs(DEAD_LETTERS, main=BANK_MATCHES))
        matched[BANK_MATCHES].element_type = BankMatch
        dead_letters = (entries[DEAD_LETTERS], matched[DEAD_LETTERS]) | "BankDeadLetters" >> beam.Flatten()
        return {PAYOUTS: payouts[PAYOUTS], BANK_MATCHES: matched[BANK_MATCHES], DEAD_LETTERS: dead_letters}
