"""The live risk shard: attempts decided a chunk at a time on Arrow columns (docs/DESIGN.md 10.13).

The columnar twin of the per-element stream (`transforms/risk/live.py`,
whose `KeyHistory` is the reference): an attempt is decided the moment its
chunk arrives, on the attempts of its keys that arrived before it and
precede it in (event_time, attempt_id), within each rule's window and
within what its key's history still keeps (event_time > the key's newest
earlier arrival - the key's longest window). A chunk is decided by
`decide_table`'s machinery, not attempt by attempt:

    chunk (arrival order) ─► drop ids already kept ─► segments: cut before an attempt that precedes an
      earlier one of the chunk with a key in common (arrival and decision order then agree within each)
      ─► per segment and key spec: kept rows of the segment's key values (64-bit hashes, then exact groups)
         and time range + the chunk's earlier rows + the segment ─► evaluate_rule, `visible_after` each
         key's newest earlier arrival - its retention ─► the segment's rows' outcomes ─► decision_table

Kept rows leave when the watermark passes their event time + the rule set's
longest window (`expire`): only an attempt behind the watermark (late data)
could still have seen them, or be a re-delivery of theirs. Pure Python + Arrow, no Beam:
`transforms/columnar/live_risk_flow.py` keeps one in a stateful DoFn.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas import arrow
from schemas.record_tables import ATTEMPT_TABLE, to_numpy
from schemas.timestamps import EARLIEST_MILLIS
from transforms.columnar.live_index import NO_TIME, SpecIndex, SpecLookup, in_sorted
from transforms.columnar.live_rows import LiveRows
from transforms.columnar.risk import (
    AttemptColumns,
    EarlierSums,
    RuleOutcome,
    columns_read,
    decision_table,
    evaluate_rule,
    key_groups,
    rule_columns,
)
from transforms.columnar.shards import stable_hash
from transforms.risk.rules import KEY_FIELDS, Rule, RuleSet

_HASHED = (*KEY_FIELDS, "currency", "attempt_id")
_PRIME = np.uint64(0x100000001B3)
INDEX_AFTER_ROWS = 2_048  # kept rows read unindexed before they are indexed (live_index.py)


class _Growing:
    """A numpy column appended to in place (capacity doubles), so a chunk's append does not copy the shard."""

    def __init__(self, dtype):
        self._data = np.zeros(1024, dtype=dtype)
        self.size = 0

    def append(self, values: np.ndarray) -> None:
        needed = self.size + len(values)
        if needed > len(self._data):
            grown = np.zeros(max(needed, 2 * len(self._data)), dtype=self._data.dtype)
            grown[:self.size] = self._data[:self.size]
            self._data = grown
        self._data[self.size:needed] = values
        self.size = needed

    @property
    def values(self) -> np.ndarray:
        return self._data[:self.size]

    def keep(self, rows: np.ndarray) -> None:
        kept = self.values[rows]
        self.size = 0
        self.append(kept)


def _spec_hash(hashes: Dict[str, np.ndarray], spec: Sequence[str]) -> np.ndarray:
    """One 64-bit value per row for a key spec's fields together (equal values, equal hashes)."""
    combined = np.zeros(len(hashes[spec[0]]), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for name in spec:
            combined = (combined ^ hashes[name]) * _PRIME
    return combined


def _row_hashes(table: pa.Table) -> Dict[str, np.ndarray]:
    return {name: stable_hash([table.column(name)]) for name in _HASHED}


def _empty_decisions() -> pa.Table:
    return arrow.RISK_DECISION.empty_table()


class LiveRiskShard:
    """Every kept attempt of the stream (one shard: an attempt's keys all meet here) as columns."""

    def __init__(self, tick_millis: int = 1_000, index_after_rows: int = INDEX_AFTER_ROWS):
        self.tick_millis = max(1, int(tick_millis))
        self.index_after_rows = index_after_rows
        self._forget_indexes(None)
        self.retention_millis = 0  # the latest rule set's longest window: how long rows stay (expire)
        self.kept = LiveRows(ATTEMPT_TABLE)
        self._time = _Growing(np.int64)
        self._hashes = {name: _Growing(np.uint64) for name in _HASHED}
        self.clock = EARLIEST_MILLIS  # the latest watermark seen (expire)
        self._new: List[pa.Table] = []

    # ------------------------------------------------------------------ deciding

    def decide(self, chunk: pa.Table, rule_set: RuleSet) -> pa.Table:
        """Attempts in arrival order (AUTHORIZATION attempt columns) -> one RISK_DECISION row per attempt not
        seen before (an id already kept, or earlier in the chunk, is decided once: nothing for it)."""
        self.retention_millis = rule_set.retention_millis
        chunk = chunk.select(ATTEMPT_TABLE.names).cast(ATTEMPT_TABLE)
        hashes = _row_hashes(chunk)
        first = self._first_arrivals(chunk, hashes["attempt_id"])
        fresh = chunk if first.all() else chunk.filter(pa.array(first))
        if fresh.num_rows == 0:
            return _empty_decisions()
        if not first.all():
            hashes = {name: values[first] for name, values in hashes.items()}
        times = to_numpy(fresh.column("event_time")).astype(np.int64)
        self._index_kept_rows(rule_set)
        decided, start = [], 0
        for end in segment_ends(fresh, rule_set):
            decided.append(self._decide_segment(fresh, hashes, times, start, end, rule_set))
            start = end
        self._append(fresh, hashes, times)
        return pa.concat_tables(decided)

    def _first_arrivals(self, chunk: pa.Table, id_hashes: np.ndarray) -> np.ndarray:
        """Per row: not an id the shard keeps, nor a later copy of one earlier in the chunk."""
        ids = chunk.column("attempt_id")
        first = np.zeros(chunk.num_rows, dtype=bool)
        first[np.unique(to_numpy(pc.index_in(ids, value_set=pc.unique(ids))), return_index=True)[1]] = True
        kept_ids = self._hashes["attempt_id"].values
        if len(kept_ids):
            known = in_sorted(self._indexed_ids, id_hashes)
            known |= to_numpy(pc.is_in(pa.array(id_hashes), value_set=pa.array(kept_ids[self._indexed:])))
            maybe = np.flatnonzero(first & known)
            if len(maybe):  # a hash in common: compare the ids themselves
                held = self.kept.take(np.flatnonzero(np.isin(kept_ids, id_hashes[maybe])), ["attempt_id"])
                first[maybe[to_numpy(pc.is_in(ids.take(pa.array(maybe)), value_set=held.column(0)))]] = False
        return first

    def _decide_segment(self, fresh: pa.Table, hashes: Dict[str, np.ndarray], times: np.ndarray, start: int,
                        end: int, rule_set: RuleSet) -> pa.Table:
        targets = fresh.slice(start, end - start)
        target_hashes = {name: values[start:end] for name, values in hashes.items()}
        target_times = times[start:end]
        earliest = int(target_times.min())
        earlier_hashes = {name: values[:start] for name, values in hashes.items()}

        def evaluate(spec: Tuple[str, ...], rules: Sequence[Rule], where: Optional[SpecLookup],
                     summed: bool, read: List[str]) -> Iterable[RuleOutcome]:
            """`rules` on the segment, the chunk's earlier rows and the kept rows of its keys: the unindexed ones
            with `where` (all without), + the indexed ones as running sums (`summed`) or as rows; `read`: the
            columns the spec's rules read."""
            fresh_read, targets_read = fresh.select(read), targets.select(read)
            retention = rule_set.longest_window_millis(spec)
            wanted = pa.array(_spec_hash(target_hashes, spec))
            after = earliest - max(rule.longest_window_millis for rule in rules)  # older rows are in no window
            first_row = 0 if where is None else self._indexed
            kept_hashes = {name: column.values[first_row:] for name, column in self._hashes.items()}
            kept_rows = first_row + self._rows_of(self._time.values[first_row:], kept_hashes, spec, wanted, after)
            if where is not None and not summed:
                kept_rows = np.concatenate([where.indexed_rows(after), kept_rows])
            earlier_rows = self._rows_of(times[:start], earlier_hashes, spec, wanted, after)
            context = pa.concat_tables([self.kept.take(kept_rows, read),
                                        fresh_read.take(pa.array(earlier_rows, pa.int64())),
                                        targets_read]).combine_chunks()
            columns = AttemptColumns(context)
            first_target = len(kept_rows) + len(earlier_rows)
            visible_after = _visible_after(columns, spec, first_target, retention,
                                           None if where is None else where.newest)
            positions = np.arange(first_target, context.num_rows)
            for rule in rules:
                outside = _placed(where.sums(rule, visible_after[first_target:]), first_target,
                                  context.num_rows) if summed else None
                yield evaluate_rule(columns, rule, visible_after, outside).take(positions)

        outcomes: List[RuleOutcome] = []
        for spec in rule_set.key_specs:
            index = self._indexes.get(spec)
            rules = rule_set.rules_for(spec)
            # Only the columns these rules read: a take copies every column it is given, strings above all.
            read = rule_columns(rules)
            where = None
            if index is not None and self._indexed:
                where = index.lookup(lambda fields: _spec_hash(target_hashes, fields), target_times,
                                     targets.select(read), self.kept.take)
            summed = [rule for rule in rules if where is not None and rule in index.rules]
            read_rows = [rule for rule in rules if rule not in summed]
            if summed:
                outcomes.extend(evaluate(spec, summed, where, True, read))
            if read_rows:
                outcomes.extend(evaluate(spec, read_rows, where, False, read))
        return decision_table(targets, rule_set, outcomes)

    def _forget_indexes(self, rule_set: Optional[RuleSet]) -> None:
        """Empty indexes for `rule_set` (None: for none yet); kept rows are indexed again as they are read."""
        self._indexes: Dict[Tuple[str, ...], SpecIndex] = {} if rule_set is None else {
            spec: SpecIndex(spec, rule_set.rules_for(spec)) for spec in rule_set.key_specs}
        self._indexed_for = rule_set
        self._indexed = 0  # kept rows [0, _indexed) are in the indexes
        self._indexed_ids = np.zeros(0, dtype=np.uint64)  # their attempt id hashes, sorted

    def _index_kept_rows(self, rule_set: RuleSet) -> None:
        """Indexes the kept rows not indexed yet once there are `index_after_rows` of them (and a 32nd of the
        indexed ones: merging costs the index's size); a new rule set starts new indexes."""
        if self._indexed_for != rule_set:
            self._forget_indexes(rule_set)
        waiting = self.rows - self._indexed
        if not waiting or waiting < max(self.index_after_rows, self._indexed // 32):
            return
        rows = np.arange(self._indexed, self.rows)
        table = self.kept.take(rows, columns_read(rule_set))
        hashes = {name: column.values[self._indexed:] for name, column in self._hashes.items()}
        for index in self._indexes.values():
            index.add(rows, lambda fields: _spec_hash(hashes, fields), table, self.kept.take)
        ids = np.sort(hashes["attempt_id"])
        self._indexed_ids = np.insert(self._indexed_ids, np.searchsorted(self._indexed_ids, ids), ids)
        self._indexed = self.rows

    @staticmethod
    def _rows_of(times: np.ndarray, hashes: Dict[str, np.ndarray], spec: Sequence[str], wanted: pa.Array,
                 after: int) -> np.ndarray:
        """Rows newer than `after` whose key value hashes like one of the segment's (a superset of its keys'
        rows: the exact groups are formed afterwards)."""
        recent = np.flatnonzero(times > after)
        if not len(recent):
            return recent
        candidates = _spec_hash({name: hashes[name][recent] for name in spec}, spec)
        return recent[to_numpy(pc.is_in(pa.array(candidates), value_set=wanted))]

    def _append(self, fresh: pa.Table, hashes: Dict[str, np.ndarray], times: np.ndarray) -> None:
        self.kept.append(fresh)
        self._new.append(fresh)
        self._time.append(times)
        for name, values in hashes.items():
            self._hashes[name].append(values)

    # ------------------------------------------------------------------ state

    def expire(self, watermark_millis: int) -> int:
        """The watermark reached `watermark_millis`: rows before it - `retention_millis` (the rule set's
        longest window) leave; only an attempt behind the watermark could have seen them, or be their
        re-delivery. Returns how many left."""
        self.clock = max(self.clock, watermark_millis)
        times = self._time.values
        live = np.flatnonzero(times >= self.clock - self.retention_millis)
        gone = len(times) - len(live)
        if gone:
            self.kept.compact(live)
            self._time.keep(live)
            for column in self._hashes.values():
                column.keep(live)
            for index in self._indexes.values():  # renumbered as the rows, no sort again
                index.keep(live)
            self._indexed = int(np.searchsorted(live, self._indexed))  # the unindexed rows stay the last ones
            self._indexed_ids = np.sort(self._hashes["attempt_id"].values[:self._indexed])
        return gone

    def next_expiry(self) -> Optional[int]:
        """When the oldest kept row may leave (its event time + retention), None when nothing is kept."""
        times = self._time.values
        return int(times.min()) + self.retention_millis if len(times) else None

    def next_timer(self) -> Optional[int]:
        """When to expire next: after the oldest row's expiry, rounded up to a step of the tick or an eighth
        of the retention, whichever is longer (rows may stay up to a step longer; timers stay few)."""
        expiry = self.next_expiry()
        if expiry is None:
            return None
        step = max(self.tick_millis, self.retention_millis // 8)
        return (expiry // step + 1) * step

    @property
    def rows(self) -> int:
        return self._time.size

    def take_changes(self) -> List[pa.Table]:
        new, self._new = self._new, []
        return new

    def snapshot(self) -> pa.Table:
        self._new = []
        return self.kept.all().combine_chunks()

    @classmethod
    def restore(cls, clock: int, tables: Iterable[pa.Table], retention_millis: int,
                tick_millis: int = 1_000, index_after_rows: int = INDEX_AFTER_ROWS) -> "LiveRiskShard":
        """As persisted: the kept attempts (any order: every one of them arrived before what comes next),
        kept for `retention_millis` (the rules in force)."""
        shard = cls(tick_millis, index_after_rows)
        shard.clock, shard.retention_millis = clock, retention_millis
        kept = pa.concat_tables([ATTEMPT_TABLE.empty_table(), *(t.select(ATTEMPT_TABLE.names) for t in tables)])
        if kept.num_rows:
            shard._append(kept.combine_chunks(), _row_hashes(kept), to_numpy(kept.column("event_time")).astype(np.int64))
        shard._new = []
        return shard


def _visible_after(columns: AttemptColumns, spec: Tuple[str, ...], first_target: int, retention: int,
                   newest_outside: Optional[np.ndarray] = None) -> np.ndarray:
    """Per row: the event time its key's history had let go of when the row arrived (the newest earlier
    arrival of its key - the key's retention; KeyHistory drops rows at or before that). Only rows that
    arrived before the segment count: within a segment arrival and decision order agree, so an earlier
    target of its key is older and hides nothing a window would show. `newest_outside` (per target): the
    newest time of its key among earlier arrivals outside the table (indexed rows), NO_TIME for none."""
    group, present = key_groups(columns, spec)
    out = np.full(columns.rows, NO_TIME, dtype=np.int64)
    targets = first_target + np.flatnonzero(present[first_target:])
    newest = (np.full(len(targets), NO_TIME, dtype=np.int64) if newest_outside is None
              else newest_outside[targets - first_target])
    earlier = np.flatnonzero(present[:first_target])
    if len(earlier):
        codes, inverse = np.unique(group[present], return_inverse=True)
        newest_earlier = np.full(len(codes), NO_TIME, dtype=np.int64)
        slot = np.empty(columns.rows, dtype=np.int64)
        slot[np.flatnonzero(present)] = inverse
        np.maximum.at(newest_earlier, slot[earlier], columns.time[earlier])
        newest = np.maximum(newest, newest_earlier[slot[targets]])
    seen = newest != NO_TIME
    out[targets[seen]] = newest[seen] - retention
    return out


def _placed(sums: EarlierSums, first_target: int, rows: int) -> EarlierSums:
    """Per-target sums laid out over a context whose targets are its rows from `first_target` on."""
    def place(values: np.ndarray) -> np.ndarray:
        out = np.zeros(rows, dtype=values.dtype)
        out[first_target:] = values
        return out
    return EarlierSums(*(place(getattr(sums, part.name)) for part in fields(EarlierSums)))


def segment_ends(chunk: pa.Table, rule_set: RuleSet) -> List[int]:
    """Where a chunk (arrival order) is cut so that within each piece no attempt precedes, in (event_time,
    attempt_id), an earlier attempt of the piece sharing a key value with it: cut before every attempt that
    precedes an earlier one of the chunk with a key in common. In-order input is one piece."""
    rows = chunk.num_rows
    columns = AttemptColumns(chunk)
    rank = np.empty(rows, dtype=np.int64)
    rank[columns.sequence] = np.arange(rows)
    cut = np.zeros(rows, dtype=bool)
    for spec in rule_set.key_specs:
        group, present = key_groups(columns, spec)
        members = np.flatnonzero(present)
        if len(members) < 2:
            continue
        by_group = members[np.argsort(group[members], kind="stable")]  # arrival order within each group
        dense = np.unique(group[by_group], return_inverse=True)[1].astype(np.int64)
        ranks = rank[by_group]
        running = np.maximum.accumulate(dense * rows + ranks) - dense * rows  # highest rank so far per group
        before = np.empty_like(running)
        before[0], before[1:] = -1, running[:-1]
        before[np.r_[True, dense[1:] != dense[:-1]]] = -1
        cut[by_group[before > ranks]] = True
    cut[0] = False
    return [*np.flatnonzero(cut).tolist(), rows]
