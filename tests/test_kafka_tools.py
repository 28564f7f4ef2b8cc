"""create_topics and replay_files against a real Kafka-protocol broker, on generated data."""
from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from typing import Dict, List, Tuple

import pytest

from datagen.generator import GeneratorConfig, generate
from pipelines.io.files import expand_patterns
from pipelines.io.kafka import create_topics
from pipelines.kafka_tools import ReplayReport, replay_files
from schemas.codecs import detect_format, read_records
from schemas.kafka_values import ValueDecodeError, decode_value
from schemas.records import DeadLetter, RawRecord
from schemas.timestamps import parse_timestamp_millis
from tests.kafka_helpers import Message, read_topic, unique_topic
from transforms.validate import validate_raw_record

SCHEMA = {"payments": "payment_event", "settlements": "settlement_line"}
TIME_FIELD = {"payments": "event_time", "settlements": "booked_time"}
ID_FIELD = {"payments": "event_id", "settlements": "settlement_id"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("replay-data"))
    generate(GeneratorConfig(payments=200, seed=5), out)
    with open(os.path.join(out, "expected.json"), encoding="utf-8") as handle:
        return out, json.load(handle)


@pytest.fixture(scope="module")
def vendor_dataset(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("replay-vendor"))
    generate(GeneratorConfig(payments=200, seed=5, fmt="jsonl", vendor_reports=True), out)
    with open(os.path.join(out, "expected.json"), encoding="utf-8") as handle:
        return out, json.load(handle)


def _replay(broker, out: str, **options) -> Tuple[ReplayReport, Dict[str, str]]:
    topics = {"payments": unique_topic("payments"), "settlements": unique_topic("settlements")}
    create_topics(broker.bootstrap_servers, list(topics.values()), partitions=3)
    report = replay_files(broker.bootstrap_servers, [os.path.join(out, "payments", "*")],
                          [os.path.join(out, "settlements", "*")], topics["payments"], topics["settlements"],
                          **options)
    return report, topics


def _decoded(messages: List[Message], input_name: str, value_format: str) -> List[Tuple[Message, dict]]:
    return [(m, decode_value(m.value, value_format, SCHEMA[input_name])) for m in messages]


def _event_times_by_partition(decoded, input_name: str) -> Dict[int, List[int]]:
    times = defaultdict(list)
    for message, fields in decoded:  # read_topic returns (partition, offset) order
        times[message.partition].append(parse_timestamp_millis(fields[TIME_FIELD[input_name]]))
    return times


def _is_sorted(values: List[int]) -> bool:
    return all(a <= b for a, b in zip(values, values[1:]))


def test_create_topics_is_idempotent(kafka_broker):
    names = [unique_topic("a"), unique_topic("b")]
    assert sorted(create_topics(kafka_broker.bootstrap_servers, names, partitions=3)) == sorted(names)
    assert create_topics(kafka_broker.bootstrap_servers, names, partitions=3) == []
    third = unique_topic("c")
    assert create_topics(kafka_broker.bootstrap_servers, names + [third], partitions=2) == [third]
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient({"bootstrap.servers": kafka_broker.bootstrap_servers}).list_topics(timeout=10)
    assert len(metadata.topics[names[0]].partitions) == 3
    assert len(metadata.topics[third].partitions) == 2


def test_replay_with_invalid_rows_sends_everything_read(kafka_broker, dataset):
    out, expected = dataset
    report, topics = _replay(kafka_broker, out, value_format="json", include_invalid=True)
    counts = expected["counts"]
    assert report == ReplayReport(counts["payments"]["accepted"], counts["settlements"]["accepted"],
                                  counts["payments"]["rejected"], counts["settlements"]["rejected"], 0,
                                  invalid_sent=True)
    assert counts["payments"]["rejected"] > 0 and counts["settlements"]["rejected"] > 0
    for input_name, topic in topics.items():
        messages = read_topic(kafka_broker.bootstrap_servers, topic)
        assert len(messages) == counts[input_name]["read"]
        # The stream validates each message like batch validates each file row: same verdicts, same reasons.
        from_kafka = Counter(_verdict(_raw_from_message(input_name, m)) for m in messages)
        from_files = Counter(_verdict(raw) for raw in _raw_from_files(out, input_name))
        assert from_kafka == from_files
        assert sum(n for (stage, _), n in from_kafka.items() if stage == "valid") == counts[input_name]["accepted"]
        for message in messages:
            outcome = validate_raw_record(_raw_from_message(input_name, message))
            if not isinstance(outcome, DeadLetter):
                assert message.key == f"{outcome.processor}|{outcome.processor_reference}".encode()


def _raw_from_message(input_name: str, message: Message) -> RawRecord:
    try:
        fields = decode_value(message.value, "json", SCHEMA[input_name])
    except ValueDecodeError as error:
        return RawRecord(input_name, "kafka", None, message.value.decode(), str(error))
    return RawRecord(input_name, "kafka", fields, message.value.decode())


def _raw_from_files(out: str, input_name: str):
    for path in expand_patterns([os.path.join(out, input_name, "*")]):
        with open(path, "rb") as handle:
            yield from read_records(handle, path, detect_format(path), input_name)


def _verdict(raw: RawRecord) -> Tuple[str, str]:
    outcome = validate_raw_record(raw)
    return (outcome.stage, outcome.reason) if isinstance(outcome, DeadLetter) else ("valid", "")


@pytest.mark.parametrize("value_format,include_invalid", [("json", False), ("avro", True), ("confluent-avro", False)])
def test_replay_valid_records_in_event_time_order(kafka_broker, dataset, value_format, include_invalid):
    out, expected = dataset
    report, topics = _replay(kafka_broker, out, value_format=value_format, include_invalid=include_invalid)
    assert not report.invalid_sent and report.late_injected == 0
    for input_name, topic in topics.items():
        decoded = _decoded(read_topic(kafka_broker.bootstrap_servers, topic), input_name, value_format)
        assert len(decoded) == expected["counts"][input_name]["accepted"]
        for message, fields in decoded:
            assert message.key == f"{fields['processor']}|{fields['processor_reference']}".encode()
        times = _event_times_by_partition(decoded, input_name)
        assert len(times) > 1
        assert all(_is_sorted(partition_times) for partition_times in times.values())


def test_replay_reads_vendor_reports(kafka_broker, vendor_dataset):
    out, expected = vendor_dataset
    assert len(os.listdir(os.path.join(out, "settlements"))) == 3  # canonical + Stripe + Adyen reports
    report, topics = _replay(kafka_broker, out, include_invalid=True)
    counts = expected["counts"]
    assert (report.payment_messages, report.settlement_messages) == \
        (counts["payments"]["read"], counts["settlements"]["read"])
    assert report.settlements == counts["settlements"]["accepted"]
    messages = read_topic(kafka_broker.bootstrap_servers, topics["settlements"])
    assert len(messages) == counts["settlements"]["read"]
    processors = {json.loads(m.value).get("processor") for m in messages if m.value.startswith(b"{")}
    assert {"stripe", "adyen"} <= processors


def _ids_and_order(broker, topics, value_format="json"):
    ids, order = {}, {}
    for input_name, topic in topics.items():
        decoded = _decoded(read_topic(broker.bootstrap_servers, topic), input_name, value_format)
        ids[input_name] = Counter(fields[ID_FIELD[input_name]] for _, fields in decoded)
        order[input_name] = [(m.partition, fields[ID_FIELD[input_name]]) for m, fields in decoded]
        order[input_name + "_times"] = _event_times_by_partition(decoded, input_name)
    return ids, order


def test_shuffle_and_late_injection_reorder_deterministically(kafka_broker, dataset):
    out, expected = dataset
    disorder = dict(shuffle_window_seconds=6 * 3600, late_fraction=0.05, late_by_seconds=86_400,
                    include_invalid=False)
    _, plain_topics = _replay(kafka_broker, out, include_invalid=False)
    plain_ids, _ = _ids_and_order(kafka_broker, plain_topics)
    report, topics = _replay(kafka_broker, out, seed=11, **disorder)
    total = expected["counts"]["payments"]["accepted"] + expected["counts"]["settlements"]["accepted"]
    assert report.late_injected == round(0.05 * total) > 0
    ids, order = _ids_and_order(kafka_broker, topics)
    assert ids == plain_ids  # the same records (re-deliveries included), only in another order
    for input_name in ("payments", "settlements"):
        assert not all(_is_sorted(times) for times in order[input_name + "_times"].values())

    _, again_topics = _replay(kafka_broker, out, seed=11, **disorder)
    _, again = _ids_and_order(kafka_broker, again_topics)
    assert again == order  # same seed, same order in every partition
    _, other_topics = _replay(kafka_broker, out, seed=12, **disorder)
    _, other = _ids_and_order(kafka_broker, other_topics)
    assert other["payments"] != order["payments"]


def test_replay_rejects_bad_options(kafka_broker, dataset):
    out, _ = dataset
    with pytest.raises(ValueError):
        _replay(kafka_broker, out, value_format="xml")
    with pytest.raises(ValueError):
        _replay(kafka_broker, out, late_fraction=1.5)
