"""`paybeam risk stream`: risk decisions on a live Kafka topic of attempts, rules changing while it runs (10.11).

    paybeam risk stream --bootstrap-servers HOST:PORT --attempts-topic T --rules FILE
        [--rules-topic T | --watch-rules] [--decisions-topic T] [--runner R] [beam flags]

    Kafka attempts ──► ColumnarDecideAttemptStream (--engine columnar: Arrow chunks) or DecideAttemptStream
                       (elementwise): intake, rules in force, per-event windows ──► decisions topic
                                                                                       └─► dead-letters topic

`paybeam risk produce` replays attempt files into the topic in event-time
order; `paybeam risk publish-rules` checks a rules file and appends it to the
rules topic. This module wires Kafka to transforms/risk; the rules live there.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Union

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.arguments import COLUMNAR, ENGINES, UsageError
from pipelines.io.files import expand_patterns
from pipelines.io.kafka import (
    DEFAULT_CHUNK_MAX_MILLIS,
    DEFAULT_CHUNK_MAX_RECORDS,
    KafkaReadConfig,
    KafkaWriteConfig,
    ReadRawChunksFromKafka,
    ReadRawRecordsFromKafka,
    WriteToKafka,
    create_topics,
    new_consumer,
    new_producer,
)
from pipelines.io.rules_sources import RulesTopic, WatchedRulesFile, check_rules_topic
from pipelines.kafka_arguments import check_client_settings, parse_settings
from pipelines.run_errors import one_line_cause, quiet_beam_tracebacks, wait_cancelling_on_interrupt
from pipelines.stream_job import add_chunk_arguments, add_kafka_client_arguments, check_at_least_one, instant_argument
from runners.beam_flags import OptionsError
from runners.flink_job_server import new_pipeline
from runners.options import build_pipeline_options, canonical_runner
from schemas.attempts import ATTEMPTS
from schemas.codecs import FORMATS, detect_format, read_records
from schemas.errors import RunFailed
from schemas.kafka_values import VALUE_FORMATS, encode_value, table_messages
from schemas.records import RawRecord
from transforms.columnar.live_flow import DEFAULT_TICK_MILLIS
from transforms.columnar.live_risk_flow import DECISION_TABLES, ColumnarDecideAttemptStream
from transforms.risk.flow import DECISIONS, DecideAttemptStream
from transforms.risk.rules import RuleSet, load_rules_file
from transforms.risk.rules_in_force import DEFAULT_POLL_MILLIS
from transforms.validate import DEAD_LETTERS, validate_raw_record

RulesSource = Union[RulesTopic, WatchedRulesFile, None]


# A decision is wanted within a fraction of a second: a read hands on what has arrived at once, and a partition
# read to its end is read again after 50 ms, where reconciliation lingers 200 ms and waits 500 ms
# (docs/DESIGN.md 10.13).
RISK_RESUME_MILLIS = 50
RISK_LINGER_MILLIS = 0


@dataclass
class RiskStreamJob:
    bootstrap_servers: str
    topics: Dict[str, str]  # attempts, decisions, dead_letters
    rules_path: str
    rule_set: RuleSet
    rules_source: RulesSource = None
    poll_millis: int = DEFAULT_POLL_MILLIS
    group_id: str = "paybeam.risk"
    start: str = "committed"
    start_timestamp_millis: Optional[int] = None
    idle_timeout_seconds: float = 10.0
    value_format: str = "json"
    output_value_format: str = "json"
    consumer_config: Dict[str, str] = field(default_factory=dict)
    producer_config: Dict[str, str] = field(default_factory=dict)
    read_call_millis: int = 500
    resume_millis: int = RISK_RESUME_MILLIS
    linger_millis: int = RISK_LINGER_MILLIS
    broker_timeout_seconds: float = 60.0
    engine: str = COLUMNAR
    chunk_max_records: int = DEFAULT_CHUNK_MAX_RECORDS
    chunk_max_millis: int = DEFAULT_CHUNK_MAX_MILLIS
    timer_tick_millis: int = DEFAULT_TICK_MILLIS
    runner: str = "PrismRunner"
    beam_args: List[str] = field(default_factory=list)


def decision_message_key(decision) -> Optional[bytes]:
    """Decisions are keyed by attempt id (a consumer looks one up); dead letters spread over partitions."""
    attempt_id = getattr(decision, "attempt_id", None)
    return attempt_id.encode("utf-8") if attempt_id is not None else None


def read_config(job: RiskStreamJob) -> KafkaReadConfig:
    config = KafkaReadConfig(
        bootstrap_servers=job.bootstrap_servers, topics=(job.topics[ATTEMPTS],), group_id=job.group_id,
        input_name=ATTEMPTS, value_format=job.value_format, start=job.start,
        start_timestamp_millis=job.start_timestamp_millis, idle_timeout_seconds=job.idle_timeout_seconds,
        broker_timeout_seconds=job.broker_timeout_seconds, consumer_config=job.consumer_config,
        read_call_millis=job.read_call_millis, resume_millis=job.resume_millis, linger_millis=job.linger_millis,
        chunk_max_records=job.chunk_max_records,
        chunk_max_millis=job.chunk_max_millis)
    try:
        config.validate()
    except ValueError as error:
        raise UsageError(str(error)) from None
    return config


def write_config(job: RiskStreamJob, output: str, schema_name: str) -> KafkaWriteConfig:
    return KafkaWriteConfig(bootstrap_servers=job.bootstrap_servers, topic=job.topics[output],
                            value_format=job.output_value_format, schema_name=schema_name,
                            producer_config=job.producer_config, broker_timeout_seconds=job.broker_timeout_seconds)


def build_pipeline(pipeline: beam.Pipeline, job: RiskStreamJob) -> None:
    if job.engine == COLUMNAR:
        outputs = (pipeline
                   | "ReadAttemptChunks" >> ReadRawChunksFromKafka(read_config(job))
                   | "Risk" >> ColumnarDecideAttemptStream(job.rule_set, job.rules_source, job.poll_millis,
                                                           job.timer_tick_millis))
        decisions = outputs[DECISION_TABLES] | "DecisionMessages" >> beam.FlatMap(
            table_messages, job.output_value_format, "risk_decision", "attempt_id")
    else:
        outputs = (pipeline
                   | "ReadAttempts" >> ReadRawRecordsFromKafka(read_config(job))
                   | "Risk" >> DecideAttemptStream(job.rule_set, job.rules_source, job.poll_millis))
        decisions = outputs[DECISIONS]
    decisions | "WriteDecisions" >> WriteToKafka(write_config(job, DECISIONS, "risk_decision"), decision_message_key)
    outputs[DEAD_LETTERS] | "WriteDeadLetters" >> WriteToKafka(write_config(job, DEAD_LETTERS, "dead_letter"),
                                                               decision_message_key)


def _check_rules_topic(job: RiskStreamJob) -> None:
    """A missing rules topic, or one with several partitions, is a usage error before anything starts."""
    if not isinstance(job.rules_source, RulesTopic):
        return
    consumer = new_consumer({**job.consumer_config, "bootstrap.servers": job.bootstrap_servers,
                             "group.id": "paybeam-rules-check"})
    try:
        check_rules_topic(consumer, job.rules_source.topic, job.broker_timeout_seconds)
    finally:
        consumer.close()


def run_job(job: RiskStreamJob) -> None:
    options = build_pipeline_options(job.runner, job.beam_args, streaming=True)
    check_client_settings(job.consumer_config, "--consumer-config", "consumer")
    check_client_settings(job.producer_config, "--producer-config", "producer")
    read_config(job)
    _check_rules_topic(job)
    pipeline = new_pipeline(options)
    build_pipeline(pipeline, job)
    try:
        with quiet_beam_tracebacks():
            wait_cancelling_on_interrupt(pipeline.run())
    except Exception as error:  # noqa: BLE001 — a broker down, an output refused: one line, exit 1
        raise RunFailed(f"the run failed: {one_line_cause(error)}") from error


def job_from_arguments(args: argparse.Namespace, beam_args: Sequence[str]) -> RiskStreamJob:
    try:
        runner = canonical_runner(args.runner)
    except OptionsError as error:
        raise UsageError(str(error)) from None
    if runner == "DirectRunner":
        raise UsageError("the DirectRunner cannot read an unbounded Kafka topic (apache/beam#26577): use "
                         "--runner PrismRunner (the default) or FlinkRunner; `paybeam risk backtest` decides files")
    if args.start == "timestamp" and not args.start_time:
        raise UsageError("--start=timestamp needs --start-time TIME")
    check_at_least_one(args)
    if not args.broker_timeout > 0:
        raise UsageError("--broker-timeout must be positive")
    if args.rules_poll_ms < 0:
        raise UsageError("--rules-poll-ms must be 0 (every attempt) or more")
    source: RulesSource = None
    if args.rules_topic:
        source = RulesTopic(args.bootstrap_servers, args.rules_topic,
                            tuple(sorted(parse_settings(args.consumer_config, "--consumer-config").items())))
    elif args.watch_rules:
        source = WatchedRulesFile(os.path.abspath(args.rules))
    return RiskStreamJob(
        bootstrap_servers=args.bootstrap_servers,
        topics={ATTEMPTS: args.attempts_topic, DECISIONS: args.decisions_topic,
                DEAD_LETTERS: args.dead_letters_topic},
        rules_path=args.rules, rule_set=load_rules_file(args.rules), rules_source=source,
        poll_millis=args.rules_poll_ms, group_id=args.group_id, start=args.start,
        start_timestamp_millis=instant_argument(args.start_time, "--start-time"), idle_timeout_seconds=args.idle_timeout,
        value_format=args.value_format, output_value_format=args.output_value_format,
        consumer_config=parse_settings(args.consumer_config, "--consumer-config"),
        producer_config=parse_settings(args.producer_config, "--producer-config"),
        read_call_millis=args.read_call_ms, resume_millis=args.resume_ms, linger_millis=args.linger_ms,
        broker_timeout_seconds=args.broker_timeout, runner=args.runner,
        beam_args=list(beam_args), engine=args.engine, chunk_max_records=args.chunk_max_records,
        chunk_max_millis=args.chunk_max_ms, timer_tick_millis=args.timer_tick_ms)


def stream_command(args: argparse.Namespace, extra: Sequence[str]) -> int:
    job = job_from_arguments(args, extra)
    source = job.rules_source.name if job.rules_source is not None else "none (fixed rules)"
    print(f"paybeam risk stream: unbounded {job.engine} run on {job.runner}; rules {job.rule_set.fingerprint} from "
          f"{job.rules_path}, updates from {source}; decisions to {job.topics[DECISIONS]}", file=sys.stderr)
    run_job(job)
    return 0


# ------------------------------------------------------------------ the tools around it


def produce_command(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Attempt files -> the attempts topic, valid attempts in event-time order, keyed by card fingerprint
    (a card's attempts in one partition, in order); rows that fail validation are counted, not sent."""
    if extra:
        raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
    attempts, rejected = [], 0
    for record in _read_attempt_files(args.attempts, args.format):
        outcome = validate_raw_record(record)
        if hasattr(outcome, "attempt_id"):
            attempts.append(outcome)
        else:
            rejected += 1
    attempts.sort(key=lambda attempt: (attempt.event_time, attempt.attempt_id))
    errors: List[str] = []
    producer = new_producer({**parse_settings(args.producer_config, "--producer-config"),
                             "bootstrap.servers": args.bootstrap_servers, "enable.idempotence": True,
                             "acks": "all", "linger.ms": 20})
    for attempt in attempts:
        producer.produce(args.attempts_topic, value=encode_value(attempt._asdict(), args.value_format,
                                                                 "authorization_attempt"),
                         key=(attempt.card_fingerprint or attempt.attempt_id).encode("utf-8"),
                         on_delivery=lambda error, _m: errors.append(str(error)) if error else None)
        producer.poll(0)
    if producer.flush(args.broker_timeout) or errors:
        raise RunFailed(f"not every attempt was acknowledged by {args.bootstrap_servers} within "
                        f"{args.broker_timeout:g}s ({errors[0] if errors else 'timed out'})")
    print(f"sent {len(attempts)} attempts to {args.attempts_topic} in event-time order"
          + (f"; {rejected} invalid row(s) not sent (paybeam risk backtest shows why)" if rejected else ""))
    return 0


def _read_attempt_files(patterns: Sequence[str], file_format: Optional[str]) -> Iterator[RawRecord]:
    for path in expand_patterns(patterns, file_format):
        with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as handle:
            yield from read_records(handle, path, detect_format(path, file_format), ATTEMPTS)


def publish_rules_command(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Checks a rules file (exit 2 with one line per mistake), then appends it to the one-partition rules
    topic (created when missing); the stream accepts it only with higher versions for changed rules."""
    if extra:
        raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
    rule_set = load_rules_file(args.rules)
    with open(args.rules, "rb") as handle:
        document = handle.read()
    create_topics(args.bootstrap_servers, [args.rules_topic], partitions=1)
    delivered: List[object] = []
    producer = new_producer({"bootstrap.servers": args.bootstrap_servers, "enable.idempotence": True,
                             "acks": "all"})
    producer.produce(args.rules_topic, value=document, key=b"rules",
                     on_delivery=lambda error, message: delivered.append(error or message))
    producer.flush(args.broker_timeout)
    if not delivered or not hasattr(delivered[0], "offset"):
        raise RunFailed(f"the rules were not acknowledged by {args.bootstrap_servers} "
                        f"({delivered[0] if delivered else 'timed out'})")
    print(f"published {args.rules} ({rule_set.fingerprint}: {rule_set.rule_versions}) to "
          f"{args.rules_topic}@{delivered[0].offset()}")
    return 0


def add_risk_stream_commands(tools) -> None:
    stream = tools.add_parser(
        "stream", help="decide live attempts from a Kafka topic; rules may change while it runs",
        description="Decide each attempt of a Kafka topic as it arrives, with the backtest's rules and windows. "
                    "New rule versions come from --rules-topic or the watched --rules file. Unrecognised "
                    "--flags are passed to Beam.")
    stream.add_argument("--bootstrap-servers", required=True, metavar="HOST:PORT[,…]")
    stream.add_argument("--attempts-topic", required=True)
    stream.add_argument("--rules", required=True, metavar="FILE", help="the rules at launch (YAML or JSON)")
    updates = stream.add_mutually_exclusive_group()
    updates.add_argument("--rules-topic", metavar="TOPIC",
                         help="one-partition topic of new rules documents (paybeam risk publish-rules)")
    updates.add_argument("--watch-rules", action="store_true",
                         help="take the --rules file again whenever it changes (replace it atomically)")
    stream.add_argument("--rules-poll-ms", type=int, default=DEFAULT_POLL_MILLIS, metavar="MILLIS",
                        help="look for new rules at most this often (default "
                             f"{DEFAULT_POLL_MILLIS}; 0: before every attempt)")
    stream.add_argument("--decisions-topic", default="paybeam.decisions")
    stream.add_argument("--dead-letters-topic", default="paybeam.risk.dead_letters")
    add_kafka_client_arguments(stream, "paybeam.risk", RISK_RESUME_MILLIS, RISK_LINGER_MILLIS)
    stream.add_argument("--engine", choices=ENGINES, default=COLUMNAR,
                        help="columnar (default: Arrow chunks, every kept attempt as columns, a chunk decided at "
                             "once) or elementwise (one element per attempt: the reference)")
    add_chunk_arguments(stream)
    stream.add_argument("--runner", default="PrismRunner",
                        help="Beam runner: PrismRunner (default) or FlinkRunner; the DirectRunner cannot read an "
                             "unbounded topic (apache/beam#26577)")
    stream.set_defaults(handler=stream_command)

    produce = tools.add_parser("produce", help="send attempt files to a topic in event-time order")
    produce.add_argument("--bootstrap-servers", required=True)
    produce.add_argument("--attempts", action="append", required=True, metavar="GLOB")
    produce.add_argument("--attempts-topic", default="attempts")
    produce.add_argument("--format", choices=FORMATS, help="format of every input (default: by extension)")
    produce.add_argument("--value-format", choices=VALUE_FORMATS, default="json")
    produce.add_argument("--producer-config", action="append", default=[], metavar="KEY=VALUE")
    produce.add_argument("--broker-timeout", type=float, default=60.0, metavar="SECONDS")
    produce.set_defaults(handler=produce_command)

    publish = tools.add_parser("publish-rules", help="check a rules file and append it to the rules topic")
    publish.add_argument("--bootstrap-servers", required=True)
    publish.add_argument("--rules-topic", required=True)
    publish.add_argument("--rules", required=True, metavar="FILE")
    publish.add_argument("--broker-timeout", type=float, default=60.0, metavar="SECONDS")
    publish.set_defaults(handler=publish_rules_command)
