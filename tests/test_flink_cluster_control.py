"""How paybeam reaches a Flink cluster's own REST API (runners/flink_rest.py, runners/flink_job_server.py).

That a cancelled `paybeam stream` leaves its cluster job CANCELED, not restarting without its workers,
is asserted by the standalone-cluster tests in tests/test_kafka_java.py (`engines`)."""
from __future__ import annotations

import subprocess
import sys

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from datagen.generator import GeneratorConfig, generate
from pipelines.brokers.local_broker import free_port
from runners.flink_job_server import cluster_rest_url
from tests.stream_helpers import REPO


@pytest.mark.parametrize("flags, url", [
    ([], None),
    (["--flink_master=[local]"], None),
    (["--flink_master=[auto]"], None),
    (["--flink_master=localhost:8081"], "http://localhost:8081"),
    (["--flink_master=https://flink.example.com:443"], "https://flink.example.com:443"),
    (["--flink_master=localhost:8081", "--flink_submit_uber_jar"], None),  # Beam's uber-jar service cancels itself
])
def test_only_a_cluster_submitted_through_the_job_server_is_cancelled_through_rest(flags, url):
    assert cluster_rest_url(PipelineOptions(flags)) == url


def test_a_cluster_that_does_not_answer_fails_the_run_at_once_in_one_line(tmp_path):
    data = generate(GeneratorConfig(payments=20, seed=9), str(tmp_path / "data"))
    port = free_port()  # nothing listens there
    run = subprocess.run([sys.executable, "-m", "pipelines.cli", "reconcile",
                          "--payments", f"{data.out_dir}/payments/*", "--settlements", f"{data.out_dir}/settlements/*",
                          "--output", str(tmp_path / "out"), "--runner", "FlinkRunner",
                          f"--flink_master=localhost:{port}", "--environment_type=EXTERNAL",
                          "--environment_config=localhost:50000"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    # (With the engine cache, paybeam first says which job server it uses: runners/flink_options.py.)
    lines = [line for line in run.stderr.strip().splitlines() if not line.startswith("FlinkRunner: using the cached")]
    assert lines == [
        f"paybeam reconcile: error: the run failed: FlinkClusterUnreachable: Flink's REST API at "
        f"http://localhost:{port} did not answer: [Errno 111] Connection refused"]
    assert not (tmp_path / "out").exists()
