"""Unbounded `paybeam stream` runs on a standalone Flink cluster (tests/flink_cluster.py) that are killed,
cancelled and restored: the helpers the fault tests of tests/test_kafka_java.py (Java KafkaIO, the
per-element engine) and tests/test_flink_columnar_restore.py (paybeam's Python source, the columnar
engine) share. Pairs of a payment and a settlement line per reference, produced in two steps, so a
pair whose sides straddle a restore ends MATCHED only if the state came back."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from tests.beam_helpers import at, payment, settlement
from tests.flink_cluster import FlinkCluster
from tests.flink_helpers import flink_args
from tests.stream_helpers import REPO, decoded, final_revisions, produce_records, stream_arguments

CHECKPOINT_FLAGS = ("--checkpointing_interval=10000",)
# Java-side boolean options: flags without a value.
RETAIN_CHECKPOINTS = ("--externalized_checkpoints_enabled", "--retain_externalized_checkpoints_on_cancellation")
# `python -m pipelines.cli`, plus: SIGUSR1 writes every Python thread's stack (the LOOPBACK SDK workers' bundles
# included) into the run's log, for a run that stalls.
_LAUNCH = ("import faulthandler, signal, sys; faulthandler.register(signal.SIGUSR1, all_threads=True); "
           "from pipelines.cli import main; sys.exit(main(sys.argv[1:]))")


def matched(rows: List[dict]) -> List[str]:
    return sorted(row["processor_reference"] for row in rows if row["status"] == "MATCHED")


def recent_millis() -> int:
    """A payload time of just now (the `time` argument of payment()/settlement()): KafkaIO's watermark
    follows broker CreateTime (wall clock), so older payload times would be late beyond the allowed
    lateness and dropped (docs/DESIGN.md 5); the Python source's idle release moves its watermark to
    now minus the idle timeout, the same clock."""
    return int(time.time() * 1000) - at() - 30_000


def produce_pairs(bootstrap: str, topics: Dict[str, str], references: List[str], now: int,
                  payments: range, settlements: range) -> None:
    """Payment n and settlement line n share references[n], half a second apart."""
    if payments:
        produce_records(bootstrap, topics["payments"],
                        [payment(f"e{n}", references[n], time=now + n * 1000) for n in payments], "payment_event")
    if settlements:
        produce_records(bootstrap, topics["settlements"],
                        [settlement(f"s{n}", references[n], time=now + n * 1000 + 500) for n in settlements],
                        "settlement_line")


def start_unbounded(flink_engine: Path, bootstrap: str, topics: Dict[str, str], group: str, master: str, log: Path,
                    *flags: str) -> subprocess.Popen:
    """An unbounded `paybeam stream` on the Flink at `master` through the job server in `flink_engine`, from
    the earliest offsets, Python transforms in LOOPBACK, a checkpoint every 10 s; `flags` (paybeam's or
    Flink's) go last; `kill -USR1` dumps its Python threads into the log. Output to a file, not a pipe:
    nobody reads a pipe while the run goes on, and once the job server's forwarded logs fill it, the
    paybeam process (and its LOOPBACK workers) would block on writing."""
    arguments = [argument for argument in stream_arguments(bootstrap, topics, group) if argument != "--bounded"]
    with open(log, "w") as handle:
        return subprocess.Popen(
            [sys.executable, "-c", _LAUNCH, *arguments, "--start", "earliest",
             *flink_args(flink_engine, master, "--environment_type=LOOPBACK", *CHECKPOINT_FLAGS, *flags)],
            cwd=REPO, env={**os.environ, "PYTHONPATH": REPO}, stdout=handle, stderr=subprocess.STDOUT)


def wait_for(process: subprocess.Popen, log: Path, condition, what: str, seconds: float = 240,
             diagnose: Optional[Callable[[], str]] = None) -> None:
    """Polls `condition` while the run is alive, failing with the run's log (and `diagnose()`) after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, log.read_text()[-5000:]
        if time.monotonic() >= deadline:
            detail = diagnose() if diagnose is not None else ""
            raise AssertionError(f"{what} not within {seconds:.0f} s{detail}:\n{log.read_text()[-5000:]}")
        time.sleep(0.5)  # poll interval of the deadline loop


def stall_report(process: subprocess.Popen, log: Path, cluster: FlinkCluster) -> str:
    """For a run that produced nothing: its Python threads dumped into its log (SIGUSR1), and the records
    each task of its running job read and wrote (all zero, checkpoints completing: the stall of docs/DESIGN.md 7,
    readers that never got a bundle)."""
    process.send_signal(signal.SIGUSR1)
    time.sleep(2)  # the dump is written by the signal handler; give it a moment
    lines = []
    for job in cluster.jobs():
        if job["state"] == "RUNNING":
            for vertex in cluster.rest(f"/jobs/{job['jid']}")["vertices"]:
                metrics = vertex["metrics"]
                lines.append(f"  {vertex['name'][:70]}: read {metrics['read-records']}, "
                             f"wrote {metrics['write-records']}")
            lines.append(f"  checkpoints completed: {cluster.completed_checkpoints(job['jid'])}")
    return f" (Python threads dumped into {log}; tasks:\n" + "\n".join(lines) + ")"


def stop(process: subprocess.Popen) -> int:
    """SIGTERM: paybeam cancels the job, then exits 143."""
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=120)


def statuses_seen(rows: List[dict]) -> Dict[str, set]:
    """Every status each processor reference had at any revision."""
    seen: Dict[str, set] = {}
    for row in rows:
        seen.setdefault(row["processor_reference"], set()).add(row["status"])
    return seen


def final_statuses(rows: List[dict]) -> Dict[str, str]:
    """Each result's status at its highest revision, by processor reference (one kind per reference here)."""
    return {row["processor_reference"]: row["status"] for row in final_revisions(rows)}


def matched_and_checkpointed(process: subprocess.Popen, log: Path, cluster: FlinkCluster, bootstrap: str,
                             topics: Dict[str, str], references: List[str]) -> dict:
    """Waits until `references` are MATCHED and then a checkpoint completes (one that holds them);
    returns the cluster's running job."""
    wait_for(process, log, lambda: matched(decoded(bootstrap, topics["results"])) == references,
             f"{len(references)} MATCHED", diagnose=lambda: stall_report(process, log, cluster))
    (job,) = [job for job in cluster.jobs() if job["state"] == "RUNNING"]
    checkpoints = cluster.completed_checkpoints(job["jid"])
    wait_for(process, log, lambda: cluster.completed_checkpoints(job["jid"]) > checkpoints, "a checkpoint after them")
    return job
