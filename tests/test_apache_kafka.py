"""What the Kafka source assumes of a broker, checked on Apache Kafka itself (KRaft, one JVM per session).

The rest of the Kafka tests run against Tansu by default (`--kafka-broker=apache` runs them on
Apache Kafka, tests/conftest.py). Tansu deviates from Kafka where the source looks up offsets
(docs/DESIGN.md 7), and the source carries a workaround for each (docs/DESIGN.md 5):
* ListOffsets(latest): Tansu answers one past the base offset of the last record batch, Kafka
  the high watermark. Discovery therefore also fetches at that offset and takes the partition-EOF offset
  (the fetch response's high watermark) when it is larger.
* ListOffsets(timestamp) (`offsets_for_times`): Tansu answers 0, Kafka the first offset at or
  after the time. The reader therefore also skips records whose broker timestamp is earlier.
Here: on Kafka the lookups are right and the workarounds change nothing (same offsets), and on
Tansu the deviations are still there (so are the workarounds' reasons; when that test fails,
Tansu has caught up and the workaround can go).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from typing import List

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from pipelines.brokers.apache_kafka import ApacheKafkaBroker, remove_orphaned_directories
from pipelines.brokers.local_broker import LocalBroker
from pipelines.io.kafka import KafkaReadConfig, discover_partitions, end_offsets, source_consumer
from runners.engine_cache import EngineNotFetched

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MINUTE = 60_000
T = 1_767_571_200_000  # 2026-01-05T00:00:00Z: the lookup time
BATCHES = (4, 2, 3)  # records per produce call, each flushed on its own: three record batches


def _topic(servers: str) -> str:
    name = f"facts-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": servers})  # kept alive until the future is done
    (future,) = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)]).values()
    future.result(timeout=30)
    return name


def _produce_batches(servers: str, topic: str) -> List[int]:
    """BATCHES records into partition 0, one batch each; the first batch is stamped before T, the rest after.

    Returns the broker timestamps by offset."""
    producer = Producer({"bootstrap.servers": servers, "linger.ms": 50})
    stamps: List[int] = []
    for index, size in enumerate(BATCHES):
        stamp = T - 5 * MINUTE if index == 0 else T + index * MINUTE
        errors: List[KafkaError] = []
        for _ in range(size):
            producer.produce(topic, value=b"{}", partition=0, timestamp=stamp,
                             on_delivery=lambda error, _m: errors.append(error) if error else None)
        assert producer.flush(30) == 0 and not errors, errors
        stamps += [stamp] * size
    return stamps


def _consumer(servers: str) -> Consumer:
    return Consumer({"bootstrap.servers": servers, "group.id": f"facts-{uuid.uuid4().hex[:8]}",
                     "enable.auto.commit": False, "enable.partition.eof": True})


def _list_offsets(servers: str, topic: str):
    """(ListOffsets(latest), ListOffsets(T), the fetch response's high watermark) for partition 0."""
    consumer = _consumer(servers)
    try:
        latest = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)[1]  # not cached: ListOffsets
        (by_time,) = consumer.offsets_for_times([TopicPartition(topic, 0, T)], timeout=30)
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # read to the partition-EOF event, which carries the high watermark
            message = consumer.poll(0.5)
            if message is not None and message.error() is not None:
                assert message.error().code() == KafkaError._PARTITION_EOF, message.error()
                return latest, by_time.offset, message.offset()
        raise AssertionError(f"no end-of-partition event for {topic}/0 within 30 s")
    finally:
        consumer.close()


def test_list_offsets_answers_the_high_watermark_and_the_first_offset_at_a_time(apache_kafka):
    servers = apache_kafka.bootstrap_servers
    topic = _topic(servers)
    stamps = _produce_batches(servers, topic)

    latest, by_time, high_watermark = _list_offsets(servers, topic)

    assert high_watermark == len(stamps) == 9
    assert latest == high_watermark  # Tansu: 7, one past the last batch's base offset
    assert by_time == stamps.index(next(s for s in stamps if s >= T)) == 4  # Tansu: 0


def test_discovery_resolves_the_same_offsets_with_or_without_the_workarounds(apache_kafka):
    """On Kafka the EOF fetch confirms ListOffsets(latest), and a timestamp start begins at the looked-up offset,
    so the reader's skip of earlier broker timestamps has nothing to skip."""
    servers = apache_kafka.bootstrap_servers
    topic = _topic(servers)
    _produce_batches(servers, topic)
    config = KafkaReadConfig(bootstrap_servers=servers, topics=(topic,), group_id=f"g-{uuid.uuid4().hex[:8]}",
                             input_name="payments", start="timestamp", start_timestamp_millis=T,
                             bounded="end_offsets")
    consumer = source_consumer(config, "discovery")
    try:
        listed = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)[1]
        _, ends = end_offsets(consumer, [(topic, 0)], timeout=30)
        (descriptor,) = discover_partitions(consumer, config)
    finally:
        consumer.close()

    assert ends[(topic, 0)] == listed == 9
    assert (descriptor.start_offset, descriptor.stop_offset) == (4, 9)


def test_tansu_still_deviates_from_kafka_where_the_source_works_around_it(tmp_path):
    """The reason the workarounds stay while Tansu is the default test broker. Fails once Tansu answers like Kafka."""
    with LocalBroker(log_path=str(tmp_path / "tansu.log")) as tansu:
        topic = _topic(tansu.bootstrap_servers)
        _produce_batches(tansu.bootstrap_servers, topic)
        latest, by_time, high_watermark = _list_offsets(tansu.bootstrap_servers, topic)

    assert high_watermark == 9
    # One past the base offset of the last record batch: the high watermark only when that batch is one record.
    assert latest == 9 - BATCHES[-1] + 1 == 7, \
        "Tansu's ListOffsets(latest) is the high watermark now: drop the EOF fetch"
    assert by_time == 0, "Tansu implements ListOffsets by timestamp now: drop the reader's timestamp skip"


def test_the_broker_dies_with_its_parent_and_its_directory_is_cleared_later(apache_kafka):
    """SIGKILL leaves no `stop()`: the JVM still goes (die_with_parent); its temporary directory is removed
    by the next broker's start (remove_orphaned_directories). The session broker is not touched."""
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from pipelines.brokers.apache_kafka import ApacheKafkaBroker\n"
         "broker = ApacheKafkaBroker().start()\n"
         "print(broker._process.pid, broker._directory, flush=True)\n"
         "sys.stdin.read()"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": REPO}, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        jvm_pid, directory = parent.stdout.readline().split()
        assert os.path.isdir(directory) and os.path.exists(f"/proc/{jvm_pid}")
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 60
        while _running(int(jvm_pid)):
            assert time.monotonic() < deadline, f"the broker JVM {jvm_pid} outlived its parent"
            time.sleep(0.1)  # polling the process table, bounded by the deadline
        assert os.path.isdir(directory)  # nobody ran stop()
        remove_orphaned_directories()
        assert not os.path.exists(directory)
        assert os.path.isdir(apache_kafka._directory)  # a live owner's directory stays
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def _running(pid: int) -> bool:
    """Alive and not a zombie (a killed JVM whose parent died is reaped by init, but not at once)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_an_unfetched_kafka_names_the_make_target(tmp_path, monkeypatch, capsys):
    from pipelines.cli import main

    monkeypatch.setenv("ENGINES_CACHE", str(tmp_path))
    with pytest.raises(EngineNotFetched, match="make engine-kafka"):
        ApacheKafkaBroker()
    assert main(["kafka", "broker", "--kind", "apache", "--port", "9"]) == 2  # a usage error, no traceback
    assert "run `make engine-kafka` first" in capsys.readouterr().err
