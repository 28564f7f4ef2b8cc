"""The tools around `paybeam risk stream` against a real broker: produce, publish-rules, the rules sources
(pipelines/risk_stream.py, pipelines/io/rules_sources.py), and the launch checks."""
from __future__ import annotations

import json
import os

import pytest

from pipelines.cli import main
from pipelines.io.kafka import create_topics, new_consumer
from pipelines.io.rules_sources import RulesSourceError, RulesTopic, WatchedRulesFile, check_rules_topic
from schemas.timestamps import parse_timestamp_millis
from tests.card_numbers import card_number
from tests.kafka_helpers import read_topic, unique_topic
from tests.stream_helpers import produce_values
from tests.test_risk_rules_in_force import V1, V2

FILE_HEADER = ("attempt_id,attempt_type,event_time,merchant_id,amount_minor,currency,card_fingerprint,card_bin,"
               "customer_id,ip,device_id,billing_country,issuing_country,outcome,decline_code,three_ds,payment_id\n")


def _row(n: int, second: int, card: str, customer: str = "cus_1") -> str:
    return (f"att_{n},AUTHORIZATION,2026-12-01T10:00:{second:02d}Z,m_1,{100 + n},USD,{card},424242,{customer},"
            "10.0.0.1,,US,US,APPROVED,,,\n")


def test_produce_sends_valid_attempts_in_event_time_order_keyed_by_card(kafka_broker, tmp_path, capsys):
    servers, topic = kafka_broker.bootstrap_servers, unique_topic("attempts")
    create_topics(servers, [topic], partitions=2)
    path = tmp_path / "attempts.csv"
    path.write_text(FILE_HEADER + _row(3, 30, "fp_a") + _row(1, 10, "fp_b") + _row(2, 20, "fp_a")
                    + _row(4, 40, "fp_b", customer=card_number()) + "att_5,broken\n")
    assert main(["risk", "produce", "--bootstrap-servers", servers, "--attempts", str(path),
                 "--attempts-topic", topic]) == 0
    out = capsys.readouterr().out
    assert "sent 3 attempts" in out and "2 invalid row(s) not sent" in out
    messages = read_topic(servers, topic)
    sent = [(m.key.decode(), json.loads(m.value)) for m in messages]
    assert sorted(value["attempt_id"] for _, value in sent) == ["att_1", "att_2", "att_3"]
    assert all(key == value["card_fingerprint"] for key, value in sent)
    for partition in {m.partition for m in messages}:
        times = [parse_timestamp_millis(json.loads(m.value)["event_time"]) for m in messages if m.partition == partition]
        assert times == sorted(times)
    assert card_number() not in "".join(m.value.decode() for m in messages)


def test_produce_says_how_many_rows_it_did_not_send(kafka_broker, tmp_path, capsys):
    servers, topic = kafka_broker.bootstrap_servers, unique_topic("attempts")
    create_topics(servers, [topic], partitions=1)
    path = tmp_path / "attempts.csv"
    path.write_text(FILE_HEADER + _row(1, 10, "fp_a") + "att_5,broken\n")
    assert main(["risk", "produce", "--bootstrap-servers", servers, "--attempts", str(path),
                 "--attempts-topic", topic]) == 0
    out = capsys.readouterr().out
    assert "sent 1 attempts" in out and "1 invalid row(s) not sent" in out


def test_produce_waits_while_the_producer_s_queue_is_full_and_sends_every_attempt_in_order(kafka_broker, tmp_path,
                                                                                              capsys):
    """More attempts than the producer's local queue holds (100,000 by default; 5 here): `produce` used to
    stop at the first full queue with `BufferError: Local: Queue full`."""
    servers, topic = kafka_broker.bootstrap_servers, unique_topic("attempts")
    create_topics(servers, [topic], partitions=1)
    path = tmp_path / "attempts.csv"
    path.write_text(FILE_HEADER + "".join(_row(n, n, "fp_a") for n in range(40)))
    assert main(["risk", "produce", "--bootstrap-servers", servers, "--attempts", str(path), "--attempts-topic",
                 topic, "--producer-config", "queue.buffering.max.messages=5"]) == 0
    assert "sent 40 attempts" in capsys.readouterr().out
    assert [json.loads(m.value)["attempt_id"] for m in read_topic(servers, topic)] == [f"att_{n}" for n in range(40)]


def test_produce_refuses_a_producer_config_that_would_break_the_order(kafka_broker, tmp_path, capsys):
    path = tmp_path / "attempts.csv"
    path.write_text(FILE_HEADER + _row(1, 10, "fp_a"))
    assert main(["risk", "produce", "--bootstrap-servers", kafka_broker.bootstrap_servers, "--attempts", str(path),
                 "--attempts-topic", unique_topic("attempts"), "--producer-config", "acks=1"]) == 2
    assert "--producer-config" in capsys.readouterr().err


def test_produce_to_a_queue_sends_valid_attempts_in_event_time_order(rabbitmq_broker, tmp_path, capsys):
    from pipelines.io.rabbitmq import AmqpEndpoint, read_queue

    queue = unique_topic("attempts")
    path = tmp_path / "attempts.csv"
    path.write_text(FILE_HEADER + _row(3, 30, "fp_a") + _row(1, 10, "fp_b") + _row(2, 20, "fp_a")
                    + _row(4, 40, "fp_b", customer=card_number()) + "att_5,broken\n")
    assert main(["risk", "produce", "--source", "rabbitmq", "--amqp-url", rabbitmq_broker.amqp_url,
                 "--attempts", str(path), "--attempts-queue", queue, "--queue-type", "quorum"]) == 0
    out = capsys.readouterr().out
    assert f"sent 3 attempts to quorum queue {queue}" in out and "2 invalid row(s) not sent" in out
    messages = read_queue(AmqpEndpoint(rabbitmq_broker.amqp_url), queue)
    assert [json.loads(message.body)["attempt_id"] for message in messages] == ["att_1", "att_2", "att_3"]
    assert card_number() not in "".join(message.body.decode() for message in messages)


@pytest.mark.parametrize("extra, message", [
    (["--source", "rabbitmq", "--amqp-url", "amqp://u:p@localhost:1/%2F"], "--source rabbitmq needs --attempts-queue"),
    (["--source", "rabbitmq", "--amqp-url", "amqp://u:p@localhost:1/%2F", "--attempts-queue", "q", "--attempts-topic",
      "a"], "--source rabbitmq reads --attempts-queue"),
    (["--source", "rabbitmq", "--amqp-url", "amqp://u:p@localhost:1/%2F", "--attempts-queue", "q", "--start",
      "earliest"], "a queue is read from its head"),
    (["--source", "rabbitmq", "--amqp-url", "amqp://u:p@localhost:1/%2F", "--attempts-queue", "q", "--rules-topic",
      "r"], "--rules-topic is a Kafka topic"),
    (["--attempts-queue", "q", "--bootstrap-servers", "localhost:1", "--attempts-topic", "a"],
     "--attempts-queue is a RabbitMQ queue"),
    (["--attempts-topic", "a"], "required: --bootstrap-servers"),
])
def test_risk_stream_from_rabbitmq_refuses_what_does_not_fit(tmp_path, capsys, extra, message):
    rules = tmp_path / "rules.yaml"
    rules.write_text(V1)
    assert main(["risk", "stream", "--rules", str(rules), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "u:p@" not in err


def test_publish_rules_checks_the_file_and_appends_it_to_a_one_partition_topic(kafka_broker, tmp_path, capsys):
    servers, topic = kafka_broker.bootstrap_servers, unique_topic("rules")
    bad = tmp_path / "bad.yaml"
    bad.write_text(V1.replace("window: 10m", "window: soon"))
    assert main(["risk", "publish-rules", "--bootstrap-servers", servers, "--rules-topic", topic,
                 "--rules", str(bad)]) == 2
    assert "window" in capsys.readouterr().err
    good = tmp_path / "rules.yaml"
    for text, offset in ((V1, 0), (V2, 1)):
        good.write_text(text)
        assert main(["risk", "publish-rules", "--bootstrap-servers", servers, "--rules-topic", topic,
                     "--rules", str(good)]) == 0
        assert f"to {topic}@{offset}" in capsys.readouterr().out
    assert [m.value.decode() for m in read_topic(servers, topic)] == [V1, V2]  # the bad file never went out
    source = RulesTopic(servers, topic).open()
    try:
        assert [(origin, document.decode()) for origin, document in source.poll()] == [
            (f"{topic}@0", V1), (f"{topic}@1", V2)]
        assert source.poll() == []
        produce_values(servers, topic, [b"rules: ["], partitions=1)
        assert source.poll() == [(f"{topic}@2", b"rules: [")]
    finally:
        source.close()


def test_a_rules_topic_must_exist_and_have_one_partition(kafka_broker):
    servers, topic = kafka_broker.bootstrap_servers, unique_topic("rules")
    consumer = new_consumer({"bootstrap.servers": servers, "group.id": "check"})
    try:
        with pytest.raises(RulesSourceError, match="does not exist"):
            check_rules_topic(consumer, unique_topic("missing"), 10)
        create_topics(servers, [topic], partitions=2)
        with pytest.raises(RulesSourceError, match="has 2 partitions; rules need exactly one"):
            check_rules_topic(consumer, topic, 10)
    finally:
        consumer.close()


def test_risk_stream_refuses_a_two_partition_rules_topic_before_it_starts(kafka_broker, tmp_path, capsys):
    servers, topic = kafka_broker.bootstrap_servers, unique_topic("rules")
    create_topics(servers, [topic], partitions=2)
    rules = tmp_path / "rules.yaml"
    rules.write_text(V1)
    assert main(["risk", "stream", "--bootstrap-servers", servers, "--attempts-topic", "a", "--rules", str(rules),
                 "--rules-topic", topic]) == 2
    assert "rules need exactly one" in capsys.readouterr().err


def test_risk_stream_refuses_the_direct_runner_and_bad_settings(tmp_path, capsys):
    rules = tmp_path / "rules.yaml"
    rules.write_text(V1)
    base = ["risk", "stream", "--bootstrap-servers", "localhost:1", "--attempts-topic", "a", "--rules", str(rules)]
    assert main(base + ["--runner", "DirectRunner"]) == 2
    assert "cannot read an unbounded topic or queue" in capsys.readouterr().err
    assert main(base + ["--rules-poll-ms", "-1"]) == 2
    assert "--rules-poll-ms" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # one source of updates at a time (argparse's usage error)
        main(base + ["--rules-topic", "r", "--watch-rules"])
    assert exit_.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_a_watched_file_gives_its_content_when_it_changes(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(V1)
    source = WatchedRulesFile(str(path)).open()
    assert [document.decode() for _, document in source.poll()] == [V1]
    assert source.poll() == []
    staged = tmp_path / "next.yaml"
    staged.write_text(V2)
    os.replace(staged, path)
    assert [document.decode() for _, document in source.poll()] == [V2]
    assert source.poll() == []
    os.remove(path)
    with pytest.raises(FileNotFoundError):
        source.poll()  # RulesInForce keeps the rules in force and logs it


def test_a_decision_message_holds_its_fired_rules_as_records_in_every_format():
    from schemas.decisions import FiredRule, RiskDecision
    from schemas.kafka_values import VALUE_FORMATS, decode_value, encode_value, record_list_fields

    fired = [FiredRule("card-testing", 2, 5, 5, "block", 0, "card_testing")]
    shadow = [FiredRule("geo", 1, 2, 2, "score", 60, "geo_velocity")]
    decision = RiskDecision("att_1", 1_767_571_200_000, "m_1", 100, "USD", "block", 0, fired, shadow,
                            "card-testing@2,geo@1", "0123456789abcdef")
    assert record_list_fields("risk_decision") == {"fired", "shadow_fired"}
    assert record_list_fields("reconciliation_result") == frozenset()
    for value_format in VALUE_FORMATS:
        decoded = decode_value(encode_value(decision._asdict(), value_format, "risk_decision"), value_format,
                               "risk_decision")
        assert decoded["fired"] == [rule._asdict() for rule in fired]
        assert decoded["shadow_fired"] == [rule._asdict() for rule in shadow]


def test_a_table_encodes_to_the_json_of_each_row_whatever_its_text_and_numbers():
    """encode_table_values writes JSON from each cell's text (escaped as the encoder escapes it), not through a
    dict per row: against encode_value of each row on any text (quotes, backslashes, control characters,
    any Unicode), whole numbers at the int64 limits, event times over every year a datetime has (formatted a
    column at a time), nulls, and lists of records empty or not."""
    import pyarrow as pa
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from schemas.kafka_values import encode_table_values, encode_value

    text = st.one_of(st.none(), st.text(), st.sampled_from(['"', "\\", "\x00\x1f\x7f", "é€😀", "%s", "null"]))
    number = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1))
    rule = st.builds(lambda rule_id, value: {"rule_id": rule_id, "value": value}, st.text(max_size=5),
                     st.integers(-(2**63), 2**63 - 1))  # in the struct's field order, as Arrow gives them back
    instant = st.one_of(st.none(), st.integers(-62_135_596_800_000, 253_402_300_799_999))  # datetime's years
    row = st.fixed_dictionaries({"attempt_id": text, "event_time": instant, "amount_minor": number,
                                 "fired": st.lists(rule, max_size=2), "ruleset": text})
    schema = pa.schema([("attempt_id", pa.string()), ("event_time", pa.int64()), ("amount_minor", pa.int64()),
                        ("fired", pa.list_(pa.struct([("rule_id", pa.string()), ("value", pa.int64())]))),
                        ("ruleset", pa.string())])

    @settings(max_examples=300, deadline=None)
    @given(st.lists(row, max_size=6))
    def same_bytes(rows):
        table = pa.Table.from_pylist(rows, schema=schema)
        assert encode_table_values(table, "json", "risk_decision") == [
            encode_value({name: fields[name] for name in schema.names}, "json", "risk_decision") for fields in rows]

    same_bytes()


def test_a_decisions_table_encodes_to_the_bytes_of_its_records_in_every_format():
    """encode_table_values / table_messages (the columnar stream's sink) against encode_value of each record,
    on hypothesis-drawn rule sets and attempts: every message, every byte, every value format."""
    from hypothesis import given, settings

    from schemas.kafka_values import VALUE_FORMATS, encode_value, table_messages
    from tests.test_risk_windows import _cases
    from transforms.columnar.risk import attempts_table, decide_table, decisions_of
    from transforms.risk.rules import rule_set_of

    @settings(max_examples=60, deadline=None)
    @given(_cases())
    def same_bytes(case):
        spec, attempts, _ = case
        table = decide_table(attempts_table(attempts), rule_set_of(spec))
        records = decisions_of(table)
        for value_format in VALUE_FORMATS:
            messages = table_messages(table, value_format, "risk_decision", "attempt_id").messages
            assert [m.value for m in messages] == [encode_value(r._asdict(), value_format, "risk_decision")
                                                  for r in records]
            assert [m.key for m in messages] == [r.attempt_id.encode() for r in records]

    same_bytes()
