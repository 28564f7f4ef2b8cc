"""Broker outages fail in bounded time (issue 9, item 3): one `error:` line, exit 1, quiet logs.

Each test kills a private broker of the chosen kind (`--kafka-broker`, tests/conftest.py; never
the session's), so other tests are not disturbed. `--broker-timeout` is short so the tests are
quick; the `timeout=` of each wait is only a bound on a hang. A killed broker's data is gone
(Tansu keeps it in memory; Apache Kafka's temporary directory goes with it), so what it had
committed cannot be read back afterwards; the committed-offsets test therefore puts a TCP
forwarder process (tests/tcp_forwarder.py) in front of a private broker that advertises the
forwarder's port and kills the forwarder: for the clients the broker is gone (connections
reset, new ones refused), while the broker keeps its state for the test to read once the
forwarder is back.
"""
from __future__ import annotations

import os
import uuid

import pytest
from apache_beam.io.restriction_trackers import OffsetRange

from pipelines.brokers.local_broker import LocalBroker
from pipelines.io.kafka import BrokerUnavailable, Clock, KafkaReadConfig, RateLimitedLog, ReadPartitionFn, create_topics
from schemas.internal_records import PartitionDescriptor
from tests.beam_helpers import payment
from tests.kafka_helpers import TickingClock
from tests.stream_helpers import error_lines, new_topics, paybeam_process, produce_records, stream_arguments

HANG_BOUND_SECONDS = 180  # a bound on a hang, not a performance assertion
STDERR_LIMIT_BYTES = 20_000


def _kill(broker: LocalBroker) -> None:
    broker._process.kill()  # SIGKILL: no goodbye to the clients
    broker._process.wait(timeout=30)


@pytest.fixture
def private_broker(kafka_broker_class, tmp_path):
    with kafka_broker_class(log_path=str(tmp_path / "broker.log")) as broker:
        yield broker


def test_the_log_limiter_passes_each_distinct_message_once_per_interval():
    class ManualClock(Clock):
        now = 0.0

        def monotonic(self) -> float:
            return self.now

    clock = ManualClock()
    limit = RateLimitedLog(interval=30.0, clock=clock)
    assert limit.allows("Connect to 127.0.0.1:9092 failed (after 0ms)")
    assert not limit.allows("Connect to 127.0.0.1:9092 failed (after 12ms)")  # digits do not make it new
    assert limit.allows("1/1 brokers are down")
    clock.now = 29.9
    assert not limit.allows("Connect to 127.0.0.1:9092 failed (after 3ms)")
    clock.now = 30.0
    assert limit.allows("Connect to 127.0.0.1:9092 failed (after 3ms)")


def test_produce_to_a_dead_broker_fails_in_bounded_time_with_one_error_line(private_broker, tmp_path):
    from datagen.generator import GeneratorConfig, generate

    data = generate(GeneratorConfig(payments=30, seed=3, days=2), str(tmp_path / "data"))
    create_topics(private_broker.bootstrap_servers, ["payments", "settlements"], partitions=2)
    _kill(private_broker)

    child = paybeam_process(["kafka", "produce", "--bootstrap-servers", private_broker.bootstrap_servers,
                             "--payments", os.path.join(data.out_dir, "payments", "*"),
                             "--settlements", os.path.join(data.out_dir, "settlements", "*"),
                             "--broker-timeout", "2"])
    _, stderr = child.communicate(timeout=HANG_BOUND_SECONDS)

    assert child.returncode == 1
    assert len(error_lines(stderr)) == 1, stderr
    assert "did not answer for 2 s (--broker-timeout)" in error_lines(stderr)[0]
    assert "Traceback" not in stderr
    assert len(stderr.encode()) < STDERR_LIMIT_BYTES


def test_a_bounded_stream_whose_broker_is_killed_mid_run_fails_with_one_error_line(private_broker):
    servers = private_broker.bootstrap_servers
    topics = new_topics(servers)
    produce_records(servers, topics["payments"], [payment(f"k-{n}", f"k-r{n}") for n in range(5)], "payment_event")
    # More records than the topics hold: the run cannot finish before the kill, it waits for them.
    child = paybeam_process(stream_arguments(servers, topics, f"g-{uuid.uuid4().hex[:8]}", "--start", "earliest",
                                             "--bounded=max_records", "--max-records", "1000",
                                             "--broker-timeout", "3"))
    started = child.stderr.readline()  # the synchronisation point: the run has begun
    assert started.startswith("paybeam stream: bounded (max_records) run"), started
    _kill(private_broker)

    _, rest = child.communicate(timeout=HANG_BOUND_SECONDS)

    stderr = started + rest
    assert child.returncode == 1
    assert len(error_lines(stderr)) == 1, stderr
    assert "did not answer for 3 s (--broker-timeout); no offsets were committed" in error_lines(stderr)[0]
    assert "Traceback" not in stderr
    assert len(stderr.encode()) < STDERR_LIMIT_BYTES


def test_the_reader_gives_up_once_the_outage_outlasts_the_broker_timeout(private_broker):
    from tests.test_kafka_source import drive

    servers = private_broker.bootstrap_servers
    topics = new_topics(servers, partitions=1, create=("payments",))
    produce_records(servers, topics["payments"], [payment(f"o-{n}", f"o-r{n}") for n in range(3)], "payment_event",
                    partitions=1)
    config = KafkaReadConfig(bootstrap_servers=servers, topics=(topics["payments"],), group_id="g-outage",
                             input_name="payments", start="earliest", broker_timeout_seconds=30.0)
    fn = ReadPartitionFn(config, clock=TickingClock(step=0.5))
    fn.setup()
    try:
        descriptor = PartitionDescriptor(topics["payments"], 0, 0, 100)
        outputs, _, residual, _, _ = drive(fn, descriptor, OffsetRange(0, 100))
        assert len(outputs) == 3 and residual == OffsetRange(3, 100)  # healthy: reads, then waits for more
        _kill(private_broker)
        with pytest.raises(BrokerUnavailable, match="did not answer for 30 s"):
            for _ in range(200):  # each call lasts a few ticks of the clock; 30 s of ticks end it
                _, _, residual, _, _ = drive(fn, descriptor, residual)
    finally:
        fn.teardown()


def _start_forwarder(listen_port: int, target_port: int):
    import subprocess
    import sys

    forwarder = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "tcp_forwarder.py"),
                                  str(listen_port), str(target_port)], stdout=subprocess.PIPE, text=True)
    assert forwarder.stdout.readline().strip() == "ready"
    return forwarder


def test_offsets_do_not_move_when_the_broker_dies_mid_run_and_the_next_run_reads_everything(kafka_broker_class,
                                                                                            tmp_path):
    from confluent_kafka import Consumer, TopicPartition

    from pipelines.brokers.local_broker import free_port
    from tests.stream_helpers import committed, decoded

    public_port, broker_port = free_port(), free_port()
    forwarder = _start_forwarder(public_port, broker_port)
    servers = f"127.0.0.1:{public_port}"
    try:
        # The broker advertises the forwarder's port: clients reach it only through the forwarder.
        with kafka_broker_class(port=broker_port, advertised_port=public_port, log_path=str(tmp_path / "broker.log")):
            topics = new_topics(servers)
            produce_records(servers, topics["payments"], [payment(f"f-{n}", f"f-r{n}") for n in range(6)],
                            "payment_event")
            group = f"g-{uuid.uuid4().hex[:8]}"
            before = {0: 1, 1: 1}  # an earlier run's commits
            consumer = Consumer({"bootstrap.servers": servers, "group.id": group})
            consumer.commit(offsets=[TopicPartition(topics["payments"], p, o) for p, o in before.items()],
                            asynchronous=False)
            consumer.close()

            child = paybeam_process(stream_arguments(servers, topics, group, "--bounded=max_records",
                                                     "--max-records", "1000", "--broker-timeout", "3"))
            started = child.stderr.readline()  # the run has begun; it cannot end before the outage
            assert started.startswith("paybeam stream: bounded (max_records) run"), started
            forwarder.kill()  # for every client, the broker is gone
            forwarder.wait(timeout=30)
            _, rest = child.communicate(timeout=HANG_BOUND_SECONDS)
            forwarder = _start_forwarder(public_port, broker_port)  # the broker is back, with its state

            stderr = started + rest
            assert child.returncode == 1
            assert len(error_lines(stderr)) == 1, stderr
            assert len(stderr.encode()) < STDERR_LIMIT_BYTES
            assert committed(servers, group, topics["payments"]) == before

            again = paybeam_process(stream_arguments(servers, topics, group, "--broker-timeout", "3"))
            _, again_err = again.communicate(timeout=HANG_BOUND_SECONDS)
            assert again.returncode == 0, again_err
            # Everything after the earlier commits, i.e. all but one record per partition, is read now.
            assert len(decoded(servers, topics["results"])) == 4
            assert committed(servers, group, topics["payments"]) == {0: 3, 1: 3}
    finally:
        forwarder.kill()
        forwarder.wait(timeout=30)


def test_kafka_consume_and_create_topics_on_a_dead_broker_end_in_one_error_line(private_broker):
    servers = private_broker.bootstrap_servers
    _kill(private_broker)
    for arguments in (["kafka", "consume", "--bootstrap-servers", servers, "--topic", "payments"],
                      ["kafka", "create-topics", "--bootstrap-servers", servers, "payments"]):
        child = paybeam_process(arguments)
        _, stderr = child.communicate(timeout=HANG_BOUND_SECONDS)
        assert child.returncode == 1, stderr
        assert len(error_lines(stderr)) == 1 and "Traceback" not in stderr, stderr
