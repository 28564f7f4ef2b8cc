"""WriteToKafka against a real Kafka-protocol broker: values, keys, partitioning and order, failures."""
from __future__ import annotations

from typing import List, Optional

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.brokers.local_broker import free_port
from pipelines.io.kafka import KafkaWriteConfig, WriteToKafka, create_topics, reconciliation_message_key
from schemas.kafka_values import decode_value
from schemas.records import DailyTotal, DeadLetter, ReconciliationResult
from schemas.timestamps import parse_timestamp_millis
from tests.beam_helpers import DAY, HOUR, at
from tests.kafka_helpers import read_topic, unique_topic


def _result(reference: str, revision: int, status: str, settled: Optional[int] = None,
            processor: str = "stripe", kind: str = "CAPTURE") -> ReconciliationResult:
    return ReconciliationResult(
        processor=processor, processor_reference=reference, kind=kind, status=status, merchant_id="m_1",
        currency="USD", ledger_amount_minor=1000, settled_amount_minor=settled,
        difference_minor=None if settled is None else settled - 1000, ledger_event_id=f"e_{reference}",
        settlement_id=None if settled is None else f"s_{reference}", event_time=at() + revision * HOUR + 123,
        booked_time=None if settled is None else at() + DAY + 7, revision=revision, is_final=revision == 2)


def _results() -> List[ReconciliationResult]:
    rows = []
    for number in range(12):
        reference = f"ch_{number:03d}"
        processor = ("stripe", "adyen")[number % 2]
        rows.append(_result(reference, 0, "PENDING", processor=processor))
        rows.append(_result(reference, 1, "MISSING_SETTLEMENT", processor=processor))
        rows.append(_result(reference, 2, "MATCHED" if number % 3 else "AMOUNT_MISMATCH",
                            settled=1000 if number % 3 else 990, processor=processor))
    rows.append(_result("ch_000", 0, "PENDING", kind="REFUND"))  # same reference, another kind: another key
    return rows


def _normalised(fields: dict) -> dict:
    row = dict(fields)
    for name in ("event_time", "booked_time"):
        if row.get(name) is not None:
            row[name] = parse_timestamp_millis(row[name], name)
    return row


def test_message_keys():
    result = _result("ch_1", 0, "PENDING")
    assert reconciliation_message_key(result) == b"stripe|ch_1|CAPTURE"
    total = DailyTotal("m_1", "EUR", "2026-01-05", 0, DAY, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, "ON_TIME", 0, True)
    assert reconciliation_message_key(total) == b"m_1|EUR"
    assert reconciliation_message_key(DeadLetter("payments", "f:1", "decode", "bad", "x")) is None


def test_config_rejects_unsafe_or_unknown_settings():
    with pytest.raises(ValueError):
        KafkaWriteConfig("localhost:9092", "t", value_format="xml")
    with pytest.raises(ValueError):
        KafkaWriteConfig("localhost:9092", "t", producer_config={"enable.idempotence": "false"})
    with pytest.raises(KeyError):
        KafkaWriteConfig("localhost:9092", "t", value_format="avro", schema_name="no_such_schema")
    config = KafkaWriteConfig("localhost:9092", "t", producer_config={"sasl.password": "s3cret"})
    assert "s3cret" not in config.describe() and "sasl.password" in config.describe()


@pytest.mark.parametrize("value_format", ["json", "avro", "confluent-avro"])
def test_write_results_round_trip(kafka_broker, value_format):
    topic = unique_topic(f"results-{value_format}")
    assert create_topics(kafka_broker.bootstrap_servers, [topic], partitions=3) == [topic]
    records = _results()
    config = KafkaWriteConfig(kafka_broker.bootstrap_servers, topic, value_format=value_format, schema_id=42)
    with BeamTestPipeline() as pipeline:
        # One bundle in input order, as the matcher emits a key's revisions in order.
        delivered = (pipeline | beam.Create(records, reshuffle=False) | WriteToKafka(config))
        assert_that(delivered | beam.CombineGlobally(sum), equal_to([len(records)]))

    messages = read_topic(kafka_broker.bootstrap_servers, topic)
    assert len(messages) == len(records)
    if value_format == "confluent-avro":
        assert all(m.value[:5] == b"\x00\x00\x00\x00\x2a" for m in messages)
    decoded = [(m, _normalised(decode_value(m.value, value_format, "reconciliation_result"))) for m in messages]
    assert sorted((tuple(row[name] for name in ReconciliationResult._fields) for _, row in decoded)) == \
        sorted(tuple(record) for record in records)
    partitions_of_key = {}
    revisions_of_key = {}
    for message, row in decoded:
        key = f"{row['processor']}|{row['processor_reference']}|{row['kind']}".encode()
        assert message.key == key
        partitions_of_key.setdefault(key, set()).add(message.partition)
        revisions_of_key.setdefault(key, []).append(row["revision"])  # in (partition, offset) order
    assert all(len(partitions) == 1 for partitions in partitions_of_key.values())
    assert all(revisions == sorted(revisions) for revisions in revisions_of_key.values())
    assert len({p for partitions in partitions_of_key.values() for p in partitions}) > 1  # keys spread out


def test_a_table_s_messages_as_one_element_are_all_delivered_in_order_and_a_refused_one_is_a_dead_letter(
        kafka_broker):
    """EncodedMessages (a table's rows encoded at once) next to single records and an EncodedMessage: every
    message produced in order under its key, counted; one over message.max.bytes a dead letter, the rest
    of its batch still delivered."""
    from pipelines.io.kafka import WriteToKafkaWithDeadLetters
    from schemas.kafka_values import EncodedMessage, EncodedMessages

    topic = unique_topic("batches")
    create_topics(kafka_broker.bootstrap_servers, [topic], partitions=1)
    config = KafkaWriteConfig(kafka_broker.bootstrap_servers, topic, producer_config={"message.max.bytes": "2000"})
    batch = EncodedMessages([EncodedMessage(f"k{n}".encode(), f"v{n}".encode()) for n in range(5)]
                            + [EncodedMessage(b"big", b"x" * 5000), EncodedMessage(b"k5", b"v5")])
    with BeamTestPipeline() as pipeline:
        outputs = (pipeline | beam.Create([batch, EncodedMessage(b"k6", b"v6")], reshuffle=False)
                   | WriteToKafkaWithDeadLetters(config, "decisions"))
        assert_that(outputs["delivered"] | beam.CombineGlobally(sum), equal_to([7]), label="Delivered")
        assert_that(outputs["rejected"] | beam.Map(lambda letter: (letter.input, letter.stage, len(letter.raw_payload))),
                    equal_to([("decisions", "produce", 5000)]), label="Rejected")
    messages = read_topic(kafka_broker.bootstrap_servers, topic)
    assert [(m.key, m.value) for m in messages] == [(f"k{n}".encode(), f"v{n}".encode()) for n in range(7)]


def test_delivery_failure_fails_the_pipeline():
    unreachable = f"127.0.0.1:{free_port()}"  # nothing listens there
    config = KafkaWriteConfig(unreachable, unique_topic("unreachable"),
                              producer_config={"message.timeout.ms": "1500"})
    with pytest.raises(Exception, match="KafkaDeliveryError|delivered"):
        with BeamTestPipeline() as pipeline:
            _ = pipeline | beam.Create(_results()[:3], reshuffle=False) | WriteToKafka(config)
