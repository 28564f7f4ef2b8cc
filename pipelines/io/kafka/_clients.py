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
