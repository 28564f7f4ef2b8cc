"""The columnar risk engine (transforms/columnar/risk.py) against the per-element reference.

Hypothesis draws rule sets over every aggregate (counts, sums, distinct counts, ratios with baselines,
amounts against the mean; filters, bands, scores, shadow and paused rules) and attempts with ties,
missing keys and several currencies; the table's decisions must equal `decide_in_order` on every field
of every decision. Amounts near the limit exercise the exact-integer paths."""
from __future__ import annotations

import random

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import arrow
from schemas.money import MAX_MINOR_UNITS
from tests.test_risk_backtest import MIXED, RULES, _attempts
from tests.test_risk_windows import _cases, _order, attempt
from transforms.columnar.risk import attempts_table, decide_table, decisions_of
from transforms.risk.rules import load_rules, rule_set_of
from transforms.risk.windows import decide_in_order


def _by_id(decisions):
    return {decision.attempt_id: decision for decision in decisions}


def _check(attempts, rule_set):
    shuffled = list(attempts)
    random.Random(len(attempts)).shuffle(shuffled)
    table = decide_table(attempts_table(shuffled), rule_set)
    assert table.schema == arrow.RISK_DECISION
    assert table.column("attempt_id").to_pylist() == [a.attempt_id for a in shuffled]  # the input's row order
    expected = decide_in_order(sorted(attempts, key=_order), rule_set)
    assert _by_id(decisions_of(table)) == _by_id(expected)
    return expected


@settings(max_examples=300, deadline=None)
@given(_cases())
def test_the_table_s_decisions_equal_the_per_element_engine_on_every_field(case):
    spec, attempts, _ = case
    _check(attempts, rule_set_of(spec))


@settings(max_examples=100, deadline=None)
@given(_cases(), st.integers(MAX_MINOR_UNITS // 2, MAX_MINOR_UNITS))
def test_amounts_at_the_limit_are_summed_and_compared_exactly(case, big):
    spec, attempts, _ = case
    attempts = [a._replace(amount_minor=big - index) if index % 2 else a for index, a in enumerate(attempts)]
    _check(attempts, rule_set_of(spec))


def test_larger_mixed_inputs_and_every_example_rule():
    for rule_set, seed in ((MIXED, 1), (RULES, 2)):
        decisions = _check(_attempts(600, seed), rule_set)
        assert {d.action for d in decisions} >= {"allow", "block"}


BIG_SPENDER = load_rules("""
rules:
  - {id: big-spender, version: 1, key: card_fingerprint, aggregate: sum_amount, window: 1h,
     threshold: 1000000000000000000, action: review, reason: volume}
""")
LARGEST_AMOUNTS = [attempt(n, n / 1000, amount=MAX_MINOR_UNITS) for n in range(9_400)]  # one card, 9.4 s


def test_a_sum_over_many_large_amounts_that_leaves_int64_is_not_wrapped():
    rules, attempts = BIG_SPENDER, LARGEST_AMOUNTS
    table = decide_table(attempts_table(attempts), rules)
    # 9,223 amounts of 10^15 reach int64's limit: sums above it are reported at the limit, never wrapped.
    decisions = decisions_of(table)
    assert decisions == decide_in_order(attempts, rules)
    assert decisions[-1].fired[0].value == 2**63 - 1 and decisions[999].fired[0].value == 10**18


def test_an_empty_table_and_attempts_no_rule_applies_to():
    empty = decide_table(pa.Table.from_pylist([], schema=arrow.AUTHORIZATION_ATTEMPT), MIXED)
    assert empty.num_rows == 0 and empty.schema == arrow.RISK_DECISION
    lone = [attempt(0, 0, customer=None, ip=None)._replace(merchant_id="m_9", card_fingerprint="fp_9")]
    assert decisions_of(decide_table(attempts_table(lone), MIXED)) == decide_in_order(lone, MIXED)


@settings(max_examples=150, deadline=None)
@given(_cases())
def test_the_table_s_counts_equal_the_per_decision_counts(case):
    """decision_table_counts (columnar run.json) against decision_counts summed over the records."""
    from collections import Counter

    from transforms.columnar.risk_flow import decision_table_counts
    from transforms.risk.flow import DECISION_COUNT, decision_counts

    spec, attempts, _ = case
    rule_set = rule_set_of(spec)
    table = decide_table(attempts_table(attempts), rule_set)
    expected = Counter({DECISION_COUNT: table.num_rows})
    for decision in decisions_of(table):
        for name, value in decision_counts(decision):
            expected[name] += value
    got = Counter()
    for name, value in decision_table_counts(table):
        got[name] += value
    assert got == expected


def test_the_table_s_money_counts_are_exact_beyond_int64():
    """Ten thousand attempts of 10^15 minor units: 10^19 per action and currency, past int64 (Arrow's sum wraps)."""
    from transforms.columnar.risk_flow import decision_table_counts
    from transforms.risk.flow import action_count_name, money_count_name

    attempts = [attempt(n, n / 10, amount=MAX_MINOR_UNITS, card=f"fp_{n}") for n in range(10_000)]
    counts = dict(decision_table_counts(decide_table(attempts_table(attempts), MIXED)))
    per_action = [counts.get(money_count_name(action_count_name(action), "USD"), 0)
                  for action in ("allow", "review", "block")]
    assert sum(per_action) == 10_000 * MAX_MINOR_UNITS and max(per_action) > 2**63
