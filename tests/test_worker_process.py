"""The live risk stream's deciding step in a worker process of its own (transforms/worker_process.py,
runners/worker_pool.py: local_worker_pool, docs/DESIGN.md 10.13), checked on the pipeline it builds and on
the harness boot; tests/test_risk_stream.py runs it on Prism and the embedded Flink (engines), and shows a
killed run leaves no worker behind.
"""
from __future__ import annotations

import subprocess
import sys
from typing import Dict

import apache_beam as beam
import pytest

from pipelines.risk_stream import RiskStreamJob, build_pipeline, deciding_in_own_process, pipeline_options, start_line
from runners.options import loopback_by_default
from runners.worker_pool import local_worker_pool
from schemas.attempts import ATTEMPTS
from tests.stream_helpers import REPO
from transforms.risk.rules import load_rules_file
from transforms.validate import DEAD_LETTERS
from transforms.worker_process import DECIDING, WorkerProcessHint, in_worker_process

EXAMPLE_RULES = f"{REPO}/transforms/risk/example_rules.yaml"
DECIDING_STEPS = ("Risk/DecideChunks", "Risk/CountDecisions", "DecisionMessages", "WriteDecisions")


def _job(**changes) -> RiskStreamJob:
    return RiskStreamJob(bootstrap_servers="localhost:9092",
                         topics={ATTEMPTS: "attempts", "decisions": "decisions", DEAD_LETTERS: "dead_letters"},
                         rules_path=EXAMPLE_RULES, rule_set=load_rules_file(EXAMPLE_RULES), **changes)


def _environment_of_each_step(job: RiskStreamJob) -> Dict[str, str]:
    """Leaf step name -> the environment it runs in, from the pipeline as a runner receives it."""
    pipeline = beam.Pipeline()
    build_pipeline(pipeline, job)
    proto = pipeline.to_runner_api()
    return {transform.unique_name: transform.environment_id
            for transform in proto.components.transforms.values()
            if not transform.subtransforms and transform.environment_id}


def _hints(job: RiskStreamJob) -> Dict[str, Dict[str, bytes]]:
    pipeline = beam.Pipeline()
    build_pipeline(pipeline, job)
    return {name: dict(environment.resource_hints)
            for name, environment in pipeline.to_runner_api().components.environments.items()}


def test_the_columnar_stream_decides_and_sends_its_decisions_in_an_environment_of_its_own():
    steps = _environment_of_each_step(_job())
    deciding = {environment for name, environment in steps.items() if name.startswith(DECIDING_STEPS)}
    reading = {environment for name, environment in steps.items() if not name.startswith(DECIDING_STEPS)}
    assert len(deciding) == 1 and len(reading) == 1 and deciding != reading
    assert any(name.startswith("Risk/DecideChunks") for name in steps)
    assert any(name.startswith("ReadAttemptChunks") for name in steps)
    assert any(name.startswith("Risk/ValidateChunks") for name in steps)
    assert any(name.startswith("WriteDeadLetters") for name in steps)  # dead letters stay with the reader
    assert all(steps[name] in reading for name in steps if name.startswith(("WriteDeadLetters", "Risk/Validate")))
    assert _hints(_job())[deciding.pop()] == {WorkerProcessHint.urn: DECIDING.encode()}


@pytest.mark.parametrize("changes", [{"worker_processes": 1}, {"engine": "elementwise"},
                                     {"beam_args": ["--environment_type=LOOPBACK"]},
                                     {"runner": "FlinkRunner", "beam_args": ["--flink_master=[local]"],
                                      "worker_processes": 1}])
def test_one_process_one_environment(changes):
    assert not deciding_in_own_process(_job(**changes))
    assert len(set(_environment_of_each_step(_job(**changes)).values())) == 1


def test_flink_decides_in_a_process_of_its_own_too():
    assert deciding_in_own_process(_job(runner="FlinkRunner"))
    assert len(set(_environment_of_each_step(_job(runner="FlinkRunner")).values())) == 2


def test_the_start_line_says_where_the_run_decides():
    assert ", deciding in a worker process of its own;" in start_line(_job())
    assert ", deciding in the reader's worker;" in start_line(_job(worker_processes=1))
    assert ", deciding in a worker process of its own;" in start_line(_job(runner="FlinkRunner"))
    assert ", deciding in the reader's worker;" in start_line(_job(beam_args=["--environment_type=LOOPBACK"]))


def test_a_step_left_where_it_is_when_no_process_is_named():
    step = beam.Map(str)
    assert in_worker_process(step, None) is step


def test_workers_run_in_the_local_pool_only_where_they_would_be_threads_of_this_process():
    assert loopback_by_default("PrismRunner", [])
    assert loopback_by_default("FlinkRunner", ["--flink_master=[local]"])
    assert not loopback_by_default("PrismRunner", ["--environment_type=LOOPBACK"])
    assert not loopback_by_default("FlinkRunner", ["--flink_master=flink:8081", "--environment_type=EXTERNAL",
                                                   "--environment_config=pool:50000"])
    assert not loopback_by_default("DirectRunner", [])


def test_the_options_of_a_run_in_the_local_pool_name_it_and_ship_nothing():
    job = _job(runner="FlinkRunner", beam_args=["--flink_master=[local]"])
    options = pipeline_options(job, "127.0.0.1:50123").get_all_options(retain_unknown_options=True)
    assert options["environment_type"] == "EXTERNAL" and options["environment_config"] == "127.0.0.1:50123"
    assert options["setup_file"] is None  # the pool's harnesses run paybeam as installed here
    assert options["beam_plugins"] == ["schemas.worker_plugin"]


def test_the_local_pool_listens_on_the_loopback_interface_only():
    with local_worker_pool() as address:
        host, port = address.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0


_FIRST_SHORT_ID = """
from apache_beam.metrics import monitoring_infos
from apache_beam.runners.worker import sdk_worker
from runners.python_harness_boot import distinct_short_ids
distinct_short_ids()
infos = [monitoring_infos.int64_counter(monitoring_infos.ELEMENT_COUNT_URN, 1, pcollection=name) for name in "ab"]
print(" ".join(sdk_worker.SHORT_ID_CACHE.get_short_id(info) for info in infos + infos[:1]))
"""


def test_two_harness_processes_never_share_a_metric_short_id():
    """Prism keeps one table of short ids per job: a second harness process reusing the first one's ids made it
    decode one metric as another and panic (docs/DESIGN.md 7)."""
    runs = [subprocess.run([sys.executable, "-c", _FIRST_SHORT_ID], cwd=REPO, check=True, capture_output=True,
                           text=True).stdout.split() for _ in range(2)]
    for first, second, again in runs:
        assert first != second and again == first  # one id per metric within a process
    assert not set(runs[0]) & set(runs[1])
