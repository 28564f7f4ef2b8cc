"""paybeam's RabbitMQ IO against a real RabbitMQ (the session's `rabbitmq_broker`, docs/DESIGN.md 5.2).

Publisher confirms (every message confirmed, an unroutable one failing the wait), the sink in a Beam
pipeline, the shared push consumer's acks (in order, only of settled takes; a take never settled is
redelivered once its channel is recycled; deliveries given back are read again), a broker that does not
answer, and what a delivery becomes (poison included) before any broker is involved.
"""
from __future__ import annotations

import json
import uuid

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.brokers.local_broker import free_port
from pipelines.io.kafka import BrokerUnavailable
from pipelines.io.rabbitmq import (
    KEY_HEADER,
    AmqpEndpoint,
    ConfirmingPublisher,
    Delivery,
    PublishFailed,
    QueueConsumer,
    RabbitReadConfig,
    RabbitWriteConfig,
    Take,
    WriteToRabbitMQ,
    dead_lettered_queue,
    declare_queue,
    existing_queues,
    publish_values,
    read_queue,
    record_of_delivery,
)
from schemas.records import PAYMENTS, RawRecord
from tests.beam_helpers import payment
from tests.rabbitmq_helpers import eventually, ready_count, reject_some

MILLIS_2026 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _queue(prefix: str = "q") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def endpoint(rabbitmq_broker) -> AmqpEndpoint:
    return AmqpEndpoint(rabbitmq_broker.amqp_url)


def _config(endpoint: AmqpEndpoint, queue: str, **settings) -> RabbitReadConfig:
    return RabbitReadConfig(endpoint, queue, PAYMENTS, **settings)


# --- what a delivery becomes (no broker) -------------------------------------------------------------

def _delivery(body: bytes, content_type=None, timestamp=None, tag: int = 7) -> Delivery:
    return Delivery(tag, body, content_type, timestamp, False)


def test_a_json_delivery_is_a_record_at_its_payload_time():
    body = json.dumps({"event_time": "2026-01-01T00:00:01Z", "event_id": "e1"}).encode()
    record, millis = record_of_delivery(_delivery(body, "application/json; charset=utf-8"),
                                        _config(AmqpEndpoint("amqp://h/"), "payments"))
    assert record.fields["event_id"] == "e1" and record.decode_error is None
    assert record.source == "payments#7"
    assert millis == MILLIS_2026 + 1000


def test_without_a_payload_time_the_amqp_timestamp_then_the_read_time_is_the_event_time():
    config = _config(AmqpEndpoint("amqp://h/"), "payments")
    _, stamped = record_of_delivery(_delivery(b"{}", timestamp=1_767_225_700), config)
    assert stamped == 1_767_225_700_000

    class Clock:
        def time(self):
            return 1_767_225_800.5

    _, read_at = record_of_delivery(_delivery(b"{}", timestamp=10**15), config, Clock())
    assert read_at == 1_767_225_800_500  # an out-of-range timestamp is ignored, never a crash


@pytest.mark.parametrize("body, content_type, reason", [
    (b'{"event_id": "' + b"x" * 2_000 + b'"}', None, "over the 1,024-byte limit (--max-message-bytes)"),
    (b"<payment/>", "application/xml", "content type 'application/xml' is not application/json"),
    (b'{"event_id": "\xff\xfe"}', None, ""),
    (b"\x00\x01binary", "application/octet-stream", ""),
])
def test_poison_deliveries_are_records_with_a_decode_error_and_their_raw_payload(body, content_type, reason):
    record, _ = record_of_delivery(_delivery(body, content_type),
                                   _config(AmqpEndpoint("amqp://h/"), "payments", max_message_bytes=1024))
    assert isinstance(record, RawRecord) and record.fields is None
    assert record.decode_error and reason in record.decode_error
    assert record.raw_payload  # kept for the dead letter (cut at 64 Ki characters when longer)
    assert len(record.raw_payload) <= 64 * 1024 + 100


def test_endpoint_redacts_its_credentials_and_refuses_other_schemes():
    endpoint = AmqpEndpoint("amqps://paybeam:s3cret@rabbit.example:5671/payments")
    assert endpoint.redacted() == "amqps://***@rabbit.example:5671/payments"
    assert "s3cret" not in repr(endpoint.redacted())
    with pytest.raises(ValueError, match="amqp://"):
        AmqpEndpoint("http://user:s3cret@rabbit.example/")
    with pytest.raises(ValueError, match="go together"):
        AmqpEndpoint("amqp://h/", tls_cert_file="client.pem")


# --- publishing ----------------------------------------------------------------------------------------

def test_published_values_are_confirmed_persistent_and_read_back_in_order(endpoint):
    queue = _queue()
    declare_queue(endpoint, queue, "quorum")
    values = [json.dumps({"n": n}).encode() for n in range(3_000)]
    assert publish_values(endpoint, queue, values) == 3_000
    assert [message.body for message in read_queue(endpoint, queue, ack=False)] == values  # in order, left there
    messages = read_queue(endpoint, queue)
    assert sorted(message.body for message in messages) == sorted(values)  # requeued: in the broker's order
    assert {message.content_type for message in messages} == {"application/json"}
    assert read_queue(endpoint, queue, idle_seconds=0.2) == []  # acked: gone


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_a_declared_queue_dead_letters_expired_and_rejected_messages_into_its_dead_lettered_queue(endpoint,
                                                                                                   queue_type):
    import pika

    queue = _queue()
    declare_queue(endpoint, queue, queue_type)
    connection = pika.BlockingConnection(endpoint.parameters())
    try:  # a message that expires before anyone takes it (per-message TTL 0; expired at the queue's head)
        connection.channel().basic_publish("", queue, b'{"n": 2}', pika.BasicProperties(expiration="0"))
    finally:
        connection.close()
    publish_values(endpoint, queue, [b'{"n": 0}', b'{"n": 1}'])
    rejected = reject_some(endpoint, queue, 1)
    dead = dead_lettered_queue(queue)
    assert dead == f"{queue}.dead-lettered"
    eventually("both messages dead-lettered", lambda: ready_count(endpoint, dead) == 2, 20)
    messages = read_queue(endpoint, dead)
    assert sorted(message.body for message in messages) == sorted([*rejected, b'{"n": 2}'])
    reasons = {message.headers["x-first-death-reason"] for message in messages}
    assert reasons == {"expired", "rejected"}  # the broker says why
    assert [message.body for message in read_queue(endpoint, queue)] == [b'{"n": 1}']
    assert declare_queue(endpoint, queue, queue_type) == 0  # declaring again is a no-op
    assert existing_queues(endpoint, [queue, dead, _queue("missing")]) == [queue, dead]


def test_a_queue_declared_without_dead_lettering_is_kept_as_it_is(endpoint):
    import pika

    queue = _queue()
    connection = pika.BlockingConnection(endpoint.parameters())
    try:
        connection.channel().queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    finally:
        connection.close()
    publish_values(endpoint, queue, [b"{}"])
    assert declare_queue(endpoint, queue, "quorum") == 1
    with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="inequivalent arg 'x-queue-type'"):
        declare_queue(endpoint, queue, "classic")  # of another type: refused


def test_an_unroutable_message_fails_the_wait_for_confirms(endpoint):
    publisher = ConfirmingPublisher(endpoint, timeout_seconds=10).open()
    try:
        exchange = _queue("x")
        publisher.declare_output(exchange, "nowhere", queue=None)  # an exchange with no queue bound
        publisher.publish(exchange, "nowhere", b"{}", "json")
        with pytest.raises(PublishFailed, match="unroutable"):
            publisher.wait_confirmed()
    finally:
        publisher.close()


def test_the_sink_publishes_every_record_confirmed_with_its_key(endpoint):
    queue = _queue("results")
    records = [payment(f"e{n}", f"ref_{n}", 100 + n) for n in range(50)]
    config = RabbitWriteConfig(endpoint, routing_key=queue, exchange=_queue("x"), queue=queue,
                               schema_name="payment_event")
    with TestPipeline() as pipeline:
        counts = (pipeline | beam.Create(records)
                  | WriteToRabbitMQ(config, key_fn=lambda r: f"{r.processor}|{r.processor_reference}".encode())
                  | beam.CombineGlobally(sum))
        assert_that(counts, equal_to([50]))
    messages = read_queue(endpoint, queue)
    assert sorted(json.loads(message.body)["event_id"] for message in messages) == sorted(f"e{n}" for n in range(50))
    assert {message.headers[KEY_HEADER] for message in messages} == {f"stripe|ref_{n}" for n in range(50)}


def test_the_sink_publishes_a_table_s_messages_given_as_one_element_in_order_with_their_keys(endpoint):
    from schemas.kafka_values import EncodedMessage, EncodedMessages

    queue = _queue("batches")
    config = RabbitWriteConfig(endpoint, routing_key=queue, exchange=_queue("x"), queue=queue,
                               schema_name="risk_decision")
    batch = EncodedMessages([EncodedMessage(f"att_{n}".encode(), json.dumps({"n": n}).encode()) for n in range(20)])
    with TestPipeline() as pipeline:
        counts = pipeline | beam.Create([batch]) | WriteToRabbitMQ(config) | beam.CombineGlobally(sum)
        assert_that(counts, equal_to([20]))
    messages = read_queue(endpoint, queue)
    assert [json.loads(message.body)["n"] for message in messages] == list(range(20))
    assert [message.headers[KEY_HEADER] for message in messages] == [f"att_{n}" for n in range(20)]


def test_a_sink_whose_messages_cannot_be_routed_fails_the_run(endpoint):
    config = RabbitWriteConfig(endpoint, routing_key=_queue("missing"), exchange="", queue=None,
                               schema_name="payment_event")  # the default exchange, no such queue
    with pytest.raises(Exception, match="unroutable"):
        with TestPipeline() as pipeline:
            _ = pipeline | beam.Create([payment("e1", "ref_1", 100)]) | WriteToRabbitMQ(config)


# --- the shared push consumer ----------------------------------------------------------------------------

def _publish(endpoint: AmqpEndpoint, queue: str, count: int) -> None:
    declare_queue(endpoint, queue)
    publish_values(endpoint, queue, [json.dumps({"n": n}).encode() for n in range(count)])


def _take(consumer: QueueConsumer, count: int):
    assert consumer.wait_buffered(count, timeout_seconds=20), f"fewer than {count} deliveries came"
    generation, deliveries = consumer.take(count, wait_seconds=0)
    assert len(deliveries) == count, f"took {len(deliveries)} of {count}"
    return Take(generation, deliveries[0].tag, deliveries[-1].tag), deliveries


def _settled_through(consumer: QueueConsumer, expected_open: int) -> None:
    """Waits until the consumer has acked every settled take it can (the I/O thread's next slices)."""
    import time

    deadline = time.monotonic() + 10
    while consumer.pending_takes() != expected_open:
        assert time.monotonic() < deadline, f"{consumer.pending_takes()} takes open, expected {expected_open}"
        time.sleep(0.02)  # the I/O thread acks between 20 ms slices; there is no event to wait on


def test_acks_cover_only_a_settled_prefix_and_the_rest_is_redelivered(endpoint):
    queue = _queue()
    _publish(endpoint, queue, 10)
    consumer = QueueConsumer(_config(endpoint, queue, prefetch=100)).start()
    try:
        first, _ = _take(consumer, 4)
        second, _ = _take(consumer, 6)
        consumer.settle(second)  # the later take first: nothing may be acked while the first is open
        _settled_through(consumer, expected_open=2)
    finally:
        consumer.close()  # the channel goes: the broker requeues what it did not get an ack for
    again = QueueConsumer(_config(endpoint, queue, prefetch=100)).start()
    try:
        whole, deliveries = _take(again, 10)
        assert all(delivery.redelivered for delivery in deliveries)
        assert [json.loads(d.body)["n"] for d in deliveries] == list(range(10))
        again.give_back(whole.generation, deliveries[4:])  # a checkpointed read hands back what it did not read
        _, given_back = _take(again, 6)
        assert [d.tag for d in given_back] == [d.tag for d in deliveries[4:]]
        again.settle(whole._replace(last_tag=deliveries[3].tag))  # the first four only
        _settled_through(again, expected_open=1)
    finally:
        again.close()
    rest = read_queue(endpoint, queue)
    assert [json.loads(message.body)["n"] for message in rest] == list(range(4, 10))


def test_a_take_never_settled_comes_back_once_its_channel_is_recycled(endpoint):
    queue = _queue()
    _publish(endpoint, queue, 3)
    consumer = QueueConsumer(_config(endpoint, queue, stale_take_seconds=0.5)).start()
    try:
        _take(consumer, 3)  # a bundle that failed: never finalized
        _, again = _take(consumer, 3)  # blocks until the recycled channel gets them back
        assert all(delivery.redelivered for delivery in again)
        assert consumer.redelivered == 3
    finally:
        consumer.close()


def test_a_consumer_of_a_broker_that_does_not_answer_fails_after_the_broker_timeout():
    endpoint = AmqpEndpoint(f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F")
    consumer = QueueConsumer(_config(endpoint, "payments", broker_timeout_seconds=1.0)).start()
    try:
        with pytest.raises(BrokerUnavailable, match=r"did not answer for 1 s"):
            consumer.take(10, wait_seconds=30)
    finally:
        consumer.close()


# --- the source, called as a runner calls it ------------------------------------------------------------

class _Finalizer:
    def __init__(self):
        self.callbacks = []

    def register(self, callback):
        self.callbacks.append(callback)


def _call(fn, queue: str, restriction, state=None):
    """One process() call as the SDK harness makes it: outputs, residual, estimator state, finalizer."""
    from apache_beam.runners.sdf_utils import (
        RestrictionTrackerView,
        ThreadsafeRestrictionTracker,
        ThreadsafeWatermarkEstimator,
    )

    from pipelines.io.kafka import CheckpointOnlyOffsetTracker, PartitionWatermarkEstimator

    tracker = ThreadsafeRestrictionTracker(CheckpointOnlyOffsetTracker(restriction))
    estimator = PartitionWatermarkEstimator(state)
    finalizer = _Finalizer()
    outputs = list(fn.process(queue, finalizer, RestrictionTrackerView(tracker), ThreadsafeWatermarkEstimator(estimator)))
    deferred = tracker.deferred_status()
    return outputs, deferred and deferred[0], estimator, finalizer


@pytest.mark.parametrize("chunks", [True, False], ids=["chunks", "records"])
def test_the_source_emits_every_message_and_acks_only_once_finalized(endpoint, chunks):
    from apache_beam.io.restriction_trackers import OffsetRange

    from pipelines.io.kafka import UNBOUNDED_STOP
    from pipelines.io.rabbitmq import ReadQueueFn, close_shared_consumers, shared_consumer
    from schemas.raw_chunks import RawChunk

    queue = _queue()
    declare_queue(endpoint, queue)
    times = [MILLIS_2026 + n * 1000 for n in range(30)]
    publish_values(endpoint, queue, [json.dumps({"event_id": f"e{n}", "event_time": f"2026-01-01T00:00:{n:02d}Z"})
                                     .encode() for n in range(30)])
    fn = ReadQueueFn(_config(endpoint, queue), chunks=chunks)
    consumer = shared_consumer(_config(endpoint, queue))  # the one the source takes from
    try:
        assert consumer.wait_buffered(30, timeout_seconds=20)  # one call takes what is buffered
        outputs, residual, estimator, finalizer = _call(fn, queue, OffsetRange(0, UNBOUNDED_STOP))
        records = [record for output in outputs for record in (
            output.value.row_records or output.value.records if isinstance(output.value, RawChunk)
            else [output.value])]
        assert sorted(record.fields["event_id"] for record in records) == sorted(f"e{n}" for n in range(30))
        assert residual == OffsetRange(30, UNBOUNDED_STOP)  # the restriction counts the deliveries claimed
        assert estimator.current_watermark().micros // 1000 == times[0]  # the smallest time of the chunk
        assert len(finalizer.callbacks) == 1
        assert consumer.pending_takes() >= 1  # not acked before the runner finalizes the bundle
        finalizer.callbacks[0]()
        _settled_through(consumer, expected_open=0)
    finally:
        close_shared_consumers()
    assert read_queue(endpoint, queue, idle_seconds=0.3) == []  # every message was acked
