"""A poison record never wedges a topic (issue 9, item 2): it is a dead letter, and the run goes on.

Real broker, both engines. The poison: an event time far beyond any instant (JSON
99999999999999999999, an Avro timestamp-millis of 2^62) on a message whose broker
timestamp is poisoned too (CreateTime 2^62 ms, beyond Beam's timestamp range), so the
source cannot fall back on it either. Before the fix the reader crashed with OverflowError
on every restart at that offset. Apache Kafka refuses a CreateTime more than an hour ahead
(`log.message.timestamp.after.max.ms`, 1 h since Kafka 4.0) unless the topic allows it, as
the payments topic here does (Tansu has no such check).
"""
from __future__ import annotations

import io
import json

import fastavro
import pytest
from confluent_kafka import Producer

from schemas.avro import avro_schema
from schemas.kafka_values import encode_value
from tests.beam_helpers import payment, settlement
from tests.stream_helpers import (
    committed_to_the_end,
    decoded,
    group_name,
    new_topics,
    produce_records,
    run_stream_in_process,
)

POISON_BROKER_TIME = 2**62  # ms: a valid Kafka timestamp, far beyond what Beam can hold


def _produce_with_time(broker, topic: str, values, timestamp: int) -> None:
    errors = []
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    for value in values:
        producer.produce(topic, value=value, timestamp=timestamp,
                         on_delivery=lambda error, _m: errors.append(error) if error else None)
    assert producer.flush(30) == 0 and not errors, errors


def _avro_payment_with_time(millis: int) -> bytes:
    schema = json.loads(json.dumps({key: value for key, value in avro_schema("payment_event").items()
                                    if not key.startswith("__")}))
    for field in schema["fields"]:
        if field["name"] == "event_time":
            field["type"] = "long"  # the same bytes as timestamp-millis, without the conversion
    body = io.BytesIO()
    fields = payment("poison-1", "poison-r", time=0)._asdict()
    fastavro.schemaless_writer(body, fastavro.parse_schema(schema), dict(fields, event_time=millis))
    return body.getvalue()


@pytest.mark.parametrize("engine", ["columnar", "elementwise"])
@pytest.mark.parametrize("value_format", ["json", "avro"])
def test_a_poison_event_time_is_a_dead_letter_and_never_stops_the_topic(kafka_broker, engine, value_format):
    servers = kafka_broker.bootstrap_servers
    any_create_time = {"message.timestamp.after.max.ms": str(2**63 - 1)}
    topics = new_topics(servers, config={"payments": any_create_time})
    good = [payment(f"good-{n}", f"good-r{n}", time=n * 60_000) for n in range(4)]
    produce_records_as = (lambda topic, records, schema: _produce_with_time(
        kafka_broker, topic, [encode_value(r._asdict(), value_format, schema) for r in records], 1_767_571_200_000))
    produce_records_as(topics["payments"], good, "payment_event")
    produce_records_as(topics["settlements"], [settlement(f"s-{n}", f"good-r{n}", time=n * 60_000 + 1) for n in range(4)],
                       "settlement_line")
    if value_format == "json":
        poison = json.loads(encode_value(payment("poison-1", "poison-r")._asdict(), "json", "payment_event"))
        poison["event_time"] = 99999999999999999999
        value = json.dumps(poison).encode()
    else:
        value = _avro_payment_with_time(POISON_BROKER_TIME)
    _produce_with_time(kafka_broker, topics["payments"], [value], POISON_BROKER_TIME)
    group = group_name()

    run = run_stream_in_process(servers, topics, group, "--engine", engine, "--value-format", value_format)

    assert run.exit_code == 0, run.stderr
    letters = decoded(servers, topics["dead_letters"])
    assert len(letters) == 1
    assert letters[0]["input"] == "payments" and letters[0]["source"].startswith(topics["payments"] + "/")
    if value_format == "json":
        assert letters[0]["stage"] == "validate" and "event_time" in letters[0]["reason"]
        assert "99999999999999999999" in letters[0]["raw_payload"]
    else:
        assert letters[0]["stage"] == "decode" and letters[0]["raw_payload"].startswith("base64:")
    results = decoded(servers, topics["results"])
    assert sorted(row["processor_reference"] for row in results) == [f"good-r{n}" for n in range(4)]
    assert all(row["status"] == "MATCHED" for row in results)
    # read = accepted + rejected, and the poison's offset is committed: the topic moves on.
    assert "payments             5         4         1" in run.stdout
    assert committed_to_the_end(servers, group, topics["payments"])

    # A new record after the poison is read by the next run.
    produce_records(servers, topics["payments"], [payment("after-1", "after-r", time=3_600_000)], "payment_event") \
        if value_format == "json" else produce_records_as(topics["payments"], [payment("after-1", "after-r")],
                                                          "payment_event")
    again = run_stream_in_process(servers, topics, group, "--engine", engine, "--value-format", value_format)
    assert again.exit_code == 0, again.stderr
    assert "payments             1         1         0" in again.stdout
