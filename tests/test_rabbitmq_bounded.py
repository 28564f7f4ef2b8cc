"""`paybeam stream --source rabbitmq --bounded` against a real RabbitMQ (docs/DESIGN.md 5.2, "Bounded runs").

Consecutive bounded runs equal one run over all their records (both engines), messages the broker
dead-lettered included (read back from their dead-lettered queues): the open-items snapshot
carries the open keys, a key's rows are written again only when they change (revision + 1). A run that
fails — the broker gone mid-run, or the process killed — acks nothing: every message is back in its
queue and the store still holds the previous snapshot, so the next run gives the one-run answer.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import Counter

import pytest

from pipelines.brokers.local_broker import free_port
from pipelines.io.rabbitmq import (
    AmqpEndpoint,
    StoreCorrupt,
    dead_lettered_queue,
    declare_queue,
    latest_snapshot,
    publish_values,
    read_queue,
    snapshot_entry,
)
from schemas.internal_records import OpenItem
from schemas.kafka_values import encode_value
from tests.beam_helpers import DAY, HOUR, payment, settlement
from tests.cli_helpers import reconcile, result_multiset, results
from tests.rabbitmq_helpers import (
    Unpiped,
    dataset,
    eventually,
    forwarder,
    kill,
    paybeam_in_process,
    produce_files,
    queue_rows,
    ready_count,
    reject_some,
    run_names,
    start_stream,
    stored_count,
)
from tests.stream_helpers import final_revisions, wait_until


def _arguments(names, *extra: str):
    arguments = ["stream", "--source", "rabbitmq", "--bounded", "--payments-queue", names["payments"],
                 "--settlements-queue", names["settlements"], "--exchange", names["exchange"],
                 "--group-id", names["exchange"], *extra]
    for output in ("results", "daily_totals", "alerts", "dead_letters"):
        arguments += [f"--{output.replace('_', '-')}-topic", names[output]]
    return arguments


def _run(url: str, names, *extra: str) -> subprocess.CompletedProcess:
    return paybeam_in_process(url, _arguments(names, *extra))


def _publish(url: str, names, payments, settlements) -> None:
    endpoint = AmqpEndpoint(url)
    for name, records, schema in (("payments", payments, "payment_event"), ("settlements", settlements,
                                                                          "settlement_line")):
        declare_queue(endpoint, names[name], "quorum")
        publish_values(endpoint, names[name], [encode_value(r._asdict(), "json", schema) for r in records])


def _final(rows):
    return Counter((r["processor_reference"], r["kind"], r["status"], r["ledger_event_id"], r["settlement_id"])
                   for r in final_revisions(rows))


def _records():
    first_payments = [payment(f"e{n}", f"r{n}", time=n * HOUR) for n in range(8)]
    first_settlements = [settlement("s0", "r0", time=2 * HOUR), settlement("s1", "r1", time=3 * HOUR),
                         settlement("s-early", "r-late-ledger", time=4 * HOUR)]
    second_payments = [payment("e-late-ledger", "r-late-ledger", time=3 * HOUR), payment("e9", "r9", time=2 * DAY)]
    second_settlements = [settlement(f"s{n}", f"r{n}", time=DAY + n * HOUR) for n in (2, 3, 4)] + [
        settlement("s0-dup", "r0", time=DAY), settlement("s9", "r9", time=2 * DAY + HOUR)]
    return (first_payments, first_settlements), (second_payments, second_settlements)


@pytest.mark.parametrize("engine", ["columnar", "elementwise"])
def test_two_consecutive_bounded_runs_equal_one_run_over_all_records(rabbitmq_broker, engine):
    url, endpoint = rabbitmq_broker.amqp_url, AmqpEndpoint(rabbitmq_broker.amqp_url)
    first, second = _records()
    incremental = run_names()
    _publish(url, incremental, *first)
    # Messages the broker dead-letters are read back from <queue>.dead-lettered as part of the input.
    reject_some(endpoint, incremental["payments"], 2)
    reject_some(endpoint, incremental["settlements"], 1)
    run = _run(url, incremental, "--engine", engine)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("paybeam stream --bounded — as_of")
    assert "dead-lettered by the broker and read back: 2 payments, 1 settlements" in run.stdout
    after_first = queue_rows(endpoint, incremental["results"])
    _publish(url, incremental, *second)
    run = _run(url, incremental, "--engine", engine)
    assert run.returncode == 0, run.stderr
    assert "carried over from the previous run (open items)" in run.stdout

    whole = run_names()
    _publish(url, whole, first[0] + second[0], first[1] + second[1])
    assert _run(url, whole, "--engine", engine).returncode == 0

    answer = _final(queue_rows(endpoint, whole["results"]))
    rows = queue_rows(endpoint, incremental["results"])
    assert _final(rows) == answer
    statuses = Counter(status for (_, _, status, _, _), n in answer.items() for _ in range(n))
    assert statuses["MATCHED"] == 7 and statuses["DUPLICATE_SETTLEMENT"] == 1  # the case is not trivial
    assert all(not row["is_final"] for row in rows if row["status"] in
               ("PENDING", "MISSING_SETTLEMENT", "UNEXPECTED_SETTLEMENT"))
    r2 = sorted((row["revision"], row["status"]) for row in rows if row["processor_reference"] == "r2")
    assert r2[0][1] == "PENDING" and r2[-1] == (r2[0][0] + 1, "MATCHED")
    assert any(row["processor_reference"] == "r2" for row in after_first)
    for name in ("payments", "settlements"):
        assert ready_count(endpoint, incremental[name]) == 0  # acked once the run had succeeded
        assert ready_count(endpoint, dead_lettered_queue(incremental[name])) == 0
    # The store holds exactly one snapshot (the older one was acked) and its marker.
    store = read_queue(endpoint, f"{incremental['exchange']}.open-items", ack=False)
    assert sum(1 for message in store if b'"marker"' in message.body) == 1


def test_a_bounded_run_reads_max_records_and_leaves_the_rest(rabbitmq_broker):
    url, endpoint = rabbitmq_broker.amqp_url, AmqpEndpoint(rabbitmq_broker.amqp_url)
    names = run_names()
    _publish(url, names, [payment(f"e{n}", f"r{n}", time=n) for n in range(30)],
             [settlement(f"s{n}", f"r{n}", time=n) for n in range(10)])
    run = _run(url, names, "--bounded", "max_records", "--max-records", "20")
    assert run.returncode == 0, run.stderr
    assert ready_count(endpoint, names["payments"]) + ready_count(endpoint, names["settlements"]) == 20


def test_the_store_carries_the_latest_marked_snapshot_and_refuses_a_short_one():
    item = OpenItem("stripe|r1|CAPTURE", 2, False, (("payments", "q#1", '{"event_id":"e1"}'),), "sig")
    old = item._replace(revision=1)
    bodies = [snapshot_entry(old, "a").value, json.dumps({"snapshot": "a", "marker": {"entries": 1,
                                                                                       "started": 1}}).encode(),
              snapshot_entry(item, "b").value, json.dumps({"snapshot": "b", "marker": {"entries": 1,
                                                                                       "started": 2}}).encode(),
              snapshot_entry(item._replace(revision=3), "c").value,  # a failed run's partial snapshot: no marker
              b"not json"]
    assert latest_snapshot(bodies) == {item.key: item}
    assert latest_snapshot([]) == {}
    short = [json.dumps({"snapshot": "d", "marker": {"entries": 2, "started": 3}}).encode(),
             snapshot_entry(item, "d").value]
    with pytest.raises(StoreCorrupt, match="1 of the 2 entries"):
        latest_snapshot(short)


def _batch_answer(tmp_path, payments, settlements):
    assert reconcile(payments, settlements, str(tmp_path / "batch")) == 0
    return result_multiset(results(str(tmp_path / "batch")))


def test_a_bounded_run_whose_broker_goes_away_acks_nothing_and_the_next_run_gives_the_answer(rabbitmq_broker,
                                                                                              tmp_path):
    payments, settlements = dataset(tmp_path, 5_000, seed=53)
    expected = _batch_answer(tmp_path, payments, settlements)
    url, endpoint = rabbitmq_broker.amqp_url, AmqpEndpoint(rabbitmq_broker.amqp_url)
    names = run_names()
    produce_files(url, payments, settlements, names)
    total = ready_count(endpoint, names["payments"]) + ready_count(endpoint, names["settlements"])
    port = free_port()
    relay = forwarder(port, rabbitmq_broker.port)
    through = f"amqp://guest:guest@127.0.0.1:{port}/%2F"
    process = start_stream(through, _arguments(names, "--broker-timeout", "3"), tmp_path / "first.err")
    try:
        wait_until("the launcher holding every input message", lambda: ready_count(
            endpoint, names["payments"]) + ready_count(endpoint, names["settlements"]) == 0, Unpiped(process), 120)
        kill(relay)  # the broker is gone for the run: its outputs cannot be published, nor its acks sent
        code = process.wait(timeout=120)
    finally:
        kill(relay)
        kill(process, group=True)
    stderr = (tmp_path / "first.err").read_text()
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert code == 1 and len(errors) == 1 and "nothing was acked" in errors[0], stderr[-3000:]
    # Nothing acked: every message is back, the store holds no snapshot.
    assert ready_count(endpoint, names["payments"]) + ready_count(endpoint, names["settlements"]) == total
    # The run may lose the broker before it declares its store: no queue is no snapshot too.
    assert stored_count(endpoint, f"{names['exchange']}.open-items") == 0
    run = _run(url, names)
    assert run.returncode == 0, run.stderr
    assert result_multiset(final_revisions(queue_rows(endpoint, names["results"]))) == expected


def test_a_bounded_run_killed_mid_run_acks_nothing_and_the_next_run_gives_the_answer(rabbitmq_broker, tmp_path):
    payments, settlements = dataset(tmp_path, 5_000, seed=59)
    expected = _batch_answer(tmp_path, payments, settlements)
    url, endpoint = rabbitmq_broker.amqp_url, AmqpEndpoint(rabbitmq_broker.amqp_url)
    names = run_names()
    produce_files(url, payments, settlements, names)
    total = ready_count(endpoint, names["payments"]) + ready_count(endpoint, names["settlements"])
    process = start_stream(url, _arguments(names), tmp_path / "first.err")
    try:
        wait_until("the launcher holding every input message", lambda: ready_count(
            endpoint, names["payments"]) + ready_count(endpoint, names["settlements"]) == 0, Unpiped(process), 120)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    # The broker requeues what the dead connection held.
    eventually("every message back in its queue", lambda: ready_count(endpoint, names["payments"]) + ready_count(
        endpoint, names["settlements"]) == total, 30)
    run = _run(url, names)
    assert run.returncode == 0, run.stderr
    assert result_multiset(final_revisions(queue_rows(endpoint, names["results"]))) == expected
