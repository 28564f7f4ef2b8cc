"""Risk decisions for bounded attempts in Beam: the per-element engine, one group per entity key (10.5).

    attempts ──► per key spec with a value: ((spec, value), attempt)
             ──► GroupByKey ──► each key's attempts sorted by (event_time, attempt_id) through a KeyHistory
             ──► (attempt_id, evaluations) ──┐
    attempts ──► (attempt_id, attempt) ──────┴─► CoGroupByKey ──► combine ──► RiskDecision

In a bounded run every attempt of a key is known, so each key's history sees
them in event-time order: the backtest gives the in-order answer
(transforms/risk/windows.py), whatever order the files held them in.
"""
from __future__ import annotations

from typing import Iterable, Iterator, List, Tuple

import apache_beam as beam

from schemas.attempts import AuthorizationAttempt
from schemas.decisions import RiskDecision
from transforms.risk.rules import RuleSet
from transforms.risk.windows import Evaluation, KeyHistory, combine, key_of, order_of

KeyedAttempt = Tuple[Tuple[Tuple[str, ...], Tuple[str, ...]], AuthorizationAttempt]


def keyed_by_specs(attempt: AuthorizationAttempt, rule_set: RuleSet) -> Iterator[KeyedAttempt]:
    """One element per entity key of the rule set that the attempt has a value for."""
    for spec in rule_set.key_specs:
        value = key_of(attempt, spec)
        if value is not None:
            yield (spec, value), attempt


def evaluate_key(spec: Tuple[str, ...], attempts: Iterable[AuthorizationAttempt],
                 rule_set: RuleSet) -> Iterator[Tuple[str, List[Evaluation]]]:
    """A key's attempts in event-time order through its history: (attempt_id, its rules' evaluations)."""
    history = KeyHistory(rule_set.longest_window_millis(spec), rule_set.rules_for(spec))
    previous = None
    for attempt in sorted(attempts, key=order_of):
        if order_of(attempt) != previous:  # a second copy of one attempt is evaluated once
            yield attempt.attempt_id, history.decide(attempt)
        previous = order_of(attempt)


def by_attempt_id(record) -> Tuple[str, object]:
    return record.attempt_id, record


def decision_of(joined: Tuple[str, dict], rule_set: RuleSet) -> Iterator[RiskDecision]:
    _, sides = joined
    evaluations = [evaluation for part in sides["evaluations"] for evaluation in part]
    attempt = next(iter(sides["attempts"]), None)  # attempt ids are unique here (deduplicated upstream)
    if attempt is not None:
        yield combine(attempt, evaluations, rule_set)


class DecideAttempts(beam.PTransform):
    """AuthorizationAttempts (bounded) -> one RiskDecision each, under one rule set."""

    def __init__(self, rule_set: RuleSet):
        super().__init__()
        self._rule_set = rule_set

    def expand(self, attempts):
        rule_set = self._rule_set
        evaluations = (
            attempts
            | "KeyBySpec" >> beam.FlatMap(keyed_by_specs, rule_set)
            | "GroupByEntity" >> beam.GroupByKey()
            | "InEventTimeOrder" >> beam.FlatMap(lambda group: evaluate_key(group[0][0], group[1], rule_set)))
        by_id = attempts | "ById" >> beam.Map(by_attempt_id)
        return (
            {"attempts": by_id, "evaluations": evaluations}
            | "JoinEvaluations" >> beam.CoGroupByKey()
            | "Combine" >> beam.FlatMap(decision_of, rule_set).with_output_types(RiskDecision))
