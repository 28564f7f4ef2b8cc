"""The partition reader's shared clients (pipelines/io/kafka/_reader_clients.py), against the real broker.

A runner may run every bundle of the reading stage in a new DoFn instance (the embedded Flink does until
a checkpoint finalizes them), and a consumer re-assigned at each read call starts with nothing fetched:
the clients are per process and settings, one consumer per partition kept assigned between calls.
"""
from __future__ import annotations

from apache_beam.io.restriction_trackers import OffsetRange

from pipelines.io.kafka import UNBOUNDED_STOP, ReadPartitionFn
from pipelines.io.kafka._reader_clients import acquire_reader_clients, release_reader_clients
from schemas.internal_records import PartitionDescriptor
from tests.kafka_helpers import ManualClock
from tests.test_kafka_source import config_for, drive_call, new_topic, payments, produce_payments


def _poll_offsets(lease, count: int, attempts: int = 50):
    """The offsets of the next `count` messages the leased consumer gives (the lease notes them)."""
    offsets = []
    for _ in range(attempts):
        for message in lease.consumer.consume(count - len(offsets), timeout=0.2):
            if message.error() is None:
                offsets.append(message.offset())
            lease.polled([message])
        if len(offsets) >= count:
            break
    return offsets


def test_a_partition_consumer_continues_where_the_last_call_left_it_and_is_assigned_again_elsewhere(kafka_broker):
    topic = new_topic(kafka_broker, partitions=1)
    produce_payments(kafka_broker, topic, payments("lease", 10), partitions=(0,))
    clients = acquire_reader_clients(config_for(kafka_broker, topic, bounded=None), ManualClock(now=1.8e9))
    try:
        first = clients.lease((topic, 0), 0)
        assert not first.continuing  # a new consumer: assigned at 0
        assert _poll_offsets(first, 4) == [0, 1, 2, 3] and first.next_offset == 4
        clients.give_back(first)

        again = clients.lease((topic, 0), 4)
        assert again.continuing and again.consumer is first.consumer  # kept assigned: offset 4 comes next
        assert _poll_offsets(again, 2) == [4, 5]
        clients.give_back(again)

        retried = clients.lease((topic, 0), 1)  # a retried bundle starts earlier: assigned there
        assert not retried.continuing and retried.consumer is first.consumer
        assert _poll_offsets(retried, 3) == [1, 2, 3]
        clients.give_back(retried, failed=True)  # a failed call's consumer is closed

        fresh = clients.lease((topic, 0), 4)
        assert not fresh.continuing and fresh.consumer is not first.consumer
        assert _poll_offsets(fresh, 6) == [4, 5, 6, 7, 8, 9]
        clients.give_back(fresh)
    finally:
        release_reader_clients(clients)


def test_overlapping_leases_of_one_partition_keep_one_consumer(kafka_broker):
    topic = new_topic(kafka_broker, partitions=1)
    produce_payments(kafka_broker, topic, payments("twice", 3), partitions=(0,))
    clients = acquire_reader_clients(config_for(kafka_broker, topic, bounded=None), ManualClock(now=1.8e9))
    try:
        one, two = clients.lease((topic, 0), 0), clients.lease((topic, 0), 0)  # a split, a retry
        assert one.consumer is not two.consumer
        assert _poll_offsets(one, 3) == [0, 1, 2] and _poll_offsets(two, 3) == [0, 1, 2]
        clients.give_back(one)
        clients.give_back(two)
        assert clients.lease((topic, 0), 3).consumer is two.consumer  # the later one kept, the other closed
        assert clients.lease((topic, 0), 3).consumer not in (one.consumer, two.consumer)  # none idle: a new one
    finally:
        release_reader_clients(clients)


def test_reader_instances_of_one_process_share_clients_until_the_last_is_torn_down(kafka_broker):
    """Every bundle in a new instance (as on the embedded Flink): each call continues on the consumer the
    previous instance's call left, every offset read once and in order; teardown of the last closes it."""
    topic = new_topic(kafka_broker, partitions=1)
    produce_payments(kafka_broker, topic, payments("shared", 30), partitions=(0,))
    config = config_for(kafka_broker, topic, bounded=None, idle_timeout_seconds=3_600.0, read_call_millis=600_000,
                        chunk_max_records=7)
    clock = ManualClock(now=1_800_000_000.0)
    descriptor = PartitionDescriptor(topic, 0, 0, UNBOUNDED_STOP)
    instances = [ReadPartitionFn(config, clock) for _ in range(3)]
    for fn in instances:
        fn.setup()
    shared = instances[0]._clients
    assert all(fn._clients is shared for fn in instances)
    offsets, start = [], 0
    try:
        for call in range(12):
            fn = instances[call % len(instances)]
            outputs, tracker, _, _ = drive_call(fn, descriptor, OffsetRange(start, UNBOUNDED_STOP))
            offsets += [int(output.value.source.rsplit("@", 1)[1]) for output in outputs]
            start = tracker.current_restriction().stop if tracker.deferred_status() is None \
                else tracker.deferred_status()[0].start
            if len(offsets) >= 30:
                break
        assert offsets == list(range(30))
        consumers = {entry[0] for idle in shared._idle.values() for entry in idle}
        assert len(consumers) == 1  # one partition, one consumer, whichever instance read it
    finally:
        for fn in instances[:-1]:
            fn.teardown()
        assert shared.control is not None  # one instance still uses them
        instances[-1].teardown()
    assert shared.control is None and not shared._idle  # the last one closed them
    again = ReadPartitionFn(config, clock)
    again.setup()
    try:
        assert again._clients is not shared  # new clients after the old were closed
    finally:
        again.teardown()
