"""Session fixtures: a real Kafka-protocol broker process for the Kafka tests."""
from __future__ import annotations

import pytest

from pipelines.io.local_broker import LocalBroker


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    """A Tansu broker on a free loopback port, one per test session (and per xdist worker)."""
    log_path = tmp_path_factory.mktemp("broker") / "broker.log"
    with LocalBroker(log_path=str(log_path)) as broker:
        yield broker
