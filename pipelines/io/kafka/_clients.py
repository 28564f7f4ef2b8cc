"""The one place paybeam builds confluent-kafka clients (consumers, producers, admin clients).

Callers pass complete settings and keep their own: construction is here so every client of
the project comes from one seam (settings every client needs, tracing, a fake in tests).
Secrets: settings may hold SASL passwords and keys; only keys are ever logged.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

from pipelines.io.kafka._config import KafkaReadConfig, consumer_settings
from pipelines.io.kafka._health import BrokerWatch

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient

_LOGGER = logging.getLogger(__name__)


def new_consumer(settings: Mapping[str, Any]) -> "Consumer":
    from confluent_kafka import Consumer

    return Consumer(dict(settings))


def poll_batch(consumer: "Consumer", max_messages: int, timeout_seconds: float, linger_seconds: float = 0.0) -> list:
    """Up to `max_messages` messages (and events): waits up to `timeout_seconds` for the first, then up to
    `linger_seconds` for the rest (0: only what the client has already fetched). `consume(n, timeout)`
    waits out its whole timeout unless n messages come (librdkafka's batch semantics): 200 ms of every
    read call at a trickle (2026-12-05)."""
    first = consumer.poll(timeout_seconds)
    if first is None:
        return []
    if max_messages <= 1:
        return [first]
    return [first, *consumer.consume(num_messages=max_messages - 1, timeout=linger_seconds)]


def new_producer(settings: Mapping[str, Any]) -> "Producer":
    from confluent_kafka import Producer

    return Producer(dict(settings))


def new_admin(settings: Mapping[str, Any]) -> "AdminClient":
    from confluent_kafka.admin import AdminClient

    return AdminClient(dict(settings))


def source_consumer(config: KafkaReadConfig, role: str, watch: Optional[BrokerWatch] = None,
                    **callbacks: Callable) -> "Consumer":
    """A consumer with the source's settings for `config` (`role` names it in the log: discovery, reader…)."""
    _LOGGER.info("Kafka %s consumer for %s (group %s); consumer_config keys: %s", role,
                 ",".join(config.topics), config.group_id, sorted(config.consumer_config) or "none")
    return new_consumer({**consumer_settings(config, watch), **callbacks})
