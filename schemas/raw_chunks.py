"""RawChunk: a block of records as read, before validation, for the columnar engine.

The columnar twin of `RawRecord`: a table of fields exactly as a file holds
them (CSV: text columns in header order; Parquet: the file's own columns),
where each row is the `fields` mapping the per-record reader would give, plus
records the per-record reader produced itself (files or blocks the fast
readers hand over, and decode errors).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
import pyarrow as pa

from schemas.codecs import payload_json
from schemas.records import RawRecord

LINE = ":"  # sources of line-oriented files: path:line
RECORD = "#"  # sources of record files: path#record

ORDINAL_BITS = 40  # lines or records per file: up to a trillion; files per input: up to 8 million
ORDINAL_MASK = (1 << ORDINAL_BITS) - 1
_ORDINAL = re.compile(r"[:#]([0-9]+)$")
_KAFKA_SOURCE = re.compile(r"/([0-9]+)@([0-9]+)$")  # topic/partition@offset


@dataclass
class RawChunk:
    input: str
    path: str
    table: Optional[pa.Table] = None
    ordinals: Optional[np.ndarray] = None  # line (CSV) or record number (Parquet) of each table row
    separator: str = LINE
    payloads: Optional[pa.Array] = None  # raw text of each table row; None: the row as JSON
    records: List[RawRecord] = field(default_factory=list)
    file_rank: int = 0  # the file's position among its input's files, sorted by path
    row_records: Optional[List[RawRecord]] = None  # the records the table rows were built from, if any

    @property
    def read_count(self) -> int:
        return (self.table.num_rows if self.table is not None else 0) + len(self.records)

    def record_origin(self, source: str) -> int:
        """One int64 that orders records as read: by file, then line or record number; Kafka: (partition, offset)."""
        position = kafka_position(source)
        if position is not None:
            return (position[0] << ORDINAL_BITS) + position[1]
        return (self.file_rank << ORDINAL_BITS) + ordinal_of(source)

    def row_origins(self, rows: np.ndarray) -> np.ndarray:
        """`record_origin` of table rows."""
        if self.row_records is not None:
            return np.array([self.record_origin(self.row_records[row].source) for row in rows], dtype=np.int64)
        return (np.int64(self.file_rank) << np.int64(ORDINAL_BITS)) + self.ordinals[rows].astype(np.int64)

    def row_source_prefixes(self, rows: np.ndarray) -> pa.Array:
        """`source_prefix` of table rows' sources (with `row_origins`, the rows' sources), as a string array."""
        if self.row_records is not None:
            return pa.array([source_prefix(self.row_records[row].source) for row in rows], pa.string())
        # One file's rows share their prefix: repeated in Arrow, not through a list of a million strings.
        return pa.repeat(pa.scalar(f"{self.path}{self.separator}", pa.string()), len(rows))

    def row_raw_records(self, rows: np.ndarray) -> List[RawRecord]:
        """Table rows as the RawRecords the per-record reader gives for them."""
        if self.row_records is not None:
            return [self.row_records[row] for row in rows]
        taken = pa.array(rows, pa.int64())
        fields = self.table.take(taken).to_pylist()
        payloads = self.payloads.take(taken).to_pylist() if self.payloads is not None else [None] * len(rows)
        return [RawRecord(self.input, f"{self.path}{self.separator}{int(self.ordinals[row])}", row_fields,
                          payload if payload is not None else payload_json(row_fields))
                for row, row_fields, payload in zip(rows, fields, payloads)]


def kafka_position(source: str) -> Optional[Tuple[int, int]]:
    """(partition, offset) of a Kafka source ("topic/2@17" -> (2, 17)); None for a file's source."""
    message = _KAFKA_SOURCE.search(source)
    return (int(message.group(1)), int(message.group(2))) if message else None


def source_prefix(source: str) -> str:
    """A source without its line, record number or offset ("f.csv:12" -> "f.csv:", "t/2@17" -> "t/2@")."""
    return source.rstrip("0123456789")


def origin_source(prefix: str, origin: int) -> str:
    """The source of a row from its `source_prefix` and `record_origin` (whose low bits are the ordinal)."""
    return f"{prefix}{origin & ORDINAL_MASK}"


def source_path(source: str) -> str:
    """The file of a source ("f.csv:12" -> "f.csv", "f.avro#3" -> "f.avro", "f.csv" -> "f.csv")."""
    return _ORDINAL.sub("", source)


def ordinal_of(source: str) -> int:
    """The line or record number at the end of a source ("f.csv:12" -> 12); 0 when it has none."""
    match = _ORDINAL.search(source)
    return int(match.group(1)) if match else 0
