"""The bounded Beam transform (transforms/risk/backtest.py) gives the per-element engine's in-order answer."""
from __future__ import annotations

import random

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.test_risk_windows import RULES, attempt
from transforms.risk.backtest import DecideAttempts
from transforms.risk.rules import load_rules
from transforms.risk.windows import decide_in_order

MIXED_YAML = """
score_review_at: 50
rules:
  - {id: card-testing, version: 1, key: card_fingerprint, filter: {outcome: DECLINED, amount_minor: {max: 500}},
     aggregate: count, window: 10m, threshold: 3, action: block, reason: card_testing}
  - {id: customer-velocity, version: 1, key: [customer_id, ip], aggregate: count, window: 5m, threshold: 4,
     action: score, score: 60, reason: velocity}
  - {id: merchant-decline-rate, version: 1, state: shadow, key: merchant_id, aggregate: ratio,
     numerator: {outcome: DECLINED}, window: 10m, min_volume: 5, threshold: 4000, action: review, reason: rate}
"""
MIXED = load_rules(MIXED_YAML)


def _attempts(count: int, seed: int):
    rng = random.Random(seed)
    return [attempt(n, rng.randrange(0, 120) / 4, card=rng.choice(["fp_1", "fp_2", "fp_3"]),
                    outcome=rng.choice(["APPROVED", "DECLINED"]), amount=rng.randrange(1, 900),
                    customer=rng.choice(["cus_1", "cus_2", None]), merchant=rng.choice(["m_1", "m_2"]),
                    ip=rng.choice(["10.0.0.1", "10.0.0.2", None]), country=rng.choice(["US", "GB"]))
            for n in range(count)]


def test_the_backtest_equals_the_in_order_engine_whatever_the_file_order():
    for rule_set, seed in ((MIXED, 1), (RULES, 2)):
        attempts = _attempts(300, seed)
        expected = decide_in_order(sorted(attempts, key=lambda a: (a.event_time, a.attempt_id)), rule_set)
        assert any(d.action != "allow" for d in expected) and any(d.action == "allow" for d in expected)
        shuffled = list(attempts)
        random.Random(seed).shuffle(shuffled)
        with TestPipeline() as pipeline:
            decisions = (pipeline | beam.Create(shuffled, reshuffle=False) | DecideAttempts(rule_set))
            assert_that(decisions, equal_to(expected))


def test_an_attempt_no_rule_applies_to_is_still_decided_once():
    lone = attempt(0, 0, customer=None, ip=None)
    only_customers = load_rules("""
rules:
  - {id: c, version: 1, key: customer_id, aggregate: count, window: 1m, threshold: 1, action: block, reason: r}
""")
    with TestPipeline() as pipeline:
        decisions = pipeline | beam.Create([lone]) | DecideAttempts(only_customers)
        assert_that(decisions, equal_to(decide_in_order([lone], only_customers)))
    assert decide_in_order([lone], only_customers)[0].action == "allow"
