"""Kafka source benchmark: chunk mode (`ReadRawChunksFromKafka`) for a grid of chunk_max_records x
chunk_max_millis, next to the record mode (`ReadRawRecordsFromKafka`) and a bare confluent-kafka
consumer, in the same run, on a local broker; and a cProfile of the per-message work.

    python benchmarks/kafka_chunks.py [N_PAYMENTS] [--bootstrap-servers HOST:PORT] [--profile N]

Starts a local Tansu broker unless --bootstrap-servers is given, replays a generated sample (N
payments) into a 3-partition topic, then times every reader once, bounded at the end offsets, on
the DirectRunner (docs/DESIGN.md 5 has the figures). A script, not a test: timings never gate CI.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import apache_beam as beam

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.stream_source import bare_consumer, timed  # noqa: E402
from datagen.generator import GeneratorConfig, generate  # noqa: E402
from pipelines.brokers.local_broker import LocalBroker  # noqa: E402
from pipelines.io.kafka import (  # noqa: E402
    KafkaReadConfig,
    ReadRawChunksFromKafka,
    ReadRawRecordsFromKafka,
    create_topics,
    new_consumer,
    read_to_end,
)
from pipelines.kafka_tools import replay_files  # noqa: E402
from schemas.arrow_readers import tabulate_records  # noqa: E402
from schemas.kafka_values import payload_time_millis, raw_record_from_message  # noqa: E402
from schemas.records import PAYMENTS  # noqa: E402

RECORDS = (1_000, 5_000, 20_000)
MILLIS = (50, 200, 1_000)


def _config(bootstrap: str, topic: str, **chunking) -> KafkaReadConfig:
    return KafkaReadConfig(bootstrap_servers=bootstrap, topics=(topic,), group_id=f"bench-{uuid.uuid4().hex}",
                           input_name=PAYMENTS, start="earliest", bounded="end_offsets", commit_offsets=False,
                           **chunking)


def record_mode(bootstrap: str, topic: str) -> None:
    with beam.Pipeline() as pipeline:
        _ = pipeline | ReadRawRecordsFromKafka(_config(bootstrap, topic)) | beam.combiners.Count.Globally()


def record_mode_batched(bootstrap: str, topic: str) -> None:
    """The record mode as the columnar engine takes it today (pipelines/reconcile_stream.py): BatchElements
    then tabulate_records."""
    with beam.Pipeline() as pipeline:
        _ = (pipeline | ReadRawRecordsFromKafka(_config(bootstrap, topic))
             | beam.BatchElements(min_batch_size=1_000, max_batch_size=100_000)
             | beam.Map(lambda records: tabulate_records(list(records), topic, PAYMENTS).read_count)
             | beam.CombineGlobally(sum))


def chunk_mode(bootstrap: str, topic: str, max_records: int, max_millis: int) -> None:
    config = _config(bootstrap, topic, chunk_max_records=max_records, chunk_max_millis=max_millis)
    with beam.Pipeline() as pipeline:
        _ = (pipeline | ReadRawChunksFromKafka(config)
             | beam.Map(lambda chunk: chunk.read_count) | beam.CombineGlobally(sum))


def profile(bootstrap: str, topic: str, count: int) -> None:
    """cProfile of the reader's per-message work over `count` messages already fetched: the body of
    `record_of_message` (raw_record_from_message + payload_time_millis), then tabulate_records per 5,000."""
    consumer = new_consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}",
                             "enable.partition.eof": True, "enable.auto.commit": False})
    try:
        messages = list(read_to_end(consumer, topic, 600.0, metadata_timeout=10))
    finally:
        consumer.close()
    messages = messages[:count]
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for start in range(0, len(messages), 5_000):
        records = []
        for message in messages[start:start + 5_000]:
            record = raw_record_from_message(PAYMENTS, f"{topic}/{message.partition}@{message.offset}",
                                             message.value, "json")
            payload_time_millis(record)
            records.append(record)
        tabulate_records(records, topic, PAYMENTS)
    profiler.disable()
    seconds = time.perf_counter() - started
    print(f"\nprofile: {len(messages):,} messages, {seconds:.2f} s under cProfile "
          f"({len(messages) / seconds:,.0f} messages/s)")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(18)


def run(bootstrap: str, payments: int, profile_count: int, repeat: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="paybeam-chunk-bench-"))
    generate(GeneratorConfig(payments=payments, seed=7), str(work / "data"))
    suffix = uuid.uuid4().hex[:8]
    topic, settlements = f"bench.payments.{suffix}", f"bench.settlements.{suffix}"
    create_topics(bootstrap, [topic, settlements], partitions=3)
    report = replay_files(bootstrap, [str(work / "data" / "payments" / "*")], [], topic, settlements)
    count = report.payment_messages
    print(f"N = {payments:,} payments: {count:,} payment messages in 3 partitions")

    create_topics(bootstrap, [f"{topic}.empty"], partitions=3)
    runs = [("bare confluent-kafka consumer", "", "", lambda: bare_consumer(bootstrap, topic)),
            ("chunks, empty topic (fixed cost)", 5_000, 200, lambda: chunk_mode(bootstrap, f"{topic}.empty", 5_000, 200)),
            ("ReadRawRecordsFromKafka", "", "", lambda: record_mode(bootstrap, topic)),
            ("records+BatchElements+tabulate", "", "", lambda: record_mode_batched(bootstrap, topic))]
    runs += [("ReadRawChunksFromKafka", max_records, max_millis,
              lambda max_records=max_records, max_millis=max_millis: chunk_mode(bootstrap, topic, max_records, max_millis))
             for max_records in RECORDS for max_millis in MILLIS]
    seconds = {index: [] for index in range(len(runs))}
    for round_number in range(repeat):  # rounds interleave the readers: a busy moment hits them all alike
        for index, (name, max_records, max_millis, function) in enumerate(runs):
            elapsed = timed(function)[0]
            seconds[index].append(elapsed)
            print(f"  round {round_number + 1}: {name} {max_records} {max_millis}: {elapsed:.2f} s", flush=True)
    print(f"\n{'reader':<34}{'max_records':>12}{'max_millis':>11}{'median s':>10}{'records/s':>11}  all runs (s)")
    for index, (name, max_records, max_millis, _) in enumerate(runs):
        median = statistics.median(seconds[index])
        rate = f"{count / median:>11,.0f}" if "empty" not in name else f"{'-':>11}"
        print(f"{name:<34}{max_records!s:>12}{max_millis!s:>11}{median:>10.2f}{rate}  "
              f"{' '.join(f'{value:.2f}' for value in seconds[index])}")
    if profile_count:
        profile(bootstrap, topic, profile_count)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("payments", type=int, nargs="?", default=100_000)
    parser.add_argument("--bootstrap-servers")
    parser.add_argument("--profile", type=int, default=50_000, help="messages to profile (0: none)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds over every reader (the median is shown)")
    args = parser.parse_args()
    if args.bootstrap_servers:
        run(args.bootstrap_servers, args.payments, args.profile, args.repeat)
    else:
        with LocalBroker() as broker:
            run(broker.bootstrap_servers, args.payments, args.profile, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
