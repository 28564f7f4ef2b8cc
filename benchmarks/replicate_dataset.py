"""K disjoint copies of a generated Parquet dataset: a 30M-payment input from the 10M one, in minutes.

    python benchmarks/replicate_dataset.py SOURCE_DIR DEST_DIR --copies 3

`paybeam generate` writes 30M payments too since 2026-12-05 (6.5 GB, 11 minutes),
but copying takes about a minute and keeps the 30M benchmark on the data of its
earlier rows. Copy k (0 = the source as it
is) rotates every ASCII letter of the record ids, references and payout ids
by k places (`evt_` -> `fwu_`), so copies share no id and no reconciliation
key, while digits, lengths and every other field stay as they were: a record
valid or rejected in the source is so in every copy (card-number checks look
at digits), and the answer is the source's, K times. expected.json says so
(counts, statuses and keys times K). Row group by row group, in bounded memory.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROTATED = {"payments": ("event_id", "payment_id", "processor_reference"),
           "settlements": ("settlement_id", "processor_reference", "payout_id")}


def rotation_table(k: int) -> np.ndarray:
    """A byte map: ASCII letters rotated by k within their case, every other byte unchanged."""
    table = np.arange(256, dtype=np.uint8)
    for first in (ord("a"), ord("A")):
        table[first:first + 26] = first + (np.arange(26) + k) % 26
    return table


def rotated(column: pa.ChunkedArray, table: np.ndarray) -> pa.ChunkedArray:
    chunks = []
    for chunk in column.chunks:
        chunk = chunk.cast(pa.string())
        validity, offsets, data = chunk.buffers()
        if data is None:
            chunks.append(chunk)
            continue
        mapped = pa.py_buffer(table[np.frombuffer(data, dtype=np.uint8)].tobytes())
        chunks.append(pa.Array.from_buffers(pa.string(), len(chunk), [validity, offsets, mapped], chunk.null_count,
                                            chunk.offset))
    return pa.chunked_array(chunks, pa.string())


def replicate(source: Path, dest: Path, copies: int) -> None:
    for name, columns in ROTATED.items():
        (dest / name).mkdir(parents=True, exist_ok=True)
        for path in sorted((source / name).glob("*.parquet")):
            reader = pq.ParquetFile(path)
            for k in range(copies):
                rotation = rotation_table(k)
                out = dest / name / f"{path.stem}-copy{k}.parquet"
                with pq.ParquetWriter(out, reader.schema_arrow) as writer:
                    for group in range(reader.metadata.num_row_groups):
                        table = reader.read_row_group(group)
                        for column in columns:
                            position = table.schema.get_field_index(column)
                            table = table.set_column(position, table.schema.field(position),
                                                     rotated(table.column(column), rotation))
                        writer.write_table(table)
    expected = json.loads((source / "expected.json").read_text())
    expected["payments"] *= copies
    expected["copies"] = copies
    expected["keys"] *= copies
    expected["statuses"] = {status: count * copies for status, count in expected["statuses"].items()}
    expected["counts"] = {name: {what: count * copies for what, count in counts.items()}
                          for name, counts in expected["counts"].items()}
    (dest / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--copies", type=int, default=3)
    args = parser.parse_args()
    if args.copies < 1 or args.copies > 26:
        parser.error("--copies must be 1..26 (a letter rotates back after 26)")
    os.makedirs(args.dest, exist_ok=True)
    replicate(args.source, args.dest, args.copies)
    print(f"wrote {args.copies} copies of {args.source} to {args.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
