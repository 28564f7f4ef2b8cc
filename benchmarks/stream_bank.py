"""Benchmark of the third leg on a live stream (issue 21): what `--bank-statements-topic` costs a catch-up.

    python benchmarks/stream_bank.py [--payments 20000] [--days 20] [--runner prism|flink] [--json PATH]

Needs `make engine-kafka engine-prism` (and `make engine-flink` for `--runner flink`). Starts an Apache
Kafka broker, generates N payments over D days with camt.053 statements, replays payments, settlement
lines and statements (one message per file) into fresh topics, then launches unbounded `paybeam stream
--start earliest` twice on the same topics (fresh groups): without and with the bank-statements topic.
Each run is timed from launch until its outputs hold the batch answer (`paybeam reconcile
--bank-statements --as-of <today>`): every result key; with the bank leg also the last revision of every
payout and bank-match key (WITHDRAWN keys dropped) equal to batch on every column. The difference is
what the bank leg adds. A script, not a test: timings never gate CI.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Dict, List

import pyarrow.parquet as pq
from confluent_kafka import Consumer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis.results import load_outputs  # noqa: E402
from benchmarks.stream_runs import StreamProcess, result_key  # noqa: E402
from datagen.generator import GeneratorConfig, generate  # noqa: E402
from pipelines.brokers.apache_kafka import ApacheKafkaBroker  # noqa: E402
from pipelines.cli import main as paybeam  # noqa: E402
from pipelines.io.kafka import create_topics  # noqa: E402
from pipelines.kafka_tools import replay_files  # noqa: E402

PARTITIONS = 3
DEADLINE_SECONDS = 1800


class TopicWatch:
    """Every message of some topics so far, decoded (JSON), read by one consumer from the beginning."""

    def __init__(self, bootstrap: str, topics: List[str]):
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}",
                                   "auto.offset.reset": "earliest", "enable.auto.commit": False})
        self._consumer.subscribe(topics)
        self.rows: Dict[str, List[dict]] = {topic: [] for topic in topics}

    def poll(self) -> None:
        for message in self._consumer.consume(10_000, 0.5):
            if message.error() is None:
                self.rows[message.topic()].append(json.loads(message.value()))

    def close(self) -> None:
        self._consumer.close()


def _canonical(rows) -> List[str]:
    return sorted(json.dumps({k: (None if v in ("", None) else str(v)) for k, v in row.items()
                              if k not in ("revision", "is_final")}, sort_keys=True) for row in rows)


def _last_rows(rows: List[dict], key: Callable[[dict], tuple]) -> List[dict]:
    last: Dict[tuple, dict] = {}
    for row in rows:
        if key(row) not in last or row["revision"] > last[key(row)]["revision"]:
            last[key(row)] = row
    return [row for row in last.values() if row["status"] != "WITHDRAWN"]


def _payout_key(row: dict) -> tuple:
    return row["processor"], row["payout_id"]


def _match_key(row: dict) -> tuple:
    return ("payout", row["processor"], row["payout_id"]) if row["payout_id"] else ("credit", row["account"],
                                                                                     row["entry_ref"])


def _timed_run(arguments: List[str], bootstrap: str, topics: Dict[str, str], expected: dict, log: Path,
               with_bank: bool) -> Dict[str, float]:
    watch = TopicWatch(bootstrap, [topics["results"]] + ([topics["payouts"], topics["bank_matches"]] if with_bank else []))
    run = StreamProcess(arguments, log)
    times: Dict[str, float] = {}
    try:
        while time.monotonic() - run.started < DEADLINE_SECONDS:
            if not run.alive():
                raise SystemExit(f"paybeam stream exited:\n{run.log_tail()}")
            watch.poll()
            elapsed = time.monotonic() - run.started
            if "results" not in times and expected["results"] <= {result_key(r) for r in watch.rows[topics["results"]]}:
                times["results"] = elapsed
            if with_bank and "bank" not in times and _canonical(_last_rows(
                    watch.rows[topics["payouts"]], _payout_key)) == expected["payouts"] and _canonical(_last_rows(
                    watch.rows[topics["bank_matches"]], _match_key)) == expected["bank_matches"]:
                times["bank"] = elapsed
            if "results" in times and (not with_bank or "bank" in times):
                return times
        raise SystemExit(f"no complete answer after {DEADLINE_SECONDS}s: {times}\n{run.log_tail()}")
    finally:
        run.stop()
        watch.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--runner", choices=("prism", "flink"), default="prism")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="stream-bank-"))
    generate(GeneratorConfig(payments=args.payments, seed=11, days=args.days, bank_statements="camt053"),
             str(work / "data"))
    data = {name: str(work / "data" / name / "*") for name in ("payments", "settlements", "bank_statements")}
    as_of = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT00:00:00Z")
    assert paybeam(["reconcile", "--payments", data["payments"], "--settlements", data["settlements"],
                    "--bank-statements", data["bank_statements"], "--as-of", as_of, "--output",
                    str(work / "batch")]) == 0
    batch = load_outputs(str(work / "batch"))
    expected = {"results": set(zip(batch.results["processor"], batch.results["processor_reference"],
                                   batch.results["kind"]))}
    for name in ("payouts", "bank_matches"):
        expected[name] = _canonical(pq.read_table(str(work / "batch" / name)).to_pylist())
    if args.runner == "prism":
        runner = ["--runner", "PrismRunner"]
    else:
        from tests.flink_helpers import flink_args, flink_engine_dir

        runner = flink_args(flink_engine_dir(), "[local]", "--environment_type=LOOPBACK", "--parallelism=1",
                            "--checkpointing_interval=10000")
    figures = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "machine": f"{platform.node()} ({platform.processor() or platform.machine()})",
               "payments": args.payments, "days": args.days, "runner": args.runner}
    with ApacheKafkaBroker() as broker:
        bootstrap = broker.bootstrap_servers
        names = ("payments", "settlements", "bank_statements", "results", "daily_totals", "alerts", "dead_letters",
                 "payouts", "bank_matches")
        for with_bank in (False, True):
            topics = {name: f"bench-{name}-{uuid.uuid4().hex[:8]}" for name in names}
            create_topics(bootstrap, [topics[name] for name in names], partitions=PARTITIONS)
            report = replay_files(bootstrap, [data["payments"]], [data["settlements"]], topics["payments"],
                                  topics["settlements"], bank_patterns=[data["bank_statements"]],
                                  bank_topic=topics["bank_statements"])
            arguments = ["stream", "--bootstrap-servers", bootstrap, "--start", "earliest", "--group-id",
                         f"bench-{uuid.uuid4().hex[:8]}", "--status-interval", "0", *runner]
            for name in names:
                if name != "bank_statements" and name not in ("payouts", "bank_matches") or with_bank:
                    arguments += [f"--{name.replace('_', '-')}-topic", topics[name]]
            label = "with_bank" if with_bank else "without_bank"
            times = _timed_run(arguments, bootstrap, topics, expected, work / f"{label}.log", with_bank)
            figures[label] = {**times, "messages": report.payment_messages + report.settlement_messages,
                              "statements": report.bank_statements}
            print(label, figures[label], flush=True)
    figures["payouts"], figures["bank_matches"] = len(expected["payouts"]), len(expected["bank_matches"])
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
