"""A standalone Flink cluster (issue 11 §3): JobManager and TaskManager as separate JVMs from
Flink's own entry points (tests/flink_cluster.py), jobs submitted through Beam's Flink job server
with `--flink_master=localhost:PORT`."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Iterator

import apache_beam as beam
import pytest

from datagen.generator import GeneratorConfig, generate
from runners.flink_job_server import new_pipeline
from runners.flink_options import FLINK_BATCH_MAX_RESTARTS
from runners.flink_rest import FlinkRestClient
from runners.options import build_pipeline_options
from schemas.errors import RunFailed
from tests.cli_helpers import reconcile
from tests.flink_cluster import FlinkCluster
from tests.flink_helpers import canonical_outputs, flink_args
from tests.stream_helpers import REPO


@pytest.mark.engines
def test_batch_on_a_standalone_cluster_equals_direct_runner(flink_engine, tmp_path):
    dataset = generate(GeneratorConfig(payments=300, seed=9), str(tmp_path / "data"))
    payments, settlements = (os.path.join(dataset.out_dir, name, "*") for name in ("payments", "settlements"))
    assert reconcile(payments, settlements, str(tmp_path / "direct")) == 0
    with FlinkCluster(flink_engine, tmp_path / "cluster") as cluster:
        assert reconcile(payments, settlements, str(tmp_path / "flink"),
                         *flink_args(flink_engine, cluster.master, "--environment_type=LOOPBACK")) == 0, \
            cluster.failure_report()
        jobs = cluster.jobs()
    assert [job["state"] for job in jobs] == ["FINISHED"], "the job ran on the standalone cluster"
    assert canonical_outputs(str(tmp_path / "flink")) == canonical_outputs(str(tmp_path / "direct"))


@pytest.mark.engines
def test_batch_on_two_taskmanagers_spilling_to_a_shared_directory_equals_direct_runner(flink_engine, tmp_path,
                                                                                      capsys):
    """The route when one TaskManager is not enough: the job spread over two (four slots), its shuffles
    spilled to a directory every worker sees, the DirectRunner's answer."""
    dataset = generate(GeneratorConfig(payments=3000, seed=12, fmt="parquet"), str(tmp_path / "data"))
    payments, settlements = (os.path.join(dataset.out_dir, name, "*") for name in ("payments", "settlements"))
    assert reconcile(payments, settlements, str(tmp_path / "direct")) == 0
    shared = tmp_path / "shared-spill"
    shared.mkdir()
    # Each TaskManager starts its own SDK harnesses (paybeam's boot, as a container would): LOOPBACK's one
    # worker pool would serve both, and their worker ids collide there (docs/runners.md).
    harness = json.dumps({"command": shutil.which("paybeam-sdk-harness", path=os.path.dirname(sys.executable))})
    with FlinkCluster(flink_engine, tmp_path / "cluster", taskmanagers=2) as cluster:
        assert len(cluster.registered_taskmanagers()) == 2
        capsys.readouterr()
        assert reconcile(payments, settlements, str(tmp_path / "loopback"), *flink_args(
            flink_engine, cluster.master, "--environment_type=LOOPBACK")) == 2
        assert "has 2 TaskManagers, whose workers' ids collide" in capsys.readouterr().err
        assert cluster.jobs() == [] and not (tmp_path / "loopback").exists()
        assert reconcile(payments, settlements, str(tmp_path / "flink"), "--shards", "8", "--spill-dir", str(shared),
                         *flink_args(flink_engine, cluster.master, "--environment_type=PROCESS",
                                     f"--environment_config={harness}", "--parallelism=4")) == 0, \
            cluster.failure_report()
        (job,) = cluster.jobs()
        assert job["state"] == "FINISHED"
        assert len(cluster.taskmanagers_that_ran(job["jid"])) == 2, "both TaskManagers ran subtasks"
    assert canonical_outputs(str(tmp_path / "flink")) == canonical_outputs(str(tmp_path / "direct"))
    assert os.listdir(shared) == []


def _fails_every_time(element: int) -> int:
    raise ValueError(f"element {element} fails on purpose")


@pytest.mark.engines
def test_a_batch_job_that_fails_on_every_restart_is_cancelled_and_the_run_fails_with_its_first_failure(
        flink_engine, tmp_path):
    """The cluster restarts a failed job for ever (its strategy is for streams); a batch run on it gives up after
    FLINK_BATCH_MAX_RESTARTS restarts, cancels the job and fails with the job's first failure, instead of waiting
    for ever (runners/flink_options.py)."""
    with FlinkCluster(flink_engine, tmp_path / "cluster") as cluster:
        options = build_pipeline_options("flink", flink_args(flink_engine, cluster.master,
                                                             "--environment_type=LOOPBACK")[2:])
        pipeline = new_pipeline(options)
        _ = pipeline | beam.Create([1, 2]) | beam.Map(_fails_every_time)
        result = pipeline.run()
        with pytest.raises(RunFailed, match="fails on purpose") as failed:
            result.wait_until_finish()
        (job,) = cluster.jobs()
        assert job["state"] == "CANCELED", job
        restarts = FlinkRestClient(f"http://{cluster.master}").restarts(job["jid"])
        assert restarts > FLINK_BATCH_MAX_RESTARTS
        assert f"more than --number_of_execution_retries={FLINK_BATCH_MAX_RESTARTS}" in str(failed.value)
        assert "ValueError: element" in str(failed.value), "the first failure is the step's own error line"


@contextlib.contextmanager
def _reconcile_on(cluster: FlinkCluster, flink_engine, payments: str, settlements: str, output,
                  log) -> Iterator[subprocess.Popen]:
    """`paybeam reconcile` on the cluster as a child process (the CLI's signal handling needs a main
    thread of its own), killed on the way out if it still runs."""
    with open(log, "w") as handle:
        run = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "reconcile", "--payments", payments, "--settlements",
             settlements, "--output", str(output),
             *flink_args(flink_engine, cluster.master, "--environment_type=LOOPBACK")],
            cwd=REPO, env={**os.environ, "PYTHONPATH": REPO}, stdout=handle, stderr=subprocess.STDOUT)
    try:
        yield run
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def _wait_until_its_tasks_run(cluster: FlinkCluster, run: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + 180
    while not [job for job in cluster.jobs() if job["state"] == "RUNNING" and job["tasks"]["running"]]:
        assert run.poll() is None, f"the job ended too early:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, "the job never ran on the cluster"
        time.sleep(0.2)  # poll interval of the deadline loop


@pytest.mark.engines
def test_taskmanager_killed_mid_job_recovers_with_the_same_answer(flink_engine, tmp_path):
    """SIGKILL the only TaskManager while the batch job runs, start a new one: Flink's restart
    strategy reruns the job on it and the outputs still equal the DirectRunner's."""
    dataset = generate(GeneratorConfig(payments=1500, seed=5), str(tmp_path / "data"))
    payments, settlements = (os.path.join(dataset.out_dir, name, "*") for name in ("payments", "settlements"))
    assert reconcile(payments, settlements, str(tmp_path / "direct")) == 0
    log = tmp_path / "reconcile.log"
    with FlinkCluster(flink_engine, tmp_path / "cluster") as cluster:
        with _reconcile_on(cluster, flink_engine, payments, settlements, tmp_path / "flink", log) as run:
            _wait_until_its_tasks_run(cluster, run, log)
            cluster.kill_taskmanager()
            cluster.start_taskmanager()
            assert run.wait(timeout=300) == 0, f"{log.read_text()[-3000:]}\n{cluster.failure_report()}"
        (job,) = cluster.jobs()
        assert job["state"] == "FINISHED"
        failures = cluster.failures(job["jid"])
        assert failures, "the kill must have failed tasks that Flink then ran again"
        assert any("TaskManager" in failure or "heartbeat" in failure.lower() for failure in failures), failures[0][:500]
    assert canonical_outputs(str(tmp_path / "flink")) == canonical_outputs(str(tmp_path / "direct"))


@pytest.mark.engines
def test_ctrl_c_cancels_a_batch_job_on_the_cluster_and_publishes_nothing(flink_engine, tmp_path):
    """Ctrl-C while the batch job runs on the cluster: the cluster job is CANCELED (Beam's own cancel
    never reaches it) before paybeam removes its staged outputs, so nothing is published and no job
    is left writing; exit 130."""
    dataset = generate(GeneratorConfig(payments=1500, seed=5), str(tmp_path / "data"))
    payments, settlements = (os.path.join(dataset.out_dir, name, "*") for name in ("payments", "settlements"))
    log = tmp_path / "reconcile.log"
    with FlinkCluster(flink_engine, tmp_path / "cluster") as cluster:
        with _reconcile_on(cluster, flink_engine, payments, settlements, tmp_path / "flink", log) as run:
            _wait_until_its_tasks_run(cluster, run, log)
            run.send_signal(signal.SIGINT)
            assert run.wait(timeout=120) == 130, log.read_text()[-3000:]
        (job,) = cluster.jobs()
        assert job["state"] == "CANCELED", job
    assert "nothing was published" in log.read_text()
    assert not (tmp_path / "flink").exists()
