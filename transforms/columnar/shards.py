"""Hash-sharding of Arrow tables: every row of one key lands in the same shard, in every process.

The hash is FNV-1a over the UTF-8 bytes of the key columns, vectorised with
numpy, so it does not depend on Python's per-process string hash seed: a
key's shard is the same on the launcher, a Direct worker or a Flink task.
Each shard is its own `take()`, never a slice (see schemas/arrow_coder.py).
"""
from __future__ import annotations

from typing import Iterator, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.record_tables import concat

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_SEPARATOR = np.uint64(0x1F)


def string_bytes(array) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the UTF-8 bytes, each row's first byte offset, each row's byte length) of a text array, without a copy."""
    array = array.cast(pa.string())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    rows = len(array)
    _, offset_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offset_buffer, dtype=np.int32)[array.offset:array.offset + rows + 1].astype(np.int64)
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    return data, offsets[:-1], offsets[1:] - offsets[:-1]


def stable_hash(columns: Sequence[pa.Array]) -> np.ndarray:
    """FNV-1a 64 of each row's key columns (text), joined by a unit separator."""
    rows = len(columns[0]) if columns else 0
    hashes = np.full(rows, _FNV_OFFSET, dtype=np.uint64)
    # In place: a new array per byte position and operation cost half the time.
    with np.errstate(over="ignore"):
        for position, column in enumerate(columns):
            if position:
                hashes ^= _SEPARATOR
                hashes *= _FNV_PRIME
            data, starts, lengths = string_bytes(pc.fill_null(column.cast(pa.string()), ""))
            shortest, longest = (int(lengths.min()), int(lengths.max())) if rows else (0, 0)
            # Every row has its first `shortest` bytes (ids of one kind share a length): no mask there.
            for index in range(shortest):
                hashes ^= data[starts + index]
                hashes *= _FNV_PRIME
            for index in range(shortest, longest):
                live = np.flatnonzero(lengths > index)
                tails = hashes[live]
                tails ^= data[starts[live] + index]
                tails *= _FNV_PRIME
                hashes[live] = tails
    return hashes


def compact(table: pa.Table, columns: Sequence[str]) -> pa.Table:
    """Dictionary-encodes low-cardinality text columns (narrowest index type) for a trip through a shuffle.

    Runners hold shuffled tables in memory, the DirectRunner even decoded
    while it groups them (docs/DESIGN.md 9.4); `plain` undoes it.
    """
    for name in columns:
        position = table.schema.get_field_index(name)
        encoded = pc.dictionary_encode(table.column(name)).combine_chunks()
        width = len(encoded.dictionary)
        index_type = pa.int8() if width <= 127 else pa.int16() if width <= 32_767 else pa.int32()
        encoded = pa.DictionaryArray.from_arrays(encoded.indices.cast(index_type), encoded.dictionary)
        table = table.set_column(position, name, encoded)
    return table


def plain(tables, schema: pa.Schema) -> pa.Table:
    """Tables that went through `compact` -> one table of `schema` again."""
    return concat((table.cast(schema) for table in tables), schema)


def shard_numbers(table: pa.Table, key_columns: Sequence[str], shards: int) -> np.ndarray:
    return (stable_hash([table.column(name) for name in key_columns]) % np.uint64(shards)).astype(np.int64)


def split_by_shard(table: pa.Table, key_columns: Sequence[str], shards: int,
                   max_rows: Optional[int] = None) -> Iterator[Tuple[int, pa.Table]]:
    """(shard, rows of that shard) for every shard that has rows; with `max_rows`, a shard's rows in pieces of
    at most that many (`in_pieces`), several pairs per shard."""
    if table.num_rows == 0:
        return
    numbers = shard_numbers(table, key_columns, shards)
    order = np.argsort(numbers, kind="stable")
    sorted_numbers = numbers[order]
    bounds = np.flatnonzero(np.diff(sorted_numbers)) + 1
    for rows in np.split(order, bounds):
        shard_rows = table.take(pa.array(rows))
        for piece in [shard_rows] if max_rows is None else in_pieces(shard_rows, max_rows):
            yield int(numbers[rows[0]]), piece


def in_pieces(table: pa.Table, max_rows: int) -> Iterator[pa.Table]:
    """A table as consecutive pieces of at most `max_rows` rows, each with buffers of its own: a runner that
    sorts shuffled records in fixed buffers (Flink's batch sort) refuses a record larger than one."""
    if table.num_rows <= max_rows:
        yield table
        return
    for start in range(0, table.num_rows, max_rows):
        yield table.take(pa.array(np.arange(start, min(start + max_rows, table.num_rows))))
