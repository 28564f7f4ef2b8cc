"""The open-items store of bounded runs from queues: snapshots in a durable queue (docs/DESIGN.md 5.2).

Kafka keeps the store in a compacted topic (latest entry per key). A queue has no compaction, so each
bounded run writes a whole snapshot: an entry for every key still open after the run (the run's own
keys and the carried ones: `TrackOpenItems` gives every key an entry), each tagged with the run's
snapshot id, and, once every output and every entry is confirmed, one marker naming the snapshot and
its entry count. The marker is the commit point:

* the launcher holds every message of the store at start (`HeldBacklog.hold_store`) and carries the
  entries of the latest marked snapshot (by the marker's start time); a snapshot without its marker (a
  run that failed while writing it) is ignored, and one with fewer entries than its marker says is
  refused (StoreCorrupt: nothing is guessed);
* after the run succeeded the launcher acks what it held (the older snapshots, their markers, partial
  ones) together with the run's input messages; if it fails before that, the next run finds the newer
  marker and the same input messages again, which the carried records already hold (deduplicated).
"""
from __future__ import annotations

import json
from typing import Dict, Iterable, Optional

import apache_beam as beam

from pipelines.io.open_items import decode_item, encode_item
from pipelines.io.rabbitmq._config import RabbitWriteConfig
from pipelines.io.rabbitmq._publisher import ConfirmingPublisher
from schemas.internal_records import OpenItem
from schemas.kafka_values import EncodedMessage

_SNAPSHOT = "snapshot"
_MARKER = "marker"


class StoreCorrupt(RuntimeError):
    """The store's latest marked snapshot lacks entries its marker counts."""


def default_store_queue(group: str) -> str:
    return f"{group}.open-items"


def snapshot_entry(item: OpenItem, snapshot: str) -> EncodedMessage:
    """An open item as a store message of snapshot `snapshot`, keyed by its reconciliation key."""
    return EncodedMessage(item.key.encode("utf-8"),
                          json.dumps({_SNAPSHOT: snapshot, **json.loads(encode_item(item))},
                                     separators=(",", ":")).encode())


def marker_message(snapshot: str, entries: int, started_millis: int) -> bytes:
    return json.dumps({_SNAPSHOT: snapshot, _MARKER: {"entries": entries, "started": started_millis}},
                      separators=(",", ":")).encode()


def latest_snapshot(bodies: Iterable[bytes]) -> Dict[str, OpenItem]:
    """The open items of the latest marked snapshot among the store's messages (empty without a marker)."""
    decoded = []
    for body in bodies:
        try:
            fields = json.loads(body)
        except ValueError:
            continue  # not paybeam's: left alone (acked with the rest once a run succeeds)
        if isinstance(fields, dict) and isinstance(fields.get(_SNAPSHOT), str):
            decoded.append(fields)
    markers = [fields for fields in decoded if isinstance(fields.get(_MARKER), dict)]
    if not markers:
        return {}
    latest = max(markers, key=lambda marker: (marker[_MARKER]["started"], marker[_SNAPSHOT]))
    snapshot = latest[_SNAPSHOT]
    items: Dict[str, OpenItem] = {}
    for fields in decoded:
        if fields[_SNAPSHOT] == snapshot and _MARKER not in fields:
            item = decode_item(json.dumps(fields).encode())
            items[item.key] = item
    if len(items) != latest[_MARKER]["entries"]:
        raise StoreCorrupt(f"the open-items snapshot {snapshot} has {len(items)} of the {latest[_MARKER]['entries']} "
                           "entries its marker counts; nothing was read or acked")
    return items


class _PublishMarker(beam.DoFn):
    def __init__(self, config: RabbitWriteConfig, snapshot: str, started_millis: int):
        super().__init__()
        self._config = config
        self._snapshot = snapshot
        self._started = started_millis

    def process(self, unused_all_written, entries: Optional[int]):
        publisher = ConfirmingPublisher(self._config.endpoint, self._config.broker_timeout_seconds).open()
        try:
            publisher.declare_output(self._config.exchange, self._config.routing_key, self._config.queue)
            publisher.publish(self._config.exchange, self._config.routing_key,
                              marker_message(self._snapshot, entries or 0, self._started), "json")
            publisher.wait_confirmed()
        finally:
            publisher.close()
        yield entries or 0


class WriteSnapshotMarker(beam.PTransform):
    """(all written: one element once every output and entry is confirmed, entry count) -> the marker published."""

    def __init__(self, config: RabbitWriteConfig, snapshot: str, started_millis: int):
        super().__init__()
        self._config = config
        self._snapshot = snapshot
        self._started = started_millis

    def expand(self, inputs):
        all_written, entries = inputs
        return all_written | "Publish" >> beam.ParDo(
            _PublishMarker(self._config, self._snapshot, self._started),
            beam.pvalue.AsSingleton(entries, default_value=0))
