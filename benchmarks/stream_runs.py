"""What the streaming benchmarks share: launching `paybeam stream` as a child in a process group of its
own, its process tree's memory, stopping it for sure, and result keys.

A script's helpers, not a test's: nothing here gates CI.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import psutil

ROOT = Path(__file__).resolve().parent.parent

# The CLI at INFO level with times, so that the run's log holds the job server's (and Flink's) log too.
CLI_WITH_JOB_SERVER_LOG = ("import logging, sys; logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s'); "
                           "from pipelines.cli import main; sys.exit(main(sys.argv[1:]))")

STOP_SECONDS = 60.0  # SIGTERM cancels the job and stops Prism / the job server; SIGKILL after this long


def result_key(row: dict) -> Tuple[str, str, str]:
    """A result row's reconciliation key (docs/DESIGN.md 3.3)."""
    return row["processor"], row["processor_reference"], row["kind"]


def paybeam_command(arguments: List[str]) -> List[str]:
    """The command line of `paybeam ARGUMENTS` through this interpreter, logging at INFO."""
    return [sys.executable, "-c", CLI_WITH_JOB_SERVER_LOG, *arguments]


def process_tree(pid: int) -> List[psutil.Process]:
    """The process `pid` and all its descendants now (Prism, a job server's JVM, SDK workers); [] once gone."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def rss_by_name(processes: List[psutil.Process]) -> Dict[str, int]:
    """Resident set size per process name (bytes; pages shared between processes count twice)."""
    sizes: Dict[str, int] = {}
    for process in processes:
        try:
            name = process.name()
            sizes[name] = sizes.get(name, 0) + process.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return sizes


class StreamProcess:
    """`paybeam ARGUMENTS` as a child in a session (process group) of its own, its output in `log`.

    `stop()` sends SIGTERM (paybeam cancels the job and stops what it started), waits, then SIGKILLs
    the group and every process that was in the tree, so nothing outlives the benchmark."""

    def __init__(self, arguments: List[str], log: Path):
        self.command = paybeam_command(arguments)
        self.log = log
        with open(log, "w") as handle:
            self.process = subprocess.Popen(self.command, cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)},
                                            stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        self.started = time.monotonic()
        self._seen: Dict[int, psutil.Process] = {}

    def alive(self) -> bool:
        return self.process.poll() is None

    def tree(self) -> List[psutil.Process]:
        """The paybeam process and all its descendants now (Prism, the job server's JVM, SDK workers)."""
        processes = process_tree(self.process.pid)
        for process in processes:
            self._seen.setdefault(process.pid, process)
        return processes

    def rss_by_name(self) -> Dict[str, int]:
        """Resident set size of the tree per process name (bytes; pages shared between processes count twice)."""
        return rss_by_name(self.tree())

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the tree's live processes used so far."""
        total = 0.0
        for process in self.tree():
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return total

    def flink_checkpoints(self) -> Optional[List[dict]]:
        """The embedded Flink's completed checkpoints of this run so far, oldest first: per checkpoint its
        end-to-end time and per stage (job vertex, by name) the synchronous and asynchronous snapshot time,
        the state size and the barrier's start delay (Flink's REST API, whose port the run's log names).
        None when the run has no such endpoint (Prism) or it does not answer."""
        match = re.search(r"Rest endpoint listening at (localhost:[0-9]+)", self.log.read_text(errors="replace"))
        if match is None:
            return None
        return flink_checkpoint_stats(f"http://{match.group(1)}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> Optional[int]:
        """Stops the run and everything it started; returns its exit code (None if it had to be killed)."""
        self.tree()  # remember the descendants before the root goes
        if self.alive():
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                pass
        code = self.process.poll()
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for process in self._seen.values():
            try:
                if process.is_running():
                    process.kill()
            except psutil.NoSuchProcess:
                continue
        self.process.wait()
        return code


def flink_checkpoint_stats(base_url: str) -> Optional[List[dict]]:
    """`StreamProcess.flink_checkpoints` from a Flink REST endpoint (its first job)."""
    def get(path: str):
        with urllib.request.urlopen(base_url + path, timeout=5) as response:
            return json.load(response)

    try:
        jobs = get("/jobs")["jobs"]
        if not jobs:
            return None
        job = jobs[0]["id"]
        stages = {vertex["id"]: vertex["name"] for vertex in get(f"/jobs/{job}")["vertices"]}
        history = [entry for entry in get(f"/jobs/{job}/checkpoints")["history"] if entry["status"] == "COMPLETED"]
        checkpoints = []
        for entry in sorted(history, key=lambda entry: entry["id"]):
            per_stage = {}
            for vertex, name in stages.items():
                subtasks = get(f"/jobs/{job}/checkpoints/details/{entry['id']}/subtasks/{vertex}").get("subtasks", [])
                per_stage[name] = {
                    "sync_ms": max((task["checkpoint"]["sync"] for task in subtasks), default=None),
                    "async_ms": max((task["checkpoint"]["async"] for task in subtasks), default=None),
                    "state_bytes": sum(task["state_size"] for task in subtasks),
                    "start_delay_ms": max((task["start_delay"] for task in subtasks), default=None)}
            checkpoints.append({"id": entry["id"], "end_to_end_ms": entry["end_to_end_duration"],
                                "bytes": entry["checkpointed_size"], "stages": per_stage})
        return checkpoints
    except (OSError, ValueError, KeyError):
        return None
