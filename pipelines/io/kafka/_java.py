"""Beam's cross-language (Java) KafkaIO (`--kafka-io=java`), run on Flink (docs/DESIGN.md 5 and 6).

The expansion service is the one at `BEAM_KAFKA_EXPANSION_SERVICE=host:port`: `make
engine-kafka-java` assembles it from Maven Central at Beam Java 2.70.0 (Beam's own
default, the io-expansion-service jar at the SDK's version, is not served there), and
with `--defaultEnvironmentType=EMBEDDED` its Java transforms run inside Flink's
TaskManager. Messages are decoded by the same function as the Python source, so both
produce identical RawRecords and dead letters; event time is taken from the payload, but
the watermark follows KafkaIO's CreateTime timestamp policy (broker time).

Bounded runs (`ReadJavaKafkaCommitLater`) read a fixed number of records and leave the
commit to the Python commit-after-outputs path; unbounded runs read and write with
KafkaIO and commit on checkpoint/bundle finalization.
"""
from __future__ import annotations

import functools
import json
import logging
import os
from typing import Dict, Optional

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows, TimestampedValue

from pipelines.io.kafka._clients import source_consumer
from pipelines.io.kafka._commit import commit_and_wait
from pipelines.io.kafka._config import KafkaReadConfig
from pipelines.io.kafka._discovery import discover_partitions
from pipelines.io.kafka._health import BrokerWatch, is_outage
from pipelines.io.kafka._sink import KafkaWriteConfig, reconciliation_message_key
from schemas.internal_records import PartitionOffset
from schemas.kafka_values import encode_value, payload_time_millis, raw_record_from_message
from transforms.event_time import millis_to_beam_timestamp

EXPANSION_SERVICE_ENV = "BEAM_KAFKA_EXPANSION_SERVICE"
_LOGGER = logging.getLogger(__name__)


def expansion_service(runner: str):
    """BEAM_KAFKA_EXPANSION_SERVICE if set; else the service `make engine-kafka-java` assembled, started
    by Beam as `java -jar <cache>/expansion-service.jar PORT …` for this pipeline (one object per runner,
    so the pipeline's Kafka transforms share it). Beam's own default would download
    beam-sdks-java-io-expansion-service at the SDK's version, which Maven Central does not serve.
    Java transforms run EMBEDDED on Flink (inside the TaskManager, from the job server's jars) and in
    a PROCESS environment elsewhere (deploy/java_harness_boot.sh), as no Docker engine is assumed."""
    return os.environ.get(EXPANSION_SERVICE_ENV) or _cached_expansion_service(runner)


@functools.lru_cache(maxsize=None)
def _cached_expansion_service(runner: str):
    from apache_beam.transforms.external import JavaJarExpansionService

    from runners.engine_cache import REPO, fetched, pinned_versions

    engine = fetched(f"kafka-java-beam-{pinned_versions()['KAFKA_JAVA_BEAM_VERSION']}", make_target="engine-kafka-java")
    if runner == "FlinkRunner":
        environment = ["--defaultEnvironmentType=EMBEDDED"]
    else:
        command = json.dumps({"command": str(REPO / "deploy" / "java_harness_boot.sh")})
        environment = ["--defaultEnvironmentType=PROCESS", f"--defaultEnvironmentConfig={command}"]
    return JavaJarExpansionService(str(engine / "expansion-service.jar"), extra_args=["{{PORT}}", *environment])


def java_producer_config(config: KafkaWriteConfig) -> Dict[str, str]:
    """The Java producer's settings: KafkaIO's payload is a map<string, string>, and librdkafka-only
    keys of the Python sink (`partitioner`, `message.timeout.ms`) mean nothing to the Java client,
    whose default partitioner is already murmur2. Idempotence and acks=all are enforced as in the
    Python sink; the user's --producer-config passes through (Java key names)."""
    return {"linger.ms": "20", **{key: str(value) for key, value in config.producer_config.items()},
            "enable.idempotence": "true", "acks": "all", "bootstrap.servers": config.bootstrap_servers}


def backlog_records(config: KafkaReadConfig) -> int:
    """The number of offsets between the start positions and the end offsets at launch, over all
    partitions: Java KafkaIO has no "stop at the end offsets seen at start", so `--bounded`
    (end_offsets) becomes KafkaIO's max_num_records of exactly that backlog. Equal to the Python
    source's set of records when nobody produces to the topics during the run (else KafkaIO may
    take newer records of one partition in place of older ones of another) and for topics without
    transactions or compaction (offsets = records)."""
    from confluent_kafka import KafkaException

    watch = BrokerWatch(config.bootstrap_servers, config.broker_timeout_seconds)
    consumer = source_consumer(config, "backlog", watch)
    try:
        return sum(p.stop_offset - p.start_offset for p in discover_partitions(consumer, config))
    except KafkaException as error:
        if error.args and is_outage(error.args[0]):
            raise watch.unavailable() from None
        raise
    finally:
        consumer.close()


def max_num_records(config: KafkaReadConfig) -> Optional[int]:
    """KafkaIO's max_num_records for the bounded mode; None reads without end."""
    if config.bounded == "max_records":
        return config.max_records
    if config.bounded == "end_offsets":
        return backlog_records(config)
    if config.bounded is not None:
        raise ValueError(f"--kafka-io=java cannot stop by --bounded={config.bounded} (Java KafkaIO stops "
                         "only after a number of records or a wall-clock time); use end_offsets or max_records")
    return None


def _to_raw_record(message, input_name: str, value_format: str):
    record = raw_record_from_message(
        input_name, f"{message.topic}/{message.partition}@{message.offset}", message.value, value_format)
    millis = payload_time_millis(record)
    return TimestampedValue(record, millis_to_beam_timestamp(millis)) if millis is not None else record


def _read_messages(pbegin, config: KafkaReadConfig, commit_in_finalize: bool, runner: str):
    """KafkaIO's ReadFromKafka with metadata: Rows with topic, partition, offset, key, value, …"""
    from apache_beam.io.kafka import ReadFromKafka

    consumer_config = {"bootstrap.servers": config.bootstrap_servers, "group.id": config.group_id,
                       "auto.offset.reset": "latest" if config.start == "latest" else "earliest",
                       **config.consumer_config}
    return pbegin | "ReadFromKafka" >> ReadFromKafka(
        consumer_config=consumer_config,
        topics=list(config.topics),
        with_metadata=True,
        timestamp_policy=ReadFromKafka.create_time_policy,
        commit_offset_in_finalize=commit_in_finalize,
        start_read_time=config.start_timestamp_millis if config.start == "timestamp" else None,
        max_num_records=max_num_records(config),
        expansion_service=expansion_service(runner),
    )


def _next_offsets(messages) -> beam.PCollection:
    """The next offset to read per partition (its highest read offset + 1), as PartitionOffsets."""
    return (messages
            | "PartitionOffsets" >> beam.Map(lambda message: ((message.topic, message.partition), message.offset + 1))
            | "GlobalOffsets" >> beam.WindowInto(GlobalWindows())
            | "HighestOffsets" >> beam.CombinePerKey(max)
            | "NextOffsets" >> beam.MapTuple(lambda partition, offset: PartitionOffset(partition[0], partition[1], offset)))


class _CommitOnBundleFinalization(beam.DoFn):
    """KafkaIO Rows -> nothing; per bundle, commits each partition's highest read offset + 1 to the group
    when the runner finalizes the bundle (on Flink: once the checkpoint holding its records completed),
    which is when paybeam's own source commits. A failed commit is logged: at-least-once, the records
    are read again after a restart without checkpoint state."""

    def __init__(self, config: KafkaReadConfig):
        self._config = config
        self._consumer = None
        self._outcome: list = []
        self._latest: Dict = {}

    def setup(self):
        watch = BrokerWatch(self._config.bootstrap_servers, self._config.broker_timeout_seconds)
        self._consumer = source_consumer(self._config, "commit", watch,
                                         on_commit=lambda error, parts: self._outcome.append((error, parts)))

    def start_bundle(self):
        self._latest = {}

    def process(self, message, finalizer=beam.DoFn.BundleFinalizerParam):
        if not self._latest:
            finalizer.register(functools.partial(self._commit, self._latest))
        key = (message.topic, message.partition)
        self._latest[key] = max(self._latest.get(key, -1), message.offset + 1)

    def _commit(self, latest: Dict) -> None:
        self._outcome = []
        try:
            commit_and_wait(self._consumer, dict(latest), self._config.broker_timeout_seconds, self._outcome)
        except Exception:  # pylint: disable=broad-except
            _LOGGER.warning("could not commit %s to group %s; those records will be read again",
                            sorted(latest.items()), self._config.group_id, exc_info=True)

    def teardown(self):
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


class ReadRawRecordsWithJavaKafkaIO(beam.PTransform):
    """PBegin -> RawRecords for unbounded runs; offsets committed when the runner finalizes a checkpoint.

    `commit_from_python`: KafkaIO's own commit_offset_in_finalize is @RequiresStableInput, and on the
    Flink runner (Beam Java 2.70.0) that made tasks fail and restart every checkpoint ("State backend
    must be locked when retrieving the current key", ExecutableStageDoFnOperator.onTimer from
    BufferingDoFnRunner.checkpointCompleted); with True, KafkaIO commits nothing and a Python DoFn
    commits the same offsets on bundle finalization instead."""

    def __init__(self, config: KafkaReadConfig, commit_from_python: bool = False, runner: str = "FlinkRunner"):
        super().__init__()
        self._config = config
        self._runner = runner
        self._commit_from_python = commit_from_python

    def expand(self, pbegin):
        config = self._config
        messages = _read_messages(pbegin, config,
                                  commit_in_finalize=config.commit_offsets and not self._commit_from_python,
                                  runner=self._runner)
        if config.commit_offsets and self._commit_from_python:
            _ = messages | "CommitOnFinalize" >> beam.ParDo(_CommitOnBundleFinalization(config))
        return messages | "ToRawRecords" >> beam.Map(_to_raw_record, config.input_name, config.value_format)


class ReadJavaKafkaCommitLater(beam.PTransform):
    """PBegin -> {"records": RawRecords, "offsets": PartitionOffsets}, nothing committed by KafkaIO:
    the bounded-run contract of ReadKafkaCommitLater (_source.py), so a bounded Java-KafkaIO run
    commits (from Python, CommitOffsetsWhenWritten) only after every output and the open-items
    store are written, exactly like a run of paybeam's own source."""

    def __init__(self, config: KafkaReadConfig, runner: str = "FlinkRunner"):
        super().__init__()
        config.validate()
        self._config = config
        self._runner = runner

    def expand(self, pbegin):
        config = self._config
        messages = _read_messages(pbegin, config, commit_in_finalize=False, runner=self._runner)
        return {"records": messages | "ToRawRecords" >> beam.Map(_to_raw_record, config.input_name, config.value_format),
                "offsets": _next_offsets(messages)}


class WriteWithJavaKafkaIO(beam.PTransform):
    def __init__(self, config: KafkaWriteConfig, runner: str = "FlinkRunner"):
        super().__init__()
        self._config = config
        self._runner = runner

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
                expansion_service=expansion_service(self._runner),
            )
        )
