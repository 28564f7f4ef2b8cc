"""Columnar deduplication of re-deliveries (transforms/dedup.py's rule on a shard of record ids).

In bounded input every delivery of an id is seen before the end, so the rule
is "one row per id". Which copy survives is fixed, not arrival order: the
one read first, by (file path, line or record number). Shards are cut by
record id, so all copies of an id meet in one shard.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.record_tables import ID_COLUMN_OF_INPUT
from transforms.columnar.validate import FILE_COLUMN, ORDINAL_COLUMN


def first_deliveries(accepted: pa.Table, input_name: str) -> pa.Table:
    """Accepted rows (with _file/_ordinal) -> one row per record id, without the origin columns."""
    id_column = ID_COLUMN_OF_INPUT[input_name]
    if accepted.num_rows == 0:
        return accepted.drop_columns([FILE_COLUMN, ORDINAL_COLUMN])
    ordered = accepted.take(pc.sort_indices(accepted, sort_keys=[
        (id_column, "ascending"), (FILE_COLUMN, "ascending"), (ORDINAL_COLUMN, "ascending")]))
    ids = ordered.column(id_column).combine_chunks()
    first = np.ones(ordered.num_rows, dtype=bool)
    if ordered.num_rows > 1:
        first[1:] = ~pc.equal(ids.slice(1), ids.slice(0, len(ids) - 1)).to_numpy(zero_copy_only=False)
    return ordered.filter(pa.array(first)).drop_columns([FILE_COLUMN, ORDINAL_COLUMN])
