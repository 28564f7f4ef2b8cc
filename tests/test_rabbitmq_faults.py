"""Faults on the RabbitMQ path (issue 22): a dropped connection, a broker gone for good, a killed consumer.

Every test runs `paybeam stream --source rabbitmq` on Prism through a TCP forwarder in front of the
session's RabbitMQ (tests/tcp_forwarder.py): killing the forwarder is, for the run's clients, exactly a
broker that died (connections reset, new ones refused), while the broker keeps its queues, so the test
can look at what was acked. What each test checks: a recovered connection still gives the batch
answer; a broker gone for good fails the run in one line within a bounded time; what a dead run had
taken but not acked is back in its queue, flagged redelivered, and the next run reads it. (On Prism a
message is acked once the runner has committed the bundle that read it; the runner keeps no checkpoint,
so the state of a run that dies is gone with it, as with Kafka: docs/DESIGN.md 5.2.)
"""
from __future__ import annotations

import subprocess
import time

import pytest

from pipelines.brokers.local_broker import free_port
from pipelines.io.rabbitmq import AmqpEndpoint, ConfirmingPublisher, PublishFailed, declare_queue, read_queue
from tests.cli_helpers import reconcile, result_multiset, results
from tests.rabbitmq_helpers import (
    Unpiped,
    dataset,
    forwarder,
    kill,
    produce_files,
    queue_rows,
    ready_count,
    run_names,
    start_stream,
    stream_arguments,
)
from tests.stream_helpers import final_revisions, wait_until

DEADLINES = ("--settlement-sla", "30d", "--ledger-grace", "30d")
STARTUP_SECONDS = 240
FAILURE_SECONDS = 90  # --broker-timeout 5, plus Prism's job teardown and the CLI's exit


def _ids(rows) -> set:
    return {row[name] for row in rows for name in ("ledger_event_id", "settlement_id") if row.get(name)}


def _queued_ids(endpoint: AmqpEndpoint, queue: str):
    """The ids of the records in `queue` (left there) and how many of its messages are redeliveries."""
    import json

    messages = read_queue(endpoint, queue, ack=False, idle_seconds=0.3)
    ids = set()
    for message in messages:
        try:
            fields = json.loads(message.body)
        except ValueError:
            continue
        ids.update(fields.get(name) for name in ("event_id", "settlement_id") if isinstance(fields.get(name), str))
    return ids, sum(message.redelivered for message in messages)


@pytest.fixture
def through_forwarder(rabbitmq_broker):
    """A forwarder to the session broker and the URL that goes through it; killed at the end."""
    port = free_port()
    forwarders = [forwarder(port, rabbitmq_broker.port)]
    yield port, f"amqp://guest:guest@127.0.0.1:{port}/%2F", forwarders
    for process in forwarders:
        kill(process)


@pytest.mark.engines  # an unbounded Prism run (make test-engines)
def test_a_dropped_connection_recovers_and_the_answer_is_batchs(rabbitmq_broker, through_forwarder, tmp_path):
    port, url, forwarders = through_forwarder
    payments, settlements = dataset(tmp_path, 300, seed=41)
    assert reconcile(payments, settlements, str(tmp_path / "batch"), *DEADLINES) == 0
    expected = result_multiset(results(str(tmp_path / "batch")))
    endpoint = AmqpEndpoint(rabbitmq_broker.amqp_url)
    names = run_names()
    produce_files(rabbitmq_broker.amqp_url, payments, settlements, names)
    log = tmp_path / "stream.err"
    process = start_stream(url, stream_arguments(names, "--runner", "PrismRunner", "--broker-timeout", "60",
                                                 *DEADLINES), log)
    try:
        wait_until("the first results", lambda: queue_rows(endpoint, names["results"]), Unpiped(process),
                   STARTUP_SECONDS)
        kill(forwarders[0])  # every connection of the run reset at once
        forwarders.append(forwarder(port, rabbitmq_broker.port))  # back well within --broker-timeout
        try:
            wait_until("the batch answer after the drop", lambda: result_multiset(
                final_revisions(queue_rows(endpoint, names["results"]))) == expected, Unpiped(process),
                STARTUP_SECONDS)
        except BaseException:
            print(log.read_text()[-4000:])
            raise
        assert process.poll() is None, "a recovered run keeps running"
    finally:
        kill(process, group=True)


def _run_until_mid_read(url: str, endpoint: AmqpEndpoint, names, log, *extra: str) -> subprocess.Popen:
    """Starts a run that reads slowly (a prefetch window of 5) and returns once it has written results while
    its input queues still hold messages."""
    process = start_stream(url, stream_arguments(names, "--runner", "PrismRunner", "--prefetch", "5",
                                                 *DEADLINES, *extra), log)
    wait_until("results written while the inputs are still being read", lambda: queue_rows(
        endpoint, names["results"]) and ready_count(endpoint, names["payments"]) > 0, Unpiped(process),
        STARTUP_SECONDS)
    return process


@pytest.mark.engines  # an unbounded Prism run (make test-engines)
def test_a_broker_gone_for_good_fails_the_run_in_one_line_and_gives_back_what_it_held(rabbitmq_broker, through_forwarder,
                                                                           tmp_path):
    _, url, forwarders = through_forwarder
    payments, settlements = dataset(tmp_path, 2_000, seed=43)
    endpoint = AmqpEndpoint(rabbitmq_broker.amqp_url)
    names = run_names()
    produce_files(rabbitmq_broker.amqp_url, payments, settlements, names)
    log = tmp_path / "stream.err"
    process = _run_until_mid_read(url, endpoint, names, log, "--broker-timeout", "5")
    try:
        kill(forwarders[0])  # the broker is gone for the run, for good
        started = time.monotonic()
        code = process.wait(timeout=FAILURE_SECONDS)
        elapsed = time.monotonic() - started
    finally:
        kill(process, group=True)
    stderr = log.read_text()
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert code == 1, stderr[-3000:]
    assert len(errors) == 1 and "RabbitMQ" in errors[0], errors
    assert "guest:guest" not in stderr
    assert elapsed < FAILURE_SECONDS
    # What the run had taken but not acked when its connections died is back in the queues, flagged.
    assert sum(_queued_ids(endpoint, names[name])[1] for name in ("payments", "settlements")) > 0


@pytest.mark.engines  # an unbounded Prism run (make test-engines)
def test_a_killed_consumer_has_its_unacked_messages_redelivered_to_the_next_run(rabbitmq_broker, tmp_path):
    payments, settlements = dataset(tmp_path, 2_000, seed=47)
    assert reconcile(payments, settlements, str(tmp_path / "batch"), *DEADLINES) == 0
    valid = _ids(results(str(tmp_path / "batch")))  # invalid rows are dead letters, not results
    url = rabbitmq_broker.amqp_url
    endpoint = AmqpEndpoint(url)
    names = run_names()
    produce_files(url, payments, settlements, names)
    process = _run_until_mid_read(url, endpoint, names, tmp_path / "first.err")
    kill(process, group=True)  # SIGKILL: no finalization, no goodbye
    left, redelivered = set(), 0
    for name in ("payments", "settlements"):
        ids, flagged = _queued_ids(endpoint, names[name])
        left, redelivered = left | ids, redelivered + flagged
    assert redelivered > 0, "the killed run's unacked deliveries are back, flagged as redelivered"
    left &= valid
    second = start_stream(url, stream_arguments(names, "--runner", "PrismRunner", *DEADLINES),
                          tmp_path / "second.err")
    try:
        # The second run reads what the first did not ack: each of those records gets its result.
        wait_until("a result for every record left in the queues", lambda: left <= _ids(
            queue_rows(endpoint, names["results"])), Unpiped(second), STARTUP_SECONDS)
        wait_until("the input queues acked to their end", lambda: all(
            ready_count(endpoint, names[name]) == 0 for name in ("payments", "settlements")), Unpiped(second), 60)
    finally:
        kill(second, group=True)


def test_the_publisher_recovers_a_lost_connection_and_publishes_what_was_unconfirmed(rabbitmq_broker,
                                                                                    through_forwarder):
    port, url, forwarders = through_forwarder
    queue = run_names()["payments"]
    declare_queue(AmqpEndpoint(rabbitmq_broker.amqp_url), queue)
    publisher = ConfirmingPublisher(AmqpEndpoint(url), timeout_seconds=30).open()
    try:
        values = [f'{{"n": {n}}}'.encode() for n in range(2_000)]
        for value in values[:1_000]:
            publisher.publish("", queue, value, "json")
        kill(forwarders[0])  # mid-batch: some of the first thousand unconfirmed
        forwarders.append(forwarder(port, rabbitmq_broker.port))
        for value in values[1_000:]:
            publisher.publish("", queue, value, "json")
        assert publisher.wait_confirmed() == 2_000
        assert publisher.reconnects == 1
    finally:
        publisher.close()
    received = [message.body for message in read_queue(AmqpEndpoint(rabbitmq_broker.amqp_url), queue)]
    assert set(received) == set(values)  # at least once: a message whose confirm was lost may come twice


def test_the_publisher_gives_up_once_the_broker_is_gone_for_the_timeout(rabbitmq_broker, through_forwarder):
    _, url, forwarders = through_forwarder
    queue = run_names()["payments"]
    declare_queue(AmqpEndpoint(rabbitmq_broker.amqp_url), queue)
    publisher = ConfirmingPublisher(AmqpEndpoint(url), timeout_seconds=2).open()
    try:
        publisher.publish("", queue, b"{}", "json")
        kill(forwarders[0])
        started = time.monotonic()
        with pytest.raises(PublishFailed, match=r"did not answer for 2 s \(--broker-timeout\)"):
            publisher.publish("", queue, b"{}", "json")
            publisher.wait_confirmed()
        assert time.monotonic() - started < 10
    finally:
        publisher.close()
