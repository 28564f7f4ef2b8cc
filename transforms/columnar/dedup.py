"""Columnar deduplication of re-deliveries (transforms/dedup.py's rule on a shard of record ids).

In bounded input every delivery of an id is seen before the end, so the rule
is "one row per id". Which copy survives is fixed, not arrival order: the
one read first, by (file path, line or record number) (RawChunk.origins). Shards are cut by
record id, so all copies of an id meet in one shard.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from schemas.record_tables import ID_COLUMN_OF_INPUT
from transforms.columnar.validate import ORIGIN_COLUMN


def first_deliveries(accepted: pa.Table, input_name: str) -> pa.Table:
    """Accepted rows (with _origin) -> one row per record id, the earliest read, without _origin."""
    if accepted.num_rows:
        earliest = accepted.group_by(ID_COLUMN_OF_INPUT[input_name], use_threads=False).aggregate(
            [(ORIGIN_COLUMN, "min")])
        # Origins are unique per row, so the earliest origins name exactly the surviving rows.
        accepted = accepted.filter(pc.is_in(accepted.column(ORIGIN_COLUMN),
                                            value_set=earliest.column(f"{ORIGIN_COLUMN}_min")))
    return accepted.drop_columns([ORIGIN_COLUMN])
