"""Live deduplication of one record-id shard: `transforms/dedup.py`'s streaming rule on Arrow columns.

The first copy of an id to arrive passes; it is remembered until its event
time + `horizon_millis` has passed the shard's clock (the watermark timer),
so a later copy is told apart: equal payload fields -> dropped (a plain
re-delivery), different -> a dead letter naming both sources
(`transforms/redelivery.py: conflict_letter`, via the columnar comparison of
`transforms/columnar/dedup.py`). Within a chunk, copies arrive in
`_origin` order (partition, offset): the earliest is the first.
"""
from __future__ import annotations

import heapq
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import pyarrow as pa

from schemas.internal_records import Judged
from schemas.record_tables import ID_COLUMN_OF_INPUT, RECONCILED_SCHEMA_OF_INPUT, TIME_COLUMN_OF_INPUT, to_numpy
from schemas.timestamps import EARLIEST_MILLIS
from transforms.columnar.dedup import conflicting_copies, delivered_schema
from transforms.columnar.live_rows import LiveRows
from transforms.columnar.validate import ORIGIN_COLUMN

FORGET = "_forget"


def kept_schema(input_name: str) -> pa.Schema:
    return delivered_schema(input_name).append(pa.field(FORGET, pa.int64()))


class LiveFirstArrivals:
    def __init__(self, input_name: str, horizon_millis: int, tick_millis: int = 1_000):
        self.input_name = input_name
        self.horizon_millis = horizon_millis
        self.tick_millis = max(1, int(tick_millis))
        self.clock = EARLIEST_MILLIS
        self.schema = kept_schema(input_name)
        self.kept = LiveRows(self.schema)
        self.row_of_id: Dict[str, int] = {}
        self._forget: List[Tuple[int, str]] = []  # heap of (forget at, id)
        self.dead_rows = 0
        self._new: List[pa.Table] = []

    def arrive(self, accepted: pa.Table) -> Tuple[pa.Table, List[Judged]]:
        """Accepted rows of one chunk (reconciled columns + _origin, _source_prefix) -> (first arrivals,
        reconciled columns only; dead letters of conflicting later copies)."""
        id_name = ID_COLUMN_OF_INPUT[self.input_name]
        reconciled = RECONCILED_SCHEMA_OF_INPUT[self.input_name].names
        if accepted.num_rows == 0:
            return RECONCILED_SCHEMA_OF_INPUT[self.input_name].empty_table(), []
        accepted = accepted.sort_by([(ORIGIN_COLUMN, "ascending")])
        ids = accepted.column(id_name).to_pylist()
        first_rows, later_rows, earlier_kept = [], [], []
        first_in_chunk: Dict[str, int] = {}
        for index, record_id in enumerate(ids):
            if record_id in self.row_of_id:
                later_rows.append(index)
                earlier_kept.append(self.row_of_id[record_id])
            elif record_id in first_in_chunk:
                later_rows.append(index)
            else:
                first_in_chunk[record_id] = index
                first_rows.append(index)
        firsts = accepted.take(pa.array(first_rows, pa.int64()))
        times = to_numpy(firsts.column(TIME_COLUMN_OF_INPUT[self.input_name]))
        forget_at = times + self.horizon_millis
        stored = firsts.append_column(FORGET, pa.array(forget_at, pa.int64())).select(self.schema.names)
        letters: List[Judged] = []
        if later_rows:
            survivors = pa.concat_tables([self.kept.take(np.unique(np.array(earlier_kept, dtype=np.int64))), stored])
            later = accepted.take(pa.array(later_rows, pa.int64()))
            letters = conflicting_copies(later, survivors.drop_columns([FORGET]), self.input_name)
        # A copy whose horizon the watermark has already passed is not remembered (its timer would fire at once).
        remembered = forget_at > self.clock
        if not remembered.all():
            stored = stored.filter(pa.array(remembered))
        first = self.kept.append(stored)
        if stored.num_rows:
            self._new.append(stored)
        for offset, (record_id, forget) in enumerate(zip(stored.column(id_name).to_pylist(),
                                                         stored.column(FORGET).to_pylist())):
            self.row_of_id[record_id] = first + offset
            heapq.heappush(self._forget, (forget, record_id))
        return firsts.select(reconciled), letters

    def fire(self, at_millis: int) -> None:
        """The watermark reached `at_millis`: ids remembered until then are forgotten."""
        self.clock = max(self.clock, at_millis)
        while self._forget and self._forget[0][0] <= self.clock:
            _, record_id = heapq.heappop(self._forget)
            if self.row_of_id.pop(record_id, None) is not None:
                self.dead_rows += 1

    def next_timer(self) -> Optional[int]:
        if not self._forget:
            return None
        return -(-self._forget[0][0] // self.tick_millis) * self.tick_millis

    @property
    def live_rows(self) -> int:
        return len(self.row_of_id)

    def needs_compaction(self) -> bool:
        return self.dead_rows > 10_000 and self.dead_rows > self.live_rows

    def compact(self) -> None:
        items = sorted(self.row_of_id.items(), key=lambda item: item[1])
        self.kept.compact(np.array([row for _, row in items], dtype=np.int64))
        self.row_of_id = {record_id: row for row, (record_id, _) in enumerate(items)}
        self.dead_rows = 0

    def take_changes(self) -> List[pa.Table]:
        new, self._new = self._new, []
        return new

    def snapshot(self) -> pa.Table:
        self._new = []
        items = sorted(self.row_of_id.values())
        return self.kept.take(np.array(items, dtype=np.int64))

    @classmethod
    def restore(cls, input_name: str, horizon_millis: int, tick_millis: int, clock: int,
                tables: Iterable[pa.Table]) -> "LiveFirstArrivals":
        """As persisted: rows still remembered at `clock`; an id kept again after it was forgotten is its last row."""
        shard = cls(input_name, horizon_millis, tick_millis)
        shard.clock = clock
        kept = pa.concat_tables([shard.schema.empty_table(), *(table.select(shard.schema.names) for table in tables)])
        kept = kept.filter(pa.array(to_numpy(kept.column(FORGET)) > clock))
        ids = kept.column(ID_COLUMN_OF_INPUT[input_name]).to_pylist()
        last: Dict[str, int] = {}
        for index, record_id in enumerate(ids):
            last[record_id] = index
        rows = sorted(last.values())
        shard.kept.append(kept.take(pa.array(rows, pa.int64())))
        forget = to_numpy(kept.column(FORGET))
        for row_number, index in enumerate(rows):
            shard.row_of_id[ids[index]] = row_number
            heapq.heappush(shard._forget, (int(forget[index]), ids[index]))
        return shard
