"""`paybeam stream --bounded` on a real broker gives the batch answer on the same files (docs/DESIGN.md 4.4).

Generated files are replayed into Kafka out of order with late records and
invalid rows, reconciled by the stream pipeline as a bounded catch-up run
(Fn API runner) with each engine, and compared with `paybeam reconcile` on
the same files; both runs end with reconcile's summary table.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
from collections import Counter

import pytest

from datagen.generator import GeneratorConfig, generate
from pipelines.cli import main
from pipelines.io.kafka import create_topics
from pipelines.kafka_tools import replay_files
from tests.cli_helpers import daily_totals, ground_truth_multiset, reconcile, result_multiset, results, run_summary
from tests.kafka_helpers import read_topic, unique_topic
from tests.stream_helpers import final_revisions

MONEY_COLUMNS = ("captured_minor", "refunded_minor", "chargeback_minor", "ledger_event_count",
                 "settled_gross_minor", "fee_minor", "settled_net_minor", "adjustment_minor", "payout_minor",
                 "settlement_line_count", "break_count")


def _decoded(broker, topic):
    return [json.loads(message.value) for message in read_topic(broker.bootstrap_servers, topic)]


def _totals_by_day(rows):
    return {(r["merchant_id"], r["currency"], r["settlement_day"]): tuple(r[c] for c in MONEY_COLUMNS) for r in rows}


@pytest.fixture(scope="module")
def replayed(kafka_broker, tmp_path_factory):
    base = tmp_path_factory.mktemp("stream")
    dataset = generate(GeneratorConfig(payments=400, seed=31, days=6), str(base / "data"))
    payments, settlements = os.path.join(dataset.out_dir, "payments", "*"), os.path.join(dataset.out_dir, "settlements", "*")
    assert reconcile(payments, settlements, str(base / "batch")) == 0

    topics = {name: unique_topic(name) for name in
              ("payments", "settlements", "results", "daily_totals", "alerts", "dead_letters")}
    create_topics(kafka_broker.bootstrap_servers, list(topics.values()), partitions=3)
    replay_files(kafka_broker.bootstrap_servers, [payments], [settlements], topics["payments"], topics["settlements"],
                 shuffle_window_seconds=3600, late_fraction=0.05, late_by_seconds=2 * 86400, seed=3)
    return dataset, str(base / "batch"), topics


@pytest.fixture(scope="module", params=["columnar", "elementwise"])
def runs(request, kafka_broker, replayed):
    dataset, batch_out, inputs = replayed
    topics = {**inputs, **{name: unique_topic(f"{name}-{request.param}")
                           for name in ("results", "daily_totals", "alerts", "dead_letters")}}
    create_topics(kafka_broker.bootstrap_servers, [topics[name] for name in
                                                   ("results", "daily_totals", "alerts", "dead_letters")],
                  partitions=3)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exit_code = main([
            "stream", "--bootstrap-servers", kafka_broker.bootstrap_servers, "--bounded", "--start", "earliest",
            "--group-id", unique_topic("group"), "--idle-timeout", "1", "--engine", request.param,
            "--payments-topic", topics["payments"], "--settlements-topic", topics["settlements"],
            "--results-topic", topics["results"], "--daily-totals-topic", topics["daily_totals"],
            "--alerts-topic", topics["alerts"], "--dead-letters-topic", topics["dead_letters"],
            "--alert-threshold-bps", "300", "--alert-min-volume", "5",
        ])
    assert exit_code == 0
    return dataset, batch_out, topics, printed.getvalue()


def test_stream_results_equal_batch_results_and_ground_truth(kafka_broker, runs):
    dataset, batch_out, topics, _ = runs
    streamed = final_revisions(_decoded(kafka_broker, topics["results"]))
    assert result_multiset(streamed) == result_multiset(results(batch_out))
    assert result_multiset(streamed) == ground_truth_multiset(dataset.ground_truth_path)


def test_stream_daily_totals_equal_batch(kafka_broker, runs):
    _, batch_out, topics, _ = runs
    streamed = _decoded(kafka_broker, topics["daily_totals"])
    assert {(r["pane_timing"], r["is_final"]) for r in streamed} == {("ON_TIME", True)}
    assert _totals_by_day(streamed) == _totals_by_day(daily_totals(batch_out))


def test_stream_dead_letters_and_alerts(kafka_broker, runs):
    dataset, batch_out, topics, _ = runs
    letters = _decoded(kafka_broker, topics["dead_letters"])
    summary = run_summary(batch_out)
    assert Counter(letter["input"] for letter in letters) == Counter(
        {name: summary["inputs"][name]["rejected"] for name in ("payments", "settlements")})
    assert all("/" in letter["source"] and "@" in letter["source"] for letter in letters)
    alerts = _decoded(kafka_broker, topics["alerts"])
    assert alerts, "a 3% threshold over 5 decided rows should alert somewhere in generated data"
    assert all(alert["break_rate_bps"] >= 300 and alert["decided_count"] >= 5 for alert in alerts)


def test_bounded_stream_prints_reconciles_summary_table(runs):
    _, batch_out, _, printed = runs
    summary = run_summary(batch_out)
    lines = printed.splitlines()
    assert lines[0].startswith(f"paybeam stream --bounded — as_of {summary['as_of']}")
    for name in ("payments", "settlements"):
        counts = summary["inputs"][name]
        assert f"{name:<12}{counts['read']:>10}{counts['accepted']:>10}{counts['rejected']:>10}" \
               f"{counts['deduplicated']:>10}" in lines
    for status, count in summary["statuses"].items():
        assert f"{status:<26}{count:>10}" in lines
