"""A risk backtest as one composite: attempt records (and labels) in, decisions, dead letters and counts out (10.8).

    RawRecords ──► ParseAndValidate ──► Deduplicate (first read kept) ──► DecideAttempts ──► decisions
                        │                      │
                        └──── dead letters ────┴──► dead_letters          counts: read = accepted + rejected

The same validation, dead letters and deduplication as payments; counts reach
run.json as Beam metrics: attempts.read / accepted / rejected / unique /
conflicting / pans_masked, `decisions`, one `action.<ACTION>` per action and
`rule.<id>.fired` / `rule.<id>.shadow_fired` per rule, their money per currency
(`….minor.<CUR>`), with labels the same split into `.fraud` / `.legit`, and
with a second rule set `change.<BEFORE>.<AFTER>` (10.9).
"""
from __future__ import annotations

from typing import Dict, Iterable, Iterator, Optional, Tuple

import apache_beam as beam

from schemas.attempts import ATTEMPTS, LABELS
from schemas.codecs import is_truncation
from schemas.decisions import RiskDecision, RuleChange, fired_text
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
from transforms.dedup import UNIQUE
from transforms.intake import Intake
from transforms.risk.backtest import DecideAttempts, by_attempt_id
from transforms.risk.live import DECISIONS, METRICS_NAMESPACE, REJECTED_RULES, DecideLiveAttempts
from transforms.risk.rules import RuleSet
from transforms.risk.rules_in_force import DEFAULT_POLL_MILLIS, RulesSourceSpec
from transforms.validate import DEAD_LETTERS, ParseAndValidate, is_pan_rejection

DECISION_COUNT = "decisions"
CHANGES = "changes"
CHANGE_COUNT = "changes"
LABELS_UNMATCHED = "labels.unmatched"


def action_count_name(action: str) -> str:
    return f"action.{action}"


def rule_count_name(rule_id: str, shadow: bool) -> str:
    return f"rule.{rule_id}.{'shadow_fired' if shadow else 'fired'}"


def money_count_name(prefix: str, currency: str) -> str:
    """Money in counts is per currency (never summed across): `<prefix>.minor.<CUR>`."""
    return f"{prefix}.minor.{currency}"


def labelled_count_name(prefix: str, fraud: bool) -> str:
    return f"{prefix}.{'fraud' if fraud else 'legit'}"


def decision_counts(decision: RiskDecision) -> Iterator[Tuple[str, int]]:
    """What one decision adds to the run's counts: its action, its fired rules, and their money."""
    yield action_count_name(decision.action), 1
    yield money_count_name(action_count_name(decision.action), decision.currency), decision.amount_minor
    for fired in decision.fired:
        yield rule_count_name(fired.rule_id, False), 1
        yield money_count_name(rule_count_name(fired.rule_id, False), decision.currency), decision.amount_minor
    for fired in decision.shadow_fired:
        yield rule_count_name(fired.rule_id, True), 1


def label_counts(joined: Tuple[str, dict]) -> Iterator[Tuple[str, int]]:
    """A decision beside its attempt's labels: labelled counts per action and rule (fraud when any label says
    so: a chargeback outweighs a "legit"); a label of no decided attempt is counted as unmatched."""
    _, sides = joined
    labels, decisions = list(sides["labels"]), list(sides["decisions"])
    if not labels:
        return
    if not decisions:
        yield LABELS_UNMATCHED, 1
        return
    fraud = any(label.fraud for label in labels)
    decision = decisions[0]
    yield labelled_count_name("labels", fraud), 1
    yield labelled_count_name(action_count_name(decision.action), fraud), 1
    for fired in decision.fired:
        yield labelled_count_name(rule_count_name(fired.rule_id, False), fraud), 1
    for fired in decision.shadow_fired:
        yield labelled_count_name(rule_count_name(fired.rule_id, True), fraud), 1


def rule_change(joined: Tuple[str, dict]) -> Iterator[RuleChange]:
    """An attempt decided under both rule sets whose action differs."""
    _, sides = joined
    before, after = next(iter(sides["before"]), None), next(iter(sides["after"]), None)
    if before is not None and after is not None and before.action != after.action:
        yield RuleChange(before.attempt_id, before.event_time, before.merchant_id, before.amount_minor,
                         before.currency, before.action, after.action, fired_text(before.fired),
                         fired_text(after.fired))


def change_count_name(change: RuleChange) -> str:
    return f"change.{change.action_before}.{change.action_after}"


AFTER = "after"  # the decisions of the same attempts under the compared rule set


class LabelsAndChanges(beam.PTransform):
    """{decisions[, labels: RawRecords][, after: the decisions under a second rule set]} (bounded) ->
    {counts: (name, value) pairs, dead_letters[, changes]}: the labelled counts per action and rule, and the
    attempts whose action the second rule set changes (10.9), for the decisions of either engine."""

    def expand(self, inputs: Dict[str, beam.PCollection]) -> Dict[str, beam.PCollection]:
        pipeline = inputs[DECISIONS].pipeline
        keyed_decisions = inputs[DECISIONS] | "DecisionsById" >> beam.Map(by_attempt_id)
        counts, letters, outputs = [], [], {}
        if LABELS in inputs:
            labels = inputs[LABELS] | "ParseLabels" >> ParseAndValidate(LABELS)
            letters.append(labels[DEAD_LETTERS])
            counts.append({count_name(LABELS, READ): inputs[LABELS], count_name(LABELS, ACCEPTED): labels.valid,
                           count_name(LABELS, REJECTED): labels[DEAD_LETTERS]} | "CountLabels" >> CountEach())
            counts.append({count_name(LABELS, PANS_MASKED): labels[PANS_MASKED]} | "SumMasked" >> SumEach())
            counts.append({"decisions": keyed_decisions, "labels": labels.valid | "LabelsById" >> beam.Map(
                by_attempt_id)} | "JoinLabels" >> beam.CoGroupByKey() | "LabelCounts" >> beam.FlatMap(label_counts))
        if AFTER in inputs:
            changes = ({"before": keyed_decisions, "after": inputs[AFTER] | "AfterById" >> beam.Map(by_attempt_id)}
                       | "JoinRuleSets" >> beam.CoGroupByKey()
                       | "Changes" >> beam.FlatMap(rule_change).with_output_types(RuleChange))
            outputs[CHANGES] = changes
            counts.append({CHANGE_COUNT: changes} | "CountChanges" >> CountEach())
            counts.append(changes | "ChangeCounts" >> beam.Map(lambda change: (change_count_name(change), 1)))
        empty = pipeline | "Nothing" >> beam.Create([])
        outputs["counts"] = ([empty, *counts] | "AllCounts" >> beam.Flatten()
                             | "SumPerName" >> beam.CombinePerKey(sum))
        outputs[DEAD_LETTERS] = [empty, *letters] | "DeadLetters" >> beam.Flatten()
        return outputs


class BacktestAttempts(beam.PTransform):
    """{attempts: RawRecords[, labels: RawRecords]} (bounded) -> {decisions, dead_letters, counts[, changes]}
    under one rule set; with `compare_with`, also the attempts whose action that rule set changes."""

    def __init__(self, rule_set: RuleSet, compare_with: Optional[RuleSet] = None):
        super().__init__()
        self._rule_set = rule_set
        self._compare_with = compare_with

    def expand(self, inputs: Dict[str, beam.PCollection]) -> Dict[str, beam.PCollection]:
        raw = inputs[ATTEMPTS]
        intake = raw | "Intake" >> Intake(ATTEMPTS, bounded=True)
        unique = intake[UNIQUE]
        decisions = unique | "Decide" >> DecideAttempts(self._rule_set)
        rejected = intake[REJECTED]
        named = {count_name(ATTEMPTS, READ): raw, count_name(ATTEMPTS, ACCEPTED): intake[ACCEPTED],
                 count_name(ATTEMPTS, REJECTED): rejected, count_name(ATTEMPTS, UNIQUE_RECORDS): unique,
                 count_name(ATTEMPTS, CONFLICTING): intake[CONFLICTING],
                 count_name(ATTEMPTS, TRUNCATED_FILES): rejected | "Truncations" >> beam.Filter(
                     lambda letter: is_truncation(letter.reason)),
                 count_name(ATTEMPTS, PAN_REJECTIONS): rejected | "PanRejections" >> beam.Filter(
                     lambda letter: is_pan_rejection(letter.reason)),
                 DECISION_COUNT: decisions}
        judged_inputs = {DECISIONS: decisions, **{name: inputs[name] for name in (LABELS,) if name in inputs}}
        if self._compare_with is not None:
            judged_inputs[AFTER] = unique | "DecideWithOtherRules" >> DecideAttempts(self._compare_with)
        judged = judged_inputs | "LabelsAndChanges" >> LabelsAndChanges()
        per_name = decisions | "DecisionCounts" >> beam.FlatMap(decision_counts) | "SumPerName" >> beam.CombinePerKey(sum)
        outputs = {DECISIONS: decisions, **{name: judged[name] for name in (CHANGES,) if name in judged}}
        outputs["counts"] = ((named | "CountEach" >> CountEach(),
                              {count_name(ATTEMPTS, PANS_MASKED): intake[PANS_MASKED]} | "SumEach" >> SumEach(),
                              per_name, judged["counts"])
                             | "AllCounts" >> beam.Flatten())
        outputs[DEAD_LETTERS] = (intake[DEAD_LETTERS], judged[DEAD_LETTERS]) | "DeadLetters" >> beam.Flatten()
        return outputs


class RunningRiskCounts:
    """A stream's counts as Beam metrics while it runs (namespace paybeam): `risk.decisions`,
    `risk.action.<ACTION>`, `risk.rule.<id>.fired` / `.shadow_fired`, from (name, value) pairs of the
    run.json counts; money stays in run.json and on the topic, not in a running metric."""

    def __init__(self):
        self._counters: Dict[str, beam.metrics.metricbase.Counter] = {}

    def add(self, counts: Iterable[Tuple[str, int]]) -> None:
        for name, value in counts:
            if ".minor." in name:
                continue
            counter = self._counters.get(name)
            if counter is None:
                counter = self._counters[name] = beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"risk.{name}")
            counter.inc(value)


class _CountDecisionsFn(beam.DoFn):
    """`RunningRiskCounts` of each decision, one record at a time."""

    def setup(self):
        self._counts = RunningRiskCounts()

    def process(self, decision: RiskDecision):
        self._counts.add([(DECISION_COUNT, 1), *decision_counts(decision)])


class DecideAttemptStream(beam.PTransform):
    """Attempt RawRecords (unbounded) -> {decisions, dead_letters}: the shared intake (first arrival kept
    within the dedup horizon), then each attempt decided as it arrives under the rules in force (10.7, 10.11)."""

    def __init__(self, rule_set: RuleSet, rules_source: Optional[RulesSourceSpec] = None,
                 poll_millis: int = DEFAULT_POLL_MILLIS):
        super().__init__()
        self._rules = (rule_set, rules_source, poll_millis)

    def expand(self, raw: beam.PCollection) -> Dict[str, beam.PCollection]:
        intake = raw | "Intake" >> Intake(ATTEMPTS, bounded=False)
        decided = intake[UNIQUE] | "Decide" >> DecideLiveAttempts(*self._rules)
        _ = decided[DECISIONS] | "CountDecisions" >> beam.ParDo(_CountDecisionsFn())
        return {DECISIONS: decided[DECISIONS],
                DEAD_LETTERS: (intake[DEAD_LETTERS], decided[REJECTED_RULES]) | "DeadLetters" >> beam.Flatten()}
