"""The live matcher and live deduplication of one shard (transforms/columnar/live_*.py), without Beam.

Hypothesis drives a shard through arrivals (batches of candidates, duplicates,
equal times, both sides, late records) and watermark timers, and checks:
* the final revision of every key equals the per-element rule (`reconcile_key`)
  judged at the instant the key expired, and is final;
* every revision differs from the key's previous one (a revision is a change);
* a shard rebuilt from its persisted changes after any step (as after a
  restart, or on another worker) emits exactly what the uninterrupted shard
  emits, compactions included.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import List

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.internal_records import Candidate
from schemas.records import PAYMENTS
from tests.beam_helpers import StateBag, StateTimer, StateValue
from transforms.columnar.live_dedup import LiveFirstArrivals
from transforms.columnar.live_matching import LiveMatchShard
from transforms.columnar.matching import CANDIDATE_TABLE, LEDGER_SIDE
from transforms.matching import LEDGER, SETTLEMENT, MatchPolicy, reconcile_key

POLICY = MatchPolicy(amount_tolerance_minor=1, settlement_sla=timedelta(milliseconds=300),
                     ledger_grace=timedelta(milliseconds=200))
RETENTION = 1_000  # a key's life after its latest record (retention + max(SLA, grace))
FAR = 10**9

_candidate = st.tuples(
    st.sampled_from(["r1", "r2", "r3", "r4"]),  # processor reference
    st.sampled_from([0, 1]),  # side
    st.sampled_from(["a", "b", "c"]),  # record id suffix
    st.sampled_from(["EUR", "USD"]),
    st.integers(100, 103),  # amount
    st.integers(0, 600),  # time
)
_step = st.one_of(
    st.tuples(st.just("add"), st.lists(_candidate, min_size=1, max_size=6)),
    st.tuples(st.just("fire"), st.integers(0, 900)),
)


def _table(candidates) -> pa.Table:
    rows = [("adyen", reference, "CAPTURE", side, f"{'e' if side == LEDGER_SIDE else 's'}-{reference}-{suffix}",
             "m1", amount, currency, time) for reference, side, suffix, currency, amount, time in candidates]
    columns = list(zip(*rows))
    return pa.Table.from_arrays([pa.array(column, type=field.type) for column, field in zip(columns, CANDIDATE_TABLE)],
                                schema=CANDIDATE_TABLE)


class _Persisted:
    """What Beam state would hold: bags of appended tables, rewritten on compaction."""

    def __init__(self):
        self.candidates: List[pa.Table] = []
        self.keys: List[pa.Table] = []

    def save(self, shard: LiveMatchShard) -> None:
        if shard.needs_compaction():
            shard.compact()
            candidates, keys = shard.snapshot()
            self.candidates, self.keys = [candidates], [keys]
        else:
            added, changed = shard.take_changes()
            self.candidates += added
            self.keys.append(changed)

    def restore(self, shard: LiveMatchShard) -> LiveMatchShard:
        return LiveMatchShard.restore(POLICY, RETENTION, 1, shard.clock, shard.sequence, self.candidates, self.keys)


def _rows(table: pa.Table):
    return sorted(tuple(row.values()) for row in table.to_pylist())


def _run(steps, restore_every_step: bool):
    shard, persisted, emitted = LiveMatchShard(POLICY, RETENTION, 1), _Persisted(), []
    for kind, value in [*steps, ("fire", FAR)]:
        out = shard.add(_table(value)) if kind == "add" else shard.fire(value)
        emitted.append(_rows(out))
        persisted.save(shard)
        if restore_every_step:
            shard = persisted.restore(shard)
    return emitted, shard


@settings(max_examples=150, deadline=None)
@given(st.lists(_step, min_size=1, max_size=12))
def test_a_restored_shard_emits_what_the_uninterrupted_one_emits(steps):
    uninterrupted, shard = _run(steps, restore_every_step=False)
    restored, _ = _run(steps, restore_every_step=True)
    assert restored == uninterrupted
    assert shard.keys == {}  # every key expired at the far-future timer


def _as_candidates(candidates):
    return [Candidate(LEDGER if side == LEDGER_SIDE else SETTLEMENT,
                      f"{'e' if side == LEDGER_SIDE else 's'}-{reference}-{suffix}", "m1", amount, currency, time)
            for reference, side, suffix, currency, amount, time in candidates]


@settings(max_examples=200, deadline=None)
@given(st.lists(_step, min_size=1, max_size=14))
def test_after_every_step_each_key_shows_the_per_element_verdict_at_the_shard_clock(steps):
    """After an arrival or a timer at T, each open key's latest revision is `reconcile_key` of its records at
    the shard's clock; a key whose expiry the clock passed got a final revision and left (a later record of
    it opens a new life, revisions from 1). Revisions are changes; only the final one may repeat."""
    shard = LiveMatchShard(POLICY, RETENTION, 1)
    known, latest_rows = defaultdict(list), {}
    for kind, value in [*steps, ("fire", FAR)]:
        if kind == "add":
            for candidate in value:
                known[candidate[0]].append(candidate)
            out = shard.add(_table(value))
        else:
            out = shard.fire(value)
        emitted = defaultdict(list)
        for row in out.to_pylist():
            emitted[row["processor_reference"]].append(row)
        for reference, rows in emitted.items():
            revision = rows[0]["revision"]
            previous = latest_rows.get(reference)
            assert revision == (previous[0] + 1 if previous else 1)
            rows_now = sorted(tuple(row.values())[:-2] for row in rows)
            assert previous is None or previous[1] != rows_now or rows[0]["is_final"]
            latest_rows[reference] = (revision, rows_now, rows[0]["is_final"])
        for reference in list(known):
            expected = sorted(tuple(row)[:-2] for row in reconcile_key(
                ("adyen", reference, "CAPTURE"), _as_candidates(known[reference]), shard.clock, POLICY))
            assert latest_rows[reference][1] == expected, reference
            expired = max(candidate[5] for candidate in known[reference]) + RETENTION <= shard.clock
            assert latest_rows[reference][2] == (expired and kind == "fire"), reference
            if expired and kind == "fire":
                del known[reference], latest_rows[reference]
    assert not known and shard.keys == {}


def _payments(ids_times) -> pa.Table:
    from schemas.record_tables import RECONCILED_SCHEMA_OF_INPUT
    from transforms.columnar.validate import ORIGIN_COLUMN, SOURCE_PREFIX_COLUMN

    schema = RECONCILED_SCHEMA_OF_INPUT[PAYMENTS]
    rows = [(f"e{record_id}", "CAPTURE", "adyen", f"r{record_id}", "m1", amount, "EUR", time)
            for record_id, amount, time, _ in ids_times]
    columns = [pa.array(column, type=field.type) for column, field in zip(zip(*rows), schema)]
    table = pa.Table.from_arrays(columns, schema=schema)
    return table.append_column(ORIGIN_COLUMN, pa.array([origin for *_, origin in ids_times], pa.int64())) \
        .append_column(SOURCE_PREFIX_COLUMN, pa.array(["payments/0@"] * len(rows), pa.string()))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 5), st.sampled_from([10, 11]), st.integers(0, 100)),
                         min_size=1, max_size=6), min_size=1, max_size=6),
       st.lists(st.integers(0, 300), max_size=3))
def test_live_dedup_passes_first_arrivals_and_letters_conflicts_like_the_per_element_rule(batches, fires):
    horizon = 150
    shard, restored_shard = LiveFirstArrivals(PAYMENTS, horizon, 1), LiveFirstArrivals(PAYMENTS, horizon, 1)
    persisted: List[pa.Table] = []
    remembered = {}  # the per-element rule: id -> ((amount, time), forget at)
    origin, clock = 0, -10**12
    fire_at = sorted(fires)
    for index, batch in enumerate(batches):
        rows = []
        for record_id, amount, time in batch:
            rows.append((record_id, amount, time, origin))
            origin += 1
        unique, letters = shard.arrive(_payments(rows))
        twin_unique, twin_letters = restored_shard.arrive(_payments(rows))
        expected_unique, expected_conflicts, in_batch = [], 0, {}
        for record_id, amount, time, _ in rows:
            first = remembered.get(record_id, in_batch.get(record_id))
            if first is not None:
                expected_conflicts += first[0] != (amount, time)
            else:
                # Remembered for the rest of its chunk; beyond it only while its horizon is ahead of the clock.
                in_batch[record_id] = ((amount, time), time + horizon)
                if time + horizon > clock:
                    remembered[record_id] = in_batch[record_id]
                expected_unique.append(f"e{record_id}")
        assert unique.column("event_id").to_pylist() == expected_unique
        assert len(letters) == expected_conflicts and all(letter.stage == "dedup" for letter, _ in letters)
        assert twin_unique.equals(unique) and [letter for letter, _ in twin_letters] == [letter for letter, _ in letters]
        persisted += restored_shard.take_changes()
        if index < len(fire_at):
            clock = max(clock, fire_at[index])
            shard.fire(fire_at[index])
            restored_shard.fire(fire_at[index])
            remembered = {key: value for key, value in remembered.items() if value[1] > clock}
        restored_shard = LiveFirstArrivals.restore(PAYMENTS, horizon, 1, restored_shard.clock, persisted)


def test_catch_up_stride_doubles_while_timers_fire_back_to_back_and_resets_after_a_pause():
    from transforms.catch_up import CatchUpStride

    now = [100.0]
    stride = CatchUpStride(1_000, clock=lambda: now[0], wall_millis=lambda: 0)  # event times at the wall clock
    assert stride.next_timer(0, 5_000, 4_000) == 5_000  # nothing fired yet: the due time itself
    strides = []
    for _ in range(30):  # a catch-up: each timer fires right after the one before
        stride.fired(0, 0)
        strides.append(stride.next_timer(0, 0, 0))
        now[0] += 0.01
    assert strides[:4] == [0, 2_000, 4_000, 8_000] and strides[-1] == CatchUpStride.MAX_STRIDE_MILLIS
    assert stride.next_timer(0, 10**9, 0) == 10**9  # a due time beyond the stride stays as it is
    assert stride.next_timer(0, None, 0) is None
    now[0] += 5  # the watermark now moves with the clock
    stride.fired(0, 0)
    assert stride.next_timer(0, 7_000, 6_000) == 7_000
    assert stride.next_timer(1, 7_000, 6_000) == 7_000  # strides are per shard


def test_catch_up_stride_follows_the_distance_to_the_wall_clock_when_firings_are_days_behind_and_slow():
    """A loaded Prism takes seconds per timer round trip: days of backlog must not be crossed an hour
    (or a tick) at a time because no two firings came within half a second."""
    from transforms.catch_up import CatchUpStride

    day = 86_400_000
    now, wall = [0.0], 20 * day
    stride = CatchUpStride(1_000, clock=lambda: now[0], wall_millis=lambda: wall)
    fired_at = 0
    for _ in range(50):  # one firing every 3 s of wall time, each at the next timer
        stride.fired(0, fired_at)
        now[0] += 3.0
        next_at = stride.next_timer(0, fired_at + 1_000, fired_at)
        assert next_at - fired_at <= max(CatchUpStride.MAX_STRIDE_MILLIS, (wall - fired_at) // 16)
        fired_at = next_at
    assert wall - fired_at <= day  # 20 days down to one in 50 firings, at 1/16 of the distance per firing
    stride.fired(0, wall - 1_000)  # back at the wall clock after a pause: the tick again
    assert stride.next_timer(0, wall, wall - 1_000) == wall


def _matcher_after_a_payment():
    """A MatchLiveFn with fake state that has taken one payment (PENDING), and the settlement pairing it."""
    from transforms.columnar.live_flow import MatchLiveFn
    from transforms.flow import ReconcileConfig

    t0 = 1_796_000_000_000
    payment = _table([("r1", 0, "a", "EUR", 100, 0)]).set_column(8, "time", pa.array([t0]))
    settlement = _table([("r1", 1, "a", "EUR", 100, 0)]).set_column(8, "time", pa.array([t0 + 1000]))
    fn = MatchLiveFn(ReconcileConfig(), 1000, 8)
    fn.setup()
    state = dict(candidates=StateBag(), keys=StateBag(), meta=StateValue(), tick=StateTimer())
    assert [row["status"] for out in fn.process((0, payment), **state) for row in out.to_pylist()] == ["PENDING"]
    return fn, state, settlement


def _revisions(outputs):
    return [(row["status"], row["revision"]) for out in outputs for row in out.to_pylist()]


def test_a_failed_bundle_leaves_no_shard_in_the_cache_that_its_retry_would_trust():
    """A bundle that fails after the matcher changed its shard (a downstream DoFn raising while results are
    emitted) commits no state; its retry must judge the records again, not find them already seen."""
    fn, state, settlement = _matcher_after_a_payment()
    committed = dict(candidates=StateBag(state["candidates"].items), keys=StateBag(state["keys"].items),
                     meta=StateValue(state["meta"].value), tick=StateTimer())
    attempt = fn.process((0, settlement), **state)
    next(attempt)
    attempt.close()  # the bundle fails downstream: the runner discards its state writes
    assert _revisions(fn.process((0, settlement), **committed)) == [("MATCHED", 2)]


def test_state_written_with_another_shard_count_fails_with_one_line_naming_both():
    """Restoring a checkpoint with another --shards would send a key's records to a shard without its state
    (its open items judged again as new, its old ones expiring alone): the run stops and says what to do."""
    from transforms.columnar.live_flow import MatchLiveFn
    from transforms.columnar.live_shards import ShardCountChanged
    from transforms.flow import ReconcileConfig

    _, state, settlement = _matcher_after_a_payment()  # written by a run with 8 shards
    restored = MatchLiveFn(ReconcileConfig(), 1000, 1)
    restored.setup()
    with pytest.raises(ShardCountChanged, match=r"written with --shards 8 and this run has --shards 1: restart "
                                                r"with --shards 8"):
        list(restored.process((0, settlement), **state))
    same = MatchLiveFn(ReconcileConfig(), 1000, 8)
    same.setup()
    assert _revisions(same.process((0, settlement), **state)) == [("MATCHED", 2)]


def test_a_bundle_failing_while_it_saves_its_shard_leaves_nothing_its_retry_would_trust():
    class _RefusingBag(StateBag):
        def add(self, value):
            raise RuntimeError("the state backend refused the write")

    fn, state, settlement = _matcher_after_a_payment()
    failing = dict(state, candidates=_RefusingBag(state["candidates"].items))
    with pytest.raises(RuntimeError):
        list(fn.process((0, settlement), **failing))
    assert _revisions(fn.process((0, settlement), **state)) == [("MATCHED", 2)]
