"""The example rules (transforms/risk/example_rules.yaml) each catch their generated attack and nothing else.

The attacks and their truth come from datagen/attempts.py (intent, not a run of the rules); the rules
are decided by the per-element engine in event-time order."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from datagen.attempts import ATTACKS, HOUR_MS, AttemptsConfig, generate_attempts
from transforms.risk.rules import load_rules_file
from transforms.risk.windows import decide_in_order

EXAMPLES = Path(__file__).resolve().parents[1] / "transforms" / "risk" / "example_rules.yaml"


@pytest.fixture(scope="module")
def backtest():
    rules = load_rules_file(str(EXAMPLES))
    attempts, truth = generate_attempts(AttemptsConfig())
    decisions = decide_in_order(attempts, rules)
    fired_by_reason = defaultdict(set)
    for decision in decisions:
        for fired in decision.fired:
            fired_by_reason[fired.reason].add(decision.attempt_id)
    return rules, attempts, truth, decisions, fired_by_reason


def test_the_generator_is_deterministic_and_ordered():
    first, truth = generate_attempts(AttemptsConfig(customers=50))
    assert (first, truth) == generate_attempts(AttemptsConfig(customers=50))
    assert first == sorted(first, key=lambda a: (a.event_time, a.attempt_id))
    assert len({a.attempt_id for a in first}) == len(first) == len(truth)
    assert {attack for attack in truth.values() if attack} == set(ATTACKS)


@pytest.mark.parametrize("attack", ATTACKS)
def test_each_example_rule_catches_its_attack(backtest, attack):
    _, _, truth, _, fired_by_reason = backtest
    attack_ids = {attempt_id for attempt_id, label in truth.items() if label == attack}
    assert fired_by_reason[attack] & attack_ids, f"{attack}: not caught"


def _attack_declines_before(attempts, truth, merchant: str, time: int) -> bool:
    return any(truth[a.attempt_id] and a.outcome == "DECLINED" and a.merchant_id == merchant
               and time - HOUR_MS < a.event_time <= time for a in attempts)


def test_no_rule_acts_on_ordinary_traffic_but_a_merchant_rule_within_an_hour_of_attack_declines(backtest):
    """Entity rules (card, IP, customer) fire on attack attempts only. A merchant-level rule acts on every
    attempt of the merchant while its decline rate is high: within the hour after an attack's declines there
    (the decline spike's, and card testing's, which is a decline spike too), ordinary attempts are reviewed."""
    _, attempts, truth, decisions, _ = backtest
    ordinary = [(d, a) for d, a in zip(decisions, attempts) if not truth[a.attempt_id]]
    assert len(ordinary) > 5000
    acted = [(d, a) for d, a in ordinary if d.action != "allow"]
    for decision, attempt in acted:
        assert {fired.rule_id for fired in decision.fired} == {"merchant-decline-spike"}, decision
        assert _attack_declines_before(attempts, truth, attempt.merchant_id, attempt.event_time), decision
    assert len(acted) < len(ordinary) // 50


def test_every_decision_names_the_rules_that_made_it(backtest):
    rules, attempts, _, decisions, _ = backtest
    assert len(decisions) == len(attempts)
    assert all(d.rule_versions == rules.rule_versions and d.ruleset == rules.fingerprint for d in decisions)
