"""The live risk shard alone, in one process: how a chunk's cost grows with what the shard keeps.

    python benchmarks/risk_shard.py [--attempts 100000 990863] [--chunk 5000] [--live 60000] [--rules FILE]

(1) Backlog: per size, `paybeam risk generate` attempts (3 days, the six attacks, 4 merchants) in
    event-time order, decided by one `LiveRiskShard` in chunks of --chunk with the example rules:
    attempts/s overall and for the last tenth (where the shard keeps the most).
(2) Live-like (--live N): N attempts a millisecond apart of 20,000 cards and 4 merchants (the
    attempts `benchmarks/risk_stream.py` produces for its latency part) in chunks of 50: milliseconds
    per chunk by how many attempts the shard keeps, which stays flat when a chunk's cost follows its
    own size. The same runs with the index off (`index_after_rows` beyond the run) for comparison.

No runner, no broker: the deciding step's own cost (docs/benchmarks.md "Live risk stream").
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import List

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schemas import arrow  # noqa: E402
from transforms.columnar.live_risk import INDEX_AFTER_ROWS, LiveRiskShard  # noqa: E402
from transforms.risk.rules import load_rules_file  # noqa: E402

RULES = Path(__file__).resolve().parents[1] / "transforms" / "risk" / "example_rules.yaml"
ATTEMPTS_PER_CUSTOMER = 4.63  # what `paybeam risk generate` writes over 3 days
NEVER = 10 ** 12


def generated(attempts: int, work: Path) -> pa.Table:
    out = work / f"attempts-{attempts}"
    subprocess.run([sys.executable, "-m", "pipelines.cli", "risk", "generate", "--out", str(out), "--customers",
                    str(max(1, round(attempts / ATTEMPTS_PER_CUSTOMER))), "--format", "parquet"],
                   check=True, stdout=subprocess.DEVNULL)
    table = pa.concat_tables(pq.read_table(path) for path in sorted(glob.glob(str(out / "attempts" / "*"))))
    table = table.select(arrow.AUTHORIZATION_ATTEMPT.names).cast(arrow.AUTHORIZATION_ATTEMPT)
    return table.sort_by([("event_time", "ascending"), ("attempt_id", "ascending")])


def live_like(count: int) -> pa.Table:
    rng, start, rows = random.Random(7), 1_700_000_000_000, []
    for index in range(count):
        card = rng.randrange(20_000)
        rows.append({"attempt_id": f"r-{index}", "attempt_type": "AUTHORIZATION", "event_time": start + index,
                     "merchant_id": f"m_{card % 4}", "amount_minor": rng.randrange(100, 50_000), "currency": "USD",
                     "card_fingerprint": f"fp_{card}", "card_bin": "424242", "customer_id": f"cus_{card}",
                     "ip": f"10.0.{card // 256 % 256}.{card % 256}", "device_id": None, "billing_country": "US",
                     "issuing_country": "US", "outcome": "APPROVED", "decline_code": None, "three_ds": None,
                     "payment_id": None})
    return pa.Table.from_pylist(rows, schema=arrow.AUTHORIZATION_ATTEMPT)


def backlog(table: pa.Table, chunk: int, rules) -> dict:
    shard, started, tail_from = LiveRiskShard(), time.perf_counter(), table.num_rows * 9 // 10
    tail_started = started
    for first in range(0, table.num_rows, chunk):
        if first >= tail_from and tail_started == started:
            tail_started = time.perf_counter()
        shard.decide(table.slice(first, chunk), rules)
    ended = time.perf_counter()
    tail_rows = table.num_rows - (tail_from + (-tail_from) % chunk)
    return {"attempts": table.num_rows, "seconds": round(ended - started, 2),
            "attempts_per_second": round(table.num_rows / (ended - started)),
            "last_tenth_attempts_per_second": round(tail_rows / (ended - tail_started)) if tail_rows else None}


def per_chunk(table: pa.Table, index_after_rows: int, rules, chunk: int = 50, report: int = 10_000) -> List[dict]:
    shard, out = LiveRiskShard(index_after_rows=index_after_rows), []
    window_started, chunks = time.perf_counter(), 0
    for first in range(0, table.num_rows, chunk):
        shard.decide(table.slice(first, chunk), rules)
        chunks += 1
        if (first + chunk) % report == 0:
            now = time.perf_counter()
            out.append({"kept": shard.rows, "ms_per_chunk": round((now - window_started) / chunks * 1000, 1)})
            window_started, chunks = now, 0
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attempts", type=int, nargs="*", default=[100_000, 990_863])
    parser.add_argument("--chunk", type=int, default=5_000)
    parser.add_argument("--live", type=int, default=60_000, help="live-like attempts (0: skip)")
    parser.add_argument("--rules", default=str(RULES), help="the rules file (default the seven example rules; "
                        "benchmarks/ten_rules.yaml: the ten of the issue's goals)")
    args = parser.parse_args()
    rules = load_rules_file(args.rules)
    result = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "rules": Path(args.rules).name,
              "machine": f"{platform.node()} ({os.cpu_count()} cores, {platform.machine()})", "backlog": [],
              "live_like": {}}
    with tempfile.TemporaryDirectory(prefix="paybeam-risk-shard-") as work:
        for attempts in args.attempts:
            row = backlog(generated(attempts, Path(work)), args.chunk, rules)
            result["backlog"].append(row)
            print(f"backlog {row['attempts']:,} in chunks of {args.chunk:,}: {row['attempts_per_second']:,} "
                  f"attempts/s, last tenth {row['last_tenth_attempts_per_second']:,}", flush=True)
    if args.live:
        table = live_like(args.live)
        for name, after in (("indexed", INDEX_AFTER_ROWS), ("index off", NEVER)):
            rows = per_chunk(table, after, rules)
            result["live_like"][name] = rows
            print(f"live-like, {name}: " + ", ".join(f"{r['kept']:,} kept {r['ms_per_chunk']} ms" for r in rows),
                  flush=True)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
