"""The columnar engine's merchant attribution (docs/DESIGN.md 4.3): `key_attributions` of
transforms/attribution.py for Arrow tables, one revision per key (bounded input). The differential
test is tests/test_attribution.py.
"""
from __future__ import annotations

from typing import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from schemas.records import UNATTRIBUTED
from transforms.columnar.matching import SETTLEMENT_SIDE

ATTRIBUTION_TABLE = pa.schema([("settlement_id", pa.string()), ("merchant_id", pa.string())])


def attribution_table(candidates: pa.Table, results: pa.Table) -> pa.Table:
    """`key_attributions` for a shard's CANDIDATE_TABLE and its RESULT_TABLE (one revision: batch).

    Only lines that move: an unpaired UNATTRIBUTED line stays where it is.
    """
    unattributed = candidates.filter(pc.and_(pc.equal(candidates.column("side"), SETTLEMENT_SIDE),
                                             pc.equal(candidates.column("merchant_id"), UNATTRIBUTED)))
    if unattributed.num_rows == 0:
        return ATTRIBUTION_TABLE.empty_table()
    moved = results.filter(pc.and_(pc.is_in(results.column("settlement_id"),
                                            value_set=unattributed.column("record_id").combine_chunks()),
                                   pc.is_valid(results.column("ledger_event_id"))))
    return pa.Table.from_arrays([moved.column("settlement_id"), moved.column("merchant_id").cast(pa.string())],
                                schema=ATTRIBUTION_TABLE)


def attributed_settlements(settlements: pa.Table, attributions: Sequence[pa.Table]) -> pa.Table:
    """The settlement table with each attributed UNATTRIBUTED line's merchant replaced."""
    merchant = settlements.column("merchant_id")
    if settlements.num_rows == 0 or not pc.any(pc.equal(merchant, UNATTRIBUTED)).as_py():
        return settlements
    known = pa.concat_tables([ATTRIBUTION_TABLE.empty_table(), *attributions])
    if known.num_rows == 0:
        return settlements
    index = pc.index_in(settlements.column("settlement_id"), value_set=known.column("settlement_id").combine_chunks())
    moved = pc.and_(pc.is_valid(index), pc.equal(merchant, UNATTRIBUTED)).fill_null(False)
    replaced = pc.if_else(moved, pc.take(known.column("merchant_id"), index), merchant.cast(pa.string()))
    position = settlements.schema.get_field_index("merchant_id")
    return settlements.set_column(position, pa.field("merchant_id", pa.string()), replaced)
