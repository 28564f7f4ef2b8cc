"""Offsets of a bounded stream run are committed only after every output is durable (issue 9, item 1).

Real broker (the session's Tansu), both engines. A record whose result cannot be produced
(larger than the producer's message.max.bytes) is a dead letter and the run commits; a run
whose output fails (an unwritable topic) commits nothing, and the next run reads the same
records again and produces their results.
"""
from __future__ import annotations

import pytest

from schemas.codecs import MAX_RAW_PAYLOAD_CHARS
from tests.beam_helpers import payment, settlement
from tests.stream_helpers import (
    committed,
    decoded,
    end_offsets,
    error_lines,
    group_name,
    new_topics,
    produce_records,
    produce_values,
    run_stream_in_process,
)

ENGINES = ["columnar", "elementwise"]


def _inputs(broker, topics, prefix: str, count: int = 6) -> None:
    produce_records(broker.bootstrap_servers, topics["payments"],
                    [payment(f"{prefix}-e{n}", f"{prefix}-r{n}", time=n * 60_000) for n in range(count)],
                    "payment_event")
    produce_records(broker.bootstrap_servers, topics["settlements"],
                    [settlement(f"{prefix}-s{n}", f"{prefix}-r{n}", time=n * 60_000 + 3_600_000) for n in range(count)],
                    "settlement_line")


def _all_committed(broker, group, topics) -> bool:
    return all(committed(broker.bootstrap_servers, group, topics[name]) ==
               {partition: end_offsets(broker.bootstrap_servers, topics[name]).get(partition, -1001)
                for partition in range(2)} for name in ("payments", "settlements"))


def _nothing_committed(broker, group, topics) -> bool:
    return all(offset < 0 for name in ("payments", "settlements")
               for offset in committed(broker.bootstrap_servers, group, topics[name]).values())


@pytest.mark.parametrize("engine", ENGINES)
def test_a_result_too_large_to_produce_is_a_dead_letter_and_the_run_commits(kafka_broker, engine):
    topics = new_topics(kafka_broker.bootstrap_servers)
    _inputs(kafka_broker, topics, "ok")
    # A valid payment whose result row (it repeats the reference) is over the producer's 1 MB limit.
    huge_reference = "r" * 1_100_000
    produce_values(kafka_broker.bootstrap_servers, topics["payments"],
                   [b'{"event_id":"big-1","payment_id":"p-big","event_type":"CAPTURED","processor":"stripe",'
                    b'"processor_reference":"' + huge_reference.encode() + b'","merchant_id":"m_1",'
                    b'"amount_minor":1000,"currency":"USD","event_time":"2026-01-05T00:00:00Z"}'],
                   **{"message.max.bytes": 5_000_000})
    group = group_name()

    run = run_stream_in_process(kafka_broker.bootstrap_servers, topics, group, "--engine", engine)

    assert run.exit_code == 0, run.stderr
    results = decoded(kafka_broker.bootstrap_servers, topics["results"])
    assert sorted(row["processor_reference"] for row in results) == sorted(f"ok-r{n}" for n in range(6))
    assert all(row["status"] == "MATCHED" for row in results)
    refused = [letter for letter in decoded(kafka_broker.bootstrap_servers, topics["dead_letters"])
               if letter["stage"] == "produce" and letter["input"] == "results"]
    assert len(refused) == 1
    letter = refused[0]
    assert letter["input"] == "results" and letter["source"] == f"{topics['results']} (output)"
    assert "too large" in letter["reason"].lower() and topics["results"] in letter["reason"]
    assert letter["raw_payload"].startswith('{"processor":"stripe","processor_reference":"rrrr')
    assert len(letter["raw_payload"]) < MAX_RAW_PAYLOAD_CHARS + 100 and "[cut:" in letter["raw_payload"]
    # Every output is written (the refused one as a dead letter): the offsets are committed.
    assert _all_committed(kafka_broker, group, topics)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_failed_output_commits_nothing_and_the_next_run_reads_the_records_again(kafka_broker, engine):
    topics = new_topics(kafka_broker.bootstrap_servers)
    _inputs(kafka_broker, topics, "again")
    group = group_name()
    unwritable = dict(topics, results="no spaces allowed in a topic name")

    failed = run_stream_in_process(kafka_broker.bootstrap_servers, unwritable, group, "--engine", engine)

    assert failed.exit_code == 1
    assert _nothing_committed(kafka_broker, group, topics)
    assert len(error_lines(failed.stderr)) == 1, failed.stderr
    assert "no offsets were committed" in error_lines(failed.stderr)[0]
    assert "Traceback" not in failed.stderr

    again = run_stream_in_process(kafka_broker.bootstrap_servers, topics, group, "--engine", engine)

    assert again.exit_code == 0, again.stderr
    results = decoded(kafka_broker.bootstrap_servers, topics["results"])
    assert sorted(row["processor_reference"] for row in results) == sorted(f"again-r{n}" for n in range(6))
    assert _all_committed(kafka_broker, group, topics)


def test_a_dead_letter_that_cannot_be_produced_fails_the_run_and_commits_nothing(kafka_broker):
    topics = new_topics(kafka_broker.bootstrap_servers)
    _inputs(kafka_broker, topics, "dl", count=2)
    produce_values(kafka_broker.bootstrap_servers, topics["payments"], [b"{not json"])
    group = group_name()
    unwritable = dict(topics, dead_letters="no spaces allowed in a topic name")

    failed = run_stream_in_process(kafka_broker.bootstrap_servers, unwritable, group)

    assert failed.exit_code == 1
    assert len(error_lines(failed.stderr)) == 1, failed.stderr
    assert _nothing_committed(kafka_broker, group, topics)
    # The results were written (at-least-once), but the input is read again by the next run.
    again = run_stream_in_process(kafka_broker.bootstrap_servers, topics, group)
    assert again.exit_code == 0, again.stderr
    letters = decoded(kafka_broker.bootstrap_servers, topics["dead_letters"])
    assert [letter["raw_payload"] for letter in letters] == ["{not json"]
    assert _all_committed(kafka_broker, group, topics)
