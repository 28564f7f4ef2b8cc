"""Beam's FlinkRunner with a job server that is always stopped when paybeam exits.

Beam 2.77's `SubprocessJobServer.stop` removes its temporary directory first and stops the job
server's JVM second. After a cancel (Ctrl-C/SIGTERM of `paybeam stream`), the job server deletes
the job's staged artifacts in that same directory at the same moment; `rmtree` then raises
FileNotFoundError, the JVM is never stopped, and it outlives paybeam (an orphan job server, seen
in `tests/test_kafka_java.py`'s cluster test). Here the directory removal tolerates that race and
the JVM is stopped in any case. Every paybeam pipeline is made by `new_pipeline`.

On a Flink cluster (`--flink_master=HOST:PORT`), Beam's cancel does not reach the job: the job server
cancels only its own attached submission, so the cluster job went on and, its LOOPBACK workers gone,
restarted from its checkpoint for ever (seen on a clean-clone CI run, where such a job competed with
the restarted one). So a cluster run gets a job name of its own (`paybeam-<random>` unless
`--job_name` is given), and cancelling the result also cancels, through Flink's REST API, the running
jobs of that name that were not running before the submission, and waits until Flink reports them
cancelled. A batch cluster job restarts under the cluster's strategy, which may be "for ever"; the wait
gives up past runners/flink_options.py's `batch_restart_limit`, cancels the job and fails with its first
failure.

An unbounded run on the embedded Flink checkpoints into a directory of its own
(runners/flink_options.py: LOCAL_FLINK_CHECKPOINTS); the job server removes it when it stops (at exit,
on Ctrl-C and after a failure alike) unless the run asked to retain its checkpoints. Without a
--flink_job_server_jar and the cached one, Beam's download of the job server fails in one line that
names `make engine-flink`.
"""
from __future__ import annotations

import shutil
import threading
import uuid
from typing import Optional, Set

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PipelineOptions,
    PortableOptions,
    StandardOptions,
)
from apache_beam.runners.portability import flink_runner, job_server

from runners.beam_flags import OptionsError
from runners.flink_options import (
    FLINK_MAGIC_MASTERS,
    batch_restart_limit,
    job_server_fetch_failed,
    run_checkpoint_directory,
)
from runners.flink_rest import FlinkRestClient
from schemas.errors import RunFailed

# How often the wait for a batch job on a cluster reads its restart count (runners/flink_options.py).
RESTART_POLL_SECONDS = 2.0


class _FlinkJarJobServer(flink_runner.FlinkJarJobServer):
    def __init__(self, options):
        super().__init__(options)
        self._checkpoints = run_checkpoint_directory(options)

    def subprocess_cmd_and_endpoint(self):
        try:
            return super().subprocess_cmd_and_endpoint()  # fetches the jar (JavaJarJobServer.local_jar)
        except RuntimeError as error:  # Beam's download: "Unable to fetch remote job server jar at …"
            if self._jar or not str(error).startswith("Unable to fetch"):
                raise
            raise RunFailed(job_server_fetch_failed(self._flink_version, error)) from None

    def stop(self):
        if self._local_temp_root:
            shutil.rmtree(self._local_temp_root, ignore_errors=True)
            self._local_temp_root = None
        try:
            return self._server.stop() if self._server is not None else None
        finally:
            # The embedded Flink died with the JVM: nothing writes this run's checkpoints any more.
            if self._checkpoints is not None:
                shutil.rmtree(self._checkpoints, ignore_errors=True)


class _ClusterJobResult:
    """Beam's result of a job submitted to a Flink cluster, whose cancel also cancels the cluster job, and
    whose wait gives up on a batch job that restarted more than `max_restarts` times (None: never)."""

    def __init__(self, result, cluster: FlinkRestClient, job_name: str, running_before: Set[str],
                 max_restarts: Optional[int] = None):
        self._result = result
        self._cluster = cluster
        self._job_name = job_name
        self._running_before = running_before
        self._max_restarts = max_restarts

    def _cluster_jobs(self) -> Set[str]:
        return self._cluster.running_jobs_named(self._job_name) - self._running_before

    def cancel(self):
        try:
            return self._result.cancel()
        finally:
            for job_id in self._cluster_jobs():
                self._cluster.cancel(job_id)

    def wait_until_finish(self, duration=None):
        if self._max_restarts is None or duration:
            return self._result.wait_until_finish(duration)
        outcome: dict = {}

        def wait() -> None:
            try:
                outcome["state"] = self._result.wait_until_finish()
            except BaseException as error:  # noqa: BLE001 — raised again by the caller's thread
                outcome["error"] = error

        waiter = threading.Thread(target=wait, name="paybeam-flink-cluster-wait", daemon=True)
        waiter.start()
        while waiter.is_alive():
            waiter.join(RESTART_POLL_SECONDS)
            if waiter.is_alive():
                self._give_up_if_restarted_too_often()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["state"]

    def _give_up_if_restarted_too_often(self) -> None:
        for job_id in self._cluster_jobs():
            restarts = self._cluster.restarts(job_id)
            if restarts > self._max_restarts:
                cause = self._cluster.first_failure(job_id) or "no failure recorded"
                self.cancel()
                raise RunFailed(f"the Flink job {job_id} failed {restarts} times (more than "
                                f"--number_of_execution_retries={self._max_restarts}) and was cancelled; "
                                f"its first failure: {cause}")

    def __getattr__(self, name):
        return getattr(self._result, name)


def cluster_rest_url(options: PipelineOptions) -> Optional[str]:
    """The REST URL of the Flink cluster the job server submits to, or None (an embedded Flink, or
    --flink_submit_uber_jar, whose own job service cancels through REST)."""
    flink = options.view_as(FlinkRunnerOptions)
    master = (flink.flink_master or "[auto]").strip()
    if master in FLINK_MAGIC_MASTERS or flink.flink_submit_uber_jar:
        return None
    return flink_runner.FlinkRunner.add_http_scheme(master)


def _refuse_loopback_on_several_taskmanagers(options: PipelineOptions, cluster: FlinkRestClient, url: str) -> None:
    """LOOPBACK's one worker pool (in this process) would serve every TaskManager, and Beam numbers each
    TaskManager's workers alike (`1-1`, `1-2`, … per JVM): a TaskManager that stops its worker `1-1` stops the
    other's too, whose tasks fail with "SDK harness closed connection" (2 of 6 runs on two TaskManagers)."""
    if (options.view_as(PortableOptions).environment_type or "").upper() != "LOOPBACK":
        return
    taskmanagers = cluster.taskmanagers()
    if taskmanagers > 1:
        raise OptionsError(
            f"--environment_type=LOOPBACK runs every Python worker in this process, and the Flink cluster at {url} "
            f"has {taskmanagers} TaskManagers, whose workers' ids collide there; use one TaskManager, "
            "--environment_type=PROCESS --environment_config='{\"command\": \"paybeam-sdk-harness\"}' (each "
            "TaskManager starts its own), or EXTERNAL with a worker pool beside each TaskManager (docs/runners.md)")


class FlinkRunner(flink_runner.FlinkRunner):
    def run_pipeline(self, pipeline, options):
        url = cluster_rest_url(options)
        if url is None:
            return super().run_pipeline(pipeline, options)
        google = options.view_as(GoogleCloudOptions)
        google.job_name = google.job_name or f"paybeam-{uuid.uuid4().hex[:12]}"
        cluster = FlinkRestClient(url)
        _refuse_loopback_on_several_taskmanagers(options, cluster, url)
        running_before = cluster.running_jobs_named(google.job_name)
        return _ClusterJobResult(super().run_pipeline(pipeline, options), cluster, google.job_name, running_before,
                                 batch_restart_limit(options))

    def default_job_server(self, options):
        server = super().default_job_server(options)  # also normalises --flink_master
        if isinstance(server, job_server.StopOnExitJobServer):
            return job_server.StopOnExitJobServer(_FlinkJarJobServer(options))
        return server  # --flink_submit_uber_jar: no local job server process


def new_pipeline(options: PipelineOptions) -> beam.Pipeline:
    """A Pipeline for `options`: on FlinkRunner with paybeam's FlinkRunner above; any other runner is
    the one Beam builds from `--runner`."""
    runner: Optional[FlinkRunner] = (
        FlinkRunner() if options.view_as(StandardOptions).runner == "FlinkRunner" else None)
    return beam.Pipeline(runner=runner, options=options)
