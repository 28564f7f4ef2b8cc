"""Bounded runs over RabbitMQ streams (`--streams`) against a real RabbitMQ (docs/DESIGN.md 5.2, "Streams").

A stream keeps its messages; a run reads from its start position to the end it finds and stores the
offset it reached only once every output is confirmed. Consecutive `committed` runs equal one run over
everything; `earliest`, `offset` and `timestamp` replay from where they say; a run whose broker goes
away mid-run stores no offset, so the next run reads those messages again and gives the one-run answer.
"""
from __future__ import annotations

import os
import subprocess
import time
from collections import Counter

import pytest
from apache_beam.io.restriction_trackers import OffsetRange

from pipelines.brokers.local_broker import free_port
from pipelines.brokers.rabbitmq import server_script
from pipelines.io.kafka import UNBOUNDED_STOP
from pipelines.io.rabbitmq import (
    FROM_START,
    AmqpEndpoint,
    RabbitReadConfig,
    ReadStreamFn,
    StreamReadConfig,
    StreamStart,
    close_shared_tails,
    declare_queue,
    publish_values,
    shared_tail,
)
from schemas.kafka_values import encode_value
from schemas.raw_chunks import RawChunk
from tests.beam_helpers import DAY, HOUR, payment, settlement
from tests.rabbitmq_helpers import (
    Unpiped,
    eventually,
    forwarder,
    kill,
    paybeam_in_process,
    queue_rows,
    ready_count,
    run_names,
    start_stream,
)
from tests.stream_helpers import final_revisions, wait_until
from tests.test_rabbitmq_io import _call


def _arguments(names, port: int, *extra: str):
    arguments = ["stream", "--source", "rabbitmq", "--streams", "--stream-port", str(port), "--bounded",
                 "--payments-queue", names["payments"], "--settlements-queue", names["settlements"],
                 "--exchange", names["exchange"], "--group-id", names["exchange"], *extra]
    for output in ("results", "daily_totals", "alerts", "dead_letters"):
        arguments += [f"--{output.replace('_', '-')}-topic", names[output]]
    return arguments


def _run(url: str, names, port: int, *extra: str) -> subprocess.CompletedProcess:
    return paybeam_in_process(url, _arguments(names, port, *extra))


def _append(url: str, names, payments, settlements) -> None:
    endpoint = AmqpEndpoint(url)
    for name, records, schema in (("payments", payments, "payment_event"),
                                  ("settlements", settlements, "settlement_line")):
        declare_queue(endpoint, names[name], "stream")
        publish_values(endpoint, names[name], [encode_value(r._asdict(), "json", schema) for r in records])


def _final(rows):
    return Counter((r["processor_reference"], r["kind"], r["status"], r["ledger_event_id"], r["settlement_id"])
                   for r in final_revisions(rows))


def _read_counts(stdout: str):
    """(payments read, settlements read) from a bounded run's summary."""
    counts = {}
    for line in stdout.splitlines():
        parts = line.split()
        if parts and parts[0] in ("payments", "settlements") and len(parts) == 5:
            counts[parts[0]] = int(parts[1])
    return counts["payments"], counts["settlements"]


FIRST = ([payment(f"e{n}", f"r{n}", time=n * HOUR) for n in range(8)],
         [settlement("s0", "r0", time=2 * HOUR), settlement("s1", "r1", time=3 * HOUR)])
SECOND = ([payment("e9", "r9", time=2 * DAY)],
          [settlement(f"s{n}", f"r{n}", time=DAY + n * HOUR) for n in (2, 3, 4)]
          + [settlement("s0-dup", "r0", time=DAY), settlement("s9", "r9", time=2 * DAY + HOUR)])


# One engine: a stream's records reach the pipeline as a held queue's do (the spill), whose runs are tested
# with both engines (tests/test_rabbitmq_bounded.py).
@pytest.mark.parametrize("engine", ["columnar"])
def test_consecutive_committed_runs_over_streams_equal_one_run(rabbitmq_broker, engine):
    url, port, endpoint = rabbitmq_broker.amqp_url, rabbitmq_broker.stream_port, AmqpEndpoint(rabbitmq_broker.amqp_url)
    incremental = run_names()
    _append(url, incremental, *FIRST)
    first = _run(url, incremental, port, "--engine", engine)
    assert first.returncode == 0, first.stderr
    assert _read_counts(first.stdout) == (8, 2)
    _append(url, incremental, *SECOND)
    second = _run(url, incremental, port, "--engine", engine)
    assert second.returncode == 0, second.stderr
    assert _read_counts(second.stdout) == (1, 5)  # after the stored offsets: only what was appended

    whole = run_names()
    _append(url, whole, FIRST[0] + SECOND[0], FIRST[1] + SECOND[1])
    assert _run(url, whole, port, "--engine", engine).returncode == 0
    answer = _final(queue_rows(endpoint, whole["results"]))
    assert _final(queue_rows(endpoint, incremental["results"])) == answer
    assert Counter(key[2] for key in answer.elements())["MATCHED"] == 6


def test_earliest_offset_and_timestamp_replay_from_where_they_say(rabbitmq_broker):
    url, port = rabbitmq_broker.amqp_url, rabbitmq_broker.stream_port
    names = run_names()
    _append(url, names, *FIRST)  # offsets 0-7 (payments), 0-1 (settlements)
    between = int(time.time() * 1000) + 1  # after every chunk of the first batch was confirmed
    _append(url, names, *SECOND)
    assert _run(url, names, port).returncode == 0  # committed: everything, and the offsets are stored
    replay = _run(url, names, port, "--start", "earliest")
    assert replay.returncode == 0 and _read_counts(replay.stdout) == (9, 7), replay.stderr
    from_offset = _run(url, names, port, "--start", "offset", "--start-offset", "5")
    assert from_offset.returncode == 0 and _read_counts(from_offset.stdout) == (4, 2), from_offset.stderr
    from_time = _run(url, names, port, "--start", "timestamp", "--start-time",
                     time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(between / 1000)) + f".{between % 1000:03d}Z")
    assert from_time.returncode == 0 and _read_counts(from_time.stdout) == (1, 5), from_time.stderr


def test_a_run_whose_broker_goes_away_stores_no_offset_and_the_next_run_gives_the_answer(rabbitmq_broker,
                                                                                         tmp_path):
    url, port, endpoint = rabbitmq_broker.amqp_url, rabbitmq_broker.stream_port, AmqpEndpoint(rabbitmq_broker.amqp_url)
    incremental = run_names()
    _append(url, incremental, *FIRST)
    assert _run(url, incremental, port).returncode == 0
    _append(url, incremental, *SECOND)
    relay_port = free_port()
    relay = forwarder(relay_port, rabbitmq_broker.port)  # AMQP only: the streams are read directly
    store = f"{incremental['exchange']}.open-items"
    process = start_stream(f"amqp://guest:guest@127.0.0.1:{relay_port}/%2F",
                           _arguments(incremental, port, "--broker-timeout", "3"), tmp_path / "second.err")
    try:
        # The store is held once the streams were read: the run is between its read and its outputs.
        wait_until("the store held by the run", lambda: ready_count(endpoint, store) == 0, Unpiped(process), 120)
        kill(relay)
        code = process.wait(timeout=120)
    finally:
        kill(relay)
        kill(process, group=True)
    assert code == 1, (tmp_path / "second.err").read_text()[-3000:]
    third = _run(url, incremental, port)
    assert third.returncode == 0, third.stderr
    assert _read_counts(third.stdout) == (1, 5)  # the failed run stored no offset

    whole = run_names()
    _append(url, whole, FIRST[0] + SECOND[0], FIRST[1] + SECOND[1])
    assert _run(url, whole, port).returncode == 0
    assert _final(queue_rows(endpoint, incremental["results"])) == _final(queue_rows(endpoint, whole["results"]))


def test_a_missing_stream_fails_in_one_line_naming_it(rabbitmq_broker):
    names = run_names()
    run = _run(rabbitmq_broker.amqp_url, names, rabbitmq_broker.stream_port)
    errors = [line for line in run.stderr.splitlines() if "error:" in line]
    assert run.returncode == 1 and len(errors) == 1, run.stderr[-2000:]
    assert any(f"stream {names[name]!r} does not exist" in errors[0] for name in ("payments", "settlements"))
    assert "nothing was acked" in errors[0]


# --- unbounded runs: the stream source (ReadStreamFn) -------------------------------------------------

def _stored_offset(url: str, port: int, stream: str, subscriber: str):
    import asyncio

    from rstream import Consumer
    from rstream.exceptions import OffsetNotFound

    from pipelines.io.rabbitmq._streams import client_settings

    async def query():
        consumer = Consumer(**client_settings(AmqpEndpoint(url), port))
        await consumer.start()
        try:
            return await consumer.query_offset(stream, subscriber)
        except OffsetNotFound:
            return None
        finally:
            await consumer.close()

    return asyncio.run(query())


@pytest.mark.parametrize("chunks", [True, False], ids=["chunks", "records"])
def test_the_stream_source_reads_from_the_start_claims_offsets_and_stores_them_once_finalized(rabbitmq_broker,
                                                                                              chunks):
    url, port, endpoint = rabbitmq_broker.amqp_url, rabbitmq_broker.stream_port, AmqpEndpoint(rabbitmq_broker.amqp_url)
    stream, subscriber = run_names()["payments"], run_names()["exchange"]
    declare_queue(endpoint, stream, "stream")
    publish_values(endpoint, stream, [encode_value(payment(f"e{n}", f"r{n}", time=n * HOUR)._asdict(), "json",
                                                   "payment_event") for n in range(30)] + [b"\xff not json"])
    config = StreamReadConfig(RabbitReadConfig(endpoint, stream, "payments", read_call_millis=3_000), port, subscriber,
                              StreamStart("committed"))

    def records(outputs):
        """Every record the call emitted (a chunk's table rows and its undecodable ones), in offset order."""
        emitted = [record for output in outputs for record in (
            [*(output.value.row_records or []), *output.value.records] if isinstance(output.value, RawChunk)
            else [output.value])]
        return sorted(emitted, key=lambda record: int(record.source.split("#")[1]))

    def read_until(restriction, count):
        """Calls as a runner makes them (one may end before the rest has arrived) until `count` records:
        the records, the last residual, every call's finalization callbacks."""
        got, callbacks = [], []
        for _ in range(40):  # each call waits at most half a second for a first message
            if len(got) >= count:
                return got, restriction, callbacks
            outputs, restriction, _, finalizer = _call(ReadStreamFn(config, chunks), stream, restriction)
            got += records(outputs)
            callbacks += finalizer.callbacks
        pytest.fail(f"{len(got)} of {count} records read")

    try:
        failed, _, _ = read_until(OffsetRange(FROM_START, UNBOUNDED_STOP), 31)
        # A first bundle that failed (never finalized) is retried at the start: it reads the same again.
        read, residual, callbacks = read_until(OffsetRange(FROM_START, UNBOUNDED_STOP), 31)
        assert [record.source for record in read] == [record.source for record in failed]
        assert [record.fields["event_id"] for record in read[:30]] == [f"e{n}" for n in range(30)]
        assert read[30].fields is None and "invalid JSON" in read[30].decode_error  # poison: a dead letter downstream
        assert [record.source for record in read] == [f"{stream}#{offset}" for offset in range(31)]
        assert residual == OffsetRange(31, UNBOUNDED_STOP)  # the restriction holds real offsets now
        assert _stored_offset(url, port, stream, subscriber) is None  # not before the bundle is finalized
        for callback in callbacks:
            callback()
        eventually("the offset stored", lambda: _stored_offset(url, port, stream, subscriber) == 30, 20)
        # A retried bundle or a restored checkpoint asks for an earlier offset: read again from exactly there.
        again, restriction, _ = read_until(OffsetRange(25, UNBOUNDED_STOP), 6)
        assert [record.source for record in again] == [f"{stream}#{offset}" for offset in range(25, 31)]
        assert restriction == OffsetRange(31, UNBOUNDED_STOP)
    finally:
        close_shared_tails()
    # A new process with nothing read yet starts after the stored offset (--start committed).
    publish_values(endpoint, stream, [encode_value(payment("e99", "r99", time=HOUR)._asdict(), "json",
                                                   "payment_event")])
    try:
        assert shared_tail(config).wait_buffered(1, timeout_seconds=20)
        outputs, _, _, _ = _call(ReadStreamFn(config, chunks), stream, OffsetRange(FROM_START, UNBOUNDED_STOP))
        assert [record.fields["event_id"] for record in records(outputs)] == ["e99"]
    finally:
        close_shared_tails()


def test_the_stream_source_goes_on_after_a_dropped_connection_without_reading_a_message_twice(rabbitmq_broker):
    """The broker closes the tail's connection while messages are buffered: it reconnects after the last one
    buffered, so the reads hand over every offset once, in order (a claim never goes backwards)."""
    endpoint, port = AmqpEndpoint(rabbitmq_broker.amqp_url), rabbitmq_broker.stream_port
    stream = run_names()["payments"]
    declare_queue(endpoint, stream, "stream")
    publish_values(endpoint, stream, [encode_value(payment(f"e{n}", f"r{n}", time=n * HOUR)._asdict(), "json",
                                                   "payment_event") for n in range(40)])
    config = StreamReadConfig(RabbitReadConfig(endpoint, stream, "payments"), port, run_names()["exchange"],
                              StreamStart("earliest"))
    try:
        tail = shared_tail(config)
        assert tail.wait_buffered(40, timeout_seconds=20)
        taken = tail.take(FROM_START, 10, 1.0)  # ten handed over, thirty still buffered
        assert [offset for offset, _, _ in taken] == list(range(10))
        rabbitmqctl = os.path.join(os.path.dirname(server_script()), "rabbitmqctl")  # not Debian's `su` wrapper
        closed = subprocess.run([rabbitmqctl, "close_all_connections", "test: a dropped connection"],
                                env=rabbitmq_broker.environment(), capture_output=True, text=True, timeout=60)
        assert closed.returncode == 0, closed.stderr
        publish_values(endpoint, stream, [encode_value(payment("e40", "r40", time=HOUR)._asdict(), "json",
                                                       "payment_event")])
        # The tail has reconnected (offset 40 came over the new connection) before anything else is read.
        assert tail.wait_buffered(31, timeout_seconds=30)
        read, restriction = [], OffsetRange(10, UNBOUNDED_STOP)
        for _ in range(60):  # calls as a runner makes them, until the message published after the drop
            outputs, restriction, _, _ = _call(ReadStreamFn(config), stream, restriction)
            read += [int(record.source.split("#")[1]) for output in outputs
                     for record in [*(output.value.row_records or []), *output.value.records]]
            if read and read[-1] == 40:
                break
        assert read == list(range(10, 41))
    finally:
        close_shared_tails()
