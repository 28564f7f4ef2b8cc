"""The benchmark's replicated datasets (benchmarks/replicate_dataset.py): K disjoint copies whose answer
is the source's K times, so a 30M run from the 10M data is checked like any other (docs/benchmarks.md)."""
from __future__ import annotations

import glob
import os
from collections import Counter

import pyarrow.parquet as pq

from benchmarks.replicate_dataset import replicate
from datagen.generator import GeneratorConfig, generate
from tests.cli_helpers import reconcile, results, run_summary


def test_three_copies_reconcile_to_three_times_the_source_answer(tmp_path):
    source = generate(GeneratorConfig(payments=1_500, seed=31, fmt="parquet"), str(tmp_path / "source"))
    dest = tmp_path / "x3"
    replicate(tmp_path / "source", dest, 3)
    # Ids with a letter move (the malformed rows' empty or digit-only ids stay malformed alike).
    ids = [{value for value in pq.read_table(path, columns=["event_id"]).column(0).to_pylist()
            if value and any(char.isalpha() for char in value)}
           for path in sorted(glob.glob(str(dest / "payments" / "*.parquet")))]
    assert len(ids) == 3 and not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert reconcile(str(dest / "payments" / "*"), str(dest / "settlements" / "*"), str(tmp_path / "out")) == 0
    summary = run_summary(str(tmp_path / "out"))
    assert summary["statuses"] == {status: 3 * n for status, n in source.expected["statuses"].items()}
    for name in ("payments", "settlements"):
        assert {what: summary["inputs"][name][what] for what in ("read", "accepted", "rejected")} == {
            what: 3 * source.expected["counts"][name][what] for what in ("read", "accepted", "rejected")}
    # The copies' rows are the source's with rotated ids: same amounts, same statuses per amount.
    by_amount = Counter((row["status"], row["ledger_amount_minor"]) for row in results(str(tmp_path / "out")))
    assert all(count % 3 == 0 for count in by_amount.values())
    assert os.path.exists(dest / "expected.json")
