"""Columnar deduplication of re-deliveries (transforms/dedup.py's rule on a shard of record ids).

In bounded input every delivery of an id is seen before the end, so the rule
is "one row per id". Which copy survives is fixed, not arrival order: the
one read first, by (file path, line or record number) (RawChunk.origins). Shards are cut by
record id, so all copies of an id meet in one shard. A later copy that differs
from the survivor in a payload field is a dead letter (transforms/redelivery.py).
"""
from __future__ import annotations

from typing import List, Tuple

import pyarrow as pa
import pyarrow.compute as pc

from schemas.internal_records import Judged
from schemas.raw_chunks import origin_source
from schemas.record_tables import ID_COLUMN_OF_INPUT, RECONCILED_SCHEMA_OF_INPUT
from transforms.columnar.validate import ORIGIN_COLUMN, SOURCE_PREFIX_COLUMN
from transforms.redelivery import PAYLOAD_FIELDS, conflict_letter

_KEPT = "_kept"
_WHERE = (ORIGIN_COLUMN, SOURCE_PREFIX_COLUMN)


def delivered_schema(input_name: str) -> pa.Schema:
    """The reconciled columns of an input with where each copy was read (_origin, _source_prefix)."""
    return (RECONCILED_SCHEMA_OF_INPUT[input_name].append(pa.field(ORIGIN_COLUMN, pa.int64()))
            .append(pa.field(SOURCE_PREFIX_COLUMN, pa.string())))


def first_deliveries(accepted: pa.Table, input_name: str) -> Tuple[pa.Table, List[Judged]]:
    """Accepted rows (with _origin, _source_prefix) -> (one row per record id, the earliest read, without
    them; the dead letters of later copies that conflict with it)."""
    letters: List[Judged] = []
    if accepted.num_rows:
        earliest = accepted.group_by(ID_COLUMN_OF_INPUT[input_name], use_threads=False).aggregate(
            [(ORIGIN_COLUMN, "min")])
        # Origins are unique per row, so the earliest origins name exactly the surviving rows.
        survives = pc.is_in(accepted.column(ORIGIN_COLUMN), value_set=earliest.column(f"{ORIGIN_COLUMN}_min"))
        later = accepted.filter(pc.invert(survives))
        accepted = accepted.filter(survives)
        if later.num_rows:
            letters = conflicting_copies(later, accepted, input_name)
    return accepted.drop_columns(list(_WHERE)), letters


def _distinct(left, right):
    """Null-safe inequality (SQL's IS DISTINCT FROM), never null: the per-record rule compares with `!=`, for
    which None != 5 and None == None, while Arrow's not_equal is null wherever a side is."""
    both = pc.and_(pc.is_valid(left), pc.is_valid(right))
    return pc.if_else(both, pc.not_equal(left, right), pc.not_equal(pc.is_valid(left), pc.is_valid(right)))


def conflicting_copies(later: pa.Table, kept: pa.Table, input_name: str) -> List[Judged]:
    """Later copies beside their survivor; only rows differing in a payload field reach Python."""
    id_name, names = ID_COLUMN_OF_INPUT[input_name], PAYLOAD_FIELDS[input_name]
    compared = [name for name in names if name != id_name]  # the join key, equal by construction
    # Later copies are about 1% of the rows: the join sees only their survivors, not the whole shard.
    kept = kept.filter(pc.is_in(kept.column(id_name), value_set=pc.unique(later.column(id_name))))
    pairs = later.join(kept.rename_columns([f"{name}{_KEPT}" for name in kept.column_names]),
                       keys=id_name, right_keys=f"{id_name}{_KEPT}", use_threads=False)
    differs = None
    for name in compared:
        unequal = _distinct(pairs.column(name), pairs.column(f"{name}{_KEPT}"))
        differs = unequal if differs is None else pc.or_(differs, unequal)
    pairs = pairs.filter(differs).sort_by([(ORIGIN_COLUMN, "ascending")])
    letters = []
    for row in pairs.to_pylist():
        copy = (origin_source(row[SOURCE_PREFIX_COLUMN], row[ORIGIN_COLUMN]), {name: row[name] for name in names})
        survivor = {name: row[f"{name}{_KEPT}"] for name in compared}
        survivor[id_name] = row[id_name]
        kept_where = origin_source(row[f"{SOURCE_PREFIX_COLUMN}{_KEPT}"], row[f"{ORIGIN_COLUMN}{_KEPT}"])
        letters.append(conflict_letter(input_name, copy, (kept_where, survivor)))
    return letters
