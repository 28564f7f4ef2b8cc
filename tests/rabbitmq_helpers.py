"""What the RabbitMQ tests share: a `paybeam stream --source rabbitmq` child process, the queues' contents."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Callable, Dict, List, Sequence

from pipelines.io.rabbitmq import AmqpEndpoint, read_queue
from tests.stream_helpers import REPO

OUTPUTS = ("results", "daily_totals", "alerts", "dead_letters")
MONEY_COLUMNS = ("captured_minor", "refunded_minor", "chargeback_minor", "settled_gross_minor", "fee_minor",
                 "settled_net_minor", "adjustment_minor", "payout_minor")


def run_names() -> Dict[str, str]:
    """Fresh input queues, output queues and exchange for one run."""
    run = uuid.uuid4().hex[:8]
    names = {name: f"{name}-{run}" for name in ("payments", "settlements")}
    names.update({name: f"paybeam.{name}-{run}" for name in OUTPUTS})
    names["exchange"] = f"paybeam-{run}"
    return names


def environment(amqp_url: str) -> Dict[str, str]:
    return {**os.environ, "PYTHONPATH": REPO, "PAYBEAM_AMQP_URL": amqp_url}


def produce_files(amqp_url: str, payments: str, settlements: str, names: Dict[str, str],
                  queue_type: str = "quorum") -> None:
    produced = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "rabbitmq", "produce", "--payments", payments, "--settlements",
         settlements, "--payments-queue", names["payments"], "--settlements-queue", names["settlements"],
         "--queue-type", queue_type], cwd=REPO, env=environment(amqp_url), capture_output=True, text=True,
        timeout=300)
    assert produced.returncode == 0, produced.stderr


def stream_arguments(names: Dict[str, str], *extra: str) -> List[str]:
    arguments = ["stream", "--source", "rabbitmq", "--payments-queue", names["payments"], "--settlements-queue",
                 names["settlements"], "--exchange", names["exchange"], "--idle-timeout", "1", "--early-firing",
                 "1s", "--status-interval", "0", *extra]
    for name in OUTPUTS:
        arguments += [f"--{name.replace('_', '-')}-topic", names[name]]
    return arguments


def start_stream(amqp_url: str, arguments: Sequence[str], log_path) -> subprocess.Popen:
    """`paybeam ARGS` in a session of its own (a test can kill it with the Prism it started), stderr to a file."""
    with open(log_path, "w") as stderr:
        return subprocess.Popen([sys.executable, "-m", "pipelines.cli", *arguments], cwd=REPO,
                                env=environment(amqp_url), stdout=subprocess.DEVNULL, stderr=stderr,
                                start_new_session=True)


def _undeclared_as(empty, read):
    """`read()`, or `empty` when the broker says its queue was never declared (404)."""
    import pika

    try:
        return read()
    except pika.exceptions.ChannelClosedByBroker as error:
        if error.reply_code == 404:
            return empty
        raise


def queue_rows(endpoint: AmqpEndpoint, queue: str) -> List[dict]:
    """The messages in an output queue as JSON, left there; none before the run has declared it."""
    messages = _undeclared_as([], lambda: read_queue(endpoint, queue, ack=False, idle_seconds=0.3))
    return [json.loads(message.body) for message in messages]


def ready_count(endpoint: AmqpEndpoint, queue: str) -> int:
    """Messages ready in `queue` (not delivered, or delivered and returned unacked)."""
    import pika

    connection = pika.BlockingConnection(endpoint.parameters())
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def stored_count(endpoint: AmqpEndpoint, queue: str) -> int:
    """Messages ready in a queue the run declares when it first needs it: none if it never got that far."""
    return _undeclared_as(0, lambda: ready_count(endpoint, queue))


def reject_some(endpoint: AmqpEndpoint, queue: str, count: int) -> List[bytes]:
    """Takes the first `count` messages of `queue` and rejects them without requeueing, as a consumer that
    gives up on a message does: the broker dead-letters them (into `<queue>.dead-lettered` for a queue paybeam
    declared). Returns their bodies."""
    import pika

    connection = pika.BlockingConnection(endpoint.parameters())
    try:
        channel = connection.channel()
        bodies = []
        while len(bodies) < count:
            method, unused_properties, body = channel.basic_get(queue, auto_ack=False)
            assert method is not None, f"{queue} holds fewer than {count} messages"
            channel.basic_reject(method.delivery_tag, requeue=False)
            bodies.append(body)
        return bodies
    finally:
        connection.close()


def last_panes(rows: List[dict]) -> Dict[tuple, tuple]:
    """Each day's money and timing at its last pane (the answer a consumer of the totals converges to)."""
    last: Dict[tuple, dict] = {}
    for row in rows:
        key = (row["merchant_id"], row["currency"], row["settlement_day"])
        if key not in last or row["pane_index"] > last[key]["pane_index"]:
            last[key] = row
    return {key: (*(row[c] for c in MONEY_COLUMNS), row["pane_timing"]) for key, row in last.items()}


def batch_totals(rows: List[dict]) -> Dict[tuple, tuple]:
    """Batch's totals, with the timing a stream's pane has once the watermark has passed the day: ON_TIME."""
    return {(r["merchant_id"], r["currency"], r["settlement_day"]): (*(r[c] for c in MONEY_COLUMNS), "ON_TIME")
            for r in rows}


class Unpiped:
    """stream_helpers.wait_until's view of a process whose stderr goes to a file."""

    def __init__(self, process: subprocess.Popen):
        self._process = process
        self.returncode = None

    def poll(self):
        self.returncode = self._process.poll()
        return self.returncode

    def communicate(self):
        return "", ""


def dataset(base, payments: int, seed: int):
    """Generated payments of one day, five days ago: (payments glob, settlements glob)."""
    from datagen.generator import GeneratorConfig, generate

    start = datetime.now(timezone.utc) - timedelta(days=5)
    generated = generate(GeneratorConfig(payments=payments, seed=seed, days=1,
                                         start=start.strftime("%Y-%m-%dT%H:%M:%SZ")), str(base / "data"))
    return tuple(os.path.join(generated.out_dir, name, "*") for name in ("payments", "settlements"))


def forwarder(listen_port: int, target_port: int) -> subprocess.Popen:
    """tests/tcp_forwarder.py in front of a broker: killing it is, for its clients, the broker dying."""
    process = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "tcp_forwarder.py"),
                                str(listen_port), str(target_port)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    return process


def kill(process: subprocess.Popen, group: bool = False) -> None:
    """SIGKILL (with its process group: a stream's Prism too) unless it has ended."""
    if process.poll() is None:
        if group:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait()


def eventually(what: str, condition: Callable[[], object], deadline_seconds: float):
    """Polls `condition` until it holds (the broker's state has no event to wait on); fails at the deadline."""
    import pytest

    deadline = time.monotonic() + deadline_seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {deadline_seconds}s")
        time.sleep(0.2)  # poll interval of the deadline loop


def stream_until_batch(url: str, names: Dict[str, str], batch_out: str, runner_arguments: Sequence[str], log_path,
                       deadline_seconds: float = 240, acked: bool = True) -> Dict[str, List[dict]]:
    """Runs `paybeam stream --source rabbitmq` (unbounded) until its results, each day's last daily-total pane
    and its dead letters equal the batch run's in `batch_out`, and (`acked`: queues, not streams) its input
    queues are acked to their end; kills it (SIGKILL: what was acked stays acked) and returns the output
    queues' rows."""
    from pipelines.io.rabbitmq import AmqpEndpoint
    from tests.cli_helpers import daily_totals, dead_letters, result_multiset, results
    from tests.stream_helpers import final_revisions, wait_until

    endpoint = AmqpEndpoint(url)
    process = start_stream(url, stream_arguments(names, *runner_arguments), log_path)
    expected = (result_multiset(results(batch_out)), batch_totals(daily_totals(batch_out)),
                len(dead_letters(batch_out)))
    try:
        def converged():
            rows = {name: queue_rows(endpoint, names[name]) for name in ("results", "daily_totals", "dead_letters")}
            return (result_multiset(final_revisions(rows["results"])), last_panes(rows["daily_totals"]),
                    len(rows["dead_letters"])) == expected

        try:
            wait_until("results, daily totals and dead letters equal to batch's", converged, Unpiped(process),
                       deadline_seconds)
            wait_until("the input queues acked to their end", lambda: not acked or all(
                ready_count(endpoint, names[name]) == 0 for name in ("payments", "settlements")), Unpiped(process),
                60)
        except BaseException:
            print(f"the stream's log:\n{open(log_path).read()[-4000:]}")
            raise
        return {name: queue_rows(endpoint, names[name]) for name in OUTPUTS}
    finally:
        kill(process, group=True)


def paybeam_in_process(url: str, arguments: Sequence[str]) -> subprocess.CompletedProcess:
    """`paybeam ARGS --amqp-url URL` run in this process (no interpreter start-up per run): exit code, stdout,
    stderr as a CompletedProcess."""
    import contextlib
    import io

    from pipelines.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*arguments, "--amqp-url", url])
    return subprocess.CompletedProcess(list(arguments), code, out.getvalue(), err.getvalue())
