"""ColumnarDecideAttemptStream: `transforms.risk.flow.DecideAttemptStream` on Arrow chunks (docs/DESIGN.md 10.13).

    attempt RawChunks ─► ValidateChunks (9.1) ─► DecideChunks (one stateful step, one shard: the first copy
      of an id within the dedup horizon (9.5; conflicting copies dead letters), then every kept attempt as
      columns, decided under the rules in force per chunk; watermark timers forget ids and expire rows)
      ─► decision tables ─► the sinks (encoded a table at a time) and running counts (metrics)

One shard: an attempt's keys (card, IP, merchant…) all meet in it, so a
chunk is decided at once and no decision waits for another step. The state
persists as the live reconciliation shards do (9.5): bags of the appended
Arrow tables, rewritten when rows expire, and a token that tells a cached
shard from a restored or retried one.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Dict, List, Optional

import apache_beam as beam
import pyarrow as pa
from apache_beam import pvalue
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import BoundedWindow, GlobalWindows, TimestampedValue
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from schemas.arrow_coder import ArrowTableCoder
from schemas.attempts import ATTEMPTS
from schemas.records import DeadLetter
from transforms.columnar.flow import ValidateChunks, by_record_id
from transforms.columnar.live_risk import LiveRiskShard
from transforms.columnar.live_shards import DEFAULT_TICK_MILLIS, FirstArrivalsStep, LiveShardFn
from transforms.columnar.risk_flow import decision_table_counts
from transforms.dedup import DEFAULT_HORIZON
from transforms.event_time import beam_timestamp_to_millis
from transforms.risk.flow import RunningRiskCounts
from transforms.risk.live import METRICS_NAMESPACE, REJECTED_RULES, reported_updates
from transforms.risk.rules import RuleSet
from transforms.risk.rules_in_force import DEFAULT_POLL_MILLIS, RulesSourceSpec, shared_rules_in_force
from transforms.validate import DEAD_LETTERS
from transforms.worker_process import in_worker_process

_SHARDS = 1
DECISION_TABLES = "decision_tables"


@dataclass
class _WaitingChunks:
    """The chunks of one shard a bundle has handed over so far, decided together when it ends (or before a timer
    of the shard fires), with the shard's state and timer handles as `process` got them."""

    tables: List[pa.Table]
    timestamp: Timestamp  # the earliest chunk's: the decisions' timestamp, as one chunk's were its own
    window: BoundedWindow
    state: Dict[str, object]


class DecideChunksFn(LiveShardFn):
    """(shard, validated attempts) -> decision tables: the first arrivals kept (a shard of their ids, as
    FirstArrivalsFn keeps them) and decided in the same step, so a chunk crosses one keyed exchange, not two
    (each one a bundle's wait on Flink, docs/DESIGN.md 10.13).

    The chunks of one bundle are decided as one table when it ends: deciding a table has a fixed cost whatever
    its size (per key and rule a few dozen Arrow and numpy calls: 10-18 ms with ten rules), so a step that
    falls behind gets its backlog in bigger bundles and catches up instead of paying that cost per chunk. The state is
    written in `finish_bundle` through the handles `process` got: Beam's Python SDK (the harness every runner
    starts, and the DirectRunner) commits a stateful DoFn's state and timers after its `finish_bundle`
    (tests/test_live_risk_flow.py checks it against a restore); a timer of the shard that fires within the
    bundle decides the waiting chunks first."""

    ARRIVED = BagStateSpec("arrived", ArrowTableCoder())
    ARRIVED_META = ReadModifyWriteStateSpec("arrived_meta", LiveShardFn.META_CODER)
    FORGET = TimerSpec("forget", TimeDomain.WATERMARK)
    KEPT = BagStateSpec("kept", ArrowTableCoder())
    META = ReadModifyWriteStateSpec("meta", LiveShardFn.META_CODER)
    EXPIRE = TimerSpec("expire", TimeDomain.WATERMARK)

    def __init__(self, rule_set: RuleSet, rules_source: Optional[RulesSourceSpec], poll_millis: int,
                 tick_millis: int, horizon_millis: int):
        super().__init__(tick_millis, _SHARDS)
        self._launch_rules, self._source, self._poll_millis = rule_set, rules_source, poll_millis
        self._arrivals = FirstArrivalsStep(ATTEMPTS, horizon_millis, tick_millis, _SHARDS)

    def setup(self):
        super().setup()
        self._arrivals.setup()
        self._rules = shared_rules_in_force(self._launch_rules, self._source, self._poll_millis)

    def start_bundle(self):
        self._waiting: Dict[int, _WaitingChunks] = {}

    def process(self, element, timestamp=beam.DoFn.TimestampParam, window=beam.DoFn.WindowParam,
                arrived=beam.DoFn.StateParam(ARRIVED), arrived_meta=beam.DoFn.StateParam(ARRIVED_META),
                forget=beam.DoFn.TimerParam(FORGET), kept=beam.DoFn.StateParam(KEPT),
                meta=beam.DoFn.StateParam(META), expire=beam.DoFn.TimerParam(EXPIRE)):
        shard_number, table = element
        state = dict(arrived=arrived, arrived_meta=arrived_meta, forget=forget, kept=kept, meta=meta, expire=expire)
        waiting = self._waiting.get(shard_number)
        if waiting is None:
            self._waiting[shard_number] = _WaitingChunks([table], timestamp, window, state)
        else:
            waiting.tables.append(table)
            waiting.timestamp = min(waiting.timestamp, timestamp)
        return []

    def finish_bundle(self):
        waiting, self._waiting = self._waiting, {}
        for shard_number, chunks in waiting.items():
            # Outside `process`, an output names its own window and timestamp.
            yield from _each_value(self._decide(shard_number, chunks),
                                   partial(WindowedValue, timestamp=chunks.timestamp, windows=(chunks.window,)))

    def _decided_before_timer(self, shard_number: int):
        """What a timer of the shard must not overtake: the bundle's waiting chunks, decided now."""
        chunks = self._waiting.pop(shard_number, None)
        if chunks is not None:
            yield from _each_value(self._decide(shard_number, chunks),
                                   partial(TimestampedValue, timestamp=chunks.timestamp))

    def _decide(self, shard_number: int, chunks: _WaitingChunks):
        """The waiting chunks as one table: the first arrival of each id (in arrival order), decided in event-time
        order under the rules in force now; the state saved before anything leaves."""
        state = chunks.state
        table = chunks.tables[0] if len(chunks.tables) == 1 else pa.concat_tables(chunks.tables)
        unique, letters = self._arrivals.arrive(shard_number, table, state["arrived"], state["arrived_meta"],
                                                state["forget"])
        for letter in letters:
            yield pvalue.TaggedOutput(DEAD_LETTERS, letter)
        rule_set = self._rules.current()
        for letter in reported_updates(self._rules):
            yield pvalue.TaggedOutput(REJECTED_RULES, letter)
        if unique.num_rows == 0:
            return
        shard = self._shard(shard_number, state["kept"], state["meta"], rule_set.retention_millis)
        decisions = shard.decide(in_event_time_order(unique), rule_set)
        self._save(shard_number, shard, state["kept"], state["meta"], state["expire"], rewrite=False)
        if decisions.num_rows:
            yield decisions

    @on_timer(FORGET)
    def on_forget(self, key=beam.DoFn.KeyParam, fired_at=beam.DoFn.TimestampParam,
                  arrived=beam.DoFn.StateParam(ARRIVED), arrived_meta=beam.DoFn.StateParam(ARRIVED_META),
                  forget=beam.DoFn.TimerParam(FORGET)):
        yield from self._decided_before_timer(key)
        self._arrivals.forget(key, fired_at, arrived, arrived_meta, forget)

    @on_timer(EXPIRE)
    def on_expire(self, key=beam.DoFn.KeyParam, fired_at=beam.DoFn.TimestampParam,
                  kept=beam.DoFn.StateParam(KEPT), meta=beam.DoFn.StateParam(META),
                  expire=beam.DoFn.TimerParam(EXPIRE)):
        yield from self._decided_before_timer(key)
        retention_millis = self._rules.current().retention_millis
        shard = self._shard(key, kept, meta, retention_millis)
        shard.retention_millis = retention_millis  # a cached shard's: the rules may have changed since
        fired_millis = beam_timestamp_to_millis(fired_at)
        gone = shard.expire(fired_millis)
        self._keeper.stride.fired(key, fired_millis)
        self._save(key, shard, kept, meta, expire, rewrite=gone > 0)

    def _shard(self, number: int, kept, meta, retention_millis: int) -> LiveRiskShard:
        return self._keeper.cached_or_restored(number, kept, meta, lambda clock, tables: LiveRiskShard.restore(
            clock, tables, retention_millis, self._tick_millis))

    def _save(self, number: int, shard: LiveRiskShard, kept, meta, expire, rewrite: bool) -> None:
        if rewrite:
            kept.clear()
            kept.add(shard.snapshot())
        else:
            for table in shard.take_changes():
                kept.add(table)
        Metrics.gauge(METRICS_NAMESPACE, "risk.kept_attempts").set(shard.rows)
        self._keeper.commit(number, shard, meta, expire, 0)


def _each_value(outputs, stamp):
    """`outputs` (values and TaggedOutputs) with `stamp` applied to each value, its tag kept."""
    for output in outputs:
        yield (pvalue.TaggedOutput(output.tag, stamp(output.value)) if isinstance(output, pvalue.TaggedOutput)
               else stamp(output))


def in_event_time_order(attempts: pa.Table) -> pa.Table:
    """The attempts a bundle hands over together, by (event_time, attempt_id): each is decided on every earlier
    one of its keys the step has by then, as the backtest decides. In arrival order, chunks read from
    several partitions interleave in time, and the shard would cut the table before nearly every attempt
    (`segment_ends`) to keep a later-arriving attempt out of an earlier one's windows."""
    return attempts.sort_by([("event_time", "ascending"), ("attempt_id", "ascending")])


class _CountDecisionTablesFn(beam.DoFn):
    """The per-element stream's running metrics (`RunningRiskCounts`), from each decisions table at once."""

    def setup(self):
        self._counts = RunningRiskCounts()

    def process(self, table: pa.Table):
        self._counts.add(decision_table_counts(table))
        return []


class ColumnarDecideAttemptStream(beam.PTransform):
    """Attempt RawChunks (unbounded) -> {decision_tables (RISK_DECISION tables: one row per attempt, as its
    chunk arrives; `decisions_of` turns one into RiskDecision records), dead_letters (validation,
    conflicting copies, refused rules updates)}."""

    def __init__(self, rule_set: RuleSet, rules_source: Optional[RulesSourceSpec] = None,
                 poll_millis: int = DEFAULT_POLL_MILLIS, tick_millis: int = DEFAULT_TICK_MILLIS,
                 horizon: timedelta = DEFAULT_HORIZON, deciding_process: Optional[str] = None):
        super().__init__()
        self._rules = (rule_set, rules_source, poll_millis)
        self._tick_millis = max(1, int(tick_millis))
        self._horizon_millis = int(horizon.total_seconds() * 1000)
        self._deciding_process = deciding_process  # a worker process of its own (transforms/worker_process.py)

    def expand(self, chunks: beam.PCollection) -> Dict[str, beam.PCollection]:
        validated = chunks | "ValidateChunks" >> ValidateChunks()
        decided = (validated["accepted"]
                   | "OneShard" >> beam.FlatMap(by_record_id, ATTEMPTS, _SHARDS, whole=True)
                   | "GlobalWindow" >> beam.WindowInto(GlobalWindows())
                   | "DecideChunks" >> in_worker_process(
                       beam.ParDo(DecideChunksFn(*self._rules, self._tick_millis, self._horizon_millis))
                       .with_outputs(DEAD_LETTERS, REJECTED_RULES, main=DECISION_TABLES), self._deciding_process))
        tables = decided[DECISION_TABLES]
        _ = tables | "CountDecisions" >> in_worker_process(beam.ParDo(_CountDecisionTablesFn()),
                                                              self._deciding_process)
        decided[REJECTED_RULES].element_type = DeadLetter
        return {
            DECISION_TABLES: tables,
            DEAD_LETTERS: ((validated[DEAD_LETTERS], decided[DEAD_LETTERS], decided[REJECTED_RULES])
                           | "DeadLetters" >> beam.Flatten()),
        }
