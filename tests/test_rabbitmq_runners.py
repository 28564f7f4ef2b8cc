"""The RabbitMQ path on the embedded Flink (engines: a Flink job server per run, slow).

Unbounded: generated payments and settlements from quorum queues, a few of each dead-lettered by the
broker (read back from their dead-lettered queues), and from streams; the run converges to the batch answer
(results, each day's last daily-total pane, dead letters), and every message is acked once the
checkpoint holding its bundle completed (Flink finalizes bundles after checkpoints). Bounded, from quorum
queues and from streams: the launcher's spill reaches the LOOPBACK workers, and the results equal batch.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from pipelines.io.rabbitmq import AmqpEndpoint
from tests.cli_helpers import reconcile, result_multiset, results
from tests.flink_helpers import flink_args
from tests.rabbitmq_helpers import (
    dataset,
    environment,
    produce_files,
    queue_rows,
    ready_count,
    reject_some,
    run_names,
    stream_arguments,
    stream_until_batch,
)
from tests.stream_helpers import REPO, final_revisions

pytestmark = pytest.mark.engines

DEADLINES = ("--settlement-sla", "30d", "--ledger-grace", "30d")


def _flink(flink_engine):
    return flink_args(flink_engine, "[local]", "--environment_type=LOOPBACK", "--checkpointing_interval=10000",
                      "--parallelism=1")


@pytest.mark.parametrize("queue_type", ["quorum", "stream"])
def test_an_unbounded_stream_from_queues_on_flink_gives_batchs_answer(rabbitmq_broker, flink_engine, tmp_path,
                                                                      queue_type):
    payments, settlements = dataset(tmp_path, 300, seed=61)
    assert reconcile(payments, settlements, str(tmp_path / "batch"), *DEADLINES) == 0
    names = run_names()
    produce_files(rabbitmq_broker.amqp_url, payments, settlements, names, queue_type)
    streams = ["--streams", "--stream-port", str(rabbitmq_broker.stream_port)] if queue_type == "stream" else []
    if not streams:  # dead-lettered by the broker: read back from <queue>.dead-lettered
        for name in ("payments", "settlements"):
            reject_some(AmqpEndpoint(rabbitmq_broker.amqp_url), names[name], 3)
    rows = stream_until_batch(rabbitmq_broker.amqp_url, names, str(tmp_path / "batch"),
                              [*_flink(flink_engine), *streams, *DEADLINES], tmp_path / "stream.err",
                              deadline_seconds=400, acked=not streams)
    assert result_multiset(final_revisions(rows["results"])) == result_multiset(results(str(tmp_path / "batch")))


@pytest.mark.parametrize("queue_type", ["quorum", "stream"])
def test_a_bounded_run_from_queues_on_flink_gives_batchs_answer(rabbitmq_broker, flink_engine, tmp_path, queue_type):
    payments, settlements = dataset(tmp_path, 300, seed=67)
    assert reconcile(payments, settlements, str(tmp_path / "batch")) == 0
    url, endpoint = rabbitmq_broker.amqp_url, AmqpEndpoint(rabbitmq_broker.amqp_url)
    names = run_names()
    produce_files(url, payments, settlements, names, queue_type)
    streams = ["--streams", "--stream-port", str(rabbitmq_broker.stream_port)] if queue_type == "stream" else []
    if not streams:  # a stream never dead-letters
        for name in ("payments", "settlements"):
            reject_some(endpoint, names[name], 3)
    arguments = stream_arguments(names, "--bounded", "--group-id", names["exchange"], *streams,
                                 *flink_args(flink_engine))
    run = subprocess.run([sys.executable, "-m", "pipelines.cli", *arguments], cwd=REPO, env=environment(url),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert result_multiset(final_revisions(queue_rows(endpoint, names["results"]))) == result_multiset(
        results(str(tmp_path / "batch")))
    if not streams:
        assert [ready_count(endpoint, names[name]) for name in ("payments", "settlements")] == [0, 0]
        assert "dead-lettered by the broker and read back: 3 payments, 3 settlements" in run.stdout
