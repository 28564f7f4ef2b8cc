"""The risk notebook's helpers (analysis/risk.py) against counts made by hand."""
from __future__ import annotations

from analysis.risk import explain, rule_quality, sweep, with_threshold
from tests.test_risk_windows import CARD_TESTING, attempt
from transforms.risk.windows import decide_in_order


def _declines(count: int, card: str = "fp_1"):
    return [attempt(n, n, card=card, outcome="DECLINED", amount=100) for n in range(count)]


def test_a_sweep_moves_one_rule_s_threshold_and_scores_it_against_the_truth():
    attempts = sorted(_declines(6) + [attempt(10 + n, n + 0.5, card="fp_2", outcome="DECLINED", amount=100)
                                      for n in range(3)], key=lambda a: (a.event_time, a.attempt_id))
    truth = {a.attempt_id: ("card_testing" if a.card_fingerprint == "fp_1" else "") for a in attempts}
    table = sweep(attempts, truth, CARD_TESTING, "card-testing", [2, 5])
    # Threshold 2: fp_1's attempts 2..5 (4) and fp_2's 3rd (1) fire; threshold 5: fp_1's 6th only.
    assert table.to_dict("records") == [
        {"threshold": 2, "fired": 5, "fraud_caught": 4, "precision_pct": 80.0, "recall_pct": 66.7,
         "false_positive_pct": 33.33, "fired_minor_USD": 500},
        {"threshold": 5, "fired": 1, "fraud_caught": 1, "precision_pct": 100.0, "recall_pct": 16.7,
         "false_positive_pct": 0.0, "fired_minor_USD": 100}]
    assert with_threshold(CARD_TESTING, "card-testing", 2).fingerprint != CARD_TESTING.fingerprint
    assert rule_quality([], truth, "card-testing")["precision_pct"] is None


def test_an_explanation_lists_the_attempts_the_rule_saw():
    attempts = _declines(5) + [attempt(9, 5.5, amount=5000), attempt(20, 5.2, card="fp_9")]
    decision = decide_in_order(attempts, CARD_TESTING)[5]
    assert decision.action == "block"
    rows = explain(decision, attempts, CARD_TESTING)
    assert list(rows["attempt_id"]) == [f"att_{n:04d}" for n in range(5)]
    assert list(rows["seconds_before"]) == [330, 270, 210, 150, 90] and rows["counted"].all()
