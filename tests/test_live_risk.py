"""The live columnar risk shard (transforms/columnar/live_risk.py) against the per-element engine.

Hypothesis draws rule sets over every aggregate and attempts with ties, missing keys and two currencies,
delivers them in a shuffled arrival order, cut into chunks at random, with exact re-deliveries, a restore
from the persisted rows between chunks and the watermark moved up to (never past) what is still to come.
Every first arrival's decision must equal the per-element engine's (`RiskEngine.decide` in arrival order:
decided on what arrived before it and precedes it, within what its key's history keeps) on every field."""
from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import arrow
from schemas.money import MAX_MINOR_UNITS
from tests.test_columnar_risk import BIG_SPENDER, LARGEST_AMOUNTS
from tests.test_risk_backtest import MIXED, RULES, _attempts
from tests.test_risk_windows import _cases, _order, attempt
from transforms.columnar import live_risk
from transforms.columnar.live_index import search_sorted
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
    # Rows indexed after 0 to 12 unindexed ones: every mix of indexed rows and rows read from the shard.
    index_after = rng.randint(0, 12)
    shard, decisions, position = LiveRiskShard(index_after_rows=index_after), [], 0
    while position < len(arrival):
        size = rng.randint(1, 8)
        chunk = arrival[position:position + size]
        position += size
        table = shard.decide(attempts_table(chunk), rule_set)
        assert table.schema == arrow.RISK_DECISION
        decisions.extend(decisions_of(table))
        if restore and rng.random() < 0.5:
            shard = LiveRiskShard.restore(shard.clock, [shard.snapshot()], rule_set.retention_millis,
                                          index_after_rows=index_after)
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


@settings(max_examples=60, deadline=None)
@given(_cases(), st.integers(MAX_MINOR_UNITS // 2, MAX_MINOR_UNITS))
def test_amounts_at_the_limit_are_summed_exactly_across_indexed_and_unindexed_rows(case, big):
    spec, attempts, rng = case
    rule_set = rule_set_of(spec)
    arrival = [a._replace(amount_minor=big - index) if index % 2 else a for index, a in enumerate(attempts)]
    rng.shuffle(arrival)
    assert _live(arrival, rule_set, rng) == _reference(arrival, rule_set)


def test_a_sum_over_many_large_indexed_amounts_that_leaves_int64_is_not_wrapped():
    rules, attempts = BIG_SPENDER, LARGEST_AMOUNTS
    shard, decisions = LiveRiskShard(index_after_rows=500), []
    for start in range(0, len(attempts), 400):
        decisions.extend(decisions_of(shard.decide(attempts_table(attempts[start:start + 400]), rules)))
    assert decisions == _reference(attempts, rules)
    assert decisions[-1].fired[0].value == 2**63 - 1 and decisions[999].fired[0].value == 10**18


@settings(max_examples=80, deadline=None)
@given(_cases())
def test_key_hashes_that_collide_never_change_a_decision(case):
    """Every key value hashed alike (the worst a 64-bit hash could do): the indexes see two key values in
    one group, stop answering, and the shard reads the rows themselves; decisions stay exact."""
    spec, attempts, rng = case
    rule_set = rule_set_of(spec)
    arrival = list(attempts)
    rng.shuffle(arrival)
    original = live_risk._spec_hash
    live_risk._spec_hash = lambda hashes, fields: np.zeros(len(hashes[fields[0]]), dtype=np.uint64)
    try:
        assert _live(arrival, rule_set, rng) == _reference(arrival, rule_set)
    finally:
        live_risk._spec_hash = original


def test_a_collision_turns_the_index_off_and_the_shard_reads_rows():
    original = live_risk._spec_hash
    live_risk._spec_hash = lambda hashes, fields: np.zeros(len(hashes[fields[0]]), dtype=np.uint64)
    try:
        shard = LiveRiskShard(index_after_rows=0)
        two_cards = [attempt(n, n, card=f"fp_{n % 2}") for n in range(6)]
        decisions = []
        for one in two_cards:
            decisions.extend(decisions_of(shard.decide(attempts_table([one]), MIXED)))
        assert decisions == _reference(two_cards, MIXED)
        assert not shard._indexes[("card_fingerprint",)].by_key.exact
    finally:
        live_risk._spec_hash = original


def test_windows_over_a_growing_index_and_the_rows_after_it_decide_as_the_reference():
    """Thousands of attempts over the example rules (day-long baselines): the indexes grow in batches of a
    32nd of their size, and every window that spans indexed and unindexed rows still equals the reference."""
    for rule_set, seed in ((MIXED, 3), (RULES, 4)):
        arrival = sorted(_attempts(3_000, seed), key=_order)
        indexed = _live(arrival, rule_set, random.Random(seed), expire=True)
        assert indexed == _reference(arrival, rule_set)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-50, 50), max_size=600), st.lists(st.integers(-60, 60), max_size=700),
       st.sampled_from(["left", "right"]))
def test_searching_values_in_ascending_order_finds_what_numpy_finds(haystack, needles, side):
    """search_sorted sorts many values before it searches them (numpy is faster on ascending values) and puts
    the answers back in their order: the same as np.searchsorted, ties and both sides included."""
    ordered = np.sort(np.array(haystack, dtype=np.int64))
    values = np.array(needles, dtype=np.int64)
    assert search_sorted(ordered, values, side).tolist() == np.searchsorted(ordered, values, side).tolist()
    assert search_sorted(ordered, 7, side) == np.searchsorted(ordered, 7, side)
