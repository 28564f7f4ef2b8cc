"""Batch benchmark: paybeam on the DirectRunner versus DuckDB on the same Parquet files.

    python benchmarks/batch_reconcile.py 1000000 [--data-dir benchmarks/data] [--runner-args ...]

Generates (or reuses) N payments as Parquet, runs `paybeam reconcile` in a
child process (timed, peak RSS from the kernel's rusage of the child), then
lets DuckDB do the equivalent status classification (validation, de-duplication
of re-deliveries, primaries and duplicates, deadlines at the same as_of) and
prints both times, their ratio, records/s and whether the per-status counts
agree. A script, not a test: timings never gate CI.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from datagen.generator import GeneratorConfig, generate  # noqa: E402
from schemas.money import CURRENCY_EXPONENTS  # noqa: E402
from schemas.records import EVENT_TYPES, RECORD_TYPES  # noqa: E402

CLASSIFY_SQL = """
WITH payments AS (
    SELECT DISTINCT ON (event_id) * FROM read_parquet($payments)
    WHERE event_id <> '' AND payment_id <> '' AND processor_reference <> '' AND merchant_id <> ''
      AND amount_minor > 0 AND event_type IN (SELECT unnest($event_types))
      AND upper(currency) IN (SELECT unnest($currencies))
),
lines AS (
    SELECT DISTINCT ON (settlement_id) * FROM read_parquet($settlements)
    WHERE settlement_id <> '' AND processor_reference <> '' AND merchant_id <> ''
      AND gross_minor > 0 AND net_minor = gross_minor - fee_minor
      AND record_type IN (SELECT unnest($record_types))
      AND upper(currency) IN (SELECT unnest($currencies))
),
as_of AS (
    SELECT greatest((SELECT max(event_time) FROM payments), (SELECT max(booked_time) FROM lines)) AS t
),
ledger AS (
    SELECT processor, processor_reference,
           CASE event_type WHEN 'CAPTURED' THEN 'CAPTURE' WHEN 'REFUNDED' THEN 'REFUND' ELSE 'CHARGEBACK' END AS kind,
           event_id, amount_minor, upper(currency) AS currency, event_time,
           row_number() OVER (PARTITION BY processor, processor_reference, event_type
                              ORDER BY event_time, event_id) AS rank
    FROM payments WHERE event_type IN ('CAPTURED', 'REFUNDED', 'CHARGEBACK')
),
settled AS (
    SELECT processor, processor_reference, record_type AS kind,
           settlement_id, gross_minor, upper(currency) AS currency, booked_time,
           row_number() OVER (PARTITION BY processor, processor_reference, record_type
                              ORDER BY booked_time, settlement_id) AS rank
    FROM lines WHERE record_type IN ('CAPTURE', 'REFUND', 'CHARGEBACK')
),
primaries AS (
    SELECT CASE
        WHEN l.event_id IS NOT NULL AND s.settlement_id IS NOT NULL THEN
            CASE WHEN l.currency <> s.currency THEN 'CURRENCY_MISMATCH'
                 WHEN abs(s.gross_minor - l.amount_minor) <= $tolerance THEN 'MATCHED'
                 ELSE 'AMOUNT_MISMATCH' END
        WHEN l.event_id IS NOT NULL THEN
            CASE WHEN (SELECT t FROM as_of) >= l.event_time + to_seconds($sla) THEN 'MISSING_SETTLEMENT'
                 ELSE 'PENDING' END
        ELSE
            CASE WHEN (SELECT t FROM as_of) >= s.booked_time + to_seconds($grace) THEN 'UNEXPECTED_SETTLEMENT'
                 ELSE 'PENDING' END
        END AS status
    FROM (SELECT * FROM ledger WHERE rank = 1) l
    FULL OUTER JOIN (SELECT * FROM settled WHERE rank = 1) s
      ON l.processor = s.processor AND l.processor_reference = s.processor_reference AND l.kind = s.kind
),
all_rows AS (
    SELECT status FROM primaries
    UNION ALL SELECT 'DUPLICATE_LEDGER_EVENT' FROM ledger WHERE rank > 1
    UNION ALL SELECT 'DUPLICATE_SETTLEMENT' FROM settled WHERE rank > 1
)
SELECT status, count(*) AS n FROM all_rows GROUP BY status ORDER BY status
"""


def ensure_dataset(payments: int, data_dir: Path, seed: int) -> Path:
    out = data_dir / f"n{payments}-seed{seed}"
    if (out / "expected.json").exists():
        print(f"reusing {out}")
        return out
    started = time.monotonic()
    generate(GeneratorConfig(payments=payments, seed=seed, fmt="parquet"), str(out), progress=True)
    print(f"generated {out} in {time.monotonic() - started:.1f}s")
    return out


def run_pipeline(data: Path, output: Path, runner_args: list) -> tuple:
    command = [sys.executable, "-m", "pipelines.cli", "reconcile",
               "--payments", str(data / "payments" / "*"), "--settlements", str(data / "settlements" / "*"),
               "--output", str(output), *runner_args]
    started = time.monotonic()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    summary = json.loads((output / "run.json").read_text())
    return seconds, peak_rss_mb, summary


def run_duckdb(data: Path) -> tuple:
    started = time.monotonic()
    connection = duckdb.connect()
    rows = connection.execute(CLASSIFY_SQL, {
        "payments": str(data / "payments" / "*.parquet"),
        "settlements": str(data / "settlements" / "*.parquet"),
        "event_types": list(EVENT_TYPES), "record_types": list(RECORD_TYPES),
        "currencies": sorted(CURRENCY_EXPONENTS), "tolerance": 0,
        "sla": 3 * 86_400, "grace": 86_400,
    }).fetchall()
    return time.monotonic() - started, dict(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("payments", type=int)
    parser.add_argument("--data-dir", type=Path, default=ROOT / "benchmarks" / "data")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--runner-args", nargs=argparse.REMAINDER, default=[],
                        help="extra flags for paybeam reconcile, e.g. --direct_num_workers=2")
    args = parser.parse_args()

    data = ensure_dataset(args.payments, args.data_dir, args.seed)
    expected = json.loads((data / "expected.json").read_text())
    records = expected["counts"]["payments"]["read"] + expected["counts"]["settlements"]["read"]

    beam_seconds, peak_rss_mb, summary = run_pipeline(data, data / "out", args.runner_args)
    duck_seconds, duck_statuses = run_duckdb(data)

    print()
    print(f"N = {args.payments:,} payments -> {records:,} input records "
          f"({expected['counts']['payments']['read']:,} payment events, "
          f"{expected['counts']['settlements']['read']:,} settlement lines)")
    print(f"{'engine':<28}{'seconds':>10}{'records/s':>14}{'peak RSS MB':>14}")
    print(f"{'paybeam (DirectRunner)':<28}{beam_seconds:>10.1f}{records / beam_seconds:>14,.0f}{peak_rss_mb:>14,.0f}")
    print(f"{'DuckDB (same SQL rules)':<28}{duck_seconds:>10.2f}{records / duck_seconds:>14,.0f}{'-':>14}")
    print(f"ratio paybeam / DuckDB: {beam_seconds / duck_seconds:,.0f}x")
    agree = summary["statuses"] == duck_statuses == expected["statuses"]
    print(f"per-status counts: paybeam == DuckDB == ground truth: {agree}")
    if not agree:
        print(json.dumps({"paybeam": summary["statuses"], "duckdb": duck_statuses,
                          "ground_truth": expected["statuses"]}, indent=2, sort_keys=True))
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
