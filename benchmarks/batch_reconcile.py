"""Batch benchmark: paybeam's two engines on each runner versus DuckDB, on the same Parquet files.

    python benchmarks/batch_reconcile.py 1000000 [--engines columnar,elementwise] [--runners direct,flink,prism]
                                         [--copies K] [--runner-args ...]

Generates (or reuses) N payments as Parquet, then runs, each as a child
process (whole-process wall time, Python and Beam start-up included): the
DuckDB reference (benchmarks/duckdb_reference.py: the same rules as one SQL
query, result rows written to Parquet) and `paybeam reconcile` with each
engine on each runner (`direct`: the DirectRunner; `flink`: the embedded
Flink `make engine-flink` fetched, `--runner FlinkRunner`). Peak memory is
the largest sum of RSS over the child's process tree (sampled every 0.2 s:
the launcher, a job server's JVM, SDK workers), never less than the
kernel's peak RSS of the child itself. Prints a table with seconds,
records/s, peak memory and the ratio to DuckDB, and whether every per-status
count equals DuckDB's and the generator's ground truth. A script, not a
test: timings never gate CI.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.stream_runs import process_tree, rss_by_name  # noqa: E402


def ensure_dataset(payments: int, data_dir: Path, seed: int) -> Path:
    out = data_dir / f"n{payments}-seed{seed}"
    if (out / "expected.json").exists():
        print(f"reusing {out}")
        return out
    started = time.monotonic()
    # In a child: Linux gives an exec'd child the peak RSS of the process it was forked from
    # (ru_maxrss), so a benchmark process that had generated 10M itself reported 15 GB for every run.
    subprocess.run([sys.executable, "-m", "pipelines.cli", "generate", "--payments", str(payments),
                    "--seed", str(seed), "--format", "parquet", "--out", str(out)], cwd=ROOT, check=True)
    print(f"generated {out} in {time.monotonic() - started:.1f}s")
    return out


def ensure_copies(source: Path, copies: int) -> Path:
    out = source.with_name(f"{source.name}-x{copies}")
    if (out / "expected.json").exists():
        print(f"reusing {out}")
        return out
    started = time.monotonic()
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "replicate_dataset.py"), str(source), str(out),
                    "--copies", str(copies)], cwd=ROOT, check=True)
    print(f"replicated {out} in {time.monotonic() - started:.1f}s")
    return out


RUNNER_FLAGS = {"direct": [], "flink": ["--runner", "FlinkRunner"], "prism": ["--runner", "PrismRunner"]}


class TreeMemory(threading.Thread):
    """The largest sum of RSS over a process and its descendants, sampled until `stop()`."""

    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak = pid, interval, 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.interval):
            processes = process_tree(self.pid)
            if not processes:
                return
            self.peak = max(self.peak, sum(rss_by_name(processes).values()))

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak


def run_child(command: list) -> tuple:
    """(wall seconds, peak memory of its process tree in MB, stdout) of one child process."""
    started = time.monotonic()
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    memory = TreeMemory(child.pid)
    memory.start()
    stdout = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.monotonic() - started
    tree_peak = memory.stop()
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit code {child.returncode}")
    return seconds, max(usage.ru_maxrss * 1024, tree_peak) / 2 ** 20, stdout


def run_paybeam(data: Path, engine: str, runner: str, runner_args: list) -> tuple:
    output = data / f"out-{engine}-{runner}"
    shutil.rmtree(output, ignore_errors=True)
    seconds, rss, _ = run_child([sys.executable, "-m", "pipelines.cli", "reconcile",
                                 "--payments", str(data / "payments" / "*"),
                                 "--settlements", str(data / "settlements" / "*"),
                                 "--output", str(output), "--engine", engine, *RUNNER_FLAGS[runner],
                                 *runner_args])
    summary = json.loads((output / "run.json").read_text())
    return seconds, rss, summary["statuses"]


def run_duckdb(data: Path) -> tuple:
    seconds, rss, stdout = run_child([sys.executable, str(ROOT / "benchmarks" / "duckdb_reference.py"), str(data),
                                      str(data / "duckdb-results.parquet")])
    return seconds, rss, json.loads(stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("payments", type=int)
    parser.add_argument("--data-dir", type=Path, default=ROOT / "benchmarks" / "data")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--copies", type=int, default=1,
                        help="run on K disjoint copies of the N-payment dataset (benchmarks/replicate_dataset.py): "
                             "30M payments from the 10M one in about a minute (the generator takes 11)")
    parser.add_argument("--engines", default="columnar",
                        help="comma-separated paybeam engines to run (columnar, elementwise); "
                             "elementwise takes ~25 min at 1M")
    parser.add_argument("--runners", default="direct",
                        help="comma-separated runners (direct; flink: the embedded Flink of `make engine-flink`; "
                             "prism: `make engine-prism`)")
    parser.add_argument("--runner-args", nargs=argparse.REMAINDER, default=[],
                        help="extra flags for paybeam reconcile, e.g. --direct_num_workers=2")
    args = parser.parse_args()

    data = ensure_dataset(args.payments, args.data_dir, args.seed)
    if args.copies > 1:
        data = ensure_copies(data, args.copies)
    expected = json.loads((data / "expected.json").read_text())
    records = expected["counts"]["payments"]["read"] + expected["counts"]["settlements"]["read"]

    duck_seconds, duck_rss, duck_statuses = run_duckdb(data)
    rows = [("DuckDB (same rules, one query)", duck_seconds, duck_rss, duck_statuses)]
    for runner in args.runners.split(","):
        for engine in args.engines.split(","):
            seconds, rss, statuses = run_paybeam(data, engine.strip(), runner.strip(), args.runner_args)
            rows.append((f"paybeam {runner.strip()} --engine {engine.strip()}", seconds, rss, statuses))

    print()
    print(f"{date.today()} on {platform.node()} ({os.cpu_count()} cores, {platform.machine()}); "
          f"runner args: {' '.join(args.runner_args) or '(defaults)'}")
    print(f"N = {args.payments * args.copies:,} payments -> {records:,} input records "
          f"({expected['counts']['payments']['read']:,} payment events, "
          f"{expected['counts']['settlements']['read']:,} settlement lines)")
    print(f"{'engine':<34}{'seconds':>9}{'x DuckDB':>10}{'records/s':>12}{'peak MB':>13}  statuses agree")
    agree_all = True
    for name, seconds, rss, statuses in rows:
        agree = statuses == duck_statuses == expected["statuses"]
        agree_all &= agree
        print(f"{name:<34}{seconds:>9.1f}{seconds / duck_seconds:>10.1f}{records / seconds:>12,.0f}{rss:>13,.0f}"
              f"  {agree}")
        if not agree:
            print(json.dumps({"this": statuses, "duckdb": duck_statuses, "ground_truth": expected["statuses"]},
                             indent=2, sort_keys=True))
    return 0 if agree_all else 1


if __name__ == "__main__":
    sys.exit(main())
