"""Risk decisions on an unbounded stream of attempts: the per-element engine in Beam state (10.7).

    attempts ──► per key spec with a value: ((spec, value), attempt)
             ──► DecideForKey (state: the key's kept attempts) ──► (attempt_id, evaluations)  ─┐
    attempts ──► (attempt_id, attempt) ─────────────────────────────────────────────────────┴─► Flatten
             ──► CombinePerAttempt (state: the parts so far; emits when every key has answered) ──► RiskDecision

Each key's history lives in a bag of its kept attempts; an attempt is
decided the moment it arrives, on what arrived before it (docs/DESIGN.md
10.3), so in-order input gives the backtest's decisions. The bag is rewritten
without expired attempts when it holds twice what is kept, and cleared by an
event-time timer once the watermark passes the newest attempt plus the key's
longest window: state is bounded by the windows. A decision waits only for
its own keys' answers, never for a window or a watermark.
"""
from __future__ import annotations

from typing import Iterator, List, Tuple

import apache_beam as beam
from apache_beam.coders import BooleanCoder, PickleCoder, RowCoder, VarIntCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec,
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.utils.timestamp import Duration, Timestamp

from schemas.attempts import AuthorizationAttempt
from schemas.decisions import RiskDecision
from transforms.risk.backtest import by_attempt_id, keyed_by_specs
from transforms.risk.rules import RuleSet
from transforms.risk.windows import KeyHistory, combine, key_of

ATTEMPT, EVALUATIONS = "attempt", "evaluations"


def parts_expected(attempt: AuthorizationAttempt, rule_set: RuleSet) -> int:
    """How many entity keys answer for this attempt: the rule set's keys it has a value for."""
    return sum(1 for spec in rule_set.key_specs if key_of(attempt, spec) is not None)


def _millis_timestamp(millis: int) -> Timestamp:
    return Timestamp(micros=millis * 1000)


class _DecideForKeyFn(beam.DoFn):
    KEPT = BagStateSpec("kept", RowCoder.from_type_hint(AuthorizationAttempt, None))
    NEWEST = ReadModifyWriteStateSpec("newest", VarIntCoder())
    EXPIRE = TimerSpec("expire", TimeDomain.WATERMARK)

    def __init__(self, rule_set: RuleSet):
        # What each key's history needs, worked out once rather than per element.
        self._rules_and_retention = {spec: (rule_set.rules_for(spec), rule_set.longest_window_millis(spec))
                                     for spec in rule_set.key_specs}

    def process(self, element, kept=beam.DoFn.StateParam(KEPT), newest=beam.DoFn.StateParam(NEWEST),
                expire=beam.DoFn.TimerParam(EXPIRE)) -> Iterator[Tuple[str, Tuple[str, object]]]:
        (spec, _), attempt = element
        rules, retention = self._rules_and_retention[spec]
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
        yield attempt.attempt_id, (EVALUATIONS, evaluations)

    @on_timer(EXPIRE)
    def on_expire(self, kept=beam.DoFn.StateParam(KEPT), newest=beam.DoFn.StateParam(NEWEST)):
        # The watermark passed the newest attempt plus the longest window: no attempt to come can see these.
        kept.clear()
        newest.clear()


class _CombinePerAttemptFn(beam.DoFn):
    PARTS = BagStateSpec("parts", PickleCoder())
    DONE = ReadModifyWriteStateSpec("done", BooleanCoder())
    FORGET = TimerSpec("forget", TimeDomain.WATERMARK)

    def __init__(self, rule_set: RuleSet):
        self._rule_set = rule_set
        self._forget_after = Duration(micros=max(
            rule_set.longest_window_millis(spec) for spec in rule_set.key_specs) * 1000)

    def process(self, element, parts=beam.DoFn.StateParam(PARTS), done=beam.DoFn.StateParam(DONE),
                forget=beam.DoFn.TimerParam(FORGET)) -> Iterator[RiskDecision]:
        if done.read():
            return  # a re-delivered attempt: decided once
        _, (kind, value) = element
        parts.add((kind, value))
        gathered = list(parts.read())
        attempts = [part for part_kind, part in gathered if part_kind == ATTEMPT]
        if not attempts:
            return
        attempt = attempts[0]
        answers: List[list] = [part for part_kind, part in gathered if part_kind == EVALUATIONS]
        if len(answers) < parts_expected(attempt, self._rule_set):
            return
        parts.clear()
        done.write(True)
        forget.set(_millis_timestamp(attempt.event_time) + self._forget_after)
        decision = combine(attempt, [evaluation for answer in answers for evaluation in answer], self._rule_set)
        yield beam.window.TimestampedValue(decision, _millis_timestamp(attempt.event_time))

    @on_timer(FORGET)
    def on_forget(self, done=beam.DoFn.StateParam(DONE), parts=beam.DoFn.StateParam(PARTS)):
        done.clear()
        parts.clear()


class DecideLiveAttempts(beam.PTransform):
    """AuthorizationAttempts (unbounded, event-time stamped) -> one RiskDecision each, as each arrives."""

    def __init__(self, rule_set: RuleSet):
        super().__init__()
        self._rule_set = rule_set

    def expand(self, attempts):
        rule_set = self._rule_set
        answers = (attempts
                   | "KeyBySpec" >> beam.FlatMap(keyed_by_specs, rule_set)
                   | "DecideForKey" >> beam.ParDo(_DecideForKeyFn(rule_set)))
        themselves = (attempts | "ById" >> beam.Map(by_attempt_id)
                      | "Tagged" >> beam.MapTuple(lambda attempt_id, attempt: (attempt_id, (ATTEMPT, attempt))))
        return ((themselves, answers)
                | "Gather" >> beam.Flatten()
                | "CombinePerAttempt" >> beam.ParDo(_CombinePerAttemptFn(rule_set)).with_output_types(RiskDecision))
