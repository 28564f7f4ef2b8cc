"""paybeam's Kafka IO (docs/DESIGN.md 5). This module is its only public face: import from
`pipelines.io.kafka`, never from its `_`-prefixed modules.

Modules (all private):
* `_config`: KafkaReadConfig (what to read, how) and the source consumer's settings.
* `_health`: injectable clock, rate-limited client logs, error classes, the broker-outage watch.
* `_clients`: the one place confluent-kafka consumers, producers and admin clients are built.
* `_discovery`: partitions and their resolved start and stop offsets, at run time.
* `_restrictions`: the reader's offset ranges (checkpoint-only splitting) and watermark estimator.
* `_reader`: the partition-reading Splittable DoFn; messages to RawRecords, or RawChunks in chunk mode.
* `_commit`: committing read offsets, on finalization or once every output is written.
* `_source`: the composite read transforms (records, or RawChunks in chunk mode).
* `_sink`: the idempotent, never-silently-losing write transforms.
* `_java`: Beam's cross-language (Java) KafkaIO, read and write.
* `_open_items_store`: the bounded runs' open-items store on a compacted topic.
* `_topics`: creating topics, and reading one to its end.
"""
from pipelines.io.kafka._clients import new_admin, new_consumer, new_producer, poll_batch, source_consumer
from pipelines.io.kafka._commit import OFFSETS, AllWritten, CommitOffsetsWhenWritten
from pipelines.io.kafka._config import (
    BOUNDED_MODES,
    DEFAULT_CHUNK_MAX_MILLIS,
    DEFAULT_CHUNK_MAX_RECORDS,
    DEFAULT_LINGER_MILLIS,
    DEFAULT_READ_CALL_MILLIS,
    DEFAULT_RESUME_MILLIS,
    START_POSITIONS,
    KafkaReadConfig,
)
from pipelines.io.kafka._discovery import DiscoverPartitionsFn, allocate_max_records, discover_partitions, end_offsets
from pipelines.io.kafka._health import (
    DEFAULT_BROKER_TIMEOUT_SECONDS,
    SYSTEM_CLOCK,
    BrokerUnavailable,
    BrokerWatch,
    Clock,
    RateLimitedLog,
)
from pipelines.io.kafka._java import (
    EXPANSION_SERVICE_ENV,
    ReadJavaKafkaCommitLater,
    ReadRawRecordsWithJavaKafkaIO,
    WriteWithJavaKafkaIO,
)
from pipelines.io.kafka._open_items_store import DeleteDecidedAfterCommit, default_store_topic, read_store
from pipelines.io.kafka._reader import ReadPartitionFn
from pipelines.io.kafka._restrictions import (
    UNBOUNDED_STOP,
    WATERMARKS,
    CheckpointOnlyOffsetTracker,
    PartitionWatermarkEstimator,
)
from pipelines.io.kafka._sink import (
    KafkaDeliveryError,
    KafkaWriteConfig,
    WriteToKafka,
    WriteToKafkaWithDeadLetters,
    reconciliation_message_key,
)
from pipelines.io.kafka._source import (
    ReadKafkaChunksCommitLater,
    ReadKafkaCommitLater,
    ReadRawChunksFromKafka,
    ReadRawRecordsFromKafka,
)
from pipelines.io.kafka._topics import (
    EndNotReached,
    KafkaToolError,
    ReadError,
    TopicMessage,
    TopicNotFound,
    create_topics,
    read_to_end,
)

__all__ = [
    # Reading (pipelines/reconcile_stream.py, stream_bounded.py, stream_job.py)
    "BOUNDED_MODES",
    "START_POSITIONS",
    "KafkaReadConfig",
    "ReadRawRecordsFromKafka",
    "ReadKafkaCommitLater",
    # Chunk mode: RawChunks (Arrow tables) for the columnar engine
    "DEFAULT_CHUNK_MAX_MILLIS",
    "DEFAULT_CHUNK_MAX_RECORDS",
    "DEFAULT_LINGER_MILLIS",
    "DEFAULT_READ_CALL_MILLIS",
    "DEFAULT_RESUME_MILLIS",
    "ReadRawChunksFromKafka",
    "ReadKafkaChunksCommitLater",
    "OFFSETS",
    "UNBOUNDED_STOP",
    "WATERMARKS",  # the watermark estimator provider (a monotonic watermark with an idle clock), reused by RabbitMQ
    "allocate_max_records",
    "discover_partitions",
    # Committing after the outputs (stream_bounded.py)
    "AllWritten",
    "CommitOffsetsWhenWritten",
    # Writing
    "KafkaWriteConfig",
    "KafkaDeliveryError",
    "WriteToKafka",
    "WriteToKafkaWithDeadLetters",
    "reconciliation_message_key",
    # Java KafkaIO (--kafka-io=java)
    "EXPANSION_SERVICE_ENV",
    "ReadJavaKafkaCommitLater",
    "ReadRawRecordsWithJavaKafkaIO",
    "WriteWithJavaKafkaIO",
    # The open-items store of bounded runs
    "DeleteDecidedAfterCommit",
    "default_store_topic",
    "read_store",
    # Clients, their clock and broker outages
    "DEFAULT_BROKER_TIMEOUT_SECONDS",
    "SYSTEM_CLOCK",
    "BrokerUnavailable",
    "BrokerWatch",
    "Clock",
    "RateLimitedLog",  # tests/test_broker_outage.py checks the log limiter with a manual clock
    "new_admin",
    "new_consumer",
    "poll_batch",
    "new_producer",
    "source_consumer",
    # Topics (the `paybeam kafka` tools, tests, benchmarks)
    "KafkaToolError",
    "create_topics",
    "read_to_end",
    "TopicMessage",
    "TopicNotFound",
    "EndNotReached",
    "ReadError",
    # The source's parts, public so tests can drive them as a runner would (the bundle-based runner
    # cannot run the unbounded read loop, docs/DESIGN.md 7):
    "DiscoverPartitionsFn",  # tests put a step between discovery and reading
    "ReadPartitionFn",  # tests call process() directly with a tracker, estimator and finalizer
    "CheckpointOnlyOffsetTracker",  # the tracker those direct calls need
    "PartitionWatermarkEstimator",  # tests check it is monotonic and keeps its idle clock
    "end_offsets",  # tests/test_apache_kafka.py checks the EOF-fetch workaround on Apache Kafka
]
