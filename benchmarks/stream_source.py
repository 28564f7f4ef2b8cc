"""Streaming benchmark: paybeam's Kafka source next to a bare confluent-kafka consumer, and the
end-to-end bounded stream pipeline, on a local broker.

    python benchmarks/stream_source.py [N_PAYMENTS] [--bootstrap-servers HOST:PORT]

Starts a local Tansu broker unless --bootstrap-servers is given, replays a
generated sample (N payments) into two 3-partition topics, then times
1. a plain confluent-kafka consumer (`read_to_end`, no Beam) reading the payments topic to its end,
2. `ReadRawRecordsFromKafka` (bounded at the end offsets) reading the same topic on the DirectRunner,
3. `paybeam stream --bounded` reconciling both topics end to end.
A script, not a test: timings never gate CI.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

import apache_beam as beam

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from datagen.generator import GeneratorConfig, generate  # noqa: E402
from pipelines.brokers.local_broker import LocalBroker  # noqa: E402
from pipelines.cli import main as paybeam  # noqa: E402
from pipelines.io.kafka import (  # noqa: E402
    KafkaReadConfig,
    ReadRawRecordsFromKafka,
    create_topics,  # noqa: E402
    new_consumer,
    read_to_end,
)
from pipelines.kafka_tools import replay_files  # noqa: E402
from schemas.records import PAYMENTS  # noqa: E402

_BARE_READ_TIMEOUT_SECONDS = 3600.0  # a bound on a hang only: a benchmark's read may take long


def bare_consumer(bootstrap: str, topic: str) -> int:
    consumer = new_consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}",
                             "enable.partition.eof": True, "enable.auto.commit": False})
    try:
        return sum(1 for _ in read_to_end(consumer, topic, _BARE_READ_TIMEOUT_SECONDS, metadata_timeout=10))
    finally:
        consumer.close()


def paybeam_source(bootstrap: str, topic: str) -> None:
    config = KafkaReadConfig(bootstrap_servers=bootstrap, topics=(topic,), group_id=f"bench-{uuid.uuid4().hex}",
                             input_name=PAYMENTS, start="earliest", bounded="end_offsets", commit_offsets=False)
    with beam.Pipeline() as pipeline:
        _ = pipeline | ReadRawRecordsFromKafka(config) | beam.combiners.Count.Globally()


def timed(function, *args):
    started = time.monotonic()
    result = function(*args)
    return time.monotonic() - started, result


def run(bootstrap: str, payments: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="paybeam-stream-bench-"))
    dataset = generate(GeneratorConfig(payments=payments, seed=7), str(work / "data"))
    suffix = uuid.uuid4().hex[:8]
    topics = {name: f"bench.{name}.{suffix}" for name in
              ("payments", "settlements", "results", "daily_totals", "alerts", "dead_letters")}
    create_topics(bootstrap, list(topics.values()), partitions=3)
    report = replay_files(bootstrap, [str(work / "data" / "payments" / "*")],
                          [str(work / "data" / "settlements" / "*")], topics["payments"], topics["settlements"])
    payment_messages = report.payment_messages
    total = payment_messages + report.settlement_messages

    bare_seconds, read = timed(bare_consumer, bootstrap, topics["payments"])
    assert read == payment_messages, (read, payment_messages)
    source_seconds, _ = timed(paybeam_source, bootstrap, topics["payments"])
    stream_seconds, exit_code = timed(paybeam, [
        "stream", "--bootstrap-servers", bootstrap, "--bounded", "--start", "earliest", "--group-id", "bench",
        *[arg for name in topics for arg in (f"--{name.replace('_', '-')}-topic", topics[name])]])
    assert exit_code == 0

    print()
    print(f"N = {payments:,} payments: {payment_messages:,} payment messages, {total:,} messages in all "
          f"({dataset.expected['counts']['settlements']['read']:,} settlement lines)")
    print(f"{'reader':<44}{'seconds':>10}{'records/s':>14}")
    print(f"{'bare confluent-kafka consumer (payments)':<44}{bare_seconds:>10.2f}{payment_messages / bare_seconds:>14,.0f}")
    print(f"{'paybeam Kafka source, DirectRunner (payments)':<44}{source_seconds:>10.2f}"
          f"{payment_messages / source_seconds:>14,.0f}")
    print(f"{'paybeam stream --bounded, end to end (all)':<44}{stream_seconds:>10.2f}{total / stream_seconds:>14,.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("payments", type=int, nargs="?", default=20_000)
    parser.add_argument("--bootstrap-servers")
    args = parser.parse_args()
    if args.bootstrap_servers:
        run(args.bootstrap_servers, args.payments)
    else:
        with LocalBroker() as broker:
            run(broker.bootstrap_servers, args.payments)
    return 0


if __name__ == "__main__":
    sys.exit(main())
