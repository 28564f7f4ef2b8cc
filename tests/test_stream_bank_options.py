"""`paybeam stream --bank-statements-topic` (`--bank-statements-queue` from RabbitMQ) and `paybeam kafka produce
--bank-statements` (`rabbitmq produce`) (issues 21, 22): options,
the statements topic's messages, and the outputs' encodings. The unbounded run itself is tested on Prism
(tests/test_prism_stream_bank.py) and under TestStream (tests/test_live_bank_flow.py)."""
from __future__ import annotations

import glob
import io
import os

import fastavro
import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME

from datagen import GeneratorConfig, generate
from pipelines.cli import main
from pipelines.reconcile_stream import BANK_OUTPUT_SCHEMAS
from pipelines.stream_job import add_stream_arguments, job_from_arguments
from schemas.avro import avro_schema
from schemas.bank.entry import BANK_STATEMENTS
from schemas.bank.formats import bank_records_of_message
from schemas.kafka_values import encode_value, raw_record_from_message
from schemas.payouts import BankMatch, PayoutBalance
from schemas.timestamps import parse_timestamp_millis
from tests.kafka_helpers import read_topic, unique_topic

BASE = ["stream", "--bootstrap-servers", "127.0.0.1:1", "--payments-topic", "p", "--settlements-topic", "s"]
RABBITMQ = ["--source", "rabbitmq", "--amqp-url", "amqp://u:p@127.0.0.1:1/%2F", "--payments-queue", "p",
            "--settlements-queue", "s"]


def _job(*extra: str):
    import argparse

    parser = argparse.ArgumentParser()
    add_stream_arguments(parser)
    return job_from_arguments(parser.parse_args([*BASE[1:], *extra]), [])


def test_a_bank_statements_topic_adds_its_input_and_two_outputs():
    job = _job("--bank-statements-topic", "statements", "--bank-sla-days", "2", "--payout-grace", "2h")
    assert job.with_bank
    assert (job.topics["bank_statements"], job.topics["payouts"], job.topics["bank_matches"]) == (
        "statements", "paybeam.payouts", "paybeam.bank_matches")
    assert job.bank_policy.bank_sla_business_days == 2 and job.payout_policy.payout_grace_millis == 7_200_000
    assert not _job().with_bank and "payouts" not in _job().topics


@pytest.mark.parametrize("extra, message", [
    (["--bounded"], "--bank-statements-topic needs an unbounded run"),
    (["--bank-sla-days", "-1"], "cannot be negative"),
])
def test_what_a_stream_with_bank_statements_refuses(extra, message, capsys):
    assert main([*BASE, "--bank-statements-topic", "statements", *extra]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("record", [
    PayoutBalance("stripe", "po_1", "m_1", "USD", 900, 900, 0, 2, 1, "2026-01-05", "PAYOUT_BALANCED", 2, False),
    BankMatch(None, None, None, None, None, None, "ST1/1", "NL91ABNA0417164300", "EUR", 500, "2026-01-06", None, 0,
              None, "WITHDRAWN", 3, True),
])
@pytest.mark.parametrize("value_format", ["json", "avro"])
def test_payout_and_bank_match_revisions_encode_in_every_output_format(record, value_format):
    schema = BANK_OUTPUT_SCHEMAS["payouts" if isinstance(record, PayoutBalance) else "bank_matches"]
    value = encode_value(record._asdict(), value_format, schema)
    if value_format == "avro":
        decoded = fastavro.schemaless_reader(io.BytesIO(value), avro_schema(schema))
    else:
        import json

        decoded = json.loads(value)
    assert decoded == record._asdict()


def test_kafka_produce_sends_each_statement_whole_timed_after_its_latest_day(kafka_broker, tmp_path, capsys):
    files, topics = _produce(tmp_path, capsys, "bai2", "kafka", "--bootstrap-servers",
                             kafka_broker.bootstrap_servers, "topic")
    messages = _with_timestamps(kafka_broker.bootstrap_servers, topics["statements"])
    timed = {message.value(): message.timestamp() for message in messages}
    assert len(messages) == len(files)
    for path, document, end_of_latest_day in _statements_of_files(files):
        assert timed[document] == (TIMESTAMP_CREATE_TIME, end_of_latest_day)


def _produce(tmp_path, capsys, bank_format: str, tool: str, broker_flag: str, broker: str, kind: str):
    """`paybeam TOOL produce` of a generated dataset with its bank statements in `bank_format`, to fresh
    topics or queues; returns the statement files and the names (payments, settlements, statements)."""
    generate(GeneratorConfig(payments=200, seed=5, days=5, bank_statements=bank_format), str(tmp_path / "data"))
    files = sorted(glob.glob(str(tmp_path / "data" / "bank_statements" / "*")))
    names = {name: unique_topic(name) for name in ("payments", "settlements", "statements")}
    assert main([tool, "produce", broker_flag, broker, "--payments", str(tmp_path / "data" / "payments" / "*"),
                 "--settlements", str(tmp_path / "data" / "settlements" / "*"),
                 f"--payments-{kind}", names["payments"], f"--settlements-{kind}", names["settlements"],
                 "--bank-statements", str(tmp_path / "data" / "bank_statements" / "*"),
                 f"--bank-statements-{kind}", names["statements"]]) == 0
    assert f", {len(files)} bank statements" in capsys.readouterr().out
    return files, names


def _statements_of_files(files):
    """(path, document, epoch millis of the end of the latest day it reports) for each statement file."""
    for path in files:
        with open(path, "rb") as handle:
            document = handle.read()
        day = os.path.basename(path).split("_")[-1].split(".")[0]
        entries = [record.fields for record in bank_records_of_message(
            raw_record_from_message(BANK_STATEMENTS, "t/0@0", document, "json"))]
        latest = max(day for entry in entries for day in (entry["booking_date"], entry["value_date"]) if day)
        assert latest >= day
        yield path, document, parse_timestamp_millis(f"{latest}T00:00:00Z") + 86_400_000


def test_rabbitmq_produce_sends_each_statement_whole_timed_after_its_latest_day(rabbitmq_broker, tmp_path, capsys):
    from pipelines.io.rabbitmq import AmqpEndpoint, read_queue

    files, queues = _produce(tmp_path, capsys, "camt053", "rabbitmq", "--amqp-url", rabbitmq_broker.amqp_url,
                             "queue")
    messages = read_queue(AmqpEndpoint(rabbitmq_broker.amqp_url), queues["statements"])
    documents = {message.body: message for message in messages}  # each file's bytes, whole
    assert len(messages) == len(files)
    for path, document, end_of_latest_day in _statements_of_files(files):
        assert documents[document].timestamp_seconds * 1000 == end_of_latest_day
        assert documents[document].content_type == "application/octet-stream"  # XML or BAI2: told apart later


def test_a_bank_statements_queue_adds_its_input_and_two_outputs():
    job = _job(*RABBITMQ, "--bank-statements-queue", "statements")
    assert job.with_bank and job.queues["bank_statements"] == job.topics["bank_statements"] == "statements"
    assert (job.topics["payouts"], job.topics["bank_matches"]) == ("paybeam.payouts", "paybeam.bank_matches")


@pytest.mark.parametrize("extra, message", [
    ([*RABBITMQ, "--bank-statements-queue", "q", "--bounded"], "--bank-statements-queue needs an unbounded run"),
    ([*RABBITMQ, "--bank-statements-topic", "t"], "--source rabbitmq reads --bank-statements-queue"),
    (["--bank-statements-queue", "q"], "--source kafka reads --bank-statements-topic"),
])
def test_what_a_bank_statements_queue_refuses(extra, message, capsys):
    assert main([*BASE, *extra]) == 2
    assert message in capsys.readouterr().err


def _with_timestamps(bootstrap_servers: str, topic: str):
    """Every message of a topic with its broker timestamp (read_topic keeps only partition, offset, key, value)."""
    from confluent_kafka import Consumer, TopicPartition

    expected = len(read_topic(bootstrap_servers, topic))
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": unique_topic("ts"),
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, partition, 0) for partition in partitions])
        messages = []
        while len(messages) < expected:
            message = consumer.poll(10.0)
            assert message is not None, f"{len(messages)} of {expected} messages read from {topic}"
            if message.error() is None:
                messages.append(message)
        return messages
    finally:
        consumer.close()


def test_payout_and_bank_match_revisions_are_keyed_by_their_row_key():
    from pipelines.io.kafka import reconciliation_message_key

    payout = PayoutBalance("stripe", "po_1", "m_1", "USD", 900, 900, 0, 2, 1, "2026-01-05", "PAYOUT_BALANCED")
    credit_row = BankMatch(None, None, None, None, None, None, "ST1/1", "NL91ABNA0417164300", "EUR", 500,
                           "2026-01-06", None, 0, None, "PENDING")
    payout_row = credit_row._replace(processor="stripe", payout_id="po_1", status="PAYOUT_RECEIVED")
    assert reconciliation_message_key(payout) == reconciliation_message_key(payout_row) == b"stripe|po_1"
    assert reconciliation_message_key(credit_row) == b"NL91ABNA0417164300|ST1/1"
