"""Risk backtest benchmark: `paybeam risk backtest` with the example rules versus DuckDB window functions.

    python benchmarks/risk_backtest.py 1000000 [--copies K] [--engines columnar,elementwise] [--ten-rules]

Generates (or reuses) about N attempts as Parquet with `paybeam risk generate`
(ordinary traffic and the six attacks, 3 days), optionally K disjoint copies
of them (ids, cards, customers, devices and merchants suffixed per copy, IPv4
addresses moved to another first octet: K times the keys, the same windows).
Then runs, each as a child process (whole-process wall time; peak memory of
the process tree): the DuckDB reference (benchmarks/duckdb_risk_reference.py,
the example rules as one query) and `paybeam risk backtest` with each engine.
Prints seconds, attempts/s, peak memory, the ratio to DuckDB and whether every
attempt's action, score and fired rules equal DuckDB's. A script, not a test.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.batch_reconcile import run_child  # noqa: E402

RULES = ROOT / "transforms" / "risk" / "example_rules.yaml"
TEN_RULES = ROOT / "benchmarks" / "ten_rules.yaml"  # --ten-rules: the ten active rules
ATTEMPTS_PER_CUSTOMER = 4.63  # what `paybeam risk generate` writes over 3 days (92,669 for 20,000 customers)
SUFFIXED = ("attempt_id", "card_fingerprint", "customer_id", "device_id", "merchant_id")


def ensure_dataset(attempts: int, data_dir: Path, seed: int) -> Path:
    out = data_dir / f"attempts-n{attempts}-seed{seed}"
    if (out / "attempts").exists():
        print(f"reusing {out}")
        return out
    started = time.monotonic()
    customers = max(1, round(attempts / ATTEMPTS_PER_CUSTOMER))
    subprocess.run([sys.executable, "-m", "pipelines.cli", "risk", "generate", "--out", str(out), "--customers",
                    str(customers), "--seed", str(seed), "--format", "parquet"], cwd=ROOT, check=True)
    print(f"generated {out} in {time.monotonic() - started:.1f}s")
    return out


def ensure_copies(source: Path, copies: int) -> Path:
    out = source.with_name(f"{source.name}-x{copies}")
    if (out / "attempts").exists():
        print(f"reusing {out}")
        return out
    if copies > 200:
        raise SystemExit("at most 200 copies (IPv4 first octets 10..209)")
    started = time.monotonic()
    table = pq.read_table(next((source / "attempts").glob("*.parquet")))
    (out / "attempts").mkdir(parents=True)
    for copy in range(copies):
        columns = {name: table.column(name) for name in table.column_names}
        for name in SUFFIXED:
            columns[name] = pc.binary_join_element_wise(columns[name], pa.scalar(f"c{copy}"), "_")
        columns["ip"] = pc.replace_substring_regex(columns["ip"], r"^10\.", f"{10 + copy}.")
        pq.write_table(pa.table(columns), out / "attempts" / f"attempts-{copy:03d}.parquet")
    print(f"replicated {out} in {time.monotonic() - started:.1f}s")
    return out


def fired_ids(table: pa.Table) -> pa.Array:
    lists = table.column("fired").combine_chunks()
    if pa.types.is_struct(lists.type.value_type):
        lists = pa.ListArray.from_arrays(lists.offsets, lists.flatten().field("rule_id"))
    return lists


COMPARED = pa.schema([("attempt_id", pa.string()), ("action", pa.string()), ("score", pa.int64()),
                      ("fired", pa.list_(pa.string()))])


def comparable(table: pa.Table) -> pa.Table:
    """attempt_id, action, score and the fired rule ids, by attempt id, in one schema for both engines."""
    table = table.select(["attempt_id", "action", "score"]).append_column("fired", fired_ids(table))
    return pa.Table.from_arrays([column.cast(field.type) for column, field in zip(table.columns, COMPARED)],
                                schema=COMPARED).sort_by("attempt_id")


def run_paybeam(data: Path, engine: str, rules: Path) -> tuple:
    output = data / f"out-{engine}"
    shutil.rmtree(output, ignore_errors=True)
    seconds, rss, _ = run_child([sys.executable, "-m", "pipelines.cli", "risk", "backtest", "--attempts",
                                 str(data / "attempts" / "*"), "--rules", str(rules), "--output", str(output),
                                 "--engine", engine])
    return seconds, rss, output


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("attempts", type=int)
    parser.add_argument("--data-dir", type=Path, default=ROOT / "benchmarks" / "data")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--engines", default="columnar")
    parser.add_argument("--ten-rules", action="store_true",
                        help="benchmarks/ten_rules.yaml (and its query) instead of the seven example rules")
    args = parser.parse_args()
    rules = TEN_RULES if args.ten_rules else RULES

    data = ensure_dataset(args.attempts, args.data_dir, args.seed)
    if args.copies > 1:
        data = ensure_copies(data, args.copies)
    duck_out = data / "duckdb-decisions.parquet"
    duck_seconds, duck_rss, stdout = run_child([sys.executable, str(ROOT / "benchmarks" / "duckdb_risk_reference.py"),
                                                str(data / "attempts" / "*.parquet"), str(duck_out),
                                                *(["--ten"] if args.ten_rules else [])])
    reference = comparable(pq.read_table(duck_out))
    attempts = reference.num_rows
    rows = [("DuckDB (the rules as one query)", duck_seconds, duck_rss, True)]
    for engine in args.engines.split(","):
        seconds, rss, output = run_paybeam(data, engine.strip(), rules)
        decided = comparable(pq.read_table(output / "decisions"))
        rows.append((f"paybeam --engine {engine.strip()}", seconds, rss, decided.equals(reference)))
    print()
    print(f"{date.today()} on {platform.node()} ({os.cpu_count()} cores, {platform.machine()}); actions of "
          f"DuckDB: {stdout.strip()}")
    print(f"N = {attempts:,} attempts, {rules.name}")
    print(f"{'engine':<34}{'seconds':>9}{'x DuckDB':>10}{'attempts/s':>12}{'peak MB':>10}  same decisions")
    for name, seconds, rss, same in rows:
        print(f"{name:<34}{seconds:>9.1f}{seconds / duck_seconds:>10.1f}{attempts / seconds:>12,.0f}{rss:>10,.0f}"
              f"  {same}")
    return 0 if all(same for *_, same in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
