"""Offsets of a bounded stream run are committed only after every output is durable (issue 9, item 1).

Real broker (the session's `kafka_broker`: Tansu or Apache Kafka), both engines. A record too
large for any output is a dead letter and the run commits; a record the producer refuses is a
"produce" dead letter; a run whose output fails (an unwritable topic) commits nothing, and the
next run reads the same records again and produces their results.
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
def test_a_record_too_large_for_any_output_is_a_dead_letter_and_the_run_commits(kafka_broker, engine):
    """Observed before: a 1 MB valid message made the results' produce fail and the offsets were committed anyway.
    Text is now bounded at validation (256 characters for a reference), so no result can outgrow a message:
    the record is a validation dead letter, its payload cut at 64 Ki characters, and the run commits.
    Apache Kafka refuses a message over 1 MiB unless the topic allows it: the input topic does, the outputs keep
    the default (Tansu has no limit)."""
    topics = new_topics(kafka_broker.bootstrap_servers, config={"payments": {"max.message.bytes": "5000000"}})
    _inputs(kafka_broker, topics, "ok")
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
    letters = [letter for letter in decoded(kafka_broker.bootstrap_servers, topics["dead_letters"])
               if letter["input"] == "payments"]
    assert len(letters) == 1
    letter = letters[0]
    assert letter["stage"] == "validate" and "longer than 256" in letter["reason"]
    assert len(letter["raw_payload"]) < MAX_RAW_PAYLOAD_CHARS + 100 and "[cut:" in letter["raw_payload"]
    assert _all_committed(kafka_broker, group, topics)


def test_an_output_record_the_producer_refuses_is_a_dead_letter(kafka_broker):
    """The sink's own guarantee, whatever makes a record unproducible (here: over a producer limit set low): the
    refused record is a "produce" dead letter with its reason and (cut) payload; the others are delivered."""
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from pipelines.io.kafka import KafkaWriteConfig, WriteToKafkaWithDeadLetters
    from schemas.records import DailyTotal

    topic = new_topics(kafka_broker.bootstrap_servers)["results"]
    config = KafkaWriteConfig(kafka_broker.bootstrap_servers, topic, schema_name="daily_total",
                              producer_config={"message.max.bytes": "1000"})
    small = [_total(f"m_{n}") for n in range(3)]
    large = _total("m_" + "x" * 2_000)

    with TestPipeline() as pipeline:
        written = (pipeline | beam.Create([*small, large]).with_output_types(DailyTotal)
                   | WriteToKafkaWithDeadLetters(config, "daily_totals"))
        assert_that(written["delivered"] | beam.CombineGlobally(sum), equal_to([3]), label="delivered")
        assert_that(written["rejected"] | beam.Map(lambda letter: (
            letter.input, letter.source, letter.stage, "too large" in letter.reason.lower(),
            letter.raw_payload.startswith('{"merchant_id":"m_xxx'))),
            equal_to([("daily_totals", f"{topic} (output)", "produce", True, True)]), label="rejected")
    assert sorted(row["merchant_id"] for row in decoded(kafka_broker.bootstrap_servers, topic)) == \
        ["m_0", "m_1", "m_2"]


def _total(merchant_id: str):
    from schemas.records import DAILY_TOTAL_FIELDS, DailyTotal

    values = {name: 0 for name in DAILY_TOTAL_FIELDS}
    values.update(merchant_id=merchant_id, currency="USD", settlement_day="2026-01-05", pane_timing="ON_TIME",
                  is_final=True)
    return DailyTotal(**values)


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
