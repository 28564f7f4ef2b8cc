"""`paybeam stream --source rabbitmq` on Prism against a real RabbitMQ: the batch answer, from queues.

Generated payments and settlements (5 to 4 days ago, 30-day deadlines) go to two quorum queues with
`paybeam rabbitmq produce`, invalid rows included, five of each rejected by another consumer (so the
broker dead-letters them); the unbounded run reads them (each engine), and
once the queues are idle its watermark passes the data, so every key's last revision, every dead
letter and every day's last daily-total pane must be what `paybeam reconcile` gives on the files.
Every input message is acked (none left when the run is killed), and the outputs are persistent
messages in the queues the run declared and bound to its exchange.
"""
from __future__ import annotations

import os
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from datagen.generator import GeneratorConfig, generate
from pipelines.io.rabbitmq import (
    AmqpEndpoint,
    StreamStart,
    dead_lettered_queue,
    declare_queue,
    publish_values,
    read_streams,
)
from schemas.kafka_values import encode_value
from tests.beam_helpers import T0, settlement
from tests.cli_helpers import daily_totals, dead_letters, reconcile, result_multiset, results
from tests.rabbitmq_helpers import (
    Unpiped,
    batch_totals,
    kill,
    last_panes,
    produce_files,
    queue_rows,
    ready_count,
    reject_some,
    run_names,
    start_stream,
    stream_arguments,
    stream_until_batch,
)
from tests.stream_helpers import final_revisions, wait_until
from tests.test_prism_stream import _recent
from tests.test_stream_bank_runners import _statement

# A Prism run per engine (about 25 s): with the other unbounded Prism runs, in `make test-engines`.
pytestmark = pytest.mark.engines

DEADLINES = ("--settlement-sla", "30d", "--ledger-grace", "30d")


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    base = tmp_path_factory.mktemp("rabbitmq-stream")
    start = datetime.now(timezone.utc) - timedelta(days=5)
    dataset = generate(GeneratorConfig(payments=300, seed=23, days=1, start=start.strftime("%Y-%m-%dT%H:%M:%SZ")),
                       str(base / "data"))
    payments, settlements = (os.path.join(dataset.out_dir, name, "*") for name in ("payments", "settlements"))
    assert reconcile(payments, settlements, str(base / "batch"), *DEADLINES) == 0
    return payments, settlements, str(base / "batch")


@pytest.fixture(scope="module", params=["columnar", "elementwise"])
def streamed(request, rabbitmq_broker, batch, tmp_path_factory):
    """Runs the stream until its outputs equal batch's; yields the output queues' rows and the run's stderr."""
    payments, settlements, batch_out = batch
    url = rabbitmq_broker.amqp_url
    names = run_names()
    produce_files(url, payments, settlements, names)
    # Messages the broker dead-letters are read from <queue>.dead-lettered as part of the same input.
    rejected = {name: reject_some(AmqpEndpoint(url), names[name], 5) for name in ("payments", "settlements")}
    log = tmp_path_factory.mktemp("log") / "stream.err"
    rows = stream_until_batch(url, names, batch_out, ["--runner", "PrismRunner", "--engine", request.param,
                                                       *DEADLINES], log)
    yield {"rows": rows, "names": names, "endpoint": AmqpEndpoint(url), "batch": batch_out, "log": log.read_text(),
           "rejected": rejected}


def test_the_stream_from_queues_gives_batch_results(streamed):
    finals = final_revisions(streamed["rows"]["results"])
    assert result_multiset(finals) == result_multiset(results(streamed["batch"]))
    assert {"MATCHED", "PENDING"} <= {row["status"] for row in finals}


def test_dead_letters_are_batch_dead_letters(streamed):
    streamed_letters = Counter((letter["input"], letter["reason"]) for letter in streamed["rows"]["dead_letters"])
    batch_letters = Counter((letter["input"], letter["reason"]) for letter in dead_letters(streamed["batch"]))
    assert streamed_letters == batch_letters and streamed_letters
    queues = [streamed["names"]["payments"], streamed["names"]["settlements"]]
    inputs = {*queues, *(dead_lettered_queue(queue) for queue in queues)}
    assert all(letter["source"].split("#")[0] in inputs for letter in streamed["rows"]["dead_letters"])


def test_the_last_daily_total_pane_of_each_day_is_batch_total(streamed):
    assert last_panes(streamed["rows"]["daily_totals"]) == batch_totals(daily_totals(streamed["batch"]))


def test_every_input_message_was_acked_and_no_credentials_were_printed(streamed):
    # Killed with SIGKILL: an unacked delivery would be back in its queue now.
    names = streamed["names"]
    assert [ready_count(streamed["endpoint"], names[name]) for name in ("payments", "settlements")] == [0, 0]
    assert [ready_count(streamed["endpoint"], dead_lettered_queue(names[name]))
            for name in ("payments", "settlements")] == [0, 0]
    assert all(len(bodies) == 5 for bodies in streamed["rejected"].values())
    assert "also reading what the broker dead-lettered: " in streamed["log"]
    assert "guest:guest" not in streamed["log"]
    assert "amqp://***@127.0.0.1" in streamed["log"]


def test_an_unbounded_run_over_streams_gives_batchs_answer_and_stores_its_offsets(rabbitmq_broker, batch, tmp_path):
    """RabbitMQ Streams as the unbounded source (columnar engine): the same answer as from queues, and the
    offsets stored for --group-id as the outputs become durable (a stream keeps its messages: nothing is
    acked), so a run started again with --start committed reads nothing twice."""
    from tests.test_rabbitmq_streams import _stored_offset

    payments, settlements, batch_out = batch
    url, port = rabbitmq_broker.amqp_url, rabbitmq_broker.stream_port
    names = run_names()
    produce_files(url, payments, settlements, names, queue_type="stream")
    rows = stream_until_batch(url, names, batch_out, ["--runner", "PrismRunner", "--streams", "--stream-port",
                                                      str(port), "--group-id", names["exchange"], *DEADLINES],
                              tmp_path / "stream.err", acked=False)
    assert result_multiset(final_revisions(rows["results"])) == result_multiset(results(batch_out))
    for name in ("payments", "settlements"):
        # Stored as bundles were finalized (the run was killed once it had the answer: the last few may not be).
        whole, = read_streams(AmqpEndpoint(url), port, [(names[name], str(tmp_path / f"{name}.arrows"), None)],
                              "probe", StreamStart("earliest"))
        stored = _stored_offset(url, port, names[name], names["exchange"])
        assert stored is not None and 0 < stored <= whole.last_offset, (name, stored, whole.last_offset)


def test_a_bank_statements_queue_balances_a_payout_and_finds_its_bank_credit(rabbitmq_broker, tmp_path):
    """The third leg from queues (docs/DESIGN.md 3.8): a payout's lines, a camt.053 crediting it (sent as
    application/xml) and a message that is no statement; the run on Prism (columnar) shows the payout
    balanced, received by reference, and the message a dead letter of the bank-statements input."""
    url, endpoint = rabbitmq_broker.amqp_url, AmqpEndpoint(rabbitmq_broker.amqp_url)
    names = run_names()
    bank = {name: f"{name}-{names['exchange']}" for name in ("bank_statements", "payouts", "bank_matches")}
    now = _recent()
    for queue in (names["payments"], names["settlements"], bank["bank_statements"]):
        declare_queue(endpoint, queue)
    publish_values(endpoint, names["settlements"], [encode_value(line._asdict(), "json", "settlement_line") for line in (
        settlement("s1", "ref_1", 1500, time=now, payout_id="po_live0001"),
        settlement("s2", "ref_2", 600, time=now + 1000, payout_id="po_live0001", record_type="REFUND"),
        settlement("s3", "payout", 900, time=now + 2000, payout_id="po_live0001", record_type="PAYOUT"))])
    day = (T0 + timedelta(milliseconds=now)).date()
    publish_values(endpoint, bank["bank_statements"], [_statement(tmp_path, day, "po_live0001", 900)],
                   content_type="application/xml")
    publish_values(endpoint, bank["bank_statements"], [b"not a statement"], content_type="text/plain")
    process = start_stream(url, stream_arguments(
        names, "--runner", "PrismRunner", "--bank-statements-queue", bank["bank_statements"], "--payouts-topic",
        bank["payouts"], "--bank-matches-topic", bank["bank_matches"]), tmp_path / "stream.err")
    try:
        def rows(queue: str, **wanted):
            return [row for row in queue_rows(endpoint, queue) if all(row[k] == v for k, v in wanted.items())]

        wait_until("the payout balanced", lambda: rows(bank["payouts"], status="PAYOUT_BALANCED"), Unpiped(process),
                   180)
        balanced = rows(bank["payouts"], status="PAYOUT_BALANCED")[-1]
        assert (balanced["payout_id"], balanced["payout_minor"], balanced["lines_minor"]) == ("po_live0001", 900, 900)
        wait_until("the payout received", lambda: rows(bank["bank_matches"], status="PAYOUT_RECEIVED"),
                   Unpiped(process), 60)
        received = rows(bank["bank_matches"], status="PAYOUT_RECEIVED")[-1]
        assert (received["matched_by"], received["credit_minor"]) == ("reference", 900) and received["entry_ref"]
        wait_until("the message that is no statement as a dead letter", lambda: rows(
            names["dead_letters"], input="bank_statements"), Unpiped(process), 60)
        letter, = rows(names["dead_letters"], input="bank_statements")
        assert "not a bank statement" in letter["reason"]
        assert letter["source"].startswith(f"{bank['bank_statements']}#")
        wait_until("the statements acked", lambda: ready_count(endpoint, bank["bank_statements"]) == 0,
                   Unpiped(process), 60)
    except BaseException:
        print(f"the stream's log:\n{(tmp_path / 'stream.err').read_text()[-4000:]}")
        raise
    finally:
        kill(process, group=True)
