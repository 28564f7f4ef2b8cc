"""What the live columnar engine's stateful DoFns share (docs/DESIGN.md 9.5): shards kept in Beam state and
cached in the worker process, and the first-arrivals step over such a shard.

A shard is written to Beam state (bags of Arrow tables, appended per bundle,
rewritten when compaction is due) with a fresh random token; the process also
keeps the shard it committed in memory, used only while the state's token is
still that one: a restored, retried or rescaled run finds another token (or
none) and rebuilds the shard from the state.
"""
from __future__ import annotations

import random
import threading
import uuid
from typing import Callable, Dict, List, Optional, Tuple

import apache_beam as beam
import pyarrow as pa
from apache_beam import pvalue
from apache_beam.coders import TupleCoder, VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer

from schemas.arrow_coder import ArrowTableCoder
from schemas.records import DeadLetter
from schemas.timestamps import EARLIEST_MILLIS
from transforms.catch_up import CatchUpStride
from transforms.columnar.dedup import delivered_schema
from transforms.columnar.live_dedup import LiveFirstArrivals
from transforms.columnar.shards import plain
from transforms.event_time import beam_timestamp_to_millis, millis_to_beam_timestamp
from transforms.state_cache import use_fast_state_cache_sizing
from transforms.validate import DEAD_LETTERS

DEFAULT_TICK_MILLIS = 1_000
# Beam metrics of a running stream (namespace "paybeam"; DESIGN 9.5): live.<input>.unique,
# live.<input>.dead_letters, live.results.rows, live.results.<STATUS>, live.open_keys.<shard>.
METRICS_NAMESPACE = "paybeam"
LIVE_PREFIX = "live."
META_CODER = TupleCoder([VarIntCoder()] * 4)  # (token, clock, sequence, shard count)
# Beam state holds unsigned varints; a clock before 1970 is stored shifted.
_CLOCK_SHIFT = 1 << 50


def _new_token() -> int:
    return random.getrandbits(62)


def _stored_clock(clock: int) -> int:
    return clock + _CLOCK_SHIFT


def stored_clock_millis(stored: Optional[int]) -> int:
    """A shard's clock as its meta state holds it (EARLIEST_MILLIS when nothing was stored)."""
    return EARLIEST_MILLIS if stored is None else stored - _CLOCK_SHIFT


class _ShardCache:
    """The shards this worker process worked on, each valid while the state's token is the one written with it.

    Process-wide (a runner may run a stage's bundles on several DoFn instances in turn), keyed by the
    owner's id and the shard; a runner never processes one key in two bundles at once.
    """

    _SHARDS: Dict[Tuple[str, int], Tuple[int, object]] = {}
    _LOCK = threading.Lock()

    def __init__(self, owner: str):
        self._owner = owner

    def take(self, shard: int, meta: Optional[tuple]):
        """The cached shard, removed from the cache while it is worked on: if the bundle fails before
        `put`, a retry (or a restore) finds no entry and rebuilds the shard from the state."""
        with self._LOCK:
            cached = self._SHARDS.pop((self._owner, shard), None)
        if cached is not None and meta is not None and cached[0] == meta[0]:
            return cached[1]
        return None

    def put(self, shard: int, token: int, value) -> None:
        with self._LOCK:
            self._SHARDS[(self._owner, shard)] = (token, value)


class ShardCountChanged(ValueError):
    """State written with one shard count, read by a run with another: keys would meet the wrong state."""


class ShardKeeper:
    """One kind of shard a stateful DoFn keeps: its process-wide cache, the catch-up stride of its timer, and
    committing a shard (a fresh token in state, the shard back in the cache, its timer). Made in the
    DoFn's `setup`; `owner` is fixed when the DoFn is built, so every instance of it shares the cache."""

    def __init__(self, owner: str, tick_millis: int, shards: int):
        self.cache = _ShardCache(owner)
        self.stride = CatchUpStride(tick_millis)
        self._shards = shards

    def commit(self, number: int, shard, meta, timer, sequence: int) -> None:
        token = _new_token()
        meta.write((token, _stored_clock(shard.clock), sequence, self._shards))
        self.cache.put(number, token, shard)
        due = self.stride.next_timer(number, shard.next_timer(), shard.clock)
        if due is not None:
            timer.set(millis_to_beam_timestamp(due))

    def cached_or_restored(self, number: int, kept, meta, restore: Callable[[int, List[pa.Table]], object]):
        """The shard this process committed last, while the state's token is still its own; otherwise
        `restore(clock, tables)` rebuilds it from the one bag `kept` (empty when nothing was written)."""
        stored = self.read_meta(meta)
        shard = self.cache.take(number, stored)
        if shard is None:
            shard = restore(stored_clock_millis(stored[1] if stored is not None else None),
                            list(kept.read()) if stored is not None else [])
        return shard

    def read_meta(self, meta) -> Optional[tuple]:
        """The shard's stored (token, clock, sequence, shards); a run restored from a checkpoint or savepoint
        with another --shards fails here: records of a key would go to a shard that does not hold its state."""
        stored = meta.read()
        if stored is not None and stored[3] != self._shards:
            raise ShardCountChanged(
                f"the stream's state was written with --shards {stored[3]} and this run has --shards "
                f"{self._shards}: restart with --shards {stored[3]} (or start without the checkpoint)")
        return stored


class LiveShardFn(beam.DoFn):
    """A live stateful DoFn over one kind of shard: its ShardKeeper, made in setup, as `_keeper`."""

    META_CODER = META_CODER

    def __init__(self, tick_millis: int, shards: int):
        self._tick_millis = tick_millis
        self._shards = shards
        self._owner = uuid.uuid4().hex

    def setup(self):
        use_fast_state_cache_sizing()  # about a millisecond per state read otherwise (transforms/state_cache.py)
        self._keeper = ShardKeeper(self._owner, self._tick_millis, self._shards)


class FirstArrivalsStep:
    """The first copy of each record id within the dedup horizon, over a shard of kept ids in the state handles
    it is given (a bag, a meta value, a watermark timer): the step of FirstArrivalsFn, and the first half of
    a DoFn that also does what comes next in the same shard (transforms/columnar/live_risk_flow.py)."""

    def __init__(self, input_name: str, horizon_millis: int, tick_millis: int, shards: int):
        self._input_name, self._horizon_millis, self._tick_millis = input_name, horizon_millis, tick_millis
        self._shards = shards
        self._owner = uuid.uuid4().hex

    def setup(self) -> None:
        self._keeper = ShardKeeper(self._owner, self._tick_millis, self._shards)
        self._unique = Metrics.counter(METRICS_NAMESPACE, f"{LIVE_PREFIX}{self._input_name}.unique")

    def arrive(self, number: int, table: pa.Table, kept, meta, forget) -> Tuple[pa.Table, List[DeadLetter]]:
        """(the rows arriving first, saved in the shard; dead letters for copies that conflict)."""
        shard = self._shard(number, kept, meta)
        unique, letters = shard.arrive(plain([table], delivered_schema(self._input_name)))
        self._save(number, shard, kept, meta, forget)
        self._unique.inc(unique.num_rows)
        return unique, [letter for letter, _ in letters]

    def forget(self, number: int, fired_at, kept, meta, forget) -> None:
        """The timer: ids older than the horizon leave the shard."""
        shard = self._shard(number, kept, meta)
        fired_millis = beam_timestamp_to_millis(fired_at)
        shard.fire(fired_millis)
        self._keeper.stride.fired(number, fired_millis)
        self._save(number, shard, kept, meta, forget)

    def _shard(self, number: int, kept, meta) -> LiveFirstArrivals:
        return self._keeper.cached_or_restored(number, kept, meta, lambda clock, tables: LiveFirstArrivals.restore(
            self._input_name, self._horizon_millis, self._tick_millis, clock, tables))

    def _save(self, number: int, shard: LiveFirstArrivals, kept, meta, forget) -> None:
        if shard.needs_compaction():
            shard.compact()
            kept.clear()
            kept.add(shard.snapshot())
        else:
            for table in shard.take_changes():
                kept.add(table)
        self._keeper.commit(number, shard, meta, forget, 0)


class FirstArrivalsFn(beam.DoFn):
    """(shard, table) -> (shard, the rows arriving first); conflicting copies as DEAD_LETTERS."""

    KEPT = BagStateSpec("kept", ArrowTableCoder())
    META = ReadModifyWriteStateSpec("meta", META_CODER)
    FORGET = TimerSpec("forget", TimeDomain.WATERMARK)

    def __init__(self, input_name: str, horizon_millis: int, tick_millis: int, shards: int):
        self._arrivals = FirstArrivalsStep(input_name, horizon_millis, tick_millis, shards)

    def setup(self):
        use_fast_state_cache_sizing()
        self._arrivals.setup()

    def process(self, element, kept=beam.DoFn.StateParam(KEPT), meta=beam.DoFn.StateParam(META),
                forget=beam.DoFn.TimerParam(FORGET)):
        shard_number, table = element
        unique, letters = self._arrivals.arrive(shard_number, table, kept, meta, forget)
        for letter in letters:
            yield pvalue.TaggedOutput(DEAD_LETTERS, letter)
        if unique.num_rows:
            yield shard_number, unique

    @on_timer(FORGET)
    def on_forget(self, key=beam.DoFn.KeyParam, fired_at=beam.DoFn.TimestampParam,
                  kept=beam.DoFn.StateParam(KEPT), meta=beam.DoFn.StateParam(META),
                  forget=beam.DoFn.TimerParam(FORGET)):
        self._arrivals.forget(key, fired_at, kept, meta, forget)
        return []
