"""The live matcher of one key shard: `transforms/reconcile.py`'s watermark mode, on Arrow columns.

A `LiveMatchShard` holds the candidates of every open key of its shard as
columns (`LiveRows`) and, per key, its revision, the signature of its
emitted rows, its deadline and its latest record. Pure Python + Arrow, no
Beam: `transforms/columnar/live_flow.py` keeps one per shard in a stateful
DoFn and persists its changes in Beam state (docs/DESIGN.md 9.5).

When keys are judged (the per-element matcher's rules, batched):

* on arrival: every key a bundle touches is judged at once, at the shard's
  clock (the latest watermark timer it has seen: never ahead of the
  watermark). A pair is MATCHED as soon as its second side arrives, without
  waiting for the watermark to pass it.
* on the shard's watermark timer, set at the earliest deadline or expiry,
  rounded up to `tick_millis`: keys whose deadline has passed are judged at
  the timer's time; keys whose expiry (latest record + retention + max(SLA,
  grace)) has passed get their final revision and leave the shard.

Each judgment that changes a key's rows (compared by a stable 64-bit
signature of the rows, revision and is_final excluded) is a new revision;
a final one is always emitted. Rows are computed by `reconcile_candidates`,
the batch engine's rules, for all judged keys in one call.
"""
from __future__ import annotations

import heapq
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.record_tables import RESULT_TABLE, to_numpy
from schemas.records import UNATTRIBUTED
from schemas.rules import DUPLICATE_LEDGER_EVENT, DUPLICATE_SETTLEMENT
from schemas.timestamps import EARLIEST_MILLIS
from transforms.attribution import Attribution
from transforms.columnar.live_rows import LiveRows
from transforms.columnar.matching import CANDIDATE_TABLE, SETTLEMENT_SIDE, reconcile_candidates
from transforms.columnar.shards import stable_hash
from transforms.matching import MatchPolicy

GENERATION = "_generation"
LIVE_CANDIDATES = CANDIDATE_TABLE.append(pa.field(GENERATION, pa.int64()))
KEY_STATE = pa.schema([("key", pa.string()), (GENERATION, pa.int64()), ("revision", pa.int64()),
                       ("signature", pa.uint64()), ("deadline", pa.int64()), ("latest", pa.int64()),
                       ("removed", pa.bool_())])
_SIGNED_COLUMNS = [name for name in RESULT_TABLE.names if name not in ("revision", "is_final")]
_DUPLICATES = pa.array([DUPLICATE_LEDGER_EVENT, DUPLICATE_SETTLEMENT])


def key_texts(table: pa.Table) -> List[str]:
    """The reconciliation key of each row as one text (`transforms/revisions.py: result_key_text`)."""
    if table.num_rows == 0:
        return []
    return pc.binary_join_element_wise(table.column("processor").cast(pa.string()),
                                       table.column("processor_reference").cast(pa.string()),
                                       table.column("kind").cast(pa.string()), "\x1f").to_pylist()


def row_signatures(results: pa.Table) -> np.ndarray:
    """A stable 64-bit hash of each result row, revision and is_final left out."""
    return stable_hash([pc.fill_null(results.column(name).cast(pa.string()), "\x00") for name in _SIGNED_COLUMNS])


class _Key:
    __slots__ = ("generation", "revision", "signature", "deadline", "latest", "rows")

    def __init__(self, generation: int):
        self.generation = generation
        self.revision = 0
        self.signature: Optional[int] = None
        self.deadline: Optional[int] = None
        self.latest = EARLIEST_MILLIS
        self.rows: List[int] = []

    def due(self, retention_millis: int) -> int:
        expiry = self.latest + retention_millis
        return expiry if self.deadline is None else min(self.deadline, expiry)


class LiveMatchShard:
    def __init__(self, policy: MatchPolicy, retention_millis: int, tick_millis: int = 1_000):
        self.policy = policy
        self.retention_millis = retention_millis  # retention + max(SLA, grace): a key's life after its latest record
        self.tick_millis = max(1, int(tick_millis))
        self.clock = EARLIEST_MILLIS  # the latest timer seen: the watermark was at least here
        self.sequence = 0  # bundles seen: a key's generation is the bundle that opened it
        self.candidates = LiveRows(LIVE_CANDIDATES)
        self.keys: Dict[str, _Key] = {}
        self._due: List[Tuple[int, str]] = []  # heap of (due, key); stale entries are skipped
        self.dead_rows = 0
        self.persisted_key_rows = 0  # key-state rows appended to the state since it was last rewritten
        self._changed_keys: Dict[str, _Key] = {}
        self._removed_keys: List[Tuple[str, int]] = []
        self._new_candidates: List[pa.Table] = []
        self.unattributed: set = set()  # settlement ids of UNATTRIBUTED lines (rare): their merchant moves

    # ------------------------------------------------------------------ judging

    def add(self, candidates: pa.Table) -> pa.Table:
        """New candidates (CANDIDATE_TABLE) -> the new revisions of the keys they touch (RESULT_TABLE)."""
        if candidates.num_rows == 0:
            return RESULT_TABLE.empty_table()
        self.sequence += 1
        texts = key_texts(candidates)
        generations = np.empty(len(texts), dtype=np.int64)
        for index, text in enumerate(texts):
            key = self.keys.get(text)
            if key is None:
                key = self.keys[text] = _Key(self.sequence)
            generations[index] = key.generation
        stored = candidates.select(CANDIDATE_TABLE.names).cast(CANDIDATE_TABLE).append_column(
            GENERATION, pa.array(generations))
        first = self.candidates.append(stored)
        self._new_candidates.append(stored)
        self._note_unattributed(stored)
        times = to_numpy(candidates.column("time")).tolist()
        for offset, (text, time) in enumerate(zip(texts, times)):
            key = self.keys[text]
            key.rows.append(first + offset)
            if time > key.latest:
                key.latest = time
        return self._judge(list(dict.fromkeys(texts)), self.clock, is_final=False)

    def _note_unattributed(self, candidates: pa.Table) -> None:
        lines = pc.and_(pc.equal(candidates.column("side"), SETTLEMENT_SIDE),
                        pc.equal(candidates.column("merchant_id"), UNATTRIBUTED))
        if pc.any(lines).as_py():
            self.unattributed.update(candidates.filter(lines).column("record_id").to_pylist())

    def attributions(self, results: pa.Table) -> List[Attribution]:
        """`transforms/attribution.py: key_attributions` of emitted revisions: where each UNATTRIBUTED line counts."""
        if not self.unattributed or results.num_rows == 0:
            return []
        return [(settlement_id, (revision, merchant if ledger_event_id is not None else UNATTRIBUTED))
                for settlement_id, revision, merchant, ledger_event_id in zip(
                    *(results.column(name).to_pylist()
                      for name in ("settlement_id", "revision", "merchant_id", "ledger_event_id")))
                if settlement_id in self.unattributed]

    def fire(self, at_millis: int) -> pa.Table:
        """The watermark reached `at_millis`: deadlines and expiries up to it -> their revisions."""
        self.clock = max(self.clock, at_millis)
        due: Dict[str, None] = {}
        while self._due and self._due[0][0] <= self.clock:
            when, text = heapq.heappop(self._due)
            key = self.keys.get(text)
            if key is not None and key.due(self.retention_millis) == when:
                due[text] = None
        expired = [text for text in due if self.keys[text].latest + self.retention_millis <= self.clock]
        expired_set = set(expired)
        judged = [self._judge([text for text in due if text not in expired_set], self.clock, is_final=False),
                  self._judge(expired, self.clock, is_final=True)]
        for text in expired:
            key = self.keys.pop(text)
            self.dead_rows += len(key.rows)
            self._changed_keys.pop(text, None)
            self._removed_keys.append((text, key.generation))
        return pa.concat_tables(judged)

    def next_timer(self) -> Optional[int]:
        """When the shard's watermark timer should fire: its earliest due time, rounded up to the tick."""
        while self._due:
            when, text = self._due[0]
            key = self.keys.get(text)
            if key is not None and key.due(self.retention_millis) == when:
                return -(-when // self.tick_millis) * self.tick_millis
            heapq.heappop(self._due)
        return None

    def _judge(self, texts: List[str], now: int, is_final: bool) -> pa.Table:
        if not texts:
            return RESULT_TABLE.empty_table()
        rows = np.fromiter((row for text in texts for row in self.keys[text].rows), dtype=np.int64)
        known = self.candidates.take(np.sort(rows))
        results = reconcile_candidates(known.select(CANDIDATE_TABLE.names), now, self.policy)
        result_keys = key_texts(results)
        signatures = row_signatures(results)
        per_key: Dict[str, int] = {}
        with np.errstate(over="ignore"):
            for text, signature in zip(result_keys, signatures.tolist()):
                per_key[text] = (per_key.get(text, 0) + signature) & 0xFFFFFFFFFFFFFFFF
        self._set_deadlines(results, result_keys, now)
        revisions: Dict[str, int] = {}
        for text in texts:
            key = self.keys[text]
            signature = per_key.get(text)
            if signature != key.signature or is_final:
                key.revision += 1
                key.signature = signature
                revisions[text] = key.revision
            self._changed_keys[text] = key
            heapq.heappush(self._due, (key.due(self.retention_millis), text))
        if not revisions:
            return RESULT_TABLE.empty_table()
        revision = np.array([revisions.get(text, 0) for text in result_keys], dtype=np.int64)
        emitted = results.filter(pa.array(revision > 0))
        revision = revision[revision > 0]
        return emitted.set_column(emitted.schema.get_field_index("revision"), "revision", pa.array(revision)) \
            .set_column(emitted.schema.get_field_index("is_final"), "is_final",
                        pa.array(np.full(len(revision), is_final)))

    def _set_deadlines(self, results: pa.Table, result_keys: List[str], now: int) -> None:
        """`next_deadline` of each judged key: a one-sided key's verdict falls due after the SLA or grace."""
        primary = to_numpy(pc.invert(pc.is_in(results.column("status"), value_set=_DUPLICATES)))
        ledger_time = results.column("event_time").to_pylist()
        booked_time = results.column("booked_time").to_pylist()
        sla, grace = self.policy.settlement_sla_millis, self.policy.ledger_grace_millis
        for index in np.flatnonzero(primary).tolist():
            ledger, booked = ledger_time[index], booked_time[index]
            deadline = None
            if (ledger is None) != (booked is None):
                deadline = ledger + sla if ledger is not None else booked + grace
                if deadline <= now:
                    deadline = None
            self.keys[result_keys[index]].deadline = deadline

    # ------------------------------------------------------------------ persistence

    @property
    def live_rows(self) -> int:
        return self.candidates.rows - self.dead_rows

    def needs_compaction(self) -> bool:
        """Dead rows outnumber live ones, or key states were rewritten often: a rewrite of the state is due."""
        return ((self.dead_rows > 10_000 and self.dead_rows > self.live_rows)
                or self.persisted_key_rows > 10_000 + 2 * len(self.keys))

    def compact(self) -> None:
        """Drops the rows of keys that left the shard (amortised: called when dead rows outnumber live)."""
        live = sorted(self.keys.items(), key=lambda item: item[1].rows[0] if item[1].rows else -1)
        old_rows = np.fromiter((row for _, key in live for row in key.rows), dtype=np.int64)
        order = np.argsort(old_rows, kind="stable")
        self.candidates.compact(old_rows[order])
        renumbered = np.empty(len(old_rows), dtype=np.int64)
        renumbered[order] = np.arange(len(old_rows), dtype=np.int64)
        position = 0
        for _, key in live:
            count = len(key.rows)
            key.rows = renumbered[position:position + count].tolist()
            position += count
        self.dead_rows = 0

    def take_changes(self) -> Tuple[List[pa.Table], pa.Table]:
        """(candidate tables added, key-state rows changed or removed) since the last call: what to persist."""
        candidates, self._new_candidates = self._new_candidates, []
        changed = [(text, key.generation, key.revision, key.signature, key.deadline, key.latest, False)
                   for text, key in self._changed_keys.items()]
        changed += [(text, generation, 0, None, None, None, True) for text, generation in self._removed_keys]
        self._changed_keys, self._removed_keys = {}, []
        self.persisted_key_rows += len(changed)
        return candidates, _key_table(changed)

    def snapshot(self) -> Tuple[pa.Table, pa.Table]:
        """Every live candidate and key state: what a compacted state holds."""
        self._new_candidates, self._changed_keys, self._removed_keys = [], {}, []
        self.persisted_key_rows = len(self.keys)
        rows = [(text, key.generation, key.revision, key.signature, key.deadline, key.latest, False)
                for text, key in self.keys.items()]
        return self.candidates.all(), _key_table(rows)

    @classmethod
    def restore(cls, policy: MatchPolicy, retention_millis: int, tick_millis: int, clock: int, sequence: int,
                candidate_tables: Iterable[pa.Table], key_tables: Iterable[pa.Table]) -> "LiveMatchShard":
        """The shard as persisted: the last key-state row of each key wins; only candidates of a key's
        current generation belong to it (a key that expired and came back starts a new generation)."""
        shard = cls(policy, retention_millis, tick_millis)
        shard.clock, shard.sequence = clock, sequence
        states = pa.concat_tables([KEY_STATE.empty_table(), *key_tables])
        latest: Dict[str, tuple] = {}
        for row in zip(*(states.column(name).to_pylist() for name in KEY_STATE.names)):
            latest[row[0]] = row
        candidates = pa.concat_tables([LIVE_CANDIDATES.empty_table(), *candidate_tables])
        texts = key_texts(candidates)
        generations = candidates.column(GENERATION).to_pylist()
        keep = np.zeros(len(texts), dtype=bool)
        for index, (text, generation) in enumerate(zip(texts, generations)):
            state = latest.get(text)
            keep[index] = state is not None and not state[6] and state[1] == generation
        kept = candidates.filter(pa.array(keep))
        shard.candidates.append(kept)
        shard._note_unattributed(kept)
        for row_number, text in enumerate(t for t, k in zip(texts, keep) if k):
            key = shard.keys.get(text)
            if key is None:
                _, generation, revision, signature, deadline, latest_time, _ = latest[text]
                key = shard.keys[text] = _Key(generation)
                key.revision, key.signature, key.deadline, key.latest = revision, signature, deadline, latest_time
                heapq.heappush(shard._due, (key.due(retention_millis), text))
            key.rows.append(row_number)
        return shard


def _key_table(rows: List[tuple]) -> pa.Table:
    columns = list(zip(*rows)) if rows else [[] for _ in KEY_STATE.names]
    return pa.Table.from_arrays([pa.array(column, type=field.type) for column, field in zip(columns, KEY_STATE)],
                                schema=KEY_STATE)
