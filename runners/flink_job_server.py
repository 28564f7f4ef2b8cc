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
cancelled.

An unbounded run on the embedded Flink checkpoints into a directory of its own
(runners/flink_options.py: LOCAL_FLINK_CHECKPOINTS); the job server removes it when it stops (at exit,
on Ctrl-C and after a failure alike) unless the run asked to retain its checkpoints. Without a
--flink_job_server_jar and the cached one, Beam's download of the job server fails in one line that
names `make engine-flink`.
"""
from __future__ import annotations

import shutil
import uuid
from typing import Optional, Set

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
)
from apache_beam.runners.portability import flink_runner, job_server

from runners.flink_options import FLINK_MAGIC_MASTERS, job_server_fetch_failed, run_checkpoint_directory
from runners.flink_rest import FlinkRestClient
from schemas.errors import RunFailed


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
    """Beam's result of a job submitted to a Flink cluster, whose cancel also cancels the cluster job."""

    def __init__(self, result, cluster: FlinkRestClient, job_name: str, running_before: Set[str]):
        self._result = result
        self._cluster = cluster
        self._job_name = job_name
        self._running_before = running_before

    def cancel(self):
        try:
            return self._result.cancel()
        finally:
            for job_id in self._cluster.running_jobs_named(self._job_name) - self._running_before:
                self._cluster.cancel(job_id)

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


class FlinkRunner(flink_runner.FlinkRunner):
    def run_pipeline(self, pipeline, options):
        url = cluster_rest_url(options)
        if url is None:
            return super().run_pipeline(pipeline, options)
        google = options.view_as(GoogleCloudOptions)
        google.job_name = google.job_name or f"paybeam-{uuid.uuid4().hex[:12]}"
        cluster = FlinkRestClient(url)
        running_before = cluster.running_jobs_named(google.job_name)
        return _ClusterJobResult(super().run_pipeline(pipeline, options), cluster, google.job_name, running_before)

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
