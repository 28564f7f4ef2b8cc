"""paybeam's RabbitMQ IO (docs/DESIGN.md 5.2). This module is its only public face: import from
`pipelines.io.rabbitmq`, never from its `_`-prefixed modules.

Modules (all private):
* `_config`: the broker endpoint (URL, TLS; credentials never logged) and the read and write settings.
* `_consumer`: a queue's push consumer, one per queue and process, acking settled deliveries in order.
* `_source`: the queue-reading Splittable DoFn (RawChunks, or RawRecords), acks on bundle finalization.
* `_publisher`: publishing with pipelined publisher confirms.
* `_sink`: the write transform (persistent messages, every one confirmed, or the bundle fails).
* `_queues`: declaring queues, publishing a batch, reading a queue to its end (CLI tools, tests).
* `_held`: a bounded run's input: what the queues hold at launch, held unacked by the launcher until the
  run succeeded, spilled to a file the pipeline reads.
* `_store`: the bounded runs' open-items store: snapshots in a durable queue, each committed by a marker.
* `_streams`: RabbitMQ Streams for bounded runs: read from an offset to the end, the offset stored after.
* `_stream_source`: RabbitMQ Streams for unbounded runs: a Splittable DoFn over offsets, each stored on
  bundle finalization.
"""
from pipelines.io.rabbitmq._config import (
    DEFAULT_EXCHANGE,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_PREFETCH,
    AmqpEndpoint,
    RabbitReadConfig,
    RabbitWriteConfig,
)
from pipelines.io.rabbitmq._consumer import Delivery, QueueConsumer, Take, close_shared_consumers, shared_consumer
from pipelines.io.rabbitmq._held import HeldBacklog, HoldFailed, ReadHeldDeliveries, held_deliveries
from pipelines.io.rabbitmq._publisher import ConfirmingPublisher, PublishFailed
from pipelines.io.rabbitmq._queues import (
    QUEUE_TYPES,
    dead_lettered_queue,
    declare_outputs,
    declare_queue,
    existing_queues,
    publish_values,
    read_queue,
)
from pipelines.io.rabbitmq._sink import KEY_HEADER, WriteToRabbitMQ
from pipelines.io.rabbitmq._source import (
    ReadQueueFn,
    ReadRawChunksFromRabbitMQ,
    ReadRawRecordsFromRabbitMQ,
    broker_dead_lettered_counter,
    record_of_delivery,
)
from pipelines.io.rabbitmq._store import (
    StoreCorrupt,
    WriteSnapshotMarker,
    default_store_queue,
    latest_snapshot,
    snapshot_entry,
)
from pipelines.io.rabbitmq._stream_source import (
    FROM_START,
    ReadRawChunksFromRabbitMQStream,
    ReadStreamFn,
    StreamReadConfig,
    StreamTail,
    close_shared_tails,
    shared_tail,
    stream_read_config,
)
from pipelines.io.rabbitmq._streams import DEFAULT_STREAM_PORT, STREAM_STARTS, StreamStart, read_streams, store_offset

__all__ = [
    "DEFAULT_EXCHANGE", "DEFAULT_MAX_MESSAGE_BYTES", "DEFAULT_PREFETCH", "AmqpEndpoint", "RabbitReadConfig",
    "RabbitWriteConfig", "Delivery", "QueueConsumer", "Take", "close_shared_consumers", "shared_consumer",
    "ConfirmingPublisher", "PublishFailed", "QUEUE_TYPES", "dead_lettered_queue", "existing_queues",
    "declare_outputs", "declare_queue", "publish_values", "read_queue", "KEY_HEADER", "WriteToRabbitMQ",
    "ReadQueueFn", "ReadRawChunksFromRabbitMQ", "ReadRawRecordsFromRabbitMQ", "broker_dead_lettered_counter",
    "record_of_delivery", "HeldBacklog", "HoldFailed", "ReadHeldDeliveries", "held_deliveries", "StoreCorrupt",
    "WriteSnapshotMarker", "default_store_queue", "latest_snapshot", "snapshot_entry", "DEFAULT_STREAM_PORT",
    "STREAM_STARTS", "StreamStart", "read_streams", "store_offset", "FROM_START", "ReadRawChunksFromRabbitMQStream",
    "ReadStreamFn", "StreamReadConfig", "StreamTail", "close_shared_tails", "shared_tail", "stream_read_config",
]
