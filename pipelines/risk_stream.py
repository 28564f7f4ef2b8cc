"""`paybeam risk stream`: risk decisions on a live Kafka topic (or RabbitMQ queue) of attempts, rules changing
while it runs (10.11).

    paybeam risk stream --bootstrap-servers HOST:PORT --attempts-topic T --rules FILE
        [--rules-topic T | --watch-rules] [--decisions-topic T] [--runner R] [beam flags]
    paybeam risk stream --source rabbitmq --amqp-url URL --attempts-queue Q --rules FILE [--watch-rules] …

    attempts   ──► ColumnarDecideAttemptStream (--engine columnar: Arrow chunks) or DecideAttemptStream
                       (elementwise): intake, rules in force, per-event windows ──► decisions topic
                                                                                       └─► dead-letters topic

`paybeam risk produce` and `publish-rules` (pipelines/risk_tools.py) replay attempt files into the topic or
queue and append a rules file to the rules topic.
This module wires Kafka or RabbitMQ to transforms/risk; the rules live there.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Union

import apache_beam as beam

from pipelines.arguments import COLUMNAR, ENGINES, UsageError
from pipelines.io.kafka import (
    DEFAULT_CHUNK_MAX_MILLIS,
    DEFAULT_CHUNK_MAX_RECORDS,
    DEFAULT_READ_CALL_MILLIS,
    KafkaReadConfig,
    KafkaWriteConfig,
    ReadRawChunksFromKafka,
    ReadRawRecordsFromKafka,
    WriteToKafka,
    new_consumer,
)
from pipelines.io.rabbitmq import DEFAULT_EXCHANGE, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_PREFETCH, AmqpEndpoint
from pipelines.io.rules_sources import RulesTopic, WatchedRulesFile, check_rules_topic
from pipelines.kafka_arguments import check_client_settings, parse_settings
from pipelines.rabbitmq_arguments import (
    add_rabbitmq_queue_arguments,
    check_rabbitmq_queue_arguments,
    dead_lettered_inputs,
    declare_run_outputs,
    endpoint_from_arguments,
    rabbit_read_config,
    rabbit_write_config,
)
from pipelines.run_errors import one_line_cause, quiet_beam_tracebacks, wait_cancelling_on_interrupt
from pipelines.stream_job import (
    KAFKA,
    RABBITMQ,
    SOURCES,
    add_chunk_arguments,
    add_kafka_client_arguments,
    check_at_least_one,
    instant_argument,
)
from runners.beam_flags import OptionsError, raw_values
from runners.flink_job_server import new_pipeline
from runners.options import build_pipeline_options, canonical_runner, loopback_by_default
from runners.worker_pool import HarnessBootMissing, local_worker_pool
from schemas.attempts import ATTEMPTS
from schemas.errors import RunFailed
from schemas.kafka_values import table_messages
from transforms.columnar.live_flow import DEFAULT_TICK_MILLIS
from transforms.columnar.live_risk_flow import DECISION_TABLES, ColumnarDecideAttemptStream
from transforms.risk.flow import DECISIONS, DecideAttemptStream
from transforms.risk.rules import RuleSet, load_rules_file
from transforms.risk.rules_in_force import DEFAULT_POLL_MILLIS
from transforms.validate import DEAD_LETTERS
from transforms.worker_process import DECIDING, in_worker_process

RulesSource = Union[RulesTopic, WatchedRulesFile, None]


# A decision is wanted within a fraction of a second: a read hands on what has arrived at once, and a partition
# read to its end is read again after 50 ms, where reconciliation lingers 200 ms and waits 500 ms
# (docs/DESIGN.md 10.13).
RISK_RESUME_MILLIS = 50
RISK_LINGER_MILLIS = 0


@dataclass
class RiskStreamJob:
    bootstrap_servers: Optional[str]
    topics: Dict[str, str]  # attempts, decisions, dead_letters (--source rabbitmq: queue names)
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
    read_call_millis: int = DEFAULT_READ_CALL_MILLIS
    resume_millis: int = RISK_RESUME_MILLIS
    linger_millis: int = RISK_LINGER_MILLIS
    broker_timeout_seconds: float = 60.0
    engine: str = COLUMNAR
    chunk_max_records: int = DEFAULT_CHUNK_MAX_RECORDS
    chunk_max_millis: int = DEFAULT_CHUNK_MAX_MILLIS
    timer_tick_millis: int = DEFAULT_TICK_MILLIS
    runner: str = "PrismRunner"
    beam_args: List[str] = field(default_factory=list)
    worker_processes: Optional[int] = None  # the columnar engine: 2 (None) = deciding in a process of its own
    # --source rabbitmq: the broker, the attempts queue, the outputs' exchange (docs/DESIGN.md 5.2)
    source: str = KAFKA
    amqp: Optional[AmqpEndpoint] = None
    queues: Dict[str, str] = field(default_factory=dict)
    dead_lettered_queues: Dict[str, str] = field(default_factory=dict)  # filled at launch
    exchange: str = DEFAULT_EXCHANGE
    prefetch: int = DEFAULT_PREFETCH
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES


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
    deciding_process = DECIDING if deciding_in_own_process(job) else None
    if job.engine == COLUMNAR:
        outputs = (pipeline
                   | "ReadAttemptChunks" >> _reader(job, chunks=True)
                   | "Risk" >> ColumnarDecideAttemptStream(job.rule_set, job.rules_source, job.poll_millis,
                                                           job.timer_tick_millis, deciding_process=deciding_process))
        decisions = outputs[DECISION_TABLES] | "DecisionMessages" >> in_worker_process(beam.Map(
            table_messages, job.output_value_format, "risk_decision", "attempt_id"), deciding_process)
    else:
        outputs = (pipeline
                   | "ReadAttempts" >> _reader(job, chunks=False)
                   | "Risk" >> DecideAttemptStream(job.rule_set, job.rules_source, job.poll_millis))
        decisions = outputs[DECISIONS]
    decisions | "WriteDecisions" >> in_worker_process(_writer(job, DECISIONS, "risk_decision"), deciding_process)
    outputs[DEAD_LETTERS] | "WriteDeadLetters" >> _writer(job, DEAD_LETTERS, "dead_letter")


def deciding_in_own_process(job: RiskStreamJob) -> bool:
    """The columnar engine's deciding step, its decision messages and their sink get a worker process of their
    own (transforms/worker_process.py) unless --worker-processes 1 (on Prism and, since bundles are decided
    together, on the embedded Flink too, two processes measured faster and with a shorter tail: docs/DESIGN.md
    10.13), and never in LOOPBACK threads the user asked for (one process: a second environment there only
    adds a hop)."""
    given = [value.upper() for value in raw_values(job.beam_args, "environment_type")]
    processes = job.worker_processes or 2
    return job.engine == COLUMNAR and processes == 2 and given[-1:] != ["LOOPBACK"]


def _worker_pool(job: RiskStreamJob):
    """A local pool of worker processes for a run whose workers would otherwise be threads of this process."""
    if deciding_in_own_process(job) and loopback_by_default(job.runner, job.beam_args):
        return local_worker_pool()
    return nullcontext(None)


def _reader(job: RiskStreamJob, chunks: bool) -> beam.PTransform:
    """The attempts: RawChunks (or RawRecords) of the Kafka topic or the RabbitMQ queue."""
    if job.source == RABBITMQ:
        from pipelines.io.rabbitmq import ReadRawChunksFromRabbitMQ

        return ReadRawChunksFromRabbitMQ(rabbit_read_config(job, ATTEMPTS), chunks=chunks)
    return ReadRawChunksFromKafka(read_config(job)) if chunks else ReadRawRecordsFromKafka(read_config(job))


def _writer(job: RiskStreamJob, output: str, schema_name: str) -> beam.PTransform:
    """Decisions keyed by attempt id (a consumer looks one up; on RabbitMQ the `paybeam-key` header)."""
    if job.source == RABBITMQ:
        from pipelines.io.rabbitmq import WriteToRabbitMQ

        return WriteToRabbitMQ(rabbit_write_config(job, output, schema_name), decision_message_key)
    return WriteToKafka(write_config(job, output, schema_name), decision_message_key)


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


def pipeline_options(job: RiskStreamJob, worker_pool: Optional[str] = None):
    """The job's Beam options: unbounded; the columnar engine's elements are Arrow chunks, each its own
    bundle on Flink (runners/flink_options.py: FLINK_STREAMING_CHUNK_BUNDLE_SIZE); the workers those of
    `worker_pool` when given (runners/worker_pool.py: local_worker_pool)."""
    return build_pipeline_options(job.runner, job.beam_args, streaming=True, chunk_bundles=job.engine == COLUMNAR,
                                  worker_pool=worker_pool)


def run_job(job: RiskStreamJob) -> None:
    try:
        with _worker_pool(job) as worker_pool:
            _run_job(job, worker_pool)
    except HarnessBootMissing as error:
        raise UsageError(str(error)) from None


def _run_job(job: RiskStreamJob, worker_pool: Optional[str]) -> None:
    options = pipeline_options(job, worker_pool)
    check_client_settings(job.consumer_config, "--consumer-config", "consumer")
    check_client_settings(job.producer_config, "--producer-config", "producer")
    if job.source == RABBITMQ:
        rabbit_read_config(job, ATTEMPTS)  # usage errors in the read settings first
        declare_run_outputs(job, [job.topics[DECISIONS], job.topics[DEAD_LETTERS]])
        job = dataclasses.replace(job, dead_lettered_queues=dead_lettered_inputs(job))
    else:
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
        raise UsageError("the DirectRunner cannot read an unbounded topic or queue (apache/beam#26577): use "
                         "--runner PrismRunner (the default) or FlinkRunner; `paybeam risk backtest` decides files")
    source = _source_arguments(args)
    if args.start == "timestamp" and not args.start_time:
        raise UsageError("--start=timestamp needs --start-time TIME")
    check_at_least_one(args)
    if not args.broker_timeout > 0:
        raise UsageError("--broker-timeout must be positive")
    if args.rules_poll_ms < 0:
        raise UsageError("--rules-poll-ms must be 0 (every attempt) or more")
    rules: RulesSource = None
    if args.rules_topic:
        if not args.bootstrap_servers:
            raise UsageError("--rules-topic is a Kafka topic: give --bootstrap-servers too, or take updates from "
                             "the file (--watch-rules)")
        rules = RulesTopic(args.bootstrap_servers, args.rules_topic,
                           tuple(sorted(parse_settings(args.consumer_config, "--consumer-config").items())))
    elif args.watch_rules:
        rules = WatchedRulesFile(os.path.abspath(args.rules))
    return RiskStreamJob(
        **source,
        bootstrap_servers=args.bootstrap_servers,
        topics={ATTEMPTS: args.attempts_queue or args.attempts_topic, DECISIONS: args.decisions_topic,
                DEAD_LETTERS: args.dead_letters_topic},
        rules_path=args.rules, rule_set=load_rules_file(args.rules), rules_source=rules,
        poll_millis=args.rules_poll_ms, group_id=args.group_id, start=args.start,
        start_timestamp_millis=instant_argument(args.start_time, "--start-time"), idle_timeout_seconds=args.idle_timeout,
        value_format=args.value_format, output_value_format=args.output_value_format,
        consumer_config=parse_settings(args.consumer_config, "--consumer-config"),
        producer_config=parse_settings(args.producer_config, "--producer-config"),
        read_call_millis=args.read_call_ms, resume_millis=args.resume_ms, linger_millis=args.linger_ms,
        broker_timeout_seconds=args.broker_timeout, runner=args.runner,
        beam_args=list(beam_args), engine=args.engine, chunk_max_records=args.chunk_max_records,
        chunk_max_millis=args.chunk_max_ms, timer_tick_millis=args.timer_tick_ms,
        worker_processes=args.worker_processes)


def _source_arguments(args: argparse.Namespace) -> dict:
    """The RiskStreamJob fields of `--source`: Kafka's topic, or RabbitMQ's broker and queue."""
    if args.source == KAFKA:
        missing = [flag for flag, value in (("--bootstrap-servers", args.bootstrap_servers),
                                            ("--attempts-topic", args.attempts_topic)) if not value]
        if missing:
            raise UsageError(f"the following arguments are required: {', '.join(missing)}")
        if args.attempts_queue:
            raise UsageError("--attempts-queue is a RabbitMQ queue: --source rabbitmq")
        return {"source": KAFKA}
    if not args.attempts_queue:
        raise UsageError("--source rabbitmq needs --attempts-queue")
    if args.attempts_topic:
        raise UsageError("--attempts-topic is a Kafka topic: --source rabbitmq reads --attempts-queue")
    if args.start != "committed":
        raise UsageError("--start applies to Kafka topics: a queue is read from its head, what is acked is gone")
    check_rabbitmq_queue_arguments(args)
    return {"source": RABBITMQ, "amqp": endpoint_from_arguments(args), "queues": {ATTEMPTS: args.attempts_queue},
            "exchange": args.exchange, "prefetch": args.prefetch, "max_message_bytes": args.max_message_bytes}


def start_line(job: RiskStreamJob) -> str:
    """What the run is about to do, in one line: where attempts, rules and decisions come and go, and whether
    the deciding step has a worker process of its own (the first thing to know when reading its speed)."""
    source = job.rules_source.name if job.rules_source is not None else "none (fixed rules)"
    attempts = (f"attempts from queue {job.topics[ATTEMPTS]} on {job.amqp.redacted()}; " if job.source == RABBITMQ
                else "")
    deciding = ("deciding in a worker process of its own" if deciding_in_own_process(job)
                else "deciding in the reader's worker")
    return (f"paybeam risk stream: unbounded {job.engine} run on {job.runner}, {deciding}; {attempts}rules "
            f"{job.rule_set.fingerprint} from {job.rules_path}, updates from {source}; decisions to "
            f"{job.topics[DECISIONS]}")


def stream_command(args: argparse.Namespace, extra: Sequence[str]) -> int:
    job = job_from_arguments(args, extra)
    print(start_line(job), file=sys.stderr)
    run_job(job)
    return 0


def add_risk_stream_commands(tools) -> None:
    stream = tools.add_parser(
        "stream", help="decide live attempts from a Kafka topic; rules may change while it runs",
        description="Decide each attempt of a Kafka topic as it arrives, with the backtest's rules and windows. "
                    "New rule versions come from --rules-topic or the watched --rules file. Unrecognised "
                    "--flags are passed to Beam.")
    stream.add_argument("--source", choices=SOURCES, default=KAFKA,
                        help="kafka (default): --attempts-topic on --bootstrap-servers; rabbitmq: --attempts-queue "
                             "on --amqp-url, decisions and dead letters to --exchange (queues named by the "
                             "--*-topic options)")
    stream.add_argument("--bootstrap-servers", metavar="HOST:PORT[,…]", help="--source kafka (and --rules-topic)")
    stream.add_argument("--attempts-topic", help="--source kafka: the attempts topic")
    stream.add_argument("--attempts-queue", metavar="QUEUE", help="--source rabbitmq: the attempts queue")
    add_rabbitmq_queue_arguments(stream)
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
    stream.add_argument("--worker-processes", type=int, choices=(1, 2), default=None,
                        help="--engine columnar: 2 (the default) decides in a Python worker process of its own, "
                             "beside the one that reads (two cores); 1: one process for both. On "
                             "Prism and the embedded Flink without --environment_type the workers are processes "
                             "of a pool this run starts on 127.0.0.1; an explicit --environment_type=LOOPBACK "
                             "means 1")
    stream.add_argument("--runner", default="PrismRunner",
                        help="Beam runner: PrismRunner (default) or FlinkRunner; the DirectRunner cannot read an "
                             "unbounded topic (apache/beam#26577)")
    stream.set_defaults(handler=stream_command)
