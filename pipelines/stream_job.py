"""`paybeam stream` arguments and the StreamJob they describe (checked, no IO)."""
from __future__ import annotations

import argparse
import time
import uuid
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from pipelines.arguments import (
    COLUMNAR,
    ELEMENTWISE,
    ENGINES,
    UsageError,
    add_alert_arguments,
    add_bank_policy_arguments,
    add_policy_arguments,
    add_vendor_arguments,
    alert_policy,
    as_of_millis_argument,
    bank_policies,
    match_policy,
    settlement_day,
    trigger_policy,
    vendor_options,
)
from pipelines.io.kafka import (
    BOUNDED_MODES,
    DEFAULT_BROKER_TIMEOUT_SECONDS,
    DEFAULT_CHUNK_MAX_MILLIS,
    DEFAULT_CHUNK_MAX_RECORDS,
    DEFAULT_LINGER_MILLIS,
    DEFAULT_READ_CALL_MILLIS,
    DEFAULT_RESUME_MILLIS,
    START_POSITIONS,
)
from pipelines.io.rabbitmq import (
    DEFAULT_EXCHANGE,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_PREFETCH,
    DEFAULT_STREAM_PORT,
    STREAM_STARTS,
    AmqpEndpoint,
    StreamStart,
)
from pipelines.kafka_arguments import parse_settings
from pipelines.rabbitmq_arguments import (
    add_rabbitmq_stream_arguments,
    check_rabbitmq_queue_arguments,
    endpoint_from_arguments,
)
from runners.beam_flags import OptionsError
from runners.options import canonical_runner
from schemas.bank.entry import BANK_STATEMENTS
from schemas.kafka_values import VALUE_FORMATS
from schemas.timestamps import TimestampError, parse_timestamp_millis
from transforms.alerts import AlertPolicy
from transforms.bank.matching import DEFAULT_BANK_POLICY, BankPolicy
from transforms.bank.payouts import DEFAULT_PAYOUT_POLICY, PayoutPolicy
from transforms.columnar.live_flow import DEFAULT_TICK_MILLIS
from transforms.flow import ReconcileConfig
from transforms.reconcile import AsOf

KAFKA, RABBITMQ = "kafka", "rabbitmq"
SOURCES = (KAFKA, RABBITMQ)


@dataclass
class StreamJob:
    bootstrap_servers: Optional[str]
    # payments, settlements, results, daily_totals, alerts, dead_letters; with a bank-statements topic also
    # bank_statements, payouts and bank_matches
    topics: Dict[str, str]
    group_id: str
    config: ReconcileConfig
    alert_policy: AlertPolicy
    bounded: Optional[str] = None
    start: str = "committed"
    start_timestamp_millis: Optional[int] = None
    max_records: Optional[int] = None
    stop_at_millis: Optional[int] = None
    idle_timeout_seconds: float = 10.0
    value_format: str = "json"
    output_value_format: str = "json"
    kafka_io: str = "python"
    consumer_config: Dict[str, str] = field(default_factory=dict)
    producer_config: Dict[str, str] = field(default_factory=dict)
    runner: str = "DirectRunner"
    beam_args: List[str] = field(default_factory=list)
    engine: str = COLUMNAR
    shards: int = 1
    timer_tick_millis: int = DEFAULT_TICK_MILLIS
    chunk_max_records: int = DEFAULT_CHUNK_MAX_RECORDS
    chunk_max_millis: int = DEFAULT_CHUNK_MAX_MILLIS
    read_call_millis: int = DEFAULT_READ_CALL_MILLIS
    resume_millis: int = DEFAULT_RESUME_MILLIS
    linger_millis: int = DEFAULT_LINGER_MILLIS
    broker_timeout_seconds: float = DEFAULT_BROKER_TIMEOUT_SECONDS
    open_items_topic: Optional[str] = None  # None: <group_id>.open-items
    status_interval_seconds: float = 5.0  # unbounded runs: a status line this often on stderr; 0: none
    payout_policy: PayoutPolicy = DEFAULT_PAYOUT_POLICY
    bank_policy: BankPolicy = DEFAULT_BANK_POLICY
    # --source rabbitmq: the broker, the input queues (payments, settlements), the outputs' exchange
    source: str = KAFKA
    amqp: Optional[AmqpEndpoint] = None
    queues: Dict[str, str] = field(default_factory=dict)
    exchange: str = DEFAULT_EXCHANGE
    prefetch: int = DEFAULT_PREFETCH
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    # An unbounded run's queues the broker dead-letters the inputs' messages into (by input name), those that
    # existed at launch: read as part of the inputs
    dead_lettered_queues: Dict[str, str] = field(default_factory=dict)
    streams: bool = False  # the queues are RabbitMQ streams (bounded runs)
    stream_port: int = DEFAULT_STREAM_PORT
    stream_start: StreamStart = StreamStart()
    # A bounded RabbitMQ run's open-items snapshot: its id and start time (the marker orders snapshots)
    snapshot_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_millis: int = field(default_factory=lambda: int(time.time() * 1000))

    @property
    def with_bank(self) -> bool:
        """Three-way reconciliation: a bank-statements topic was given (docs/DESIGN.md 3.8)."""
        return "bank_statements" in self.topics

    @property
    def streaming(self) -> bool:
        return self.bounded is None


def add_kafka_client_arguments(parser: argparse.ArgumentParser, default_group: str,
                               resume_millis: int = DEFAULT_RESUME_MILLIS,
                               linger_millis: int = DEFAULT_LINGER_MILLIS,
                               starts: Sequence[str] = START_POSITIONS) -> None:
    """The Kafka reading and writing options every streaming command shares (`stream`, `risk stream`);
    `starts`: the --start choices (`stream` adds RabbitMQ streams' `offset`)."""
    parser.add_argument("--group-id", default=default_group, help="consumer group whose offsets are committed")
    parser.add_argument("--start", choices=starts, default="committed",
                        help="where to start: committed group offsets (default; earliest where none), earliest, "
                             "latest, --start-time" + (", or (RabbitMQ --streams) --start-offset"
                                                       if "offset" in starts else ""))
    parser.add_argument("--start-time", metavar="TIME", help="RFC 3339 instant for --start=timestamp")
    parser.add_argument("--idle-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="an idle partition stops holding the watermark back after this long (default 10)")
    parser.add_argument("--value-format", choices=VALUE_FORMATS, default="json", help="input message values")
    parser.add_argument("--output-value-format", choices=VALUE_FORMATS, default="json", help="output message values")
    parser.add_argument("--consumer-config", action="append", default=[], metavar="KEY=VALUE",
                        help="extra consumer settings, e.g. security.protocol=SASL_SSL (repeatable)")
    parser.add_argument("--producer-config", action="append", default=[], metavar="KEY=VALUE",
                        help="extra producer settings (repeatable)")
    parser.add_argument("--read-call-ms", type=int, default=DEFAULT_READ_CALL_MILLIS, metavar="MILLIS",
                        help="the longest one read of a partition runs before its records move on: runners finish "
                             "a bundle (and Flink passes a checkpoint) only between reads (default "
                             f"{DEFAULT_READ_CALL_MILLIS})")
    parser.add_argument("--resume-ms", type=int, default=resume_millis, metavar="MILLIS",
                        help="how soon a partition that was read to its end, with records, is read again (an idle "
                             f"one: 500 ms); sooner lowers latency and costs a bundle per read (default {resume_millis})")
    parser.add_argument("--linger-ms", type=int, default=linger_millis, metavar="MILLIS",
                        help="how long a read keeps collecting messages after the first one before it hands them "
                             f"on; 0: only what has arrived (default {linger_millis})")
    parser.add_argument("--broker-timeout", type=float, default=DEFAULT_BROKER_TIMEOUT_SECONDS, metavar="SECONDS",
                        help="fail (exit 1, nothing committed) when the brokers do not answer for this long "
                             f"(default {DEFAULT_BROKER_TIMEOUT_SECONDS:g})")


def add_chunk_arguments(parser: argparse.ArgumentParser) -> None:
    """How the columnar engine's unbounded runs batch messages and time their state (`stream`, `risk stream`)."""
    parser.add_argument("--chunk-max-records", type=int, default=DEFAULT_CHUNK_MAX_RECORDS, metavar="N",
                        help="unbounded columnar runs: the most messages of one Arrow chunk leaving the source "
                             f"(default {DEFAULT_CHUNK_MAX_RECORDS})")
    parser.add_argument("--chunk-max-ms", type=int, default=DEFAULT_CHUNK_MAX_MILLIS, metavar="MILLIS",
                        help="unbounded columnar runs: the longest a message waits in the source for its chunk "
                             f"(default {DEFAULT_CHUNK_MAX_MILLIS})")
    parser.add_argument("--timer-tick-ms", type=int, default=DEFAULT_TICK_MILLIS, metavar="MILLIS",
                        help="unbounded columnar runs: deadlines and expiries are judged when the watermark passes "
                             f"them, rounded up to this (default {DEFAULT_TICK_MILLIS})")


def check_at_least_one(args: argparse.Namespace) -> None:
    """The whole-number stream flags that must be at least 1 (those a command has): UsageError otherwise."""
    for flag in ("--timer-tick-ms", "--chunk-max-records", "--chunk-max-ms", "--read-call-ms", "--resume-ms"):
        value = getattr(args, flag[2:].replace("-", "_"), None)
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1")


def add_stream_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", choices=SOURCES, default=KAFKA,
                        help="kafka (default): topics on --bootstrap-servers; rabbitmq: queues on --amqp-url "
                             "(unbounded runs), outputs to --exchange")
    parser.add_argument("--bootstrap-servers", metavar="HOST:PORT[,…]", help="--source kafka: the brokers")
    parser.add_argument("--payments-topic", help="--source kafka: the payments topic")
    parser.add_argument("--settlements-topic", help="--source kafka: the settlements topic")
    add_rabbitmq_stream_arguments(parser)
    parser.add_argument("--results-topic", default="paybeam.results")
    parser.add_argument("--daily-totals-topic", default="paybeam.daily_totals")
    parser.add_argument("--alerts-topic", default="paybeam.alerts")
    parser.add_argument("--dead-letters-topic", default="paybeam.dead_letters")
    parser.add_argument("--bank-statements-topic", metavar="TOPIC",
                        help="unbounded runs: a topic of bank statements, one whole camt.053 or BAI2 document per "
                             "message; adds payout revisions (--payouts-topic) and bank-match revisions "
                             "(--bank-matches-topic)")
    parser.add_argument("--payouts-topic", default="paybeam.payouts")
    parser.add_argument("--bank-matches-topic", default="paybeam.bank_matches")
    add_kafka_client_arguments(parser, "paybeam", starts=tuple(dict.fromkeys((*START_POSITIONS, *STREAM_STARTS))))
    parser.add_argument("--bounded", nargs="?", const="end_offsets", choices=[m for m in BOUNDED_MODES if m],
                        help="a finite catch-up run: stop at the end offsets seen at start (default), after "
                             "--max-records, or at --stop-at")
    parser.add_argument("--max-records", type=int, metavar="N")
    parser.add_argument("--stop-at", metavar="TIME", help="RFC 3339 event time at which --bounded=until_time stops")
    parser.add_argument("--early-firing", default="5m", metavar="DURATION",
                        help="provisional daily-total panes this often in processing time (unbounded runs)")
    parser.add_argument("--kafka-io", choices=("python", "java"), default="python",
                        help="python: paybeam's Splittable DoFn (every runner); java: Beam's cross-language "
                             "KafkaIO (needs Java and `make engine-kafka-java`, or BEAM_KAFKA_EXPANSION_SERVICE; "
                             "Flink, Prism)")
    parser.add_argument("--engine", choices=ENGINES,
                        help="columnar (default: Arrow batches; unbounded runs keep open items as columns per "
                             "key shard) or elementwise (one element per record: the reference; the default of "
                             "unbounded runs with --kafka-io=java)")
    add_chunk_arguments(parser)
    parser.add_argument("--open-items-topic", metavar="TOPIC",
                        help="--bounded runs: compacted topic of the keys left open, carried to the next run "
                             "(default: GROUP_ID.open-items)")
    parser.add_argument("--status-interval", type=float, default=5.0, metavar="SECONDS",
                        help="unbounded runs: a status line (records read, lag, watermark, result rows, dead "
                             "letters, open keys) on stderr this often, redrawn on a terminal, at most every 30 s "
                             "otherwise; 0 turns it off (default 5)")
    parser.add_argument("--shards", type=int, metavar="N",
                        help="columnar engine: shards for deduplication and matching (default: 1 for an unbounded "
                             "run on the DirectRunner or Prism, which keep no checkpoint to restore; 8 otherwise, "
                             "at least a Flink job's parallelism; a run restored from a checkpoint needs the "
                             "count it was written with)")
    add_policy_arguments(parser)
    add_bank_policy_arguments(parser)
    add_alert_arguments(parser)
    # Accepted and checked like reconcile's and backfill's, so one set of options serves all three; the
    # stream's messages are canonical, its vendor rows were converted by `paybeam kafka produce`, which
    # takes the same options.
    add_vendor_arguments(parser)


def _source_arguments(args: argparse.Namespace) -> dict:
    """The input side's StreamJob fields; UsageError for what the source lacks or cannot do."""
    if args.source == KAFKA:
        missing = [flag for flag, value in (("--bootstrap-servers", args.bootstrap_servers),
                                            ("--payments-topic", args.payments_topic),
                                            ("--settlements-topic", args.settlements_topic)) if not value]
        if missing:
            raise UsageError(f"the following arguments are required: {', '.join(missing)}")
        if args.bank_statements_queue:
            raise UsageError("--bank-statements-queue is a RabbitMQ queue: --source kafka reads "
                             "--bank-statements-topic")
        if args.streams or args.start_offset is not None or args.start == "offset":
            raise UsageError("--streams, --start offset and --start-offset read RabbitMQ streams: --source rabbitmq")
        return {"source": KAFKA}
    missing = [flag for flag, value in (("--payments-queue", args.payments_queue),
                                        ("--settlements-queue", args.settlements_queue)) if not value]
    if missing:
        raise UsageError(f"--source rabbitmq needs {', '.join(missing)}")
    if args.bounded == "until_time":
        raise UsageError("--bounded=until_time needs --source kafka: a queue holds no event-time order to stop at")
    if args.bank_statements_topic:
        raise UsageError("--bank-statements-topic is a Kafka topic: --source rabbitmq reads --bank-statements-queue")
    if args.kafka_io != "python":
        raise UsageError("--kafka-io applies to --source kafka")
    if args.streams and args.bank_statements_queue:
        raise UsageError("--bank-statements-queue is a queue: --streams reads the payments and settlements "
                         "streams only")
    if args.start == "offset" and (not args.streams or args.start_offset is None or args.start_offset < 0):
        raise UsageError("--start offset needs --streams and --start-offset N (N >= 0)")
    if args.start_offset is not None and args.start != "offset":
        raise UsageError("--start-offset goes with --start offset")
    check_rabbitmq_queue_arguments(args)
    start = StreamStart(args.start, args.start_offset, instant_argument(args.start_time, "--start-time"))
    return {"source": RABBITMQ, "amqp": endpoint_from_arguments(args),
            "queues": {"payments": args.payments_queue, "settlements": args.settlements_queue,
                       **({BANK_STATEMENTS: args.bank_statements_queue} if args.bank_statements_queue else {})},
            "exchange": args.exchange, "prefetch": args.prefetch, "max_message_bytes": args.max_message_bytes,
            "streams": args.streams, "stream_port": args.stream_port, "stream_start": start}


def instant_argument(text: Optional[str], flag: str) -> Optional[int]:
    """An RFC 3339 flag's value in epoch milliseconds (None when not given); UsageError when it does not parse."""
    try:
        return parse_timestamp_millis(text, flag) if text else None
    except TimestampError as error:
        raise UsageError(str(error)) from None


DEFAULT_SHARDS = 8
# Runners whose unbounded runs restore no state: each run starts empty, so the shard count may follow
# the measurement (one shard kept Prism at p99 ~3 s at 1,000 pairs/s, eight fell behind at 100:
# docs/benchmarks.md, 2026-12-04). Flink keeps 8: checkpoints and savepoints hold the count (ShardCountChanged).
_STATELESS_RESTART_RUNNERS = ("DirectRunner", "PrismRunner")


def default_shards(runner: str, bounded: Optional[str]) -> int:
    """--shards when not given: 1 for an unbounded run on a runner that restores no state, else 8."""
    try:
        name = canonical_runner(runner)
    except OptionsError:
        return DEFAULT_SHARDS  # an unknown runner is refused later, by the options
    return 1 if not bounded and name in _STATELESS_RESTART_RUNNERS else DEFAULT_SHARDS


def job_from_arguments(args: argparse.Namespace, beam_args: Sequence[str]) -> StreamJob:
    """Checks the arguments and turns them into a StreamJob; raises UsageError."""
    vendor_options(args)  # a bad vendor option is a usage error here as in reconcile and backfill
    bounded = args.bounded
    source = _source_arguments(args)
    as_of_millis = as_of_millis_argument(args)
    if as_of_millis is not None and not bounded:
        raise UsageError("--as-of applies to --bounded runs; an unbounded run judges deadlines at the watermark")
    if bounded == "max_records" and not args.max_records:
        raise UsageError("--bounded=max_records needs --max-records N")
    if bounded == "until_time" and not args.stop_at:
        raise UsageError("--bounded=until_time needs --stop-at TIME")
    if bounded == "until_time" and args.kafka_io == "java":
        # Java KafkaIO stops only after max_num_records or a wall-clock max_read_time (docs/DESIGN.md 5).
        raise UsageError("--bounded=until_time needs --kafka-io=python: Java KafkaIO cannot stop at an event time")
    if args.start == "timestamp" and not args.start_time:
        raise UsageError("--start=timestamp needs --start-time TIME")
    check_at_least_one(args)
    engine = args.engine or (ELEMENTWISE if not bounded and args.kafka_io == "java" else COLUMNAR)
    if engine == COLUMNAR and not bounded and args.kafka_io == "java":
        raise UsageError("an unbounded --kafka-io=java run uses --engine elementwise: the columnar engine reads "
                         "Arrow chunks from paybeam's own Kafka source")
    shards = default_shards(args.runner, bounded) if args.shards is None else args.shards
    if shards < 1:
        raise UsageError("--shards must be at least 1")
    if not args.broker_timeout > 0:
        raise UsageError("--broker-timeout must be positive")
    if not args.status_interval >= 0:
        raise UsageError("--status-interval must be 0 (no status line) or positive")
    if bounded and (args.bank_statements_topic or args.bank_statements_queue):
        # A bounded run carries its open keys' records to the next one (docs/DESIGN.md 5), and a payout's
        # decided lines are not among them: its next balance would be wrong. Files have `paybeam reconcile
        # --bank-statements` and `paybeam backfill --bank-statements`.
        raise UsageError(f"--bank-statements-{'topic' if args.bank_statements_topic else 'queue'} needs an "
                         "unbounded run: a --bounded run does not carry a "
                         "payout's decided lines to the next run; for files use paybeam reconcile or backfill "
                         "--bank-statements")
    payout_policy, bank_policy = bank_policies(args)
    if bounded:
        as_of = AsOf.fixed(as_of_millis) if as_of_millis is not None else AsOf.latest_in_input()
        # Python batch runners crash on processing-time triggers (docs/DESIGN.md 7): no early panes.
        triggers = trigger_policy(args)
    else:
        as_of = AsOf.watermark()
        triggers = trigger_policy(args, early_firing=args.early_firing)
    topics = {"payments": args.payments_topic, "settlements": args.settlements_topic,
              "results": args.results_topic, "daily_totals": args.daily_totals_topic,
              "alerts": args.alerts_topic, "dead_letters": args.dead_letters_topic}
    if args.bank_statements_topic or args.bank_statements_queue:
        topics.update(bank_statements=args.bank_statements_topic, payouts=args.payouts_topic,
                      bank_matches=args.bank_matches_topic)
    topics.update(source.get("queues", {}))  # RabbitMQ: an input's name at the broker is its queue
    return StreamJob(
        **source,
        bootstrap_servers=args.bootstrap_servers,
        topics=topics,
        group_id=args.group_id,
        config=ReconcileConfig(policy=match_policy(args), as_of=as_of, settlement_day=settlement_day(args),
                               trigger_policy=triggers),
        alert_policy=alert_policy(args, triggers),
        bounded=bounded,
        start=args.start,
        start_timestamp_millis=instant_argument(args.start_time, "--start-time"),
        max_records=args.max_records,
        stop_at_millis=instant_argument(args.stop_at, "--stop-at"),
        idle_timeout_seconds=args.idle_timeout,
        value_format=args.value_format,
        output_value_format=args.output_value_format,
        kafka_io=args.kafka_io,
        consumer_config=parse_settings(args.consumer_config, "--consumer-config"),
        producer_config=parse_settings(args.producer_config, "--producer-config"),
        runner=args.runner,
        beam_args=list(beam_args),
        engine=engine,
        timer_tick_millis=args.timer_tick_ms,
        chunk_max_records=args.chunk_max_records,
        chunk_max_millis=args.chunk_max_ms,
        read_call_millis=args.read_call_ms,
        resume_millis=args.resume_ms,
        linger_millis=args.linger_ms,
        shards=shards,
        broker_timeout_seconds=args.broker_timeout,
        open_items_topic=args.open_items_topic,
        status_interval_seconds=args.status_interval,
        payout_policy=payout_policy,
        bank_policy=bank_policy,
    )
