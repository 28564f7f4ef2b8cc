"""The RabbitMQ options of `paybeam stream --source rabbitmq` and `paybeam rabbitmq …`, and the IO configs
a StreamJob's RabbitMQ side turns into (docs/DESIGN.md 5.2)."""
from __future__ import annotations

import argparse
import os
from typing import Optional

from pipelines.arguments import UsageError
from pipelines.io.rabbitmq import (
    DEFAULT_EXCHANGE,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_PREFETCH,
    DEFAULT_STREAM_PORT,
    AmqpEndpoint,
    RabbitReadConfig,
    RabbitWriteConfig,
)

AMQP_URL_ENV = "PAYBEAM_AMQP_URL"


def add_amqp_endpoint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--amqp-url", metavar="URL",
                        help=f"amqp://USER:PASSWORD@HOST:PORT/VHOST or amqps://… (default: ${AMQP_URL_ENV}, which "
                             "keeps the password out of the process list); never printed or logged")
    parser.add_argument("--amqp-tls-ca", metavar="FILE", help="CA bundle that signs the broker's certificate")
    parser.add_argument("--amqp-tls-cert", metavar="FILE", help="client certificate (with --amqp-tls-key)")
    parser.add_argument("--amqp-tls-key", metavar="FILE", help="client certificate's private key")


def add_rabbitmq_stream_arguments(parser: argparse.ArgumentParser) -> None:
    """`paybeam stream --source rabbitmq`'s options."""
    add_amqp_endpoint_arguments(parser)
    parser.add_argument("--payments-queue", metavar="QUEUE", help="--source rabbitmq: the payments queue")
    parser.add_argument("--settlements-queue", metavar="QUEUE", help="--source rabbitmq: the settlements queue")
    parser.add_argument("--bank-statements-queue", metavar="QUEUE",
                        help="--source rabbitmq, unbounded runs: a queue of bank statements, one whole camt.053 or "
                             "BAI2 document per message; adds payout revisions (--payouts-topic) and bank-match "
                             "revisions (--bank-matches-topic), as --bank-statements-topic does for Kafka")
    parser.add_argument("--exchange", default=DEFAULT_EXCHANGE,
                        help="--source rabbitmq: the direct exchange outputs are published to, each under its "
                             "--*-topic name as routing key, into the durable queue of that name (declared and "
                             f"bound by the run; default {DEFAULT_EXCHANGE})")
    parser.add_argument("--prefetch", type=int, default=DEFAULT_PREFETCH, metavar="N",
                        help="--source rabbitmq: unacked deliveries per queue (acks follow the runner's bundle "
                             f"finalization, on Flink its checkpoints; default {DEFAULT_PREFETCH})")
    parser.add_argument("--streams", action="store_true",
                        help="--source rabbitmq --bounded: the input queues are RabbitMQ streams, read over the "
                             "stream protocol from --start (committed: after the offset stored for --group-id) to "
                             "the end, the offset stored once the run succeeded")
    parser.add_argument("--stream-port", type=int, default=DEFAULT_STREAM_PORT, metavar="PORT",
                        help=f"--streams: the broker's stream protocol port (default {DEFAULT_STREAM_PORT})")
    parser.add_argument("--start-offset", type=int, metavar="N", help="--streams --start offset: the first offset")
    parser.add_argument("--max-message-bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES, metavar="N",
                        help="--source rabbitmq: a larger message is a dead letter, not decoded (default "
                             f"{DEFAULT_MAX_MESSAGE_BYTES})")


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
