"""A risk backtest as one composite: attempt records in, decisions, dead letters and counts out (10.8).

    RawRecords ──► ParseAndValidate ──► Deduplicate (first read kept) ──► DecideAttempts ──► decisions
                        │                      │
                        └──── dead letters ────┴──► dead_letters          counts: read = accepted + rejected

The same validation, dead letters and deduplication as payments; counts reach
run.json as Beam metrics: attempts.read / accepted / rejected / unique /
conflicting / pans_masked, `decisions`, one `action.<ACTION>` per action and
`rule.<id>.fired` / `rule.<id>.shadow_fired` per rule.
"""
from __future__ import annotations

from typing import Dict, Iterator, Tuple

import apache_beam as beam

from schemas.attempts import ATTEMPTS
from schemas.codecs import is_truncation
from schemas.decisions import RiskDecision
from schemas.rules import (
    ACCEPTED,
    CONFLICTING,
    PAN_REJECTIONS,
    PANS_MASKED,
    READ,
    REJECTED,
    TRUNCATED_FILES,
    UNIQUE_RECORDS,
    count_name,
)
from transforms.counting import CountEach, SumEach
from transforms.dedup import UNIQUE, Deduplicate
from transforms.event_time import AssignEventTime
from transforms.risk.backtest import DecideAttempts
from transforms.risk.rules import RuleSet
from transforms.validate import DEAD_LETTERS, ParseAndValidate, is_pan_rejection

DECISIONS = "decisions"
DECISION_COUNT = "decisions"


def action_count_name(action: str) -> str:
    return f"action.{action}"


def rule_count_name(rule_id: str, shadow: bool) -> str:
    return f"rule.{rule_id}.{'shadow_fired' if shadow else 'fired'}"


def decision_counts(decision: RiskDecision) -> Iterator[Tuple[str, int]]:
    """What one decision adds to the run's counts."""
    yield action_count_name(decision.action), 1
    for fired in decision.fired:
        yield rule_count_name(fired.rule_id, False), 1
    for fired in decision.shadow_fired:
        yield rule_count_name(fired.rule_id, True), 1


class BacktestAttempts(beam.PTransform):
    """RawRecords of attempts (bounded) -> {decisions, dead_letters, counts} under one rule set."""

    def __init__(self, rule_set: RuleSet):
        super().__init__()
        self._rule_set = rule_set

    def expand(self, raw) -> Dict[str, beam.PCollection]:
        parsed = raw | "ParseAndValidate" >> ParseAndValidate(ATTEMPTS, with_sources=True)
        deduplicated = (parsed.valid
                        | "AssignEventTime" >> AssignEventTime(delivered=True)
                        | "Deduplicate" >> Deduplicate(ATTEMPTS, bounded=True))
        decisions = deduplicated[UNIQUE] | "Decide" >> DecideAttempts(self._rule_set)
        rejected = parsed[DEAD_LETTERS]
        named = {count_name(ATTEMPTS, READ): raw, count_name(ATTEMPTS, ACCEPTED): parsed.valid,
                 count_name(ATTEMPTS, REJECTED): rejected, count_name(ATTEMPTS, UNIQUE_RECORDS): deduplicated[UNIQUE],
                 count_name(ATTEMPTS, CONFLICTING): deduplicated[DEAD_LETTERS],
                 count_name(ATTEMPTS, TRUNCATED_FILES): rejected | "Truncations" >> beam.Filter(
                     lambda letter: is_truncation(letter.reason)),
                 count_name(ATTEMPTS, PAN_REJECTIONS): rejected | "PanRejections" >> beam.Filter(
                     lambda letter: is_pan_rejection(letter.reason)),
                 DECISION_COUNT: decisions}
        masked = {count_name(ATTEMPTS, PANS_MASKED): (parsed[PANS_MASKED], deduplicated["pans_masked"])
                  | "AllMasked" >> beam.Flatten()}
        per_decision = (decisions
                        | "DecisionCounts" >> beam.FlatMap(decision_counts)
                        | "SumPerName" >> beam.CombinePerKey(sum))
        counts = ((named | "CountEach" >> CountEach(), masked | "SumEach" >> SumEach(), per_decision)
                  | "AllCounts" >> beam.Flatten())
        dead_letters = (rejected, deduplicated[DEAD_LETTERS]) | "DeadLetters" >> beam.Flatten()
        return {DECISIONS: decisions, DEAD_LETTERS: dead_letters, "counts": counts}
