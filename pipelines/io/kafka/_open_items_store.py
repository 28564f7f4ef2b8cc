"""The open-items store on Kafka: read at launch, written before the commit, pruned after it.

See `pipelines/io/open_items.py` for what is stored and why this order keeps every key whole.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Mapping, Optional, Tuple

import apache_beam as beam

from pipelines.io.kafka._clients import new_admin, new_consumer, new_producer
from pipelines.io.kafka._health import BrokerWatch
from pipelines.io.kafka._topics import EndNotReached, ReadError, create_topics, read_to_end
from pipelines.io.open_items import latest_items
from schemas.internal_records import OpenItem

_LOG = logging.getLogger(__name__)


def default_store_topic(group_id: str) -> str:
    return f"{group_id}.open-items"


def ensure_store_topic(bootstrap_servers: str, topic: str, client_config: Mapping[str, str], timeout: float) -> None:
    """Creates the compacted store topic if it does not exist (keys are what matters, not history)."""
    create_topics(bootstrap_servers, [topic], partitions=1, config={"cleanup.policy": "compact"},
                  admin_config=client_config, timeout=timeout)


def read_store(bootstrap_servers: str, topic: str, consumer_config: Mapping[str, str],
               timeout: float) -> Dict[str, OpenItem]:
    """Every open item in the store (latest entry per key); raises BrokerUnavailable on an outage."""
    watch = BrokerWatch(bootstrap_servers, timeout)
    try:
        ensure_store_topic(bootstrap_servers, topic, consumer_config, timeout)
        return _read_entries(bootstrap_servers, topic, consumer_config, timeout, watch)
    except Exception:
        watch.on_error_seen()
        watch.check(lambda probe_timeout: _probe(bootstrap_servers, consumer_config, probe_timeout))
        raise  # the brokers answer: the failure is the store's own


def _probe(bootstrap_servers: str, client_config: Mapping[str, str], timeout: float) -> None:
    new_admin({**dict(client_config), "bootstrap.servers": bootstrap_servers, "log_level": 0}).list_topics(
        timeout=timeout)


def _read_entries(bootstrap_servers: str, topic: str, consumer_config: Mapping[str, str], timeout: float,
                  watch: BrokerWatch) -> Dict[str, OpenItem]:
    """The store's latest entry per key; `timeout` bounds each wait for the broker (BrokerUnavailable)."""
    consumer = new_consumer({**dict(consumer_config), "bootstrap.servers": bootstrap_servers,
                             "group.id": f"{topic}.reader", "enable.auto.commit": False,
                             "enable.partition.eof": True, **watch.client_settings()})
    try:
        messages: List[Tuple[Optional[bytes], Optional[bytes]]] = []
        # Just ensured: metadata still without partitions reads as an empty store rather than failing the run.
        for message in read_to_end(consumer, topic, timeout, idle_timeout=True, partitionless_is_empty=True):
            messages.append((message.key, message.value))
        return latest_items(messages)
    except EndNotReached:
        raise watch.unavailable() from None
    except ReadError as failure:
        raise RuntimeError(f"cannot read the open-items topic {topic}: {failure.error.str()}") from None
    finally:
        consumer.close()


class _DeleteDecidedFn(beam.DoFn):
    """After the commit: a tombstone per decided key. A failure only leaves `closed` entries behind."""

    def __init__(self, write_config):
        self._config = write_config

    def process(self, unused_committed, decided: List[str]):
        if not decided:
            return
        config = self._config
        watch = BrokerWatch(config.bootstrap_servers, config.broker_timeout_seconds or 60.0)
        producer = new_producer({**config.client_config(), **watch.client_settings()})
        failures: List[str] = []
        for key in decided:
            producer.produce(config.topic, key=key.encode(), value=None,
                             on_delivery=lambda error, _m: failures.append(str(error)) if error else None)
        remaining = producer.flush(config.flush_seconds)
        if remaining or failures:
            _LOG.warning("open items: %d of %d decided keys not deleted from %s (they are judged again next run)",
                         remaining + len(failures), len(decided), config.topic)


class DeleteDecidedAfterCommit(beam.PTransform):
    """(committed offsets, decided keys) -> deletes the decided keys' entries once the commit has happened."""

    def __init__(self, write_config):
        super().__init__()
        self._config = write_config

    def expand(self, inputs):
        committed, decided = inputs
        done = committed | "CommitDone" >> beam.combiners.Count.Globally()
        return done | "Tombstones" >> beam.ParDo(_DeleteDecidedFn(self._config), beam.pvalue.AsList(decided))
