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
from typing import List, Optional

import numpy as np
import pyarrow as pa

from schemas.records import RawRecord

LINE = ":"  # sources of line-oriented files: path:line
RECORD = "#"  # sources of record files: path#record

ORDINAL_BITS = 40  # lines or records per file: up to a trillion; files per input: up to 8 million
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

    def origins(self, ordinals: np.ndarray) -> np.ndarray:
        """One int64 per row that orders rows as read: by file path, then line or record number."""
        return (np.int64(self.file_rank) << np.int64(ORDINAL_BITS)) + ordinals.astype(np.int64)

    def record_origin(self, source: str) -> int:
        """`origins` for a record of `records`; a Kafka record's is (partition, offset)."""
        message = _KAFKA_SOURCE.search(source)
        if message:
            return (int(message.group(1)) << ORDINAL_BITS) + int(message.group(2))
        return (self.file_rank << ORDINAL_BITS) + ordinal_of(source)

    @property
    def read_count(self) -> int:
        return (self.table.num_rows if self.table is not None else 0) + len(self.records)

    def source(self, row: int) -> str:
        return f"{self.path}{self.separator}{int(self.ordinals[row])}"


def source_path(source: str) -> str:
    """The file of a source ("f.csv:12" -> "f.csv", "f.avro#3" -> "f.avro", "f.csv" -> "f.csv")."""
    return _ORDINAL.sub("", source)


def ordinal_of(source: str) -> int:
    """The line or record number at the end of a source ("f.csv:12" -> 12); 0 when it has none."""
    match = _ORDINAL.search(source)
    return int(match.group(1)) if match else 0
