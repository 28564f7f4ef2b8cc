"""`paybeam risk produce` and `paybeam risk publish-rules`: attempt files to the attempts topic (or queue) in
event-time order, a checked rules file to the rules topic (docs/DESIGN.md 10.11)."""
from __future__ import annotations

import argparse
from typing import Iterator, List, Optional, Sequence

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.arguments import UsageError
from pipelines.io.files import expand_patterns
from pipelines.io.kafka import create_topics, new_producer
from pipelines.kafka_arguments import parse_settings
from pipelines.kafka_tools import KafkaMessage, produce_in_order
from pipelines.rabbitmq_arguments import add_amqp_endpoint_arguments, endpoint_from_arguments
from pipelines.run_errors import one_line_cause
from pipelines.stream_job import KAFKA, RABBITMQ, SOURCES
from schemas.attempts import ATTEMPTS
from schemas.codecs import FORMATS, detect_format, read_records
from schemas.errors import RunFailed
from schemas.kafka_values import VALUE_FORMATS, encode_value
from schemas.records import RawRecord
from transforms.risk.rules import load_rules_file
from transforms.validate import validate_raw_record


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
    values = [encode_value(attempt._asdict(), args.value_format, "authorization_attempt") for attempt in attempts]
    if args.source == RABBITMQ:
        where = _publish_to_queue(args, values)
    else:
        _produce_to_topic(args, attempts, values)
        where = args.attempts_topic
    print(f"sent {len(attempts)} attempts to {where} in event-time order"
          + (f"; {rejected} invalid row(s) not sent (paybeam risk backtest shows why)" if rejected else ""))
    return 0


def _produce_to_topic(args: argparse.Namespace, attempts: list, values: List[bytes]) -> None:
    """In this order, keyed by card (else attempt id), each acknowledged (`produce_in_order`: idempotent,
    waits while the producer's local queue is full, a dead broker fails within --broker-timeout)."""
    if not args.bootstrap_servers:
        raise UsageError("the following arguments are required: --bootstrap-servers (or --source rabbitmq)")
    settings = parse_settings(args.producer_config, "--producer-config")
    messages = [KafkaMessage(attempt.event_time, index, args.attempts_topic,
                             (attempt.card_fingerprint or attempt.attempt_id).encode("utf-8"), value)
                for index, (attempt, value) in enumerate(zip(attempts, values))]
    try:
        produce_in_order(args.bootstrap_servers, messages, settings, args.broker_timeout)
    except ValueError as error:  # a --producer-config that would break the order (acks, idempotence)
        raise UsageError(f"--producer-config: {error}") from None


def _publish_to_queue(args: argparse.Namespace, values: List[bytes]) -> str:
    """The attempts to `--attempts-queue` (declared durable, dead-lettering into `<queue>.dead-lettered`), each
    confirmed: one queue keeps their order."""
    from pipelines.io.rabbitmq import declare_queue, publish_values

    endpoint = endpoint_from_arguments(args)
    try:
        declare_queue(endpoint, args.attempts_queue, args.queue_type, args.broker_timeout)
        publish_values(endpoint, args.attempts_queue, values, args.value_format, args.broker_timeout)
    except Exception as error:  # noqa: BLE001 — unreachable, refused, a queue of another type: one line, exit 1
        raise RunFailed(f"cannot publish to RabbitMQ {endpoint.redacted()}: {one_line_cause(error)}") from None
    return f"{args.queue_type} queue {args.attempts_queue}"


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


def add_risk_tool_commands(tools) -> None:
    """`paybeam risk produce` and `paybeam risk publish-rules`."""
    produce = tools.add_parser("produce", help="send attempt files to a topic (or a queue) in event-time order")
    produce.add_argument("--source", choices=SOURCES, default=KAFKA,
                         help="kafka (default): --attempts-topic on --bootstrap-servers; rabbitmq: --attempts-queue "
                              "on --amqp-url")
    produce.add_argument("--bootstrap-servers")
    produce.add_argument("--attempts", action="append", required=True, metavar="GLOB")
    produce.add_argument("--attempts-topic", default="attempts")
    add_amqp_endpoint_arguments(produce)
    produce.add_argument("--attempts-queue", default="attempts")
    produce.add_argument("--queue-type", choices=("classic", "quorum"), default="classic")
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
