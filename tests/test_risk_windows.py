"""Per-event sliding windows (transforms/risk/windows.py) against hand-written cases and a brute force.

The brute force below is written from docs/DESIGN.md 10.3 alone: for every
attempt it scans every attempt that arrived before it, so it shares nothing
with the engine's sorted histories, bisects and expiry but the rule parser.
"""
from __future__ import annotations

from typing import List, Optional

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.attempts import AuthorizationAttempt
from schemas.decisions import FiredRule
from transforms.risk.rules import load_rules, rule_set_of
from transforms.risk.windows import RiskEngine, decide_in_order

MINUTE = 60_000


def attempt(n: int, minute: float, *, card: str = "fp_1", outcome: str = "APPROVED", amount: int = 1000,
            currency: str = "USD", customer: Optional[str] = "cus_1", country: Optional[str] = "US",
            merchant: str = "m_1", ip: Optional[str] = "10.0.0.1", attempt_type: str = "AUTHORIZATION",
            ) -> AuthorizationAttempt:
    return AuthorizationAttempt(
        attempt_id=f"att_{n:04d}", attempt_type=attempt_type, event_time=int(minute * MINUTE), merchant_id=merchant,
        amount_minor=amount, currency=currency, card_fingerprint=card, card_bin="424242", customer_id=customer,
        ip=ip, device_id=None, billing_country="US", issuing_country=country, outcome=outcome,
        decline_code="05" if outcome == "DECLINED" else None, three_ds=None, payment_id=None)


CARD_TESTING = load_rules("""
rules:
  - {id: card-testing, version: 1, key: card_fingerprint, filter: {outcome: DECLINED, amount_minor: {max: 500}},
     aggregate: count, window: 10m, threshold: 5, action: block, reason: card_testing}
""")


def test_card_testing_blocks_the_attempt_after_five_small_declines_within_ten_minutes():
    probes = [attempt(n, n, outcome="DECLINED", amount=100) for n in range(5)]
    # The sixth attempt (a large one: a rule decides every attempt of its key) comes after five declines.
    attempts = probes + [attempt(5, 5.5, amount=90_000), attempt(6, 6, card="fp_2", outcome="DECLINED", amount=100),
                         attempt(7, 15.5)]
    decisions = decide_in_order(attempts, CARD_TESTING)
    assert [d.action for d in decisions] == ["allow"] * 5 + ["block", "allow", "allow"]
    # Its own outcome is not known when it is decided: the fifth decline saw only four before it.
    assert decisions[5].fired == [FiredRule("card-testing", 1, 5, 5, "block", 0, "card_testing")]
    # 15.5 min: the declines at 0..4 min are out of the 10-minute window (5.5 min is not a decline).
    assert decisions[7].fired == []
    assert decisions[5].rule_versions == "card-testing@1" and decisions[5].ruleset == CARD_TESTING.fingerprint


def test_an_attempt_exactly_one_window_later_no_longer_sees_the_first():
    attempts = [attempt(n, 0, outcome="DECLINED", amount=1) for n in range(5)] + [attempt(9, 10)]
    assert decide_in_order(attempts, CARD_TESTING)[-1].action == "allow"  # (t - 10m, t]: time 0 is out
    attempts[-1] = attempt(9, 9.99)
    assert decide_in_order(attempts, CARD_TESTING)[-1].action == "block"


RULES = load_rules("""
score_review_at: 50
score_block_at: 100
rules:
  - {id: amount-spike, version: 2, key: customer_id, aggregate: amount_vs_mean_pct, window: 30d, min_volume: 3,
     threshold: 500, action: review, reason: amount_far_above_history}
  - {id: geo-velocity, version: 1, key: card_fingerprint, aggregate: 'distinct:issuing_country', window: 1h,
     threshold: 2, action: score, score: 60, reason: geo_velocity}
  - {id: ip-spend, version: 1, key: ip, aggregate: sum_amount, window: 1h, threshold: 5000, action: score,
     score: 40, reason: ip_spend}
  - {id: merchant-declines, version: 1, state: shadow, key: merchant_id, aggregate: ratio,
     numerator: {outcome: DECLINED}, window: 10m, min_volume: 4, threshold: 5000, action: block,
     reason: decline_rate}
  - {id: trusted, version: 1, key: customer_id, filter: {attempt_type: REFUND}, aggregate: count, window: 1d,
     threshold: 1, action: allow, reason: has_refunds}
""")


def test_amount_far_above_the_customer_s_own_history():
    history = [attempt(n, n, amount=1000) for n in range(3)]
    decisions = decide_in_order(history + [attempt(3, 10, amount=5000), attempt(4, 11, amount=4999, customer="cus_2")],
                                RULES)
    spike = [fired for fired in decisions[3].fired if fired.rule_id == "amount-spike"]
    assert spike == [FiredRule("amount-spike", 2, 500, 3, "review", 0, "amount_far_above_history")]
    assert decisions[3].action == "review"
    assert decisions[4].action == "allow"  # another customer: no history


def test_scores_sum_and_reach_the_set_s_thresholds_and_money_is_summed_per_currency():
    attempts = [attempt(0, 0, amount=3000), attempt(1, 1, amount=3000, currency="EUR"),
                attempt(2, 2, amount=2000, country="GB")]
    decisions = decide_in_order(attempts, RULES)
    # att 1: 3000 EUR alone in its currency; att 2: 3000 + 2000 USD = 5000 (40) and two countries (60).
    assert [d.score for d in decisions] == [0, 0, 100]
    assert decisions[2].action == "block"  # 100 >= score_block_at
    assert {fired.rule_id: fired.value for fired in decisions[2].fired} == {"geo-velocity": 2, "ip-spend": 5000}


def test_shadow_rules_are_recorded_never_acted_on_and_allow_never_lifts_a_block():
    declines = [attempt(n, n * 0.1, outcome="DECLINED", customer=None, ip=None) for n in range(4)]
    decisions = decide_in_order(declines + [attempt(9, 1, customer=None, ip=None)], RULES)
    assert decisions[-1].shadow_fired == [FiredRule("merchant-declines", 1, 10_000, 4, "block", 0, "decline_rate")]
    assert decisions[-1].action == "allow" and decisions[-1].fired == []
    # A customer with a refund today fires the allow rule; a geo-velocity block on the same attempt stands.
    refund = attempt(0, 0, attempt_type="REFUND", amount=1)
    both = decide_in_order([refund, attempt(1, 1, amount=1, country="GB"), attempt(2, 2, amount=1, country="FR")],
                           load_rules("""
rules:
  - {id: trusted, version: 1, key: customer_id, filter: {attempt_type: REFUND}, aggregate: count, window: 1d,
     threshold: 1, action: allow, reason: has_refunds}
  - {id: geo, version: 1, key: card_fingerprint, aggregate: 'distinct:issuing_country', window: 1h,
     threshold: 3, action: block, reason: geo}
"""))
    assert [sorted(f.rule_id for f in d.fired) for d in both] == [["trusted"], ["trusted"], ["geo", "trusted"]]
    assert [d.action for d in both] == ["allow", "allow", "block"]


def test_a_missing_key_field_means_the_rule_does_not_apply():
    decisions = decide_in_order([attempt(n, n, ip=None, amount=9000) for n in range(2)], RULES)
    assert all(fired.rule_id != "ip-spend" for d in decisions for fired in d.fired)


def test_state_is_bounded_by_the_longest_window_not_by_history():
    engine = RiskEngine(CARD_TESTING)
    for n in range(2000):
        engine.decide(attempt(n, n * 0.5, outcome="DECLINED", amount=10))
        # 10-minute window, one attempt every 30 s: at most 20 kept (those after newest - 10 min).
        assert engine.kept_attempts <= 20


def test_a_redelivered_attempt_gets_the_same_decision_and_is_not_counted_twice():
    attempts = [attempt(n, n, outcome="DECLINED", amount=1) for n in range(4)]
    engine = RiskEngine(CARD_TESTING)
    first = [engine.decide(a) for a in attempts]
    assert engine.decide(attempts[3]) == first[3]
    assert engine.decide(attempt(9, 5)).action == "allow"  # four declines, not five


# ---- the brute force and the differential test -------------------------------------------------------------

def _order(a):
    return a.event_time, a.attempt_id


def _passes(a, conditions: dict, authorized: bool) -> bool:
    for name, allowed in conditions.items():
        if name == "amount_minor":
            if "min" in allowed and a.amount_minor < allowed["min"]:
                return False
            if "max" in allowed and a.amount_minor > allowed["max"]:
                return False
        elif name in ("outcome", "decline_code") and not authorized:
            return False
        elif getattr(a, name) not in allowed:
            return False
    return True


def _brute_force(arrival: List[AuthorizationAttempt], spec: dict) -> List[dict]:
    """Decisions per docs/DESIGN.md 10.3, by scanning every earlier arrival for every attempt."""
    rules = [rule for rule in spec["rules"] if rule.get("state", "active") != "paused"]
    units = {"s": 1000, "m": MINUTE}
    decisions = []
    for index, current in enumerate(arrival):
        fired, shadow = [], []
        for rule in sorted(rules, key=lambda r: r["id"]):
            key = rule["key"]
            if any(getattr(current, name) is None for name in key):
                continue
            same_key = [a for a in arrival[:index] if all(getattr(a, n) == getattr(current, n) for n in key)]
            longest = max(int(r["window"][:-1]) * units[r["window"][-1]] for r in rules if r["key"] == key)
            longest = max([longest] + [int(r["baseline"]["window"][:-1]) * units[r["baseline"]["window"][-1]]
                                       for r in rules if r["key"] == key and "baseline" in r])
            newest = max((a.event_time for a in same_key), default=None)
            kept = {a.attempt_id: a for a in same_key if a.event_time > newest - longest}.values()

            def window_of(millis):
                return [a for a in kept if _order(a) < _order(current) and a.event_time > current.event_time - millis]

            window = window_of(int(rule["window"][:-1]) * units[rule["window"][-1]])
            conditions = rule.get("filter", {})
            counted = [a for a in window if _passes(a, conditions, True)]
            itself = [current] if _passes(current, conditions, False) else []
            aggregate, ok = rule["aggregate"], True
            if aggregate == "count":
                value = volume = len(counted) + len(itself)
            elif aggregate == "sum_amount":
                same = [a for a in counted + itself if a.currency == current.currency]
                value, volume = sum(a.amount_minor for a in same), len(same)
            elif aggregate.startswith("distinct:"):
                field = aggregate.split(":")[1]
                value = len({getattr(a, field) for a in counted + itself if getattr(a, field) is not None})
                volume = len(counted + itself)
            elif aggregate == "ratio":
                numerator = len([a for a in counted if _passes(a, rule["numerator"], True)])
                volume = len(counted)
                value = numerator * 10000 // volume if volume else 0
                if "baseline" in rule:
                    base = [a for a in window_of(int(rule["baseline"]["window"][:-1]) * units[rule["baseline"]["window"][-1]])
                            if _passes(a, conditions, True)]
                    base_numerator = len([a for a in base if _passes(a, rule["numerator"], True)])
                    ok = (len(base) >= rule["baseline"].get("min_volume", 1) and
                          numerator * len(base) * 100 >= rule["baseline"]["factor_pct"] * base_numerator * volume)
            else:  # amount_vs_mean_pct
                amounts = [a.amount_minor for a in counted if a.currency == current.currency]
                volume = len(amounts)
                value = current.amount_minor * 100 * volume // sum(amounts) if sum(amounts) else 0
            bands = rule.get("bands") or [{"at_least": rule["threshold"], "action": rule["action"],
                                           "score": rule.get("score", 0)}]
            reached = [band for band in bands if value >= band["at_least"]]
            if volume >= rule.get("min_volume", 1) and ok and reached:
                band = reached[-1]
                hit = (rule["id"], value, volume, band["action"], band.get("score", 0) or 0)
                (shadow if rule.get("state") == "shadow" else fired).append(hit)
        score = sum(hit[4] for hit in fired)
        actions = {hit[3] for hit in fired}
        if spec.get("score_block_at") and score >= spec["score_block_at"]:
            actions.add("block")
        elif spec.get("score_review_at") and score >= spec["score_review_at"]:
            actions.add("review")
        action = "block" if "block" in actions else "review" if "review" in actions else "allow"
        decisions.append({"attempt_id": current.attempt_id, "action": action, "score": score,
                          "fired": fired, "shadow": shadow})
    return decisions


def _as_comparable(decision) -> dict:
    return {"attempt_id": decision.attempt_id, "action": decision.action, "score": decision.score,
            "fired": [(f.rule_id, f.value, f.volume, f.action, f.score) for f in decision.fired],
            "shadow": [(f.rule_id, f.value, f.volume, f.action, f.score) for f in decision.shadow_fired]}


_filters = st.sampled_from([{}, {"outcome": ["DECLINED"]}, {"amount_minor": {"max": 300}},
                            {"outcome": ["DECLINED"], "amount_minor": {"min": 50, "max": 400}},
                            {"attempt_type": ["REFUND"]}, {"currency": ["EUR"]}])


@st.composite
def _rule_specs(draw, number: int) -> dict:
    aggregate = draw(st.sampled_from(["count", "sum_amount", "distinct:issuing_country", "distinct:ip", "ratio",
                                      "amount_vs_mean_pct"]))
    window = draw(st.sampled_from(["30s", "2m", "5m", "10m"]))
    rule = {"id": f"r{number}", "version": draw(st.integers(1, 3)),
            "state": draw(st.sampled_from(["active", "active", "shadow", "paused"])),
            "key": draw(st.sampled_from([["card_fingerprint"], ["customer_id"], ["merchant_id"],
                                         ["card_fingerprint", "ip"]])),
            "filter": draw(_filters), "aggregate": aggregate, "window": window,
            "min_volume": draw(st.integers(1, 3)), "reason": f"reason_{number}"}
    top = {"ratio": 10_000, "amount_vs_mean_pct": 400, "sum_amount": 1500}.get(aggregate, 4)
    if aggregate == "ratio":
        rule["numerator"] = {"outcome": ["DECLINED"]}
        if draw(st.booleans()):
            rule["baseline"] = {"window": "20m", "factor_pct": draw(st.integers(50, 300)),
                                "min_volume": draw(st.integers(1, 3))}
    if draw(st.booleans()):
        low = draw(st.integers(0, top))
        rule["bands"] = [{"at_least": low, "action": "review"}, {"at_least": low + 1, "action": "block"}]
    else:
        rule["threshold"] = draw(st.integers(0, top))
        rule["action"] = draw(st.sampled_from(["allow", "review", "block", "score"]))
        if rule["action"] == "score":
            rule["score"] = draw(st.integers(1, 60))
    return rule


@st.composite
def _cases(draw):
    spec = {"score_review_at": 40, "score_block_at": 90,
            "rules": [draw(_rule_specs(number)) for number in range(draw(st.integers(1, 4)))]}
    count = draw(st.integers(1, 40))
    attempts = []
    for n in range(count):
        attempts.append(attempt(
            n, draw(st.integers(0, 40)) / 2, card=draw(st.sampled_from(["fp_1", "fp_2", "fp_3"])),
            outcome=draw(st.sampled_from(["APPROVED", "DECLINED"])), amount=draw(st.integers(1, 600)),
            currency=draw(st.sampled_from(["USD", "USD", "EUR"])),
            customer=draw(st.sampled_from(["cus_1", "cus_2", None])),
            country=draw(st.sampled_from(["US", "GB", None])), merchant=draw(st.sampled_from(["m_1", "m_2"])),
            ip=draw(st.sampled_from(["10.0.0.1", "10.0.0.2", None])),
            attempt_type=draw(st.sampled_from(["AUTHORIZATION", "AUTHORIZATION", "REFUND"]))))
    return spec, attempts, draw(st.randoms(use_true_random=False))


@settings(max_examples=300, deadline=None)
@given(_cases())
def test_in_order_decisions_equal_the_brute_force_on_every_field(case):
    spec, attempts, _ = case
    rule_set = rule_set_of(spec)
    in_order = sorted(attempts, key=_order)
    decisions = decide_in_order(in_order, rule_set)
    assert [_as_comparable(d) for d in decisions] == _brute_force(in_order, spec)
    assert all(d.rule_versions == rule_set.rule_versions and d.event_time == a.event_time
               and d.merchant_id == a.merchant_id for d, a in zip(decisions, in_order))


@settings(max_examples=200, deadline=None)
@given(_cases())
def test_out_of_order_arrival_decides_on_what_arrived_before_and_precedes_it(case):
    spec, attempts, shuffle = case
    arrival = list(attempts)
    shuffle.shuffle(arrival)
    decisions = decide_in_order(arrival, rule_set_of(spec))
    assert [_as_comparable(d) for d in decisions] == _brute_force(arrival, spec)


def test_the_brute_force_itself_catches_a_wrong_window():
    """The reference is not vacuous: a window one minute longer changes a decision it checks."""
    spec = {"rules": [{"id": "c", "version": 1, "key": ["card_fingerprint"], "aggregate": "count",
                       "window": "2m", "threshold": 2, "action": "block", "reason": "r"}]}
    attempts = [attempt(0, 0), attempt(1, 2.5)]
    assert [d["action"] for d in _brute_force(attempts, spec)] == ["allow", "allow"]
    spec["rules"][0]["window"] = "3m"
    assert [d["action"] for d in _brute_force(attempts, spec)] == ["allow", "block"]
    assert [d.action for d in decide_in_order(attempts, rule_set_of(spec))] == ["allow", "block"]
