"""The RabbitMQ options of `paybeam stream --source rabbitmq` and `paybeam rabbitmq …`, and the IO configs
a StreamJob's RabbitMQ side turns into (docs/DESIGN.md 5.2)."""
from __future__ import annotations

import argparse
import os
from typing import Dict, Optional, Sequence

from pipelines.arguments import UsageError
from pipelines.io.rabbitmq import (
    DEFAULT_EXCHANGE,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_PREFETCH,
    DEFAULT_STREAM_PORT,
    AmqpEndpoint,
    RabbitReadConfig,
    RabbitWriteConfig,
    StreamReadConfig,
    dead_lettered_queue,
    declare_outputs,
    existing_queues,
    stream_read_config,
)
from pipelines.run_errors import one_line_cause
from schemas.errors import RunFailed

AMQP_URL_ENV = "PAYBEAM_AMQP_URL"


def add_amqp_endpoint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--amqp-url", metavar="URL",
                        help=f"amqp://USER:PASSWORD@HOST:PORT/VHOST or amqps://… (default: ${AMQP_URL_ENV}, which "
                             "keeps the password out of the process list); never printed or logged")
    parser.add_argument("--amqp-tls-ca", metavar="FILE", help="CA bundle that signs the broker's certificate")
    parser.add_argument("--amqp-tls-cert", metavar="FILE", help="client certificate (with --amqp-tls-key)")
    parser.add_argument("--amqp-tls-key", metavar="FILE", help="client certificate's private key")


def add_rabbitmq_queue_arguments(parser: argparse.ArgumentParser) -> None:
    """What every command reading queues with `--source rabbitmq` takes: the broker, the outputs' exchange,
    the prefetch window and the message size limit."""
    add_amqp_endpoint_arguments(parser)
    parser.add_argument("--exchange", default=DEFAULT_EXCHANGE,
                        help="--source rabbitmq: the direct exchange outputs are published to, each under its "
                             "--*-topic name as routing key, into the durable queue of that name (declared and "
                             f"bound by the run; default {DEFAULT_EXCHANGE})")
    parser.add_argument("--prefetch", type=int, default=DEFAULT_PREFETCH, metavar="N",
                        help="--source rabbitmq: unacked deliveries per queue (acks follow the runner's bundle "
                             f"finalization, on Flink its checkpoints; default {DEFAULT_PREFETCH})")
    parser.add_argument("--max-message-bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES, metavar="N",
                        help="--source rabbitmq: a larger message is a dead letter, not decoded (default "
                             f"{DEFAULT_MAX_MESSAGE_BYTES})")


def check_rabbitmq_queue_arguments(args: argparse.Namespace) -> None:
    if not 1 <= args.prefetch <= 65_535:
        raise UsageError("--prefetch is between 1 and 65535 (AMQP's prefetch count is 16 bits)")
    if args.max_message_bytes < 1:
        raise UsageError("--max-message-bytes must be at least 1")


def add_rabbitmq_stream_arguments(parser: argparse.ArgumentParser) -> None:
    """`paybeam stream --source rabbitmq`'s options."""
    add_rabbitmq_queue_arguments(parser)
    parser.add_argument("--payments-queue", metavar="QUEUE", help="--source rabbitmq: the payments queue")
    parser.add_argument("--settlements-queue", metavar="QUEUE", help="--source rabbitmq: the settlements queue")
    parser.add_argument("--bank-statements-queue", metavar="QUEUE",
                        help="--source rabbitmq, unbounded runs: a queue of bank statements, one whole camt.053 or "
                             "BAI2 document per message; adds payout revisions (--payouts-topic) and bank-match "
                             "revisions (--bank-matches-topic), as --bank-statements-topic does for Kafka")
    parser.add_argument("--streams", action="store_true",
                        help="--source rabbitmq: the input queues are RabbitMQ streams, read over the stream "
                             "protocol from --start (committed: after the offset stored for --group-id); a "
                             "--bounded run reads to the end and stores the offset once it succeeded, an unbounded "
                             "one stores it as its outputs become durable")
    parser.add_argument("--stream-port", type=int, default=DEFAULT_STREAM_PORT, metavar="PORT",
                        help=f"--streams: the broker's stream protocol port (default {DEFAULT_STREAM_PORT})")
    parser.add_argument("--start-offset", type=int, metavar="N", help="--streams --start offset: the first offset")


def endpoint_from_arguments(args: argparse.Namespace) -> AmqpEndpoint:
    """The broker the options name; UsageError without a URL or with a malformed one (never echoing it)."""
    url = args.amqp_url or os.environ.get(AMQP_URL_ENV)
    if not url:
        raise UsageError(f"the RabbitMQ broker is needed: --amqp-url URL (or ${AMQP_URL_ENV})")
    try:
        return AmqpEndpoint(url, tls_ca_file=args.amqp_tls_ca, tls_cert_file=args.amqp_tls_cert,
                            tls_key_file=args.amqp_tls_key)
    except ValueError as error:
        raise UsageError(f"--amqp-url: {error}") from None


def rabbit_read_config(job, input_name: str) -> RabbitReadConfig:
    """A StreamJob's read of one input's queue."""
    try:
        return RabbitReadConfig(
            endpoint=job.amqp, queue=job.queues[input_name], input_name=input_name, value_format=job.value_format,
            prefetch=job.prefetch, max_message_bytes=job.max_message_bytes,
            idle_timeout_seconds=job.idle_timeout_seconds, broker_timeout_seconds=job.broker_timeout_seconds,
            read_call_millis=job.read_call_millis, linger_millis=job.linger_millis, resume_millis=job.resume_millis,
            chunk_max_records=job.chunk_max_records, chunk_max_millis=job.chunk_max_millis,
            dead_lettered_queue=job.dead_lettered_queues.get(input_name))
    except ValueError as error:
        raise UsageError(str(error)) from None


def rabbit_stream_read_config(job, input_name: str) -> StreamReadConfig:
    """A StreamJob's read of one input's RabbitMQ stream (`--streams`, unbounded runs): offsets stored for
    `--group-id`, a run with nothing read yet starting where `--start` says."""
    return stream_read_config(rabbit_read_config(job, input_name), job.stream_port, job.group_id, job.stream_start)


def rabbit_write_config(job, output: str, schema_name: str, exchange: Optional[str] = None) -> RabbitWriteConfig:
    """A StreamJob's output `output`: routing key and queue = its --*-topic name."""
    name = job.topics[output]
    return RabbitWriteConfig(endpoint=job.amqp, routing_key=name, exchange=exchange or job.exchange, queue=name,
                             value_format=job.output_value_format, schema_name=schema_name,
                             broker_timeout_seconds=job.broker_timeout_seconds)


def store_write_config(job, queue: str) -> RabbitWriteConfig:
    """A bounded run's open-items store: the durable queue `queue` on the default exchange."""
    return RabbitWriteConfig(endpoint=job.amqp, routing_key=queue, exchange="", queue=queue,
                             broker_timeout_seconds=job.broker_timeout_seconds)


def declare_run_outputs(job, names: Sequence[str]) -> None:
    """The exchange and the output queues `names` exist before the run writes (consumers can attach at once); a
    broker that cannot be reached or refuses the credentials fails the run here, in one line."""
    try:
        declare_outputs(job.amqp, job.exchange, names, min(job.broker_timeout_seconds, 30.0))
    except Exception as error:  # noqa: BLE001 — unreachable, refused, a queue of another kind: one line, exit 1
        raise RunFailed(f"cannot declare the outputs on RabbitMQ {job.amqp.redacted()}: "
                        f"{one_line_cause(error)}") from error


def dead_lettered_inputs(job) -> Dict[str, str]:
    """The queues the broker dead-letters the job's input queues into (`<queue>.dead-lettered`) that exist
    now, by input name: an unbounded run reads them as part of its inputs (docs/DESIGN.md 5.2)."""
    wanted = {dead_lettered_queue(queue): name for name, queue in job.queues.items()}
    try:
        found = existing_queues(job.amqp, wanted, min(job.broker_timeout_seconds, 30.0))
    except Exception as error:  # noqa: BLE001 — unreachable, refused: one line, exit 1
        raise RunFailed(f"cannot look up the dead-lettered queues on RabbitMQ {job.amqp.redacted()}: "
                        f"{one_line_cause(error)}") from error
    return {wanted[queue]: queue for queue in found}
