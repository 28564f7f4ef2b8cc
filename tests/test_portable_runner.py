"""Portability, end to end: the batch reconciliation submitted through Beam's Job API (docs/DESIGN.md 6).

Beam's Python local job service plays the Flink job server and a Python
worker pool plays the SDK-harness sidecar next to each Flink task manager:
the production topology minus Flink (no Flink job-server jar can be fetched
here, docs/DESIGN.md 7). The pipeline is pickled, submitted over gRPC, its
artifacts staged (including paybeam's setup.py sdist, added by
runners.options), and its DoFns run in worker processes that the pool starts
with a working directory outside the repo and no PYTHONPATH: they import
paybeam only as installed. The answer must equal the DirectRunner's.
"""
from __future__ import annotations

import concurrent.futures
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from datagen.generator import GeneratorConfig, generate
from tests.cli_helpers import daily_totals, dead_letters, reconcile, result_multiset, results, run_summary

REPO = Path(__file__).resolve().parents[1]
STARTUP_DEADLINE_SECONDS = 60
RUN_DEADLINE_SECONDS = 150  # the job service waits 5 minutes for a worker that never connects


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _worker_environment() -> dict:
    """The environment of a worker-pool sidecar: no PYTHONPATH into the repo, and `python` on PATH
    is this virtualenv's (paybeam as installed)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _wait_for_ports(processes, ports, logs, deadline_seconds) -> None:
    deadline = time.monotonic() + deadline_seconds
    waiting = set(ports)
    while waiting:
        for name, process in processes.items():
            if process.poll() is not None:
                pytest.fail(f"{name} exited with {process.returncode} before listening:\n"
                            f"{logs[name].read_text()[-3000:]}")
        for port in list(waiting):
            try:
                with socket.create_connection(("localhost", port), timeout=0.5):
                    waiting.discard(port)
            except OSError:
                pass
        if waiting and time.monotonic() > deadline:
            pytest.fail(f"ports {sorted(waiting)} not accepting connections after {deadline_seconds}s")
        if waiting:
            time.sleep(0.1)  # poll interval of the deadline loop


class Services:
    def __init__(self, job_port: int, worker_port: int, logs: dict, workdir: Path):
        self.job_endpoint = f"localhost:{job_port}"
        self.worker_pool = f"localhost:{worker_port}"
        self.logs = logs
        self.workdir = workdir

    def log_tail(self) -> str:
        return "\n".join(f"--- {name}\n{path.read_text()[-4000:]}" for name, path in self.logs.items())


@pytest.fixture(scope="module")
def job_services(tmp_path_factory):
    """Beam's Python local job service and `paybeam worker-pool`, as separate processes."""
    workdir = tmp_path_factory.mktemp("worker_pool_cwd")
    assert REPO not in workdir.parents
    env = _worker_environment()
    python = shutil.which("python", path=env["PATH"])
    probe = subprocess.run(
        [python, "-c", "import apache_beam, pipelines, transforms; print(pipelines.__file__)"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.fail(f"the worker pool's `python` ({python}) cannot import Beam and paybeam outside the repo; "
                    f"install paybeam into it (pip install -e .):\n{probe.stderr[-2000:]}")
    job_port, worker_port = _free_port(), _free_port()
    logs = {"job_service": workdir / "job_service.log", "worker_pool": workdir / "worker_pool.log"}
    commands = {
        "job_service": [python, "-m", "apache_beam.runners.portability.local_job_service_main",
                        "--port", str(job_port)],
        "worker_pool": [str(Path(python).parent / "paybeam"), "worker-pool", "--port", str(worker_port)],
    }
    processes = {}
    try:
        for name, command in commands.items():
            with open(logs[name], "wb") as log:
                processes[name] = subprocess.Popen(command, cwd=workdir, env=env, stdout=log,
                                                   stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for_ports(processes, (job_port, worker_port), logs, STARTUP_DEADLINE_SECONDS)
        yield Services(job_port, worker_port, logs, workdir)
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return generate(GeneratorConfig(payments=300, seed=9), str(tmp_path_factory.mktemp("portable_data")))


@pytest.fixture(scope="module")
def direct_output(dataset, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("direct_out"))
    assert _reconcile(dataset, out) == 0
    return out


def _reconcile(dataset, out, *extra) -> int:
    return reconcile(os.path.join(dataset.out_dir, "payments", "*"),
                     os.path.join(dataset.out_dir, "settlements", "*"), out, *extra)


def _reconcile_with_deadline(services, dataset, out, *extra) -> int:
    """Runs the CLI in a thread so a job that never gets a worker fails the test instead of hanging it."""
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = executor.submit(_reconcile, dataset, out, *extra)
    try:
        return future.result(timeout=RUN_DEADLINE_SECONDS)
    except concurrent.futures.TimeoutError:
        pytest.fail(f"portable run did not finish in {RUN_DEADLINE_SECONDS}s\n{services.log_tail()}")
    finally:
        executor.shutdown(wait=False)


def _daily_totals_multiset(rows):
    return Counter(tuple(sorted((key, value) for key, value in row.items())) for row in rows)


def _assert_same_answer(out, direct_out, runner):
    assert result_multiset(results(out)) == result_multiset(results(direct_out))
    assert len(results(out)) == len(results(direct_out)) > 0
    assert _daily_totals_multiset(daily_totals(out)) == _daily_totals_multiset(daily_totals(direct_out))
    assert len(dead_letters(out)) == len(dead_letters(direct_out)) > 0
    portable, direct = run_summary(out), run_summary(direct_out)
    assert portable["runner"] == runner
    for key in ("inputs", "statuses", "results_rows", "daily_totals_rows", "as_of"):
        if key == "inputs":  # the same files; only the counts are compared
            for name in direct[key]:
                for count in ("read", "accepted", "rejected", "deduplicated"):
                    assert portable[key][name][count] == direct[key][name][count], (name, count)
        else:
            assert portable[key] == direct[key], key
    assert sum(direct["statuses"].values()) == direct["results_rows"]


def test_batch_reconcile_through_job_service_and_external_worker_pool_equals_direct(
        job_services, dataset, direct_output, tmp_path, caplog):
    out = str(tmp_path / "portable_out")
    caplog.set_level(logging.INFO, logger="apache_beam.runners.portability.stager")
    code = _reconcile_with_deadline(
        job_services, dataset, out,
        "--runner=PortableRunner", f"--job_endpoint={job_services.job_endpoint}",
        "--environment_type=EXTERNAL", f"--environment_config={job_services.worker_pool}")
    assert code == 0, job_services.log_tail()
    _assert_same_answer(out, direct_output, "PortableRunner")
    # The DoFns ran in SDK harness processes started by the worker pool, not in this process.
    assert "Starting worker with command ['" + str(Path(sys.executable).parent / "paybeam-sdk-harness") in \
        job_services.logs["worker_pool"].read_text()
    # runners.options added --setup_file: Beam built paybeam's sdist and staged it with the job.
    # (paybeam's harness boot, like a bare worker pool, does not install staged packages; the Beam
    # container's boot executable does, on Flink. Here paybeam is importable as installed.)
    assert any("sdist" in record.getMessage() for record in caplog.records), "setup.py was not staged"


def test_batch_reconcile_through_job_service_with_loopback_workers_equals_direct(
        job_services, dataset, direct_output, tmp_path):
    out = str(tmp_path / "loopback_out")
    code = _reconcile_with_deadline(
        job_services, dataset, out,
        "--runner=portable", f"--job_endpoint={job_services.job_endpoint}", "--environment_type=LOOPBACK")
    assert code == 0, job_services.log_tail()
    _assert_same_answer(out, direct_output, "portable")


def test_portable_runner_without_job_endpoint_is_a_usage_error(dataset, tmp_path, capsys):
    code = _reconcile(dataset, str(tmp_path / "out"), "--runner=PortableRunner", "--environment_type=LOOPBACK")
    assert code == 2
    assert "--job_endpoint" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
