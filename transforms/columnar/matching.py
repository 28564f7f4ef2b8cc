"""`reconcile_key` (transforms/matching.py) for a whole table of keys at once.

`reconcile_candidates` takes match candidates of any number of reconciliation
keys and returns the result rows `reconcile_key` would return for each key,
judged at one `as_of`, revision 1 and final (batch). Proven equal, column by
column, by tests/test_columnar_matching.py.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas import rules
from schemas.record_tables import RESULT_TABLE, to_numpy
from schemas.rules import (
    DIFFERENT_CURRENCY,
    DUE,
    DUPLICATE_LEDGER_EVENT,
    DUPLICATE_SETTLEMENT,
    HAS_LEDGER,
    KIND_OF_EVENT_TYPE,
    KIND_OF_RECORD_TYPE,
    PAIRED,
    WITHIN_TOLERANCE,
)
from transforms.matching import MatchPolicy

LEDGER_SIDE, SETTLEMENT_SIDE = 0, 1

CANDIDATE_TABLE = pa.schema([
    ("processor", pa.string()), ("processor_reference", pa.string()), ("kind", pa.string()),
    ("side", pa.int8()), ("record_id", pa.string()), ("merchant_id", pa.string()),
    ("amount_minor", pa.int64()), ("currency", pa.string()), ("time", pa.int64()),
])


def _candidates(table: pa.Table, kinds: dict, type_column: str, side: int, id_column: str,
                amount_column: str, time_column: str) -> pa.Table:
    table = table.filter(pc.is_in(table.column(type_column), value_set=pa.array(sorted(kinds))))
    kind = _map_text(table.column(type_column), kinds)
    amount, currency = table.column(amount_column), table.column("currency")
    if "matched_minor" in table.column_names and "matched_currency" in table.column_names:
        # As candidate_of: a line with a matched side (both set, currency not empty) is compared on it.
        matched = pc.and_(pc.is_valid(table.column("matched_minor")),
                          pc.fill_null(pc.not_equal(table.column("matched_currency"), ""), False))
        amount = pc.if_else(matched, table.column("matched_minor"), amount)
        currency = pc.if_else(matched, table.column("matched_currency").cast(pa.string()), currency.cast(pa.string()))
    return pa.Table.from_arrays([
        table.column("processor"), table.column("processor_reference"), kind,
        pa.array(np.full(table.num_rows, side, dtype=np.int8)), table.column(id_column),
        table.column("merchant_id"), amount, currency,
        table.column(time_column),
    ], schema=CANDIDATE_TABLE)


def _map_text(values, mapping: dict) -> pa.ChunkedArray:
    keys = sorted(mapping)
    index = pc.index_in(values, value_set=pa.array(keys))
    return pc.take(pa.array([mapping[key] for key in keys], pa.string()), index)


def ledger_candidates(payments: pa.Table) -> pa.Table:
    """PAYMENT_TABLE rows that settle one by one -> CANDIDATE_TABLE (candidate_of, reconciliation_key)."""
    return _candidates(payments, KIND_OF_EVENT_TYPE, "event_type", LEDGER_SIDE, "event_id", "amount_minor",
                       "event_time")


def settlement_candidates(settlements: pa.Table) -> pa.Table:
    return _candidates(settlements, KIND_OF_RECORD_TYPE, "record_type", SETTLEMENT_SIDE, "settlement_id",
                       "gross_minor", "booked_time")


def _key_codes(candidates: pa.Table) -> np.ndarray:
    joined = pc.binary_join_element_wise(candidates.column("processor"), candidates.column("processor_reference"),
                                         candidates.column("kind"), "\x1f")
    return to_numpy(pc.dictionary_encode(joined).combine_chunks().indices).astype(np.int64)


def _distinct_records(candidates: pa.Table, keys: np.ndarray) -> pa.Table:
    """One row per (key, side, record_id); like `_primary_first`'s dict, a repeated id keeps its last row."""
    order = np.arange(candidates.num_rows, dtype=np.int64)
    indexed = candidates.append_column("_key", pa.array(keys)).append_column("_order", pa.array(order))
    ranked = indexed.take(pc.sort_indices(indexed, sort_keys=[
        ("_key", "ascending"), ("side", "ascending"), ("record_id", "ascending"), ("_order", "descending")]))
    if ranked.num_rows == 0:
        return ranked
    key, side = to_numpy(ranked.column("_key")), to_numpy(ranked.column("side"))
    ids = ranked.column("record_id").combine_chunks()
    same_as_previous = np.zeros(ranked.num_rows, dtype=bool)
    same_as_previous[1:] = (key[1:] == key[:-1]) & (side[1:] == side[:-1]) & to_numpy(
        pc.equal(ids.slice(1), ids.slice(0, len(ids) - 1)).fill_null(False))
    return ranked.filter(pa.array(~same_as_previous))


def reconcile_candidates(candidates: pa.Table, as_of_millis: Optional[int], policy: MatchPolicy) -> pa.Table:
    """CANDIDATE_TABLE -> RESULT_TABLE: every key's rows as `reconcile_key` gives them, revision 1, final.

    `as_of_millis` None judges each one-sided key at its own record's time
    (what the batch matcher does when the input has no time at all).
    """
    if candidates.num_rows == 0:
        return RESULT_TABLE.empty_table()
    distinct = _distinct_records(candidates, _key_codes(candidates))
    rows = distinct.take(pc.sort_indices(distinct, sort_keys=[
        ("_key", "ascending"), ("side", "ascending"), ("time", "ascending"), ("record_id", "ascending")]))
    count = rows.num_rows
    key, side = to_numpy(rows.column("_key")), to_numpy(rows.column("side"))
    time, amount = to_numpy(rows.column("time")), to_numpy(rows.column("amount_minor"))
    starts_group = np.ones(count, dtype=bool)
    starts_group[1:] = (key[1:] != key[:-1]) | (side[1:] != side[:-1])
    primary = starts_group  # the earliest (time, record_id) of its key and side

    key_count = int(key.max()) + 1
    ledger_of_key = np.full(key_count, -1, dtype=np.int64)
    settlement_of_key = np.full(key_count, -1, dtype=np.int64)
    positions = np.arange(count, dtype=np.int64)
    ledger_primary = primary & (side == LEDGER_SIDE)
    settlement_primary = primary & (side == SETTLEMENT_SIDE)
    ledger_of_key[key[ledger_primary]] = positions[ledger_primary]
    settlement_of_key[key[settlement_primary]] = positions[settlement_primary]
    present = (ledger_of_key >= 0) | (settlement_of_key >= 0)
    ledger_idx, settlement_idx = ledger_of_key[present], settlement_of_key[present]
    has_ledger, has_settlement = ledger_idx >= 0, settlement_idx >= 0
    anchor = np.where(has_ledger, ledger_idx, settlement_idx)

    currency = rows.column("currency").combine_chunks()
    both = has_ledger & has_settlement
    same_currency = np.zeros(len(anchor), dtype=bool)
    if both.any():
        same_currency[both] = to_numpy(pc.equal(currency.take(pa.array(ledger_idx[both])),
                                           currency.take(pa.array(settlement_idx[both]))))
    difference = np.where(both, amount[np.maximum(settlement_idx, 0)] - amount[np.maximum(ledger_idx, 0)], 0)
    anchor_time = time[anchor]
    now = np.full(len(anchor), as_of_millis, dtype=np.int64) if as_of_millis is not None else anchor_time
    wait = np.where(has_ledger, policy.settlement_sla_millis, policy.ledger_grace_millis)
    status = _primary_status({
        PAIRED: both,
        DIFFERENT_CURRENCY: both & ~same_currency,
        WITHIN_TOLERANCE: both & (np.abs(difference) <= policy.amount_tolerance_minor),
        DUE: now >= anchor_time + wait,
        HAS_LEDGER: has_ledger,
    })

    primaries = _result_rows(rows, anchor, ledger_idx, settlement_idx, status,
                             np.where(both & same_currency, difference, 0), both & same_currency)
    duplicate = ~primary
    duplicate_idx = positions[duplicate]
    duplicate_is_ledger = side[duplicate] == LEDGER_SIDE
    duplicates = _result_rows(
        rows, duplicate_idx, np.where(duplicate_is_ledger, duplicate_idx, -1),
        np.where(duplicate_is_ledger, -1, duplicate_idx),
        np.where(duplicate_is_ledger, DUPLICATE_LEDGER_EVENT, DUPLICATE_SETTLEMENT),
        np.zeros(len(duplicate_idx), dtype=np.int64), np.zeros(len(duplicate_idx), dtype=bool))
    return pa.concat_tables([primaries, duplicates])


def _primary_status(facts: dict) -> np.ndarray:
    """`rules.primary_status` of every key at once: the rules table's first rule whose facts all hold."""
    conditions = [np.logical_and.reduce([facts[fact] for fact in required]) for required, _ in rules.STATUS_RULES]
    return np.select(conditions, [status for _, status in rules.STATUS_RULES], default=rules.UNDECIDED_STATUS)


def _take_or_null(column: pa.ChunkedArray, index: np.ndarray) -> pa.Array:
    return column.take(pa.array(index, mask=index < 0))


def _result_rows(rows: pa.Table, anchor: np.ndarray, ledger_idx: np.ndarray, settlement_idx: np.ndarray,
                 status: np.ndarray, difference: np.ndarray, has_difference: np.ndarray) -> pa.Table:
    anchor_array = pa.array(anchor)
    amount, time, record_id = rows.column("amount_minor"), rows.column("time"), rows.column("record_id")
    n = len(anchor)
    return pa.Table.from_arrays([
        rows.column("processor").take(anchor_array),
        rows.column("processor_reference").take(anchor_array),
        rows.column("kind").take(anchor_array),
        pa.array(status.astype(object), pa.string()),
        rows.column("merchant_id").take(anchor_array),
        rows.column("currency").take(anchor_array),
        _take_or_null(amount, ledger_idx),
        _take_or_null(amount, settlement_idx),
        pa.array(difference, pa.int64(), mask=~has_difference),
        _take_or_null(record_id, ledger_idx),
        _take_or_null(record_id, settlement_idx),
        _take_or_null(time, ledger_idx),
        _take_or_null(time, settlement_idx),
        pa.array(np.ones(n, dtype=np.int64)),
        pa.array(np.ones(n, dtype=bool)),
    ], schema=RESULT_TABLE)
