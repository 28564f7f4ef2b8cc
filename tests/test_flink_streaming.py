"""Unbounded `paybeam stream` on a real Flink (issue 11 §2), against the Tansu Kafka-protocol broker.

The job keeps running (no --bounded), revises results as messages arrive (payments and half the
settlements first: the others' payments PENDING; then the rest: MATCHED), fires processing-time EARLY daily-total panes, commits offsets
only when Flink's checkpoints finalize the reading bundles, and is cancelled cleanly on SIGINT.

In `make test-engines` (`engines`). It used to stall in about half the runs (the Kafka readers never
started, checkpoints completing): Flink's first checkpoint after a start comes at a random delay
between the minimum pause and the interval, and one whose barrier reached the readers before their
first bundle (about 2 s after the job starts) stopped them on the served runner (Beam 2.70). paybeam
now sets the minimum pause to the interval for unbounded Flink runs, so the first checkpoint comes
10 s after the start: 7 of 7 runs passed (2 of 4 before; docs/DESIGN.md 7).
"""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import pytest

from datagen.generator import GeneratorConfig, generate
from pipelines.kafka_tools import replay_files
from tests.cli_helpers import reconcile, result_multiset, results
from tests.flink_helpers import flink_args
from tests.kafka_helpers import unique_topic
from tests.stream_helpers import REPO, committed_to_the_end, decoded, final_revisions, new_topics, result_key

DEADLINE_SECONDS = 240
DEADLINES = ("--settlement-sla", "30d", "--ledger-grace", "30d")
# The CLI with INFO logging, so the job server's Flink log lands in the test's log file.
_LAUNCH = ("import logging, sys; logging.basicConfig(level=logging.INFO); "
           "from pipelines.cli import main; sys.exit(main(sys.argv[1:]))")


def _poll(condition, what: str, process: subprocess.Popen, log, deadline_seconds: float = DEADLINE_SECONDS):
    deadline = time.monotonic() + deadline_seconds
    while True:
        value = condition()
        if value:
            return value
        if process.poll() is not None:
            pytest.fail(f"paybeam stream exited with {process.returncode} while waiting for {what}:\n"
                        f"{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {deadline_seconds}s:\n{log.read_text()[-4000:]}")
        time.sleep(1)  # poll interval of the deadline loop


def _references(settlement_csv: str):
    with open(settlement_csv, encoding="utf-8", newline="") as handle:
        return {(row["processor"], row["processor_reference"]) for row in csv.DictReader(handle)}


def _split_settlements(path: str, tmp_path):
    """The settlement CSV as two files: the first half of its lines and the rest (header in both)."""
    header, *lines = open(path, encoding="utf-8").read().splitlines(keepends=True)
    halves = []
    for name, part in (("early", lines[: len(lines) // 2]), ("late", lines[len(lines) // 2:])):
        target = tmp_path / name / "settlements.csv"
        target.parent.mkdir()
        target.write_text(header + "".join(part), encoding="utf-8")
        halves.append(str(target))
    return halves


@pytest.mark.engines
def test_unbounded_stream_on_flink_revises_commits_and_stops(kafka_broker, flink_engine, tmp_path):
    servers = kafka_broker.bootstrap_servers
    # Recent data (5 to 4 days ago) with 30-day deadlines: once the inputs go idle the watermark
    # moves to now (the Kafka source's idle release), every record is evaluated and no deadline has
    # passed, so unsettled payments are PENDING; the held-back settlements are then within the
    # allowed lateness and turn them MATCHED.
    start = datetime.now(timezone.utc) - timedelta(days=5)
    dataset = generate(GeneratorConfig(payments=80, seed=31, days=1, start=start.strftime("%Y-%m-%dT%H:%M:%SZ")),
                       str(tmp_path / "data"))
    payments, settlements = (os.path.join(dataset.out_dir, name, "*") for name in ("payments", "settlements"))
    assert reconcile(payments, settlements, str(tmp_path / "batch"), "--engine", "elementwise", *DEADLINES) == 0
    batch = result_multiset(results(str(tmp_path / "batch")))

    topics = new_topics(servers)
    group = unique_topic("flink-group")
    early, late = _split_settlements(dataset.settlement_files[0], tmp_path)
    # Both inputs get data first (a watermark needs every input to move); the held-back settlements
    # leave their payments PENDING until they arrive while the job runs.
    replay_files(servers, [payments], [early], topics["payments"], topics["settlements"])
    log = tmp_path / "stream.log"
    arguments = ["stream", "--bootstrap-servers", servers, "--start", "earliest", "--group-id", group,
                 "--engine", "elementwise", "--early-firing", "2s", *DEADLINES]
    for name, topic in topics.items():
        arguments += [f"--{name.replace('_', '-')}-topic", topic]
    # Parallelism 1: at 2 the Kafka readers often never started on the 2.70 runner (docs/DESIGN.md 7).
    arguments += flink_args(flink_engine, "[local]", "--environment_type=LOOPBACK", "--checkpointing_interval=10000",
                            "--parallelism=1")
    # A TMPDIR of its own: the run's checkpoints (LOCAL_FLINK_CHECKPOINTS) are where this test can see them.
    temp = tmp_path / "tmp"
    temp.mkdir()
    with open(log, "w") as handle:
        process = subprocess.Popen([sys.executable, "-c", _LAUNCH, *arguments], cwd=REPO,
                                   env={**os.environ, "PYTHONPATH": REPO, "TMPDIR": str(temp)},
                                   stdout=handle, stderr=subprocess.STDOUT)
    try:
        # Payments whose settlement is held back: PENDING while the job runs, MATCHED once it arrives.
        held_back = _references(late)
        waiting = _poll(lambda: {result_key(r) for r in decoded(servers, topics["results"])
                                 if r["status"] == "PENDING" and result_key(r)[:2] in held_back},
                        "PENDING results for payments whose settlements are held back", process, log)
        replay_files(servers, [], [late], topics["payments"], topics["settlements"])
        last = {}

        def equal_to_batch():
            streamed = result_multiset(final_revisions(decoded(servers, topics["results"])))
            last["missing"], last["extra"] = batch - streamed, streamed - batch
            return streamed == batch

        try:
            _poll(equal_to_batch, "final results equal to the batch answer", process, log)
        except BaseException:
            print("missing", Counter(k[3] for k in last["missing"].elements()), list(last["missing"])[:5])
            print("extra", Counter(k[3] for k in last["extra"].elements()), list(last["extra"])[:5])
            raise

        history = defaultdict(list)
        for row in decoded(servers, topics["results"]):
            history[result_key(row)].append((row["revision"], row["status"]))
        revised = [key for key in waiting if max(history[key])[1] == "MATCHED"]
        assert revised, f"no held-back payment went PENDING -> MATCHED: {[history[k] for k in waiting]}"
        assert "EARLY" in {row["pane_timing"] for row in decoded(servers, topics["daily_totals"])}
        for name in ("payments", "settlements"):
            _poll(lambda: committed_to_the_end(servers, group, topics[name]),
                  f"{name} offsets committed by checkpoints", process, log)
        assert process.poll() is None, "an unbounded run keeps running"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    assert code == 130, log.read_text()[-3000:]
    # The run checkpointed (its offsets were committed on checkpoints) into a directory of its own,
    # removed when its job server stopped.
    checkpoints = temp / "paybeam-flink-checkpoints"
    assert checkpoints.is_dir() and list(checkpoints.iterdir()) == [], list(checkpoints.rglob("*"))[:5]
