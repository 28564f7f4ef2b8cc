"""Session fixtures: a real Kafka-protocol broker process for the Kafka tests.

`--kafka-broker=tansu` (default) runs the Kafka tests against Tansu (`LocalBroker`, in-memory, starts
in well under a second); `--kafka-broker=apache` runs the same tests against Apache Kafka in KRaft
mode (`ApacheKafkaBroker`, jars from `make engine-kafka`). `apache_kafka` is always Apache Kafka, for
the few tests that check Kafka's own behaviour in every run (tests/test_apache_kafka.py).
"""
from __future__ import annotations

from typing import Type

import pytest

from pipelines.io.local_broker import LocalBroker

KAFKA_BROKERS = ("tansu", "apache")


def pytest_addoption(parser):
    parser.addoption("--kafka-broker", choices=KAFKA_BROKERS, default="tansu",
                     help="the broker the Kafka tests run against: tansu (default, in-memory) or apache "
                          "(Apache Kafka in KRaft mode; `make engine-kafka` fetches it)")


def _broker_class(kind: str) -> Type[LocalBroker]:
    if kind == "apache":
        from pipelines.io.apache_kafka import ApacheKafkaBroker

        return ApacheKafkaBroker
    return LocalBroker


@pytest.fixture(scope="session")
def kafka_broker_kind(request) -> str:
    return request.config.getoption("--kafka-broker")


@pytest.fixture(scope="session")
def kafka_broker_class(kafka_broker_kind) -> Type[LocalBroker]:
    """The class of the chosen broker, for tests that start (and kill) private brokers."""
    return _broker_class(kafka_broker_kind)


@pytest.fixture(scope="session")
def kafka_broker(request, kafka_broker_kind, tmp_path_factory):
    """The chosen broker on a free loopback port, one per test session (and per xdist worker)."""
    if kafka_broker_kind == "apache":
        yield request.getfixturevalue("apache_kafka")  # one JVM serves both fixtures
        return
    log_path = tmp_path_factory.mktemp("broker") / "broker.log"
    with LocalBroker(log_path=str(log_path)) as broker:
        yield broker


@pytest.fixture(scope="session")
def apache_kafka(tmp_path_factory):
    """Apache Kafka (KRaft, one JVM) on free loopback ports, one per test session (and per xdist worker)."""
    from pipelines.io.apache_kafka import ApacheKafkaBroker

    log_path = tmp_path_factory.mktemp("apache-kafka") / "broker.log"
    with ApacheKafkaBroker(log_path=str(log_path)) as broker:
        yield broker
