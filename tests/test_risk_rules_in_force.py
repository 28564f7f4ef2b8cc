"""Rules changing while a stream runs (transforms/risk/rules_in_force.py, DESIGN 10.11).

The pure part on an injected clock, then the live transform under TestStream on the DirectRunner and on
Prism with a scripted rules source: every decision equals the in-order decision under the rule set it
records, the update takes effect at the attempt keyed after it arrived, and a malformed update before it
changes nothing."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from tests.test_risk_backtest import MIXED_YAML, _attempts
from tests.test_risk_live import _stream
from transforms.risk.live import DecideLiveAttempts
from transforms.risk.rules import load_rules
from transforms.risk.rules_in_force import MAX_DOCUMENT_BYTES, RulesInForce, UnknownRuleSet, shared_rules_in_force
from transforms.risk.windows import decide_in_order

V1 = MIXED_YAML
# card-testing tightened (a new version) and a new merchant rule, with windows no longer than before
V2 = V1.replace("version: 1, key: card_fingerprint", "version: 2, key: card_fingerprint").replace(
    "threshold: 3", "threshold: 2") + """
  - {id: merchant-velocity, version: 1, key: merchant_id, aggregate: count, window: 5m, threshold: 9,
     action: review, reason: merchant_velocity}
"""
UNVERSIONED = V1.replace("threshold: 3", "threshold: 1")  # changed without a new version: rejected
RULES_V1, RULES_V2 = load_rules(V1), load_rules(V2)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class ScriptedSource:
    """A rules source whose N-th poll (1-based) returns the documents scripted for it."""

    script: Dict[int, List[Tuple[str, bytes]]]
    name: str = field(default_factory=lambda: f"scripted-{uuid.uuid4().hex}")
    polls: int = 0

    def open(self) -> "ScriptedSource":
        return ScriptedSource(self.script, self.name)

    def poll(self) -> List[Tuple[str, bytes]]:
        self.polls += 1
        return self.script.get(self.polls, [])

    def close(self) -> None:
        pass


def test_an_update_is_applied_once_the_poll_interval_has_passed():
    clock = Clock()
    rules = RulesInForce(RULES_V1, ScriptedSource({2: [("t@0", V2.encode())]}), poll_millis=1_000, clock=clock)
    assert rules.current() is RULES_V1  # poll 1: nothing
    clock.now = 0.5
    assert rules.current() is RULES_V1  # within the interval: the source is not asked
    clock.now = 1.0
    assert rules.current().fingerprint == RULES_V2.fingerprint  # poll 2: V2
    assert [(c.origin, c.accepted, c.changed) for c in rules.take_changes()] == [("t@0", True, True)]
    assert rules.take_changes() == []
    assert rules.rule_set(RULES_V1.fingerprint) is RULES_V1  # decisions keyed before still find their rules


def test_rejected_updates_leave_the_rules_in_force_and_say_why():
    documents = [("t@0", b"rules: ["), ("t@1", UNVERSIONED.encode()), ("t@2", b"\xff\xfe"),
                 ("t@3", b" " * (MAX_DOCUMENT_BYTES + 1)), ("t@4", V1.encode())]
    rules = RulesInForce(RULES_V1, ScriptedSource({1: documents}), poll_millis=0, clock=Clock())
    assert rules.current() is RULES_V1
    changes = rules.take_changes()
    assert [(c.accepted, c.changed) for c in changes] == [(False, False)] * 4 + [(True, False)]
    assert all(c.problems and all("\n" not in p for p in c.problems) for c in changes[:4])
    assert "not above 1" in changes[1].problems[0] and "UTF-8" in changes[2].problems[0]
    assert "over the" in changes[3].problems[0]


def test_a_source_that_fails_keeps_the_rules_in_force():
    class Down(ScriptedSource):
        def poll(self):
            raise ConnectionError("broker down")

    rules = RulesInForce(RULES_V1, Down({}), poll_millis=0, clock=Clock())
    assert rules.current() is RULES_V1 and rules.take_changes() == []


def test_an_unknown_rule_set_is_waited_for_then_refused():
    clock = Clock()

    class Ticking(ScriptedSource):
        def poll(self):
            clock.now += 1.0
            return super().poll()

    rules = RulesInForce(RULES_V1, Ticking({3: [("t@0", V2.encode())]}), poll_millis=0, clock=clock)
    assert rules.rule_set(RULES_V2.fingerprint, wait_seconds=10).fingerprint == RULES_V2.fingerprint
    with pytest.raises(UnknownRuleSet, match="is not among the rules"):
        rules.rule_set("0123456789abcdef", wait_seconds=3)


def test_a_process_shares_one_rules_in_force_per_source_and_launch_rules():
    source = ScriptedSource({})
    first = shared_rules_in_force(RULES_V1, source, 0)
    assert shared_rules_in_force(RULES_V1, source, 0) is first
    assert shared_rules_in_force(RULES_V2, source, 0) is not first
    assert shared_rules_in_force(RULES_V1, None) is shared_rules_in_force(RULES_V1, None)


def _under_recorded_rules(attempts, decisions):
    """Every decision must be the in-order decision of its attempt under the rule set it records."""
    by_print = {RULES_V1.fingerprint: RULES_V1, RULES_V2.fingerprint: RULES_V2}
    position = {a.attempt_id: index for index, a in enumerate(attempts)}
    for decision in decisions:
        index = position[decision.attempt_id]
        expected = decide_in_order(attempts[:index + 1], by_print[decision.ruleset])[-1]
        assert decision == expected, (decision, expected)


def test_a_rules_update_mid_stream_takes_effect_without_a_restart(stream_options):
    attempts = sorted(_attempts(120, 5), key=lambda a: (a.event_time, a.attempt_id))
    switch_at = 60  # the 61st attempt keyed is the first to see the update (the 61st poll)
    source = ScriptedSource({switch_at + 1: [("rules@0", UNVERSIONED.encode()), ("rules@1", V2.encode())]})

    def check(decisions):
        decisions = list(decisions)
        assert len(decisions) == len(attempts)
        _under_recorded_rules(attempts, decisions)
        under_v2 = {d.attempt_id for d in decisions if d.ruleset == RULES_V2.fingerprint}
        assert under_v2 == {a.attempt_id for a in attempts[switch_at:]}
        assert all(d.rule_versions == RULES_V2.rule_versions for d in decisions if d.attempt_id in under_v2)
        # the change matters on these attempts: some decision differs from what V1 alone gives
        assert decisions != decide_in_order(attempts, RULES_V1)

    with TestPipeline(options=stream_options) as pipeline:
        decided = pipeline | _stream(attempts) | DecideLiveAttempts(RULES_V1, source, poll_millis=0)
        assert_that(decided["decisions"], check)
        assert_that(decided["rejected_rules"], lambda letters: _one_rejected_update(list(letters)),
                    label="RejectedRules")


def _one_rejected_update(letters):
    assert [(letter.input, letter.source, letter.stage) for letter in letters] == [("rules", "rules@0", "rules_update")]
    assert "not above 1" in letters[0].reason and letters[0].raw_payload == UNVERSIONED
