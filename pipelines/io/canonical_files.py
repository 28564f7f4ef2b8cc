"""Output files whose bytes depend only on their content: sorted rows, one row group, fixed compression.

Beam writes sharded files in an order that depends on bundling (Reshuffle
uses random keys), so a re-run of the same job would differ byte for byte;
these writers make re-runs of a backfill date byte-identical.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Callable, List, Optional, Sequence

PARQUET_COMPRESSION = "zstd"
PARQUET_COMPRESSION_LEVEL = 3


def canonical_parquet(paths: Sequence[str], schema, target: str,
                       keep: Optional[Callable[[List[dict]], List[dict]]] = None) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = schema.remove_metadata()
    tables = [pq.read_table(path).select(schema.names).cast(schema) for path in sorted(paths)]
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    table = pa.Table.from_arrays(table.columns, schema=schema)  # drops whatever metadata a writer added
    if keep is not None:
        table = pa.Table.from_pylist(keep(table.to_pylist()), schema=schema)
    if table.num_rows:
        table = table.sort_by([(name, "ascending") for name in schema.names])
    table = table.combine_chunks()
    pq.write_table(table, target, row_group_size=max(table.num_rows, 1), compression=PARQUET_COMPRESSION,
                   compression_level=PARQUET_COMPRESSION_LEVEL, use_dictionary=True, write_statistics=True,
                   store_schema=True)
    return table.num_rows


def canonical_lines(paths: Sequence[str], target: str, keep: Optional[Callable[[str], bool]] = None) -> int:
    lines: List[str] = []
    for path in sorted(paths):
        with open(path, encoding="utf-8") as handle:
            lines.extend(line.rstrip("\n") for line in handle if line.strip() and (keep is None or keep(line)))
    lines.sort()
    with open(target, "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(line + "\n" for line in lines)
    return len(lines)


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_json(path: str, content: dict) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        json.dump(content, handle, indent=2, sort_keys=True, ensure_ascii=False)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
