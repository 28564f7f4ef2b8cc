"""ColumnarStreamReconcile: `transforms.flow.ReconcileRecords` for unbounded input, with Arrow tables as elements.

    raw chunks ─► ValidateChunks ─► (shard by record id) ─► FirstArrivals (state: kept ids) ─┐
                      │ dead letters                            │ conflicting copies          │
                      ▼                                         ▼                             │
                                            ┌───────────────────────────────────────────────┘
                                            ├─► candidates ─► (shard by key) ─► MatchLive (state: open items
                                            │       as columns; watermark timer) ─► result tables ─► records
                                            │                                           └─► attributions ─┐
                                            └─► partial sums per (merchant, currency, day) (+ breaks, ◄───┘
                                                  lines under their ledger's merchant) ─► SumDailyTotals

The state of both stateful steps lives in Beam state (bags of Arrow tables,
appended per bundle and rewritten when compaction is due), so checkpoints,
restarts and rescaling keep it; each DoFn instance also keeps the shard it
last worked on in memory, used only while the state's token says nothing
else has written the shard since (docs/DESIGN.md 9.5). Panes and alerts use
the same Beam windows and triggers as the per-element engine: they receive
sums of many records, stamped inside the window the records belong to.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam import pvalue
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import GlobalWindows, TimestampedValue, WindowFn

from schemas.arrow_coder import ArrowTableCoder
from schemas.record_tables import table_to_records, to_numpy
from schemas.records import PAYMENTS, SETTLEMENTS, UNATTRIBUTED, DeadLetter, ReconciliationResult, SettlementLine
from schemas.rules import BREAK_STATUSES, SUM_COLUMNS, UNDECIDED_STATUS
from transforms.alerts import AlertPolicy, AlertsFromWindowRates, at_window_end, sliding_windows, windows_at
from transforms.attribution import ATTRIBUTIONS, CountLinesUnderTheirMerchant
from transforms.columnar.daily_totals import ledger_partials, settlement_partials, window_starts
from transforms.columnar.flow import ValidateChunks, by_record_id, candidates_by_key
from transforms.columnar.live_matching import KEY_STATE, LIVE_CANDIDATES, LiveMatchShard, key_texts
from transforms.columnar.live_shards import (
    DEFAULT_TICK_MILLIS,
    LIVE_PREFIX,
    METRICS_NAMESPACE,
    FirstArrivalsFn,
    LiveShardFn,
    stored_clock_millis,
)
from transforms.columnar.matching import KIND_OF_RECORD_TYPE, ledger_candidates, settlement_candidates
from transforms.daily_totals import SumDailyTotals, settlement_contribution, withdrawn_contribution
from transforms.event_time import beam_timestamp_to_millis, millis_to_beam_timestamp
from transforms.flow import ReconcileConfig
from transforms.reconcile import DEFAULT_RETENTION, key_lifetime_millis
from transforms.revisions import merge_all, merge_revision
from transforms.validate import DEAD_LETTERS

NEEDS_ATTRIBUTION = "needs_attribution"
_ZERO_SUMS = (0,) * (len(SUM_COLUMNS) - 1)



class MatchLiveFn(LiveShardFn):
    CANDIDATES = BagStateSpec("candidates", ArrowTableCoder())
    KEYS = BagStateSpec("keys", ArrowTableCoder())
    META = ReadModifyWriteStateSpec("meta", LiveShardFn.META_CODER)
    TICK = TimerSpec("tick", TimeDomain.WATERMARK)

    def __init__(self, config: ReconcileConfig, tick_millis: int, shards: int):
        super().__init__(tick_millis, shards)
        self._policy = config.policy
        self._retention_millis = key_lifetime_millis(config.policy)

    def process(self, element, candidates=beam.DoFn.StateParam(CANDIDATES), keys=beam.DoFn.StateParam(KEYS),
                meta=beam.DoFn.StateParam(META), tick=beam.DoFn.TimerParam(TICK)):
        shard_number, table = element
        shard = self._shard(shard_number, candidates, keys, meta)
        outputs = list(self._outputs(shard, shard.add(table)))
        self._save(shard_number, shard, candidates, keys, meta, tick)
        yield from outputs

    @on_timer(TICK)
    def on_tick(self, key=beam.DoFn.KeyParam, fired_at=beam.DoFn.TimestampParam,
                candidates=beam.DoFn.StateParam(CANDIDATES), keys=beam.DoFn.StateParam(KEYS),
                meta=beam.DoFn.StateParam(META), tick=beam.DoFn.TimerParam(TICK)):
        shard = self._shard(key, candidates, keys, meta)
        fired_millis = beam_timestamp_to_millis(fired_at)
        outputs = list(self._outputs(shard, shard.fire(fired_millis)))
        self._keeper.stride.fired(key, fired_millis)
        self._save(key, shard, candidates, keys, meta, tick)
        yield from outputs

    def _outputs(self, shard: LiveMatchShard, results: pa.Table):
        if results.num_rows == 0:
            return
        Metrics.counter(METRICS_NAMESPACE, f"{LIVE_PREFIX}results.rows").inc(results.num_rows)
        for entry in pc.value_counts(results.column("status")).to_pylist():
            Metrics.counter(METRICS_NAMESPACE, f"{LIVE_PREFIX}results.{entry['values']}").inc(entry["counts"])
        for attribution in shard.attributions(results):
            yield pvalue.TaggedOutput(ATTRIBUTIONS, attribution)
        yield results

    def _shard(self, number: int, candidates, keys, meta) -> LiveMatchShard:
        stored = self._keeper.read_meta(meta)
        shard = self._keeper.cache.take(number, stored)
        if shard is None:
            if stored is None:
                shard = LiveMatchShard(self._policy, self._retention_millis, self._tick_millis)
            else:
                shard = LiveMatchShard.restore(self._policy, self._retention_millis, self._tick_millis,
                                               stored_clock_millis(stored[1]), stored[2], candidates.read(), keys.read())
        return shard

    def _save(self, number: int, shard: LiveMatchShard, candidates, keys, meta, tick) -> None:
        if shard.needs_compaction():
            shard.compact()
            live_candidates, key_states = shard.snapshot()
            candidates.clear()
            keys.clear()
            candidates.add(live_candidates)
            keys.add(key_states)
        else:
            added, changed = shard.take_changes()
            for table in added:
                candidates.add(table)
            if changed.num_rows:
                keys.add(changed)
        Metrics.gauge(METRICS_NAMESPACE, f"{LIVE_PREFIX}open_keys.{number}").set(len(shard.keys))
        self._keeper.commit(number, shard, meta, tick, shard.sequence)


# ---------------------------------------------------------------- sums for the windowed steps

def _partial_elements(partials: pa.Table, latest_of_group=None) -> Iterable[TimestampedValue]:
    """PARTIAL_TABLE rows -> ((merchant, currency), PartialSums) stamped at their settlement day's start."""
    sums = [[int(value) for value in partials.column(name).to_pylist()] for name in SUM_COLUMNS[:-1]]
    for index, (merchant, currency, start) in enumerate(zip(partials.column("merchant_id").to_pylist(),
                                                            partials.column("currency").to_pylist(),
                                                            partials.column("window_start").to_pylist())):
        yield TimestampedValue(((merchant, currency), (tuple(column[index] for column in sums), {})),
                               millis_to_beam_timestamp(start))


def _ledger_partials(shard_table, settlement_day):
    yield from _partial_elements(ledger_partials(shard_table[1], settlement_day))


def _settlement_partials(table: pa.Table, settlement_day):
    yield from _partial_elements(settlement_partials(table, settlement_day))


def _split_attribution(shard_table):
    """Unique settlement lines -> the table of lines counted under their own merchant, and (tagged) the rare
    UNATTRIBUTED matchable lines whose merchant the matcher supplies, as SettlementLine records."""
    table = shard_table[1]
    needs = pc.and_(pc.equal(table.column("merchant_id"), UNATTRIBUTED),
                    pc.is_in(table.column("record_type"), value_set=pa.array(sorted(KIND_OF_RECORD_TYPE))))
    if not pc.any(needs).as_py():
        yield table
        return
    own = table.filter(pc.invert(needs))
    if own.num_rows:
        yield own
    for row in table.filter(needs).to_pylist():
        line = SettlementLine(**{name: row.get(name) for name in SettlementLine._fields})
        yield pvalue.TaggedOutput(NEEDS_ATTRIBUTION, TimestampedValue(line, millis_to_beam_timestamp(line.booked_time)))


def _record_times(results: pa.Table) -> np.ndarray:
    return to_numpy(pc.coalesce(results.column("event_time"), results.column("booked_time")))


def _break_partials(results: pa.Table, settlement_day):
    """Result rows -> per (merchant, currency, settlement day of their record): {key: (revision, (breaks,))}."""
    starts = window_starts(_record_times(results), settlement_day).tolist()
    groups = zip(results.column("merchant_id").to_pylist(), results.column("currency").to_pylist(), starts)
    counts = ((is_break,) for is_break in _is_break(results))
    for (merchant, currency, start), latest in _latest_per_group(results, groups, counts).items():
        yield TimestampedValue(((merchant, currency), (_ZERO_SUMS, latest)), millis_to_beam_timestamp(start))


def _is_break(results: pa.Table):
    return to_numpy(pc.is_in(results.column("status"), value_set=pa.array(sorted(BREAK_STATUSES)))).astype(int).tolist()


def _latest_per_group(results: pa.Table, groups: Iterable[tuple], counts: Iterable[tuple]) -> Dict[tuple, dict]:
    """Result rows -> {group: {key: (revision, counts)}}, each row merged as the per-element CombineFns merge
    one (`transforms/revisions.py: merge_revision`)."""
    per_group: Dict[tuple, dict] = {}
    for group, key, revision, row_counts in zip(groups, key_texts(results), results.column("revision").to_pylist(),
                                                counts):
        merge_revision(per_group.setdefault(group, {}), key, revision, row_counts)
    return per_group


def _counted_letter(letter: DeadLetter) -> DeadLetter:
    Metrics.counter(METRICS_NAMESPACE, f"{LIVE_PREFIX}{letter.input}.dead_letters").inc()
    return letter


def _line_contribution(contribution_of):
    def keyed(line: SettlementLine):
        return (line.merchant_id, line.currency), contribution_of(line)
    return keyed


class AlertsOfResultTables(beam.PTransform):
    """Result tables -> BreakRateAlert with the per-element engine's sliding windows and trigger.

    The rows of a bundle's tables are summed into partial rates per processor and sliding window before
    they become elements (one per window and bundle, not per window and row). They are first grouped per
    stretch of gcd(window, period) of their record time: window starts and ends all fall on multiples of
    that stretch, so a stretch's rows share all their windows (a period's rows do not when the window is
    not a whole number of periods). Why per bundle: the alert panes are keyed per (processor, window)
    (`transforms/alerts.py: at_window_end`), and one element per stretch and table copied into its 12
    windows, or one per window and table with eight shards' tables per bundle, cost the Flink runner a
    third of its catch-up rate (DESIGN 9.5).
    """

    def __init__(self, policy: AlertPolicy):
        super().__init__()
        self._policy = policy

    def expand(self, result_tables):
        period = int(self._policy.period.total_seconds() * 1000)
        window = int(self._policy.window.total_seconds() * 1000)
        return (result_tables
                | "PartialRates" >> beam.ParDo(WindowRatesOfBundle(math.gcd(window, period),
                                                                   sliding_windows(self._policy)))
                | "Alerts" >> AlertsFromWindowRates(self._policy))


class WindowRatesOfBundle(beam.DoFn):
    """Result tables (global window) -> per processor and sliding window of their record time, the
    {key: (revision, (decided, breaks))} of every row of the bundle, keyed (processor, window start,
    window end) and stamped at the window's end (`at_window_end`), emitted when the bundle finishes."""

    def __init__(self, stretch_millis: int, windows: WindowFn):
        self._stretch_millis = stretch_millis
        self._windows = windows
        self._per_window: Dict[Tuple[str, int, int], dict] = {}

    def start_bundle(self) -> None:
        self._per_window = {}

    def process(self, results: pa.Table):
        starts = (_record_times(results) // self._stretch_millis * self._stretch_millis).tolist()
        decided = to_numpy(pc.not_equal(results.column("status"), UNDECIDED_STATUS)).astype(int).tolist()
        groups = zip(results.column("processor").to_pylist(), starts)
        per_stretch = _latest_per_group(results, groups, zip(decided, _is_break(results)))
        for (processor, start), latest in per_stretch.items():
            for window_start, window_end in windows_at(self._windows, start):
                window_key = (processor, window_start, window_end)
                if window_key in self._per_window:
                    merge_all(self._per_window[window_key], latest)
                else:
                    self._per_window[window_key] = dict(latest)
        return []

    def finish_bundle(self):
        per_window, self._per_window = self._per_window, {}
        for window_key, latest in per_window.items():
            stamped = at_window_end(window_key, latest)
            yield GlobalWindows.windowed_value(stamped.value, stamped.timestamp)


class ColumnarStreamReconcile(beam.PTransform):
    """{payments, settlements}: RawChunks of an unbounded stream -> {results (ReconciliationResult revisions),
    result_tables (the same as RESULT_TABLE tables), daily_totals (DailyTotal panes), dead_letters,
    settlement_tables ((shard, table) of unique settlement lines)}."""

    def __init__(self, config: ReconcileConfig, shards: int = 8, tick_millis: int = DEFAULT_TICK_MILLIS):
        super().__init__()
        if config.as_of.mode != "watermark":
            raise ValueError("the live columnar engine judges at the watermark; bounded input uses ColumnarReconcile")
        self._config = config
        self._shards = max(1, int(shards))
        self._tick_millis = max(1, int(tick_millis))

    def expand(self, chunks: Dict[str, beam.PCollection]) -> Dict[str, beam.PCollection]:
        config, shards, tick = self._config, self._shards, self._tick_millis
        horizon_millis = int(config.dedup_horizon.total_seconds() * 1000)
        unique, letters = {}, []
        for name in (PAYMENTS, SETTLEMENTS):
            validated = chunks[name] | f"ValidateChunks[{name}]" >> ValidateChunks()
            letters.append(validated[DEAD_LETTERS])
            arrivals = (
                validated["accepted"]
                | f"ShardById[{name}]" >> beam.FlatMap(by_record_id, name, shards)
                | f"GlobalWindow[{name}]" >> beam.WindowInto(GlobalWindows())
                | f"FirstArrivals[{name}]" >> beam.ParDo(FirstArrivalsFn(name, horizon_millis, tick, shards)).with_outputs(
                    DEAD_LETTERS, main="unique")
            )
            unique[name] = arrivals.unique
            letters.append(arrivals[DEAD_LETTERS])
        matched = (
            [unique[PAYMENTS] | "LedgerCandidates" >> beam.FlatMap(candidates_by_key, ledger_candidates, shards),
             unique[SETTLEMENTS] | "SettlementCandidates" >> beam.FlatMap(
                 candidates_by_key, settlement_candidates, shards)]
            | "AllCandidates" >> beam.Flatten()
            | "MatchLive" >> beam.ParDo(MatchLiveFn(config, tick, shards)).with_outputs(ATTRIBUTIONS, main="results")
        )
        result_tables = matched.results
        day = config.settlement_day
        lines = unique[SETTLEMENTS] | "NeedAttribution" >> beam.FlatMap(_split_attribution).with_outputs(
            NEEDS_ATTRIBUTION, main="own")
        lines[NEEDS_ATTRIBUTION].element_type = SettlementLine
        attributed = ((lines[NEEDS_ATTRIBUTION], matched[ATTRIBUTIONS])
                      | "CountLinesUnderTheirMerchant" >> CountLinesUnderTheirMerchant(retention=DEFAULT_RETENTION))
        daily_totals = (
            [unique[PAYMENTS] | "LedgerSums" >> beam.FlatMap(_ledger_partials, day),
             lines.own | "SettlementSums" >> beam.FlatMap(_settlement_partials, day),
             result_tables | "BreakSums" >> beam.FlatMap(_break_partials, day),
             attributed["counted"] | "AttributedSums" >> beam.Map(_line_contribution(settlement_contribution)),
             attributed["withdrawn"] | "WithdrawnSums" >> beam.Map(_line_contribution(withdrawn_contribution))]
            | "AllSums" >> beam.Flatten()
            | "DailyTotals" >> SumDailyTotals(day, config.trigger_policy)
        )
        dead_letters = (letters | "DeadLetters" >> beam.Flatten()
                        | "CountDeadLetters" >> beam.Map(_counted_letter).with_output_types(DeadLetter))
        return {
            "results": result_tables | "ResultRecords" >> beam.FlatMap(
                lambda table: table_to_records(table, ReconciliationResult)).with_output_types(ReconciliationResult),
            "result_tables": result_tables,
            "daily_totals": daily_totals,
            "dead_letters": dead_letters,
            "settlement_tables": unique[SETTLEMENTS],  # (shard, unique lines): the third leg's payouts
        }


__all__ = ["AlertsOfResultTables", "ColumnarStreamReconcile", "DEFAULT_TICK_MILLIS", "KEY_STATE", "LIVE_CANDIDATES",
           "LIVE_PREFIX", "METRICS_NAMESPACE"]
