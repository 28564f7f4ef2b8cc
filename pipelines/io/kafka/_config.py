"""The Kafka source's configuration and its consumer's settings (docs/DESIGN.md 5).

Secrets: `consumer_config` may hold SASL passwords and keys; only its keys are
ever logged.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from pipelines.io.kafka._health import DEFAULT_BROKER_TIMEOUT_SECONDS, BrokerWatch
from schemas.kafka_values import KAFKA_INPUTS, PAYLOAD_TIME_FIELD, SCHEMA_OF_INPUT, VALUE_FORMATS

START_POSITIONS = ("committed", "earliest", "latest", "timestamp")
BOUNDED_MODES = (None, "end_offsets", "max_records", "until_time")

# Settings the source owns: overriding them would break offsets, EOF detection or at-least-once.
_RESERVED_KEYS = frozenset({
    "bootstrap.servers", "group.id", "enable.auto.commit", "enable.auto.offset.store", "enable.partition.eof",
})
# Defaults a user may override through consumer_config.
_DEFAULT_CONSUMER_SETTINGS = {
    "auto.offset.reset": "earliest",  # a seek position deleted by retention resumes at the log start
    "fetch.wait.max.ms": 100,  # a caught-up partition reports EOF quickly
}

# One consume() call of the discovery and the reader: at most this many messages, this long.
POLL_TIMEOUT_SECONDS = 0.2
POLL_BATCH = 500

# Chunk mode (ReadRawChunksFromKafka): a RawChunk is emitted once it holds this many records, or this
# long after its first record was read, and always before a read call ends (docs/DESIGN.md 5).
DEFAULT_CHUNK_MAX_RECORDS = 20_000
DEFAULT_CHUNK_MAX_MILLIS = 200
# The longest one read call of a partition runs before it returns with a residual (both modes). A runner
# finishes a bundle, and Flink passes a checkpoint barrier, only between calls: on the embedded Flink,
# 5 s calls held every result behind checkpoints that took 8-15 s (p50 21 s at 100 pairs/s); 500 ms
# brought p50 to 6 s (docs/DESIGN.md 9.5, 2026-12-04). A busy partition's call ends sooner, at
# max(10,000, chunk_max_records) records.
DEFAULT_READ_CALL_MILLIS = 500
# How a live read paces itself (docs/DESIGN.md 5, 9.5): after its first message a poll keeps collecting for
# up to `linger_millis`, and a partition read to its end, with records, is read again after `resume_millis`
# (an idle one after 500 ms). The defaults are reconciliation's pace of before 2026-12-05 (librdkafka's
# batch consume waited 200 ms): reading sooner and without lingering put the eight-shard embedded Flink
# behind at 100 pairs/s. The risk stream reads at once and comes back after 50 ms (pipelines/risk_stream.py).
DEFAULT_LINGER_MILLIS = 200
DEFAULT_RESUME_MILLIS = 500


@dataclass(frozen=True)
class KafkaReadConfig:
    """What to read and how; see the module docstring for the semantics of each mode."""

    bootstrap_servers: str
    topics: Tuple[str, ...]
    group_id: str
    input_name: str
    value_format: str = "json"
    start: str = "committed"
    start_timestamp_millis: Optional[int] = None
    bounded: Optional[str] = None
    max_records: Optional[int] = None
    stop_at_millis: Optional[int] = None
    idle_timeout_seconds: float = 10.0
    commit_offsets: bool = True
    # False: commit in bundle finalization (unbounded runs: after the runner's checkpoint). True: the
    # reader emits each partition's next offset instead, and CommitOffsetsWhenWritten commits them
    # once every output is written (bounded runs, where finalization comes before downstream writes).
    defer_commit: bool = False
    broker_timeout_seconds: float = DEFAULT_BROKER_TIMEOUT_SECONDS
    consumer_config: Mapping[str, str] = field(default_factory=dict)
    # Chunk mode only (ReadRawChunksFromKafka, ReadKafkaChunksCommitLater): the most records of one chunk,
    # and the longest its first record waits for the chunk to be emitted.
    chunk_max_records: int = DEFAULT_CHUNK_MAX_RECORDS
    chunk_max_millis: int = DEFAULT_CHUNK_MAX_MILLIS
    read_call_millis: int = DEFAULT_READ_CALL_MILLIS
    resume_millis: int = DEFAULT_RESUME_MILLIS
    linger_millis: int = DEFAULT_LINGER_MILLIS

    def validate(self) -> None:
        """Raises ValueError naming the first bad setting or combination."""
        if not self.bootstrap_servers:
            raise ValueError("bootstrap_servers is required")
        if isinstance(self.topics, str) or not self.topics or not all(
                isinstance(topic, str) and topic for topic in self.topics):
            raise ValueError(f"topics must be a non-empty tuple of topic names, got {self.topics!r}")
        if not self.group_id:
            raise ValueError("group_id is required (committed offsets are read from and written to it)")
        if self.input_name not in KAFKA_INPUTS:
            raise ValueError(f"input_name must be one of {', '.join(KAFKA_INPUTS)}, got {self.input_name!r}")
        if self.value_format not in VALUE_FORMATS:
            raise ValueError(f"unknown value_format {self.value_format!r}; choose one of {', '.join(VALUE_FORMATS)}")
        if self.start not in START_POSITIONS:
            raise ValueError(f"unknown start {self.start!r}; choose one of {', '.join(START_POSITIONS)}")
        if self.start == "timestamp":
            if not isinstance(self.start_timestamp_millis, int) or isinstance(self.start_timestamp_millis, bool):
                raise ValueError('start="timestamp" needs start_timestamp_millis (epoch milliseconds)')
            if self.start_timestamp_millis < 0:
                raise ValueError("start_timestamp_millis must be >= 0")
        elif self.start_timestamp_millis is not None:
            raise ValueError('start_timestamp_millis is only used with start="timestamp"')
        if self.bounded not in BOUNDED_MODES:
            raise ValueError(f"unknown bounded mode {self.bounded!r}; choose one of "
                             f"{', '.join(str(mode) for mode in BOUNDED_MODES)}")
        if self.bounded == "max_records":
            if not isinstance(self.max_records, int) or isinstance(self.max_records, bool) or self.max_records < 1:
                raise ValueError('bounded="max_records" needs max_records, a positive integer')
        elif self.max_records is not None:
            raise ValueError('max_records is only used with bounded="max_records"')
        if self.bounded == "until_time":
            if not isinstance(self.stop_at_millis, int) or isinstance(self.stop_at_millis, bool):
                raise ValueError('bounded="until_time" needs stop_at_millis (epoch milliseconds)')
        elif self.stop_at_millis is not None:
            raise ValueError('stop_at_millis is only used with bounded="until_time"')
        if not self.idle_timeout_seconds > 0:
            raise ValueError("idle_timeout_seconds must be > 0")
        if not self.broker_timeout_seconds > 0:
            raise ValueError("broker_timeout_seconds must be > 0")
        for name in ("chunk_max_records", "chunk_max_millis", "read_call_millis", "resume_millis"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.linger_millis, int) or isinstance(self.linger_millis, bool) or self.linger_millis < 0:
            raise ValueError(f"linger_millis must be a whole number of milliseconds (0 or more), got "
                             f"{self.linger_millis!r}")
        reserved = sorted(_RESERVED_KEYS.intersection(self.consumer_config))
        if reserved:
            raise ValueError(f"consumer_config may not set {', '.join(reserved)}: the source manages them")

    @property
    def schema_name(self) -> str:
        return SCHEMA_OF_INPUT[self.input_name]

    @property
    def time_field(self) -> str:
        return PAYLOAD_TIME_FIELD[self.input_name]


def consumer_settings(config: KafkaReadConfig, watch: Optional[BrokerWatch] = None) -> Dict[str, Any]:
    """The consumer's settings (secrets included: never log them); `watch` takes its logs and errors."""
    watch = watch or BrokerWatch(config.bootstrap_servers, config.broker_timeout_seconds)
    settings: Dict[str, Any] = dict(_DEFAULT_CONSUMER_SETTINGS)
    settings.update(config.consumer_config)
    settings.update({
        "bootstrap.servers": config.bootstrap_servers,
        "group.id": config.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        **watch.client_settings(),
    })
    return settings
