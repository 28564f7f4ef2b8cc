"""Beam's cross-language (Java) KafkaIO, for Flink and Dataflow users who want it (`--kafka-io=java`).

Needs Java on the machine that builds the pipeline and Beam's Kafka
expansion-service jar (downloaded from Maven Central on first use, or given
with `--expansion_service`/`BEAM_KAFKA_EXPANSION_SERVICE`); neither is
available offline, so only paybeam's Python source runs in this repository's
tests. Messages are decoded by the same function as the Python source, so
both produce identical RawRecords; event time is taken from the payload, but
the watermark follows KafkaIO's CreateTime timestamp policy (broker time).
"""
from __future__ import annotations

import os
from typing import Dict

import apache_beam as beam
from apache_beam.transforms.window import TimestampedValue

from pipelines.io.kafka_sink import KafkaWriteConfig, reconciliation_message_key
from pipelines.io.kafka_source import KafkaReadConfig
from schemas.kafka_values import encode_value, payload_time_millis, raw_record_from_message
from transforms.event_time import millis_to_beam_timestamp

EXPANSION_SERVICE_ENV = "BEAM_KAFKA_EXPANSION_SERVICE"


def _expansion_service():
    return os.environ.get(EXPANSION_SERVICE_ENV) or None


def java_producer_config(config: KafkaWriteConfig) -> Dict[str, str]:
    """The Java producer's settings: KafkaIO's payload is a map<string, string>, and librdkafka-only
    keys of the Python sink (`partitioner`, `message.timeout.ms`) mean nothing to the Java client,
    whose default partitioner is already murmur2. Idempotence and acks=all are enforced as in the
    Python sink; the user's --producer-config passes through (Java key names)."""
    return {"linger.ms": "20", **{key: str(value) for key, value in config.producer_config.items()},
            "enable.idempotence": "true", "acks": "all", "bootstrap.servers": config.bootstrap_servers}


def _to_raw_record(message, input_name: str, value_format: str):
    record = raw_record_from_message(
        input_name, f"{message.topic}/{message.partition}@{message.offset}", message.value, value_format)
    millis = payload_time_millis(record)
    return TimestampedValue(record, millis_to_beam_timestamp(millis)) if millis is not None else record


class ReadRawRecordsWithJavaKafkaIO(beam.PTransform):
    def __init__(self, config: KafkaReadConfig):
        super().__init__()
        self._config = config

    def expand(self, pbegin):
        from apache_beam.io.kafka import ReadFromKafka

        config = self._config
        consumer_config = {"bootstrap.servers": config.bootstrap_servers, "group.id": config.group_id,
                           "auto.offset.reset": "latest" if config.start == "latest" else "earliest",
                           **config.consumer_config}
        return (
            pbegin
            | "ReadFromKafka" >> ReadFromKafka(
                consumer_config=consumer_config,
                topics=list(config.topics),
                with_metadata=True,
                timestamp_policy=ReadFromKafka.create_time_policy,
                commit_offset_in_finalize=config.commit_offsets,
                start_read_time=config.start_timestamp_millis if config.start == "timestamp" else None,
                max_num_records=config.max_records if config.bounded == "max_records" else None,
                expansion_service=_expansion_service(),
            )
            | "ToRawRecords" >> beam.Map(_to_raw_record, config.input_name, config.value_format)
        )


class WriteWithJavaKafkaIO(beam.PTransform):
    def __init__(self, config: KafkaWriteConfig):
        super().__init__()
        self._config = config

    def expand(self, records):
        from apache_beam.io.kafka import WriteToKafka as JavaWriteToKafka

        config = self._config

        def to_message(record):
            value = encode_value(record._asdict(), config.value_format, config.schema_name, config.schema_id)
            return reconciliation_message_key(record) or b"", value

        return (
            records
            | "ToMessages" >> beam.Map(to_message).with_output_types(beam.typehints.Tuple[bytes, bytes])
            | "WriteToKafka" >> JavaWriteToKafka(
                producer_config=java_producer_config(config),
                topic=config.topic,
                expansion_service=_expansion_service(),
            )
        )
