"""`paybeam worker-pool` and its harness boot (runners/worker_pool.py, runners/python_harness_boot.py).

The ordering it guarantees, checked without a runner: a harness started the way the boot starts it
(the job's pipeline options from the provision service, then Beam's sdk_worker_main) has registered
every record class's stable schema id before it decodes its first row, so the row is a PaymentEvent.
A harness started as Beam's bare worker_pool_main starts it (`python -c "SdkHarness(…).run()"`, no
options) decodes the same first row into a generated `BeamSchema_…` tuple: the failure a Flink run
met when a fresh worker's first bundle decoded payments before any transform had imported them.
The pool itself runs the per-element engine on Flink in tests/test_flink_runner.py (engines) and a
portable job in tests/test_portable_runner.py.
"""
from __future__ import annotations

import json
import subprocess
import sys

from apache_beam.coders import RowCoder
from apache_beam.portability.api import beam_provision_api_pb2
from apache_beam.runners.portability.portable_runner import JobServiceHandle
from apache_beam.typehints.schemas import named_tuple_to_schema

from pipelines.cli import main
from runners.harness_provision import harness_environment
from runners.options import build_pipeline_options
from runners.worker_pool import HARNESS_BOOT, harness_boot_command
from schemas.records import PaymentEvent
from tests.stream_helpers import REPO

FLINK_EXTERNAL = ["--flink_master=flink-jobmanager:8081", "--environment_type=EXTERNAL",
                  "--environment_config=localhost:50000"]

_FIRST_ROW_IN_A_FRESH_WORKER = """
import json, sys
from apache_beam.coders import RowCoder
if sys.argv[3] != "bare":
    from apache_beam.runners.worker import sdk_worker_main
    sdk_worker_main.create_harness(json.loads(sys.argv[3]), dry_run=True)
decoded = RowCoder.from_payload(bytes.fromhex(sys.argv[1])).decode(bytes.fromhex(sys.argv[2]))
print(type(decoded).__module__ + "." + type(decoded).__qualname__)
"""


def _first_row_type(harness_environment_json: str) -> str:
    event = PaymentEvent("e1", "p1", "CAPTURED", "stripe", "ch_1", "m1", 1250, "EUR", 1_700_000_000_000)
    coder = RowCoder(named_tuple_to_schema(PaymentEvent))
    # From another directory and without PYTHONPATH, as a pool's harness: paybeam as installed.
    return subprocess.run(
        [sys.executable, "-c", _FIRST_ROW_IN_A_FRESH_WORKER, coder.schema.SerializeToString().hex(),
         coder.encode(event).hex(), harness_environment_json],
        cwd="/", env={"PATH": "/usr/bin:/bin"}, check=True, capture_output=True, text=True).stdout.strip()


def _provision_info_of_a_flink_job() -> beam_provision_api_pb2.ProvisionInfo:
    """What the Flink job server's provision service hands a worker of a paybeam job: the options as
    the portable runner encodes them for the job service."""
    options = build_pipeline_options("flink", FLINK_EXTERNAL)
    return beam_provision_api_pb2.ProvisionInfo(
        pipeline_options=JobServiceHandle.encode_pipeline_options(options.get_all_options(retain_unknown_options=True)),
        control_endpoint={"url": "localhost:1"})


def test_a_booted_harness_decodes_its_first_row_into_the_record_class():
    env = harness_environment(_provision_info_of_a_flink_job(), "1-1", {"control": "", "logging": ""})
    assert json.loads(env["PIPELINE_OPTIONS"])["beam:option:beam_plugins:v1"] == ["schemas.worker_plugin"]
    assert env["WORKER_ID"] == env["HARNESS_ID"] == "1-1"
    assert env["CONTROL_API_SERVICE_DESCRIPTOR"] == 'url: "localhost:1"'
    # The runner's log service is not part of this check (no runner listens here).
    del env["LOGGING_API_SERVICE_DESCRIPTOR"]
    assert _first_row_type(json.dumps(env)) == "schemas.records.PaymentEvent"


def test_a_bare_harness_decodes_its_first_row_into_a_generated_tuple():
    assert _first_row_type("bare").startswith("apache_beam.typehints.schemas.BeamSchema_")


def test_the_pool_starts_harnesses_through_the_installed_boot():
    assert harness_boot_command().endswith(f"/{HARNESS_BOOT}")
    help_text = subprocess.run([harness_boot_command(), "--help"], cwd=REPO, check=True, capture_output=True,
                               text=True).stdout
    assert "--provision_endpoint" in help_text


def test_worker_pool_without_its_boot_is_one_error_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["worker-pool", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{HARNESS_BOOT} is not installed" in err
