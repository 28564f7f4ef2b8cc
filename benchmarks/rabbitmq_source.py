"""RabbitMQ benchmark: paybeam's queue and stream sources next to bare clients on the same messages, and
`paybeam stream --source rabbitmq --bounded` end to end, on a local RabbitMQ, in one run.

    python benchmarks/rabbitmq_source.py [N_PAYMENTS] [--queue-type classic|quorum] [--amqp-url URL --stream-port P]

Starts a RabbitMQ (pipelines/brokers/rabbitmq.py) unless --amqp-url is given; generates N payments and
publishes their payment messages to a fresh queue for each reader (so every reader reads the same
messages from a full queue), then times, records/s over the messages read:
1. a bare pika consumer (prefetch 20,000, an ack with `multiple` every 5,000 messages, no Beam),
2. paybeam's unbounded queue source (`ReadQueueFn`, chunk mode, the columnar engine's input) called as a
   runner calls it: one process() call after another, each call's finalization run at once (acks),
   until every message was emitted,
3. the same in record mode (the per-element engine's input),
4. a bounded run's input: the launcher holding the queue (`HeldBacklog.hold`, spilled) plus reading the
   spill into records (`held_deliveries` + `record_of_delivery`),
5. a bare rstream consumer reading the payments stream from its first offset,
6. the bounded stream read (`read_streams` into a spill, plus reading it into records),
6b. paybeam's unbounded stream source (`ReadStreamFn`, chunk mode) called as a runner calls it,
7. `paybeam stream --source rabbitmq --bounded` reconciling payments and settlements end to end (classic
   or quorum queues), and 8. the same with `--streams`.
A script, not a test: timings never gate CI (docs/benchmarks.md has the figures).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apache_beam.io.restriction_trackers import OffsetRange  # noqa: E402
from apache_beam.runners.sdf_utils import (  # noqa: E402
    RestrictionTrackerView,
    ThreadsafeRestrictionTracker,
    ThreadsafeWatermarkEstimator,
)

from datagen.generator import GeneratorConfig, generate  # noqa: E402
from pipelines.brokers.rabbitmq import RabbitMQBroker  # noqa: E402
from pipelines.io.kafka import UNBOUNDED_STOP, CheckpointOnlyOffsetTracker, PartitionWatermarkEstimator  # noqa: E402
from pipelines.io.rabbitmq import (  # noqa: E402
    FROM_START,
    AmqpEndpoint,
    HeldBacklog,
    RabbitReadConfig,
    ReadQueueFn,
    ReadStreamFn,
    StreamReadConfig,
    StreamStart,
    close_shared_consumers,
    close_shared_tails,
    declare_queue,
    held_deliveries,
    publish_values,
    read_streams,
    record_of_delivery,
)
from pipelines.kafka_tools import collect_input_messages  # noqa: E402
from schemas.raw_chunks import RawChunk  # noqa: E402
from schemas.records import PAYMENTS, SETTLEMENTS  # noqa: E402


class _Finalizer:
    def __init__(self):
        self.callbacks = []

    def register(self, callback):
        self.callbacks.append(callback)


def bare_consumer(endpoint: AmqpEndpoint, queue: str, count: int) -> int:
    import pika

    connection = pika.BlockingConnection(endpoint.parameters())
    channel = connection.channel()
    channel.basic_qos(prefetch_count=20_000)
    read = 0
    for method, _, _ in channel.consume(queue, inactivity_timeout=5):
        if method is None:
            break
        read += 1
        if read % 5_000 == 0 or read == count:
            channel.basic_ack(method.delivery_tag, multiple=True)
        if read == count:
            break
    channel.cancel()
    connection.close()
    return read


def paybeam_source(endpoint: AmqpEndpoint, queue: str, count: int, chunks: bool) -> int:
    """ReadQueueFn called as a runner calls it, until `count` records were emitted."""
    fn = ReadQueueFn(RabbitReadConfig(endpoint, queue, PAYMENTS), chunks=chunks)
    read = run_sdf(fn, queue, OffsetRange(0, UNBOUNDED_STOP), count)
    close_shared_consumers()
    return read


def paybeam_stream_source(endpoint: AmqpEndpoint, port: int, stream: str, count: int) -> int:
    """ReadStreamFn (chunks) from the stream's first offset, called as a runner calls it, until `count` records."""
    config = StreamReadConfig(RabbitReadConfig(endpoint, stream, PAYMENTS), port, f"bench-{uuid.uuid4().hex[:6]}",
                              StreamStart("earliest"))
    read = run_sdf(ReadStreamFn(config, chunks=True), stream, OffsetRange(FROM_START, UNBOUNDED_STOP), count)
    close_shared_tails()
    return read


def run_sdf(fn, element: str, restriction: OffsetRange, count: int) -> int:
    """One process() call after another (each call's finalization run at once) until `count` were emitted."""
    state = None
    read = 0
    while read < count:
        tracker = ThreadsafeRestrictionTracker(CheckpointOnlyOffsetTracker(restriction))
        estimator = PartitionWatermarkEstimator(state)
        finalizer = _Finalizer()
        for output in fn.process(element, finalizer, RestrictionTrackerView(tracker),
                                 ThreadsafeWatermarkEstimator(estimator)):
            value = output.value
            read += value.read_count if isinstance(value, RawChunk) else 1
        deferred = tracker.deferred_status()
        restriction = deferred[0] if deferred else restriction
        state = estimator.get_estimator_state()
        for callback in finalizer.callbacks:
            callback()
    return read


def held_read(endpoint: AmqpEndpoint, queue: str, count: int, spill_dir: str) -> int:
    config = RabbitReadConfig(endpoint, queue, PAYMENTS)
    backlog = HeldBacklog(endpoint).connect()
    held = backlog.hold(PAYMENTS, queue, count, spill_dir)
    read = sum(1 for delivery in held_deliveries(held.path) if record_of_delivery(delivery, config))
    backlog.ack()
    return read


def bare_stream(host_port: tuple, stream: str, count: int) -> int:
    """rstream from the first offset, each message decoded to its body (what any consumer of it needs)."""
    from rstream import Consumer, ConsumerOffsetSpecification, OffsetType, amqp_decoder

    async def read():
        consumer = Consumer(host_port[0], host_port[1], username="guest", password="guest")
        await consumer.start()
        done = asyncio.Event()
        read = [0]

        async def on_message(message, context):
            read[0] += bool(message.body)
            if read[0] >= count:
                done.set()

        await consumer.subscribe(stream, on_message, decoder=amqp_decoder, offset_specification=(
            ConsumerOffsetSpecification(OffsetType.FIRST, None)), initial_credit=100)
        await asyncio.wait_for(done.wait(), 600)
        await consumer.close()
        return read[0]

    return asyncio.run(read())


def stream_read(endpoint: AmqpEndpoint, port: int, stream: str, spill_dir: str) -> int:
    config = RabbitReadConfig(endpoint, stream, PAYMENTS)
    path = os.path.join(spill_dir, "stream.arrows")
    read_streams(endpoint, port, [(stream, path, None)], f"bench-{uuid.uuid4().hex[:6]}", StreamStart("earliest"))
    return sum(1 for delivery in held_deliveries(path) if record_of_delivery(delivery, config))


def kafka_reference(work: Path, total: int):
    """The same files through Kafka (a local Tansu broker, 3 partitions): `paybeam stream --bounded`, the same
    bounded pipeline from topics, for what the pipeline itself costs."""
    from pipelines.brokers.local_broker import LocalBroker
    from pipelines.io.kafka import create_topics
    from pipelines.kafka_tools import replay_files

    with LocalBroker() as broker:
        suffix = uuid.uuid4().hex[:8]
        topics = {name: f"bench.{name}.{suffix}" for name in
                  ("payments", "settlements", "results", "daily_totals", "alerts", "dead_letters")}
        create_topics(broker.bootstrap_servers, list(topics.values()), partitions=3)
        replay_files(broker.bootstrap_servers, [str(work / "data" / "payments" / "*")],
                     [str(work / "data" / "settlements" / "*")], topics["payments"], topics["settlements"])
        arguments = [sys.executable, "-m", "pipelines.cli", "stream", "--bounded", "--bootstrap-servers",
                     broker.bootstrap_servers, "--group-id", f"bench-{suffix}"]
        for name, topic in topics.items():
            arguments += [f"--{name.replace('_', '-')}-topic", topic]
        started = time.monotonic()
        done = subprocess.run(arguments, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                              text=True)
        seconds = time.monotonic() - started
        assert done.returncode == 0, done.stderr[-2000:]
    return "reference: paybeam stream --bounded from Kafka (Tansu)", seconds, total


def timed(function, *args):
    started = time.monotonic()
    result = function(*args)
    return time.monotonic() - started, result


def run(endpoint: AmqpEndpoint, stream_port: int, payments: int, queue_type: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="paybeam-rabbitmq-bench-"))
    generate(GeneratorConfig(payments=payments, seed=7), str(work / "data"))
    messages: list = []
    collect_input_messages(PAYMENTS, [str(work / "data" / "payments" / "*")], "p", "json", True, messages)
    settlement_messages: list = []
    collect_input_messages(SETTLEMENTS, [str(work / "data" / "settlements" / "*")], "s", "json", True,
                           settlement_messages)
    values = [message.value for message in sorted(messages, key=lambda m: (m.event_time, m.sequence))]
    count = len(values)

    def fresh(kind: str = queue_type, contents=None) -> str:
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        declare_queue(endpoint, queue, kind)
        publish_values(endpoint, queue, contents if contents is not None else values)
        return queue

    rows = []
    publish_seconds, _ = timed(fresh)
    rows.append(("publish with confirms (ConfirmingPublisher)", publish_seconds, count))
    seconds, read = timed(bare_consumer, endpoint, fresh(), count)
    rows.append(("bare pika consumer", seconds, read))
    bare = read / seconds
    seconds, read = timed(paybeam_source, endpoint, fresh(), count, True)
    rows.append(("paybeam queue source, chunks (ReadQueueFn)", seconds, read))
    seconds, read = timed(paybeam_source, endpoint, fresh(), count, False)
    rows.append(("paybeam queue source, records", seconds, read))
    seconds, read = timed(held_read, endpoint, fresh(), count, str(work))
    rows.append(("bounded: held + spilled + read back", seconds, read))
    stream = fresh("stream")
    host = endpoint.url.split("@")[1].split(":")[0]
    seconds, read = timed(bare_stream, (host, stream_port), stream, count)
    rows.append(("bare rstream consumer", seconds, read))
    seconds, read = timed(stream_read, endpoint, stream_port, stream, str(work))
    rows.append(("bounded stream read (read_streams + read back)", seconds, read))
    seconds, read = timed(paybeam_stream_source, endpoint, stream_port, stream, count)
    rows.append(("paybeam stream source, chunks (ReadStreamFn)", seconds, read))

    for label, extra, kind in (("paybeam stream --source rabbitmq --bounded", [], queue_type),
                               ("paybeam stream --source rabbitmq --streams --bounded",
                                ["--streams", "--stream-port", str(stream_port)], "stream")):
        settlements_values = [m.value for m in settlement_messages]
        payments_queue, settlements_queue = fresh(kind), fresh(kind, settlements_values)
        run_id = uuid.uuid4().hex[:8]
        arguments = [sys.executable, "-m", "pipelines.cli", "stream", "--source", "rabbitmq", "--bounded",
                     "--payments-queue", payments_queue, "--settlements-queue", settlements_queue,
                     "--group-id", f"bench-{run_id}", "--exchange", f"bench-{run_id}", *extra]
        for output in ("results", "daily-totals", "alerts", "dead-letters"):
            arguments += [f"--{output}-topic", f"bench.{output}.{run_id}"]
        started = time.monotonic()
        done = subprocess.run(arguments, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT),
                                                          "PAYBEAM_AMQP_URL": endpoint.url},
                              capture_output=True, text=True)
        seconds = time.monotonic() - started
        assert done.returncode == 0, done.stderr[-2000:]
        rows.append((label, seconds, count + len(settlements_values)))

    rows.append(kafka_reference(work, count + len(settlement_messages)))
    print(f"RabbitMQ {queue_type} queues, {count:,} payment messages ({payments:,} payments); "
          f"{time.strftime('%Y-%m-%d %H:%M')} on {os.uname().nodename} ({os.cpu_count()} cores)")
    print(f"{'reader':<56}{'seconds':>9}{'records':>10}{'records/s':>11}{'x bare':>8}")
    for label, seconds, read in rows:
        print(f"{label:<56}{seconds:>9.2f}{read:>10,}{read / seconds:>11,.0f}{read / seconds / bare:>8.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("payments", type=int, nargs="?", default=50_000)
    parser.add_argument("--queue-type", choices=("classic", "quorum"), default="classic")
    parser.add_argument("--amqp-url", help="an existing broker (default: start one)")
    parser.add_argument("--stream-port", type=int, default=5552)
    args = parser.parse_args()
    if args.amqp_url:
        run(AmqpEndpoint(args.amqp_url), args.stream_port, args.payments, args.queue_type)
        return 0
    with RabbitMQBroker() as broker:
        run(AmqpEndpoint(broker.amqp_url), broker.stream_port, args.payments, args.queue_type)
    return 0


if __name__ == "__main__":
    sys.exit(main())
