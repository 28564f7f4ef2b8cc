"""Beam's FlinkRunner with a job server that is always stopped when paybeam exits.

Beam 2.77's `SubprocessJobServer.stop` removes its temporary directory first and stops the job
server's JVM second. After a cancel (Ctrl-C/SIGTERM of `paybeam stream`), the job server deletes
the job's staged artifacts in that same directory at the same moment; `rmtree` then raises
FileNotFoundError, the JVM is never stopped, and it outlives paybeam (an orphan job server, seen
in `tests/test_kafka_java.py`'s cluster test). Here the directory removal tolerates that race and
the JVM is stopped in any case. Every paybeam pipeline is made by `new_pipeline`.
"""
from __future__ import annotations

import shutil
from typing import Optional

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.portability import flink_runner, job_server


class _FlinkJarJobServer(flink_runner.FlinkJarJobServer):
    def stop(self):
        if self._local_temp_root:
            shutil.rmtree(self._local_temp_root, ignore_errors=True)
            self._local_temp_root = None
        return self._server.stop() if self._server is not None else None


class FlinkRunner(flink_runner.FlinkRunner):
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
