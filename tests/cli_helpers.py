"""Helpers for tests that run the `paybeam` CLI and read what it wrote."""
from __future__ import annotations

import csv
import glob
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, List, Sequence

import pyarrow.parquet as pq

from pipelines.cli import main


def reconcile(payments: str, settlements: str, output: str, *extra: str) -> int:
    return main(["reconcile", "--payments", payments, "--settlements", settlements, "--output", output, *extra])


def cli_with_file_size_limit(limit_bytes: int, cli_args: Sequence[str]) -> List[str]:
    """A command running `python -m pipelines.cli CLI_ARGS` under RLIMIT_FSIZE = limit_bytes: every write past
    it fails with EFBIG, as a full disk would with ENOSPC (CPython ignores SIGXFSZ, which would kill it).

    A small interpreter sets the limit and execs the CLI. Not a Popen preexec_fn: Python code between
    fork and exec makes subprocess fork() instead of vfork(), which runs the fork handlers of gRPC (loaded
    by every test that ran Beam before); they restart gRPC's poller in the child, and closing the
    inherited descriptors then aborts it before exec ("epoll_wait error: Bad file descriptor", exit -6:
    a clean-clone CI run, 2026-12-07; grpc/grpc#43055)."""
    set_limit_then_exec = ("import os, resource, sys; "
                           "resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1]))); "
                           "os.execv(sys.executable, [sys.executable, '-m', 'pipelines.cli', *sys.argv[2:]])")
    return [sys.executable, "-c", set_limit_then_exec, str(limit_bytes), *cli_args]


def reconcile_with_each_engine(base, payments_text: str, settlements_text: str, *extra: str,
                               settlements_name: str = "settlements.csv") -> Dict[str, str]:
    """Writes the two inputs under `base` and reconciles them with each engine (`--csv`);
    returns each engine's output directory."""
    from pipelines.reconcile_batch import ENGINES

    payments, settlements = Path(base) / "payments.csv", Path(base) / settlements_name
    payments.write_text(payments_text, encoding="utf-8")
    settlements.write_text(settlements_text, encoding="utf-8")
    outputs = {}
    for engine in ENGINES:
        outputs[engine] = str(Path(base) / f"out-{engine}")
        assert reconcile(str(payments), str(settlements), outputs[engine], "--csv", "--engine", engine, *extra) == 0
    return outputs


def output_rows(output: str, name: str) -> List[dict]:
    """The rows of one Parquet output directory of a run (results, daily_totals, payouts, ...)."""
    rows: List[dict] = []
    for path in sorted(glob.glob(os.path.join(output, name, "*.parquet"))):
        rows.extend(pq.read_table(path).to_pylist())
    return rows


def results(output: str) -> List[dict]:
    return output_rows(output, "results")


def daily_totals(output: str) -> List[dict]:
    return output_rows(output, "daily_totals")


def dead_letters(output: str) -> List[dict]:
    letters: List[dict] = []
    for path in sorted(glob.glob(os.path.join(output, "dead_letters", "*.jsonl"))):
        with open(path, encoding="utf-8") as handle:
            letters.extend(json.loads(line) for line in handle if line.strip())
    return letters


def run_summary(output: str) -> dict:
    with open(os.path.join(output, "run.json"), encoding="utf-8") as handle:
        return json.load(handle)


def result_multiset(rows: List[dict]) -> Counter:
    return Counter((r["processor"], r["processor_reference"], r["kind"], r["status"],
                    r["ledger_event_id"] or "", r["settlement_id"] or "") for r in rows)


def ground_truth_multiset(path: str) -> Counter:
    with open(path, encoding="utf-8", newline="") as handle:
        return Counter((r["processor"], r["processor_reference"], r["kind"], r["status"],
                        r["ledger_event_id"], r["settlement_id"]) for r in csv.DictReader(handle))
