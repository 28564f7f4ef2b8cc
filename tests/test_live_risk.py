"""The live columnar risk shard (transforms/columnar/live_risk.py) against the per-element engine.

Hypothesis draws rule sets over every aggregate and attempts with ties, missing keys and two currencies,
delivers them in a shuffled arrival order, cut into chunks at random, with exact re-deliveries, a restore
from the persisted rows between chunks and the watermark moved up to (never past) what is still to come.
Every first arrival's decision must equal the per-element engine's (`RiskEngine.decide` in arrival order:
decided on what arrived before it and precedes it, within what its key's history keeps) on every field."""
from __future__ import annotations

import random

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import arrow
from tests.test_risk_backtest import MIXED, RULES, _attempts
from tests.test_risk_windows import _cases, _order, attempt
from transforms.columnar.live_risk import LiveRiskShard, segment_ends
from transforms.columnar.risk import attempts_table, decisions_of
from transforms.risk.rules import rule_set_of
from transforms.risk.windows import RiskEngine


def _reference(arrival, rule_set):
    engine, seen, decisions = RiskEngine(rule_set), set(), []
    for one in arrival:
        if one.attempt_id not in seen:
            seen.add(one.attempt_id)
            decisions.append(engine.decide(one))
    return decisions


def _live(arrival, rule_set, rng: random.Random, restore: bool = False, expire: bool = False):
    shard, decisions, position = LiveRiskShard(), [], 0
    while position < len(arrival):
        size = rng.randint(1, 8)
        chunk = arrival[position:position + size]
        position += size
        table = shard.decide(attempts_table(chunk), rule_set)
        assert table.schema == arrow.RISK_DECISION
        decisions.extend(decisions_of(table))
        if restore and rng.random() < 0.5:
            shard = LiveRiskShard.restore(shard.clock, [shard.snapshot()], rule_set.retention_millis)
        if expire and position < len(arrival):
            # The watermark at most at what is still to come: nothing that follows is late.
            shard.expire(min(a.event_time for a in arrival[position:]) - rng.randint(0, 5))
    return decisions


@settings(max_examples=300, deadline=None)
@given(_cases(), st.booleans(), st.booleans())
def test_chunks_in_any_arrival_order_decide_as_the_per_element_engine_on_every_field(case, restore, expire):
    spec, attempts, rng = case
    rule_set = rule_set_of(spec)
    arrival = list(attempts)
    rng.shuffle(arrival)
    arrival += [arrival[i] for i in sorted(rng.sample(range(len(arrival)), min(3, len(arrival))))]  # re-deliveries
    rng.shuffle(arrival)
    assert _live(arrival, rule_set, rng, restore, expire) == _reference(arrival, rule_set)


@settings(max_examples=100, deadline=None)
@given(_cases())
def test_in_order_chunks_decide_as_the_backtest(case):
    spec, attempts, rng = case
    rule_set = rule_set_of(spec)
    in_order = sorted(attempts, key=_order)
    assert _live(in_order, rule_set, rng, expire=True) == _reference(in_order, rule_set)


def test_larger_mixed_inputs_every_example_rule_and_a_little_disorder():
    for rule_set, seed in ((MIXED, 1), (RULES, 2)):
        arrival = sorted(_attempts(600, seed), key=_order)
        rng = random.Random(seed)
        for _ in range(40):  # neighbours swapped: what Kafka partitions interleaved deliver
            at = rng.randrange(len(arrival) - 1)
            arrival[at], arrival[at + 1] = arrival[at + 1], arrival[at]
        decisions = _live(arrival, rule_set, rng, restore=True, expire=True)
        assert decisions == _reference(arrival, rule_set)
        assert {d.action for d in decisions} >= {"allow", "block"}


def test_an_in_order_chunk_is_one_segment_and_disorder_cuts_before_the_attempt_that_breaks_it():
    in_order = [attempt(n, n) for n in range(6)]
    assert segment_ends(attempts_table(in_order), MIXED) == [6]
    swapped = in_order[:3] + [in_order[4], in_order[3], in_order[5]]  # attempt 3 arrives after 4, same card
    assert segment_ends(attempts_table(swapped), MIXED) == [4, 6]
    other_card = in_order[:3] + [in_order[4], in_order[3]._replace(card_fingerprint="fp_other", customer_id=None,
                                                                   ip=None, device_id=None, merchant_id="m_other")]
    assert segment_ends(attempts_table(other_card), MIXED) == [5]  # no key in common: no cut


def test_expired_rows_leave_and_a_redelivered_attempt_is_decided_once():
    shard = LiveRiskShard()
    first = [attempt(n, n) for n in range(5)]
    assert shard.decide(attempts_table(first), MIXED).num_rows == 5
    assert shard.decide(attempts_table(first[2:3]), MIXED).num_rows == 0  # already kept: decided once
    retention = MIXED.retention_millis
    assert shard.retention_millis == retention  # the rules of the latest chunk
    assert shard.expire(first[2].event_time + retention + 1) == 3 and shard.rows == 2
    assert shard.next_expiry() == first[3].event_time + retention
    empty = shard.decide(pa.Table.from_pylist([], schema=arrow.AUTHORIZATION_ATTEMPT), MIXED)
    assert empty.num_rows == 0 and empty.schema == arrow.RISK_DECISION
