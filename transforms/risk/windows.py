"""Per-event sliding windows: each attempt decided on its key's earlier attempts (docs/DESIGN.md 10.3).

The per-element engine, the reference every other engine is compared with.
An attempt is decided just before its authorization: it sees the attempts
of its key that came before it, ordered by (event_time, attempt_id), whose
event time lies within the rule's window (`event_time > own - window`), and
itself with what is known before the authorization (its outcome and decline
code are not: it passes no condition on them). A history is kept per key for
its rules' longest window and no longer, so state is bounded by the windows,
never by how long a card has existed.

Everything here is a pure function of its inputs (no Beam, no clock): the
stream's stateful DoFn keeps a `KeyHistory` per key, a batch backtest can run
`decide_in_order` over sorted attempts, and both give the same decisions.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from schemas.attempts import AuthorizationAttempt
from schemas.decisions import FiredRule, RiskDecision
from transforms.risk.rules import (
    AFTER_AUTHORIZATION,
    AMOUNT_VS_MEAN,
    BLOCK,
    COUNT,
    DISTINCT,
    PRECEDENCE,
    RATIO,
    REVIEW,
    SCORE,
    SHADOW,
    SUM_AMOUNT,
    Filter,
    Rule,
    RuleSet,
    band_reached,
)

MAX_AGGREGATE = 2**63 - 1  # a sum's reported value at most (decisions hold 64-bit integers)
Order = Tuple[int, str]  # (event_time, attempt_id): the order attempts are decided in


def order_of(attempt: AuthorizationAttempt) -> Order:
    return attempt.event_time, attempt.attempt_id


def key_of(attempt: AuthorizationAttempt, key: Tuple[str, ...]) -> Optional[Tuple[str, ...]]:
    """The attempt's value of an entity key, or None when a field of it is missing (the rule cannot apply)."""
    values = tuple(getattr(attempt, name) for name in key)
    return None if any(value is None for value in values) else values


def passes(attempt: AuthorizationAttempt, conditions: Filter, authorized: bool = True) -> bool:
    """Whether an attempt passes every condition; before its authorization (`authorized` False) it passes
    none on the outcome or decline code."""
    for name, allowed in conditions.values:
        if name in AFTER_AUTHORIZATION and not authorized:
            return False
        if getattr(attempt, name) not in allowed:
            return False
    amount = conditions.amount
    if amount.min_minor is not None and attempt.amount_minor < amount.min_minor:
        return False
    return amount.max_minor is None or attempt.amount_minor <= amount.max_minor


@dataclass(frozen=True)
class Evaluation:
    """A rule's aggregate for one attempt, and the band it reached (None: it did not fire)."""

    rule: Rule
    value: int
    volume: int
    fired: bool
    band_action: str = ""
    band_score: int = 0

    def as_fired(self) -> FiredRule:
        return FiredRule(self.rule.id, self.rule.version, self.value, self.volume, self.band_action,
                         self.band_score, self.rule.reason)


def _count(flags: List[bool], low: int, high: int) -> int:
    return flags[low:high].count(True)


class KeyHistory:
    """One entity key's attempts within its rules' longest window, sorted by (event_time, attempt_id).

    Beside each attempt it keeps, per rule, whether the attempt counts (passes the filter) and, for a
    ratio, whether it is in the numerator: a window's counts are then slices counted in C, not filters
    run again for every attempt decided (a merchant's 7-day baseline holds thousands)."""

    def __init__(self, retention_millis: int, rules: Sequence[Rule]):
        self.retention_millis = retention_millis
        self.rules = tuple(rules)
        self.attempts: List[AuthorizationAttempt] = []
        self._orders: List[Order] = []
        self._times: List[int] = []
        self._counted: List[List[bool]] = [[] for _ in self.rules]
        self._numerator: List[List[bool]] = [[] for _ in self.rules]

    def decide(self, attempt: AuthorizationAttempt) -> List[Evaluation]:
        """Evaluates the rules on `attempt` against the attempts that precede it, then keeps it.

        In-order input appends; an attempt that arrives after a later one of its key (out of order) is
        decided on what arrived before it and precedes it, and is inserted in its place for the next ones."""
        order = order_of(attempt)
        position = bisect.bisect_left(self._orders, order)
        redelivered = position < len(self._orders) and self._orders[position] == order
        evaluations = [self._evaluate(index, rule, position, attempt) for index, rule in enumerate(self.rules)]
        if not redelivered:  # decided again on the same earlier attempts, never counted twice
            self._insert(position, attempt)
        self._expire(self._times[-1])
        return evaluations

    def holds(self, attempt: AuthorizationAttempt) -> bool:
        """Whether this attempt (its event_time and id) is already kept."""
        position = bisect.bisect_left(self._orders, order_of(attempt))
        return position < len(self._orders) and self._orders[position] == order_of(attempt)

    def restore(self, kept: Iterable[AuthorizationAttempt]) -> "KeyHistory":
        """Puts back attempts kept before (a stream's state), in any order, without deciding them."""
        for attempt in kept:
            if not self.holds(attempt):
                self._insert(bisect.bisect_left(self._orders, order_of(attempt)), attempt)
        if self._times:
            self._expire(self._times[-1])
        return self

    def _start(self, window_millis: int, position: int, current: AuthorizationAttempt) -> int:
        """The first attempt within the window before `current`: event_time > its own - window."""
        return bisect.bisect_right(self._times, current.event_time - window_millis, 0, position)

    def _evaluate(self, index: int, rule: Rule, position: int, current: AuthorizationAttempt) -> Evaluation:
        low = self._start(rule.window_millis, position, current)
        counted = self._counted[index]
        itself = passes(current, rule.filter, authorized=False)
        extra_condition = True
        if rule.aggregate == COUNT:
            volume = value = _count(counted, low, position) + itself
        elif rule.aggregate == RATIO:
            volume = _count(counted, low, position)
            numerator = _count(self._numerator[index], low, position)
            value = numerator * 10_000 // volume if volume else 0
            if rule.baseline is not None:
                base_low = self._start(rule.baseline.window_millis, position, current)
                base_volume = _count(counted, base_low, position)
                base_numerator = _count(self._numerator[index], base_low, position)
                # rate >= factor% of the baseline rate, exactly: n/d * 100 >= f * bn/bd.
                extra_condition = (base_volume >= rule.baseline.min_volume and numerator * base_volume * 100
                                   >= rule.baseline.factor_pct * base_numerator * volume)
        else:
            window = [self.attempts[at] for at in range(low, position) if counted[at]]
            if rule.aggregate == SUM_AMOUNT:
                # Money is never summed across currencies: the attempt's own currency only.
                same = [a.amount_minor for a in window + ([current] if itself else []) if a.currency == current.currency]
                # Above every threshold (at most 10^18) long before: reported at most int64's limit.
                volume, value = len(same), min(sum(same), MAX_AGGREGATE)
            elif rule.aggregate == DISTINCT:
                population = window + ([current] if itself else [])
                volume = len(population)
                value = len({getattr(a, rule.distinct_field) for a in population} - {None})
            elif rule.aggregate == AMOUNT_VS_MEAN:
                history = [a.amount_minor for a in window if a.currency == current.currency]
                volume, total = len(history), sum(history)
                value = current.amount_minor * 100 * volume // total if total else 0
            else:  # pragma: no cover - rules.py admits no other aggregate
                raise ValueError(f"unknown aggregate {rule.aggregate!r}")
        band = band_reached(rule, value) if volume >= rule.min_volume and extra_condition else None
        if band is None:
            return Evaluation(rule, value, volume, False)
        return Evaluation(rule, value, volume, True, band.action, band.score)

    def _insert(self, position: int, attempt: AuthorizationAttempt) -> None:
        self.attempts.insert(position, attempt)
        self._orders.insert(position, order_of(attempt))
        self._times.insert(position, attempt.event_time)
        for index, rule in enumerate(self.rules):
            counts = passes(attempt, rule.filter)
            self._counted[index].insert(position, counts)
            self._numerator[index].insert(position, counts and rule.aggregate == RATIO
                                          and passes(attempt, rule.numerator))

    def _expire(self, newest_millis: int) -> None:
        """Drops attempts no rule of this key can see again: at or before newest - retention."""
        cut = bisect.bisect_right(self._times, newest_millis - self.retention_millis)
        if cut:
            for kept in (self.attempts, self._orders, self._times, *self._counted, *self._numerator):
                del kept[:cut]


def combine(attempt: AuthorizationAttempt, evaluations: Iterable[Evaluation], rule_set: RuleSet) -> RiskDecision:
    """One decision from every evaluated rule's outcome: block > review > allow, scores summed (10.2)."""
    fired = sorted((evaluation for evaluation in evaluations if evaluation.fired), key=lambda e: e.rule.id)
    acting = [evaluation for evaluation in fired if evaluation.rule.state != SHADOW]
    score = sum(evaluation.band_score for evaluation in acting)
    actions = [evaluation.band_action for evaluation in acting if evaluation.band_action != SCORE]
    if rule_set.score_block_at is not None and score >= rule_set.score_block_at:
        actions.append(BLOCK)
    elif rule_set.score_review_at is not None and score >= rule_set.score_review_at:
        actions.append(REVIEW)
    action = max(actions, key=PRECEDENCE.__getitem__, default="allow")
    return RiskDecision(attempt.attempt_id, attempt.event_time, attempt.merchant_id, attempt.amount_minor,
                        attempt.currency, action, score,
                        [evaluation.as_fired() for evaluation in acting],
                        [evaluation.as_fired() for evaluation in fired if evaluation.rule.state == SHADOW],
                        rule_set.rule_versions, rule_set.fingerprint)


class RiskEngine:
    """The per-element engine over one rule set: a KeyHistory per (key spec, key value)."""

    def __init__(self, rule_set: RuleSet):
        self.rule_set = rule_set
        self._rules_of = {spec: rule_set.rules_for(spec) for spec in rule_set.key_specs}
        self._histories: Dict[Tuple[Tuple[str, ...], Tuple[str, ...]], KeyHistory] = {}

    def decide(self, attempt: AuthorizationAttempt) -> RiskDecision:
        evaluations: List[Evaluation] = []
        for spec, rules in self._rules_of.items():
            value = key_of(attempt, spec)
            if value is None:
                continue
            history = self._histories.get((spec, value))
            if history is None:
                history = self._histories[(spec, value)] = KeyHistory(
                    self.rule_set.longest_window_millis(spec), rules)
            evaluations.extend(history.decide(attempt))
        return combine(attempt, evaluations, self.rule_set)

    @property
    def kept_attempts(self) -> int:
        """How many attempts the histories hold (bounded by the windows, tested)."""
        return sum(len(history.attempts) for history in self._histories.values())


def decide_in_order(attempts: Iterable[AuthorizationAttempt], rule_set: RuleSet) -> List[RiskDecision]:
    """Decisions for attempts in the order given (a backtest passes them sorted by (event_time, attempt_id))."""
    engine = RiskEngine(rule_set)
    return [engine.decide(attempt) for attempt in attempts]
