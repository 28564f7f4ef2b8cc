"""Helpers for the Flink tests: the fetched job server, canonical outputs, the Flink flags."""
from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List

from runners.engine_cache import fetched, pinned_versions
from tests.cli_helpers import daily_totals, dead_letters, output_rows, results, run_summary

# Keys of run.json that say how, not what: they differ between runners by design.
RUN_SUMMARY_HOW = ("options", "runner", "wall_seconds", "shuffles", "workers")


def flink_engine_dir() -> Path:
    versions = pinned_versions()
    return fetched(f"flink-{versions['FLINK_JOB_SERVER_FLINK_VERSION']}-beam-{versions['FLINK_JOB_SERVER_BEAM_VERSION']}",
                   make_target="engine-flink")


def flink_args(engine: Path, master: str = "[local]", *extra: str) -> List[str]:
    """paybeam flags that run on Flink through the fetched job server."""
    return ["--runner", "FlinkRunner", f"--flink_job_server_jar={engine / 'job-server.jar'}",
            f"--flink_master={master}", f"--flink_version={pinned_versions()['FLINK_JOB_SERVER_FLINK_MINOR']}",
            *extra]


def canonical(rows: List[dict]) -> List[str]:
    """Rows as sorted canonical JSON lines: equal lists mean byte-identical outputs up to order."""
    return sorted(json.dumps(row, sort_keys=True, default=str, separators=(",", ":")) for row in rows)


def canonical_outputs(output: str) -> Dict[str, object]:
    summary = {key: value for key, value in run_summary(output).items() if key not in RUN_SUMMARY_HOW}
    summary["options"] = {k: v for k, v in run_summary(output)["options"].items() if k != "beam_args"}
    return {"results": canonical(results(output)), "daily_totals": canonical(daily_totals(output)),
            "dead_letters": canonical(dead_letters(output)), "run_summary": summary,
            # a run with bank statements (docs/DESIGN.md 3.8); empty lists otherwise
            "payouts": canonical(output_rows(output, "payouts")),
            "bank_matches": canonical(output_rows(output, "bank_matches"))}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, log: Path, deadline_seconds: float) -> None:
    deadline = time.monotonic() + deadline_seconds
    while True:
        if process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode} before listening on {port}:\n"
                                 f"{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("localhost", port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"port {port} not accepting connections after {deadline_seconds}s")
        time.sleep(0.1)  # poll interval of the deadline loop


@contextlib.contextmanager
def worker_pool(log: Path) -> Iterator[str]:
    """`paybeam worker-pool` (the sidecar of EXTERNAL environments) on a free port; yields HOST:PORT.
    Its harnesses import paybeam as installed: no PYTHONPATH, started from another directory."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    with open(log, "w") as handle:
        process = subprocess.Popen([str(Path(sys.executable).parent / "paybeam"), "worker-pool", f"--port={port}"],
                                   stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=str(log.parent))
    try:
        wait_for_port(port, process, log, 60)
        yield f"localhost:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def job_server_listening(log_text: str) -> bool:
    """Whether the Flink job server a paybeam run started (its log's "Really starting service at
    localhost:PORT with cmd: ('java', '-jar', '…job-server.jar'") still accepts connections."""
    match = re.search(r"Really starting service at localhost:(\d+) with cmd: \('java', '-jar', '[^']*job-server\.jar'",
                      log_text)
    assert match, "the run's log names no job server"
    try:
        with socket.create_connection(("localhost", int(match.group(1))), timeout=0.5):
            return True
    except OSError:
        return False
