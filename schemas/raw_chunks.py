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

_ORDINAL = re.compile(r"[:#]([0-9]+)$")


@dataclass
class RawChunk:
    input: str
    path: str
    table: Optional[pa.Table] = None
    ordinals: Optional[np.ndarray] = None  # line (CSV) or record number (Parquet) of each table row
    separator: str = LINE
    payloads: Optional[pa.Array] = None  # raw text of each table row; None: the row as JSON
    records: List[RawRecord] = field(default_factory=list)

    @property
    def read_count(self) -> int:
        return (self.table.num_rows if self.table is not None else 0) + len(self.records)

    def source(self, row: int) -> str:
        return f"{self.path}{self.separator}{int(self.ordinals[row])}"


def ordinal_of(source: str) -> int:
    """The line or record number at the end of a source ("f.csv:12" -> 12); 0 when it has none."""
    match = _ORDINAL.search(source)
    return int(match.group(1)) if match else 0
