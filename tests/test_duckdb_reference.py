"""The batch benchmark's reference (benchmarks/duckdb_reference.py) computes the same answer as the
generator's ground truth, row for row, so a ratio to it compares equal work (docs/benchmarks.md)."""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from benchmarks.duckdb_reference import reconcile
from datagen.generator import GeneratorConfig, generate


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return generate(GeneratorConfig(payments=2_000, seed=23, fmt="parquet"), str(tmp_path_factory.mktemp("duck")))


def test_the_duckdb_reference_gives_the_ground_truth_row_for_row(dataset, tmp_path):
    out = tmp_path / "duckdb.parquet"
    statuses = reconcile(Path(dataset.out_dir), out)
    assert statuses == {status: n for status, n in dataset.expected["statuses"].items() if n}
    fields = ("processor", "processor_reference", "kind", "status", "ledger_event_id", "settlement_id")
    rows = pq.read_table(out, columns=list(fields)).to_pylist()
    got = Counter(tuple(row[name] or "" for name in fields) for row in rows)
    with open(dataset.ground_truth_path, encoding="utf-8", newline="") as handle:
        expected = Counter(tuple(row[name] for name in fields) for row in csv.DictReader(handle))
    assert got == expected and len(rows) > 2_000
