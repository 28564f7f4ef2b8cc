"""`--output s3://…` through Beam's S3 filesystem, against a real S3-compatible server process (moto's)."""
from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter

import boto3
import pyarrow.parquet as pq
import pytest

from pipelines.cli import main
from pipelines.io.run_output import SUCCESS
from pipelines.reconcile_batch import ENGINES
from tests.cli_helpers import reconcile, result_multiset, results, run_summary

BUCKET = "paybeam-runs"
CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test", "region_name": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:  # wait for the server to accept connections (a bound on a hang, not a timing assertion)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, "moto server did not start"
            time.sleep(0.1)
    boto3.client("s3", endpoint_url=endpoint, **CREDENTIALS).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.terminate()
    server.wait(timeout=30)


def _s3_args(endpoint: str) -> list:
    return ["--s3_endpoint_url", endpoint, "--s3_access_key_id", CREDENTIALS["aws_access_key_id"],
            "--s3_secret_access_key", CREDENTIALS["aws_secret_access_key"],
            "--s3_region_name", CREDENTIALS["region_name"]]


def _objects(endpoint: str, prefix: str) -> dict:
    client = boto3.client("s3", endpoint_url=endpoint, **CREDENTIALS)
    listing = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {item["Key"]: client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read() for item in listing}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    base = tmp_path_factory.mktemp("object-store")
    assert main(["generate", "--payments", "300", "--out", str(base / "data"), "--quiet"]) == 0
    return str(base / "data" / "payments" / "*"), str(base / "data" / "settlements" / "*")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_run_publishes_to_s3_and_a_rerun_replaces_it(s3_endpoint, sample, tmp_path, engine):
    payments, settlements = sample
    local = str(tmp_path / "local")
    assert reconcile(payments, settlements, local, "--engine", engine) == 0
    prefix = f"run-{engine}"
    output = f"s3://{BUCKET}/{prefix}"
    assert reconcile(payments, settlements, output, "--engine", engine, "--csv", *_s3_args(s3_endpoint)) == 0
    first = _objects(s3_endpoint, prefix)
    assert any(key.startswith(f"{prefix}/csv/") for key in first)
    assert reconcile(payments, settlements, output, "--engine", engine, *_s3_args(s3_endpoint)) == 0
    objects = _objects(s3_endpoint, prefix)
    folders = {key[len(prefix) + 1:].split("/")[0] for key in objects}
    assert folders == {"results", "daily_totals", "dead_letters", "run.json", SUCCESS}  # csv/ of run 1 gone
    assert not any(".paybeam-tmp-" in key for key in objects)
    rows = [row for key, body in objects.items() if key.startswith(f"{prefix}/results/")
            for row in pq.read_table(io.BytesIO(body)).to_pylist()]
    assert result_multiset(rows) == result_multiset(results(local))
    summary = json.loads(objects[f"{prefix}/run.json"])
    expected = run_summary(local)
    assert summary["inputs"]["payments"]["read"] == expected["inputs"]["payments"]["read"] > 0
    assert summary["statuses"] == expected["statuses"] and summary["results_rows"] == len(rows)
    letters = b"".join(body for key, body in objects.items() if key.startswith(f"{prefix}/dead_letters/"))
    assert Counter(json.loads(line)["reason"] for line in letters.splitlines()) == Counter(
        json.loads(line)["reason"] for name in os.listdir(os.path.join(local, "dead_letters"))
        for line in open(os.path.join(local, "dead_letters", name), encoding="utf-8"))


def test_an_unreachable_store_fails_fast_in_one_line_and_creates_nothing(sample, tmp_path, capsys, monkeypatch):
    payments, settlements = sample
    monkeypatch.chdir(tmp_path)
    closed = f"http://127.0.0.1:{_free_port()}"
    code = reconcile(payments, settlements, f"s3://{BUCKET}/nowhere", *_s3_args(closed))
    error = capsys.readouterr().err
    assert code == 2
    assert error.count("\n") == 1 and "cannot be written" in error and "Traceback" not in error
    assert os.listdir(tmp_path) == []
