"""Where a running stream's new rules come from (docs/DESIGN.md 10.11): a rules topic or a watched file.

Both hand `transforms.risk.rules_in_force` whole rules documents in the order
they arrived; what to do with them (accept or reject, remember by
fingerprint) is decided there. The specs are small picklable values a
pipeline gives its DoFns; `open()` runs in the worker.

- `RulesTopic`: every message of a one-partition topic, from its beginning
  (each worker process replays the same sequence from the same launch rules,
  so all accept the same rule sets), then each new one. A poll reads up to the
  end offset the broker reports at that moment: an update acknowledged before
  an attempt is produced is in force for that attempt when polls run per
  attempt (`--rules-poll-ms 0`).
- `WatchedRulesFile`: the file's content whenever its size, modification time
  or inode changed (replace it atomically: write a new file, rename it over).
"""
from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from typing import List, Optional, Tuple

from pipelines.io.kafka import new_consumer, poll_batch
from schemas.errors import UserError

RULES_TOPIC_TIMEOUT_SECONDS = 10.0


class RulesSourceError(UserError):
    """A rules source that cannot serve as one (a topic with several partitions, a missing file)."""


@dataclass(frozen=True)
class RulesTopic:
    bootstrap_servers: str
    topic: str
    consumer_config: Tuple[Tuple[str, str], ...] = ()
    timeout_seconds: float = RULES_TOPIC_TIMEOUT_SECONDS

    @property
    def name(self) -> str:
        return f"kafka:{self.bootstrap_servers}/{self.topic}"

    def open(self) -> "_RulesTopicReader":
        return _RulesTopicReader(self)


class _RulesTopicReader:
    def __init__(self, spec: RulesTopic):
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        self.name = spec.name
        self._spec = spec
        # Offsets are never committed: every process replays the topic from its beginning.
        self._consumer = new_consumer({**dict(spec.consumer_config), "bootstrap.servers": spec.bootstrap_servers,
                                       "group.id": f"paybeam-rules-{uuid.uuid4().hex}",
                                       "enable.auto.commit": False, "enable.partition.eof": False})
        partitions = check_rules_topic(self._consumer, spec.topic, spec.timeout_seconds)
        self._partition = TopicPartition(spec.topic, partitions[0], OFFSET_BEGINNING)
        self._consumer.assign([self._partition])
        self._next = 0

    def poll(self) -> List[Tuple[str, bytes]]:
        from confluent_kafka import KafkaException

        _, end = self._consumer.get_watermark_offsets(self._partition, timeout=self._spec.timeout_seconds,
                                                      cached=False)
        documents: List[Tuple[str, bytes]] = []
        deadline = time.monotonic() + self._spec.timeout_seconds
        while self._next < end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"rules topic {self._spec.topic!r}: offset {end} not reached within "
                                   f"{self._spec.timeout_seconds:g}s")
            for message in poll_batch(self._consumer, 100, 0.2):
                if message.error() is not None:
                    raise KafkaException(message.error())
                self._next = message.offset() + 1
                documents.append((f"{self._spec.topic}@{message.offset()}", message.value() or b""))
        return documents

    def close(self) -> None:
        self._consumer.close()


def check_rules_topic(consumer, topic: str, timeout_seconds: float) -> List[int]:
    """The rules topic's partitions; exactly one, since the order of updates is the order they apply."""
    metadata = consumer.list_topics(topic, timeout=timeout_seconds).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise RulesSourceError(f"rules topic {topic!r} does not exist; create it with one partition "
                               f"(paybeam kafka create-topics --partitions 1 {topic})")
    if len(metadata.partitions) != 1:
        raise RulesSourceError(f"rules topic {topic!r} has {len(metadata.partitions)} partitions; rules need "
                               "exactly one (updates apply in the order they were written)")
    return sorted(metadata.partitions)


@dataclass(frozen=True)
class WatchedRulesFile:
    path: str

    @property
    def name(self) -> str:
        return f"file:{os.path.abspath(self.path)}"

    def open(self) -> "_WatchedFileReader":
        return _WatchedFileReader(os.path.abspath(self.path))


@dataclass
class _WatchedFileReader:
    path: str
    _seen: Optional[Tuple[int, int, int]] = None
    _content: Optional[bytes] = None

    @property
    def name(self) -> str:
        return f"file:{self.path}"

    def poll(self) -> List[Tuple[str, bytes]]:
        stat = os.stat(self.path)  # a missing file raises: the rules in force stay (rules_in_force logs it)
        seen = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        if seen == self._seen:
            return []
        with open(self.path, "rb") as handle:
            content = handle.read()
        self._seen = seen
        if content == self._content:
            return []
        self._content = content
        return [(f"{self.path}@{stat.st_mtime_ns}", content)]

    def close(self) -> None:
        pass
