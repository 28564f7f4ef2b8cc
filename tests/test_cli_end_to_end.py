"""End to end through the CLI on generated data: 100% agreement with ground truth, and conservation.

Every data set runs through both engines; each must equal the ground truth,
and the two must write identical results, daily totals, dead letters and
counts (tests/engine_parity.py).
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from datagen.generator import GeneratorConfig, generate
from pipelines.reconcile_batch import ENGINES
from tests.cli_helpers import (
    daily_totals,
    dead_letters,
    ground_truth_multiset,
    reconcile,
    result_multiset,
    results,
    run_summary,
)
from tests.engine_parity import assert_same_outputs

PAYMENTS = 1500


@pytest.fixture(scope="module", params=["csv", "jsonl", "avro", "parquet", "vendor"])
def both_engines(request, tmp_path_factory):
    fmt = "csv" if request.param == "vendor" else request.param
    base = tmp_path_factory.mktemp(request.param)
    dataset = generate(GeneratorConfig(payments=PAYMENTS, seed=11, fmt=fmt,
                                       vendor_reports=request.param == "vendor"), str(base / "data"))
    outputs = {}
    for engine in ENGINES:
        outputs[engine] = str(base / f"out-{engine}")
        exit_code = reconcile(os.path.join(dataset.out_dir, "payments", "*"),
                              os.path.join(dataset.out_dir, "settlements", "*"), outputs[engine], "--csv",
                              "--engine", engine)
        assert exit_code == 0
    return request.param, dataset, outputs


@pytest.fixture(params=ENGINES)
def reconciled(request, both_engines):
    fmt, dataset, outputs = both_engines
    return fmt, dataset, outputs[request.param]


def test_both_engines_write_identical_outputs(both_engines):
    _, _, outputs = both_engines
    assert_same_outputs(outputs["columnar"], outputs["elementwise"])


def test_results_equal_ground_truth(reconciled):
    _, dataset, output = reconciled
    rows = results(output)
    assert rows, "no results written"
    assert all(row["revision"] == 1 and row["is_final"] for row in rows)
    assert result_multiset(rows) == ground_truth_multiset(dataset.ground_truth_path)


def test_counts_are_conserved_and_match_the_generator(reconciled):
    _, dataset, output = reconciled
    summary = run_summary(output)
    for name in ("payments", "settlements"):
        counts = summary["inputs"][name]
        assert counts["read"] == counts["accepted"] + counts["rejected"]
        expected = dataset.expected["counts"][name]
        assert (counts["read"], counts["rejected"], counts["deduplicated"]) == (
            expected["read"], expected["rejected"], expected["deduplicated"])
    assert summary["statuses"] == dataset.expected["statuses"]
    assert summary["as_of"][:19] == dataset.expected["as_of"][:19]
    rejected = sum(summary["inputs"][name]["rejected"] for name in ("payments", "settlements"))
    letters = dead_letters(output)
    assert len(letters) == rejected
    assert all(letter["reason"] and letter["raw_payload"] and letter["source"] for letter in letters)


def test_daily_totals_are_final_on_time_panes(reconciled):
    _, _, output = reconciled
    totals = daily_totals(output)
    assert totals
    assert {(t["pane_timing"], t["pane_index"], t["is_final"]) for t in totals} == {("ON_TIME", 0, True)}
    assert all(t["settled_net_minor"] == t["settled_gross_minor"] - t["fee_minor"] for t in totals)
    assert len({(t["merchant_id"], t["currency"], t["settlement_day"]) for t in totals}) == len(totals)
    assert sum(t["break_count"] for t in totals) == sum(
        n for status, n in run_summary(output)["statuses"].items() if status not in ("MATCHED", "PENDING"))


def test_csv_copies_are_written(reconciled):
    _, _, output = reconciled
    names = sorted(os.listdir(os.path.join(output, "csv")))
    assert any(name.startswith("results") for name in names)
    assert any(name.startswith("daily_totals") for name in names)


def test_console_script_prints_the_summary(tmp_path):
    dataset = generate(GeneratorConfig(payments=200, seed=3), str(tmp_path / "data"))
    completed = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "reconcile",
         "--payments", os.path.join(dataset.out_dir, "payments", "*"),
         "--settlements", os.path.join(dataset.out_dir, "settlements", "*"),
         "--output", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "MATCHED" in completed.stdout and "payments" in completed.stdout
