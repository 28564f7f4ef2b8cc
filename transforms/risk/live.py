"""Risk decisions on an unbounded stream of attempts: the per-element engine in Beam state (10.7, 10.11).

    attempts ──► KeyUnderRulesInForce: the rules in force now (fingerprint F)
             ├─► per key spec with a value: ((spec, value), (F, attempt))
             │     ──► DecideForKey (state: the key's kept attempts; F's rules) ──► (attempt_id, (F, evaluations)) ─┐
             └─► (attempt_id, (F, parts expected, attempt)) ─────────────────────────────────────────────────────┴─► Flatten
             ──► CombinePerAttempt (state: the parts so far; emits when every key has answered under F) ──► RiskDecision

Each key's history lives in a bag of its kept attempts; an attempt is
decided the moment it arrives, on what arrived before it (docs/DESIGN.md
10.3), so in-order input gives the backtest's decisions. The bag is rewritten
without expired attempts when it holds twice what is kept, and cleared by an
event-time timer once the watermark passes the newest attempt plus the key's
longest window: state is bounded by the windows. A decision waits only for
its own keys' answers, never for a window or a watermark.

The rules may change while the stream runs (a rules topic, a watched file:
transforms/risk/rules_in_force.py). An attempt is keyed under the rules in
force at that moment and every later step uses that same rule set, found by
its fingerprint: one decision, one rule set, recorded in it.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Tuple

import apache_beam as beam
from apache_beam.coders import BooleanCoder, PickleCoder, RowCoder, VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec,
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.utils.timestamp import Duration, Timestamp

from schemas.attempts import AuthorizationAttempt
from schemas.codecs import capped
from schemas.decisions import RiskDecision
from schemas.pan import mask_pans
from schemas.records import DeadLetter
from transforms.risk.backtest import keyed_by_specs
from transforms.risk.rules import Rule, RuleSet
from transforms.risk.rules_in_force import (
    DEFAULT_POLL_MILLIS,
    RulesChange,
    RulesInForce,
    RulesSourceSpec,
    shared_rules_in_force,
)
from transforms.risk.windows import KeyHistory, combine, key_of
from transforms.state_cache import use_fast_state_cache_sizing

ATTEMPT, EVALUATIONS = "attempt", "evaluations"
KEYED = "keyed"
REJECTED_RULES = "rejected_rules"  # a rules update that was not taken, as a dead letter of input "rules"
RULES_INPUT, RULES_STAGE = "rules", "rules_update"
METRICS_NAMESPACE = "paybeam"
RULES_ACCEPTED, RULES_REJECTED = "risk.rules.accepted", "risk.rules.rejected"


def parts_expected(attempt: AuthorizationAttempt, rule_set: RuleSet) -> int:
    """How many entity keys answer for this attempt: the rule set's keys it has a value for."""
    return sum(1 for spec in rule_set.key_specs if key_of(attempt, spec) is not None)


def _millis_timestamp(millis: int) -> Timestamp:
    return Timestamp(micros=millis * 1000)


class _WithRulesInForce(beam.DoFn):
    """A step that needs the rules in force: this process's shared RulesInForce, opened in setup."""

    def __init__(self, rule_set: RuleSet, source: Optional[RulesSourceSpec], poll_millis: int):
        self._launch_rules, self._source, self._poll_millis = rule_set, source, poll_millis
        self._rules: Optional[RulesInForce] = None

    def setup(self):
        use_fast_state_cache_sizing()  # about a millisecond per state read otherwise (transforms/state_cache.py)
        self._rules = shared_rules_in_force(self._launch_rules, self._source, self._poll_millis)



def rejected_update_letter(change: RulesChange) -> DeadLetter:
    """A rejected rules document as a dead letter: its problems and its text, card numbers masked as anywhere."""
    reason, _ = mask_pans("; ".join(change.problems))
    payload, _ = mask_pans(change.document)
    return DeadLetter(RULES_INPUT, change.origin, RULES_STAGE, capped(reason), capped(payload))


def reported_updates(rules: RulesInForce) -> Iterator[DeadLetter]:
    """The rules documents this process applied since last asked: accepted and refused ones counted
    (`risk.rules.accepted` / `.rejected`), each refused one as a dead letter."""
    for change in rules.take_changes():
        if change.changed:
            Metrics.counter(METRICS_NAMESPACE, RULES_ACCEPTED).inc()
        elif not change.accepted:
            Metrics.counter(METRICS_NAMESPACE, RULES_REJECTED).inc()
            yield rejected_update_letter(change)


class _KeyUnderRulesInForceFn(_WithRulesInForce):
    def process(self, attempt: AuthorizationAttempt):
        rule_set = self._rules.current()
        for letter in reported_updates(self._rules):  # this step reports every document this process applied
            yield beam.pvalue.TaggedOutput(REJECTED_RULES, letter)
        fingerprint = rule_set.fingerprint
        for keyed, _ in keyed_by_specs(attempt, rule_set):
            yield beam.pvalue.TaggedOutput(KEYED, (keyed, (fingerprint, attempt)))
        yield attempt.attempt_id, (ATTEMPT, (fingerprint, parts_expected(attempt, rule_set), attempt))


class _DecideForKeyFn(_WithRulesInForce):
    KEPT = BagStateSpec("kept", RowCoder.from_type_hint(AuthorizationAttempt, None))
    NEWEST = ReadModifyWriteStateSpec("newest", VarIntCoder())
    EXPIRE = TimerSpec("expire", TimeDomain.WATERMARK)

    def setup(self):
        super().setup()
        # What each key's history needs under each rule set, worked out once rather than per element.
        self._rules_and_retention: Dict[Tuple[str, Tuple[str, ...]], Tuple[Tuple[Rule, ...], int]] = {}

    def _rules_of(self, fingerprint: str, spec: Tuple[str, ...]) -> Tuple[Tuple[Rule, ...], int]:
        found = self._rules_and_retention.get((fingerprint, spec))
        if found is None:
            rule_set = self._rules.rule_set(fingerprint)
            found = self._rules_and_retention[(fingerprint, spec)] = (
                rule_set.rules_for(spec), rule_set.longest_window_millis(spec))
        return found

    def process(self, element, kept=beam.DoFn.StateParam(KEPT), newest=beam.DoFn.StateParam(NEWEST),
                expire=beam.DoFn.TimerParam(EXPIRE)) -> Iterator[Tuple[str, Tuple[str, object]]]:
        (spec, _), (fingerprint, attempt) = element
        rules, retention = self._rules_of(fingerprint, spec)
        stored = list(kept.read())
        history = KeyHistory(retention, rules).restore(stored)
        if not history.holds(attempt):
            kept.add(attempt)
            stored.append(attempt)
        evaluations = history.decide(attempt)
        if len(stored) > 2 * len(history.attempts) + 16:  # drop what expired, now and then
            kept.clear()
            for still in history.attempts:
                kept.add(still)
        latest = max(newest.read() or attempt.event_time, attempt.event_time)
        newest.write(latest)
        expire.set(_millis_timestamp(latest) + Duration(micros=retention * 1000))
        yield attempt.attempt_id, (EVALUATIONS, (fingerprint, evaluations))

    @on_timer(EXPIRE)
    def on_expire(self, kept=beam.DoFn.StateParam(KEPT), newest=beam.DoFn.StateParam(NEWEST)):
        # The watermark passed the newest attempt plus the longest window: no attempt to come can see these.
        kept.clear()
        newest.clear()


class _CombinePerAttemptFn(_WithRulesInForce):
    PARTS = BagStateSpec("parts", PickleCoder())
    DONE = ReadModifyWriteStateSpec("done", BooleanCoder())
    FORGET = TimerSpec("forget", TimeDomain.WATERMARK)

    def process(self, element, parts=beam.DoFn.StateParam(PARTS), done=beam.DoFn.StateParam(DONE),
                forget=beam.DoFn.TimerParam(FORGET)) -> Iterator[RiskDecision]:
        if done.read():
            return  # a re-delivered attempt: decided once
        _, (kind, value) = element
        parts.add((kind, value))
        gathered = list(parts.read())
        keyed = [part for part_kind, part in gathered if part_kind == ATTEMPT]
        if not keyed:
            return
        fingerprint, expected, attempt = keyed[0]  # a copy keyed later (under other rules) waits in vain
        answers: List[list] = [part[1] for part_kind, part in gathered
                               if part_kind == EVALUATIONS and part[0] == fingerprint]
        if len(answers) < expected:
            return
        rule_set = self._rules.rule_set(fingerprint)
        parts.clear()
        done.write(True)
        forget.set(_millis_timestamp(attempt.event_time) + Duration(micros=rule_set.retention_millis * 1000))
        decision = combine(attempt, [evaluation for answer in answers for evaluation in answer], rule_set)
        yield beam.window.TimestampedValue(decision, _millis_timestamp(attempt.event_time))

    @on_timer(FORGET)
    def on_forget(self, done=beam.DoFn.StateParam(DONE), parts=beam.DoFn.StateParam(PARTS)):
        done.clear()
        parts.clear()


DECISIONS = "decisions"


class DecideLiveAttempts(beam.PTransform):
    """AuthorizationAttempts (unbounded, event-time stamped) -> {decisions: one RiskDecision each, as each
    arrives; rejected_rules: DeadLetters of the rules updates not taken}.

    `rules_source` (optional): where new rule versions come from while the stream runs; it is asked at most
    every `poll_millis`, and each attempt is decided under the rules in force when it was keyed."""

    def __init__(self, rule_set: RuleSet, rules_source: Optional[RulesSourceSpec] = None,
                 poll_millis: int = DEFAULT_POLL_MILLIS):
        super().__init__()
        self._rules = (rule_set, rules_source, poll_millis)

    def expand(self, attempts):
        keyed = attempts | "KeyUnderRulesInForce" >> beam.ParDo(_KeyUnderRulesInForceFn(*self._rules)).with_outputs(
            KEYED, REJECTED_RULES, main=ATTEMPT)
        answers = keyed[KEYED] | "DecideForKey" >> beam.ParDo(_DecideForKeyFn(*self._rules))
        decisions = ((keyed[ATTEMPT], answers)
                     | "Gather" >> beam.Flatten()
                     | "CombinePerAttempt" >> beam.ParDo(_CombinePerAttemptFn(*self._rules)).with_output_types(
                         RiskDecision))
        keyed[REJECTED_RULES].element_type = DeadLetter
        return {DECISIONS: decisions, REJECTED_RULES: keyed[REJECTED_RULES]}
