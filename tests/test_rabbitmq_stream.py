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
from pipelines.io.rabbitmq import AmqpEndpoint, dead_lettered_queue
from tests.cli_helpers import daily_totals, dead_letters, reconcile, result_multiset, results
from tests.rabbitmq_helpers import (
    batch_totals,
    last_panes,
    produce_files,
    ready_count,
    reject_some,
    run_names,
    stream_until_batch,
)
from tests.stream_helpers import final_revisions

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
