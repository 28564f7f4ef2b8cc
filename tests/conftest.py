"""Session fixtures: a real Kafka-protocol broker process for the Kafka tests, a real RabbitMQ for the
RabbitMQ tests (`rabbitmq_broker`).

`--kafka-broker=tansu` (default) runs the Kafka tests against Tansu (`LocalBroker`, in-memory, starts
in well under a second); `--kafka-broker=apache` runs the same tests against Apache Kafka in KRaft
mode (`ApacheKafkaBroker`, jars from `make engine-kafka`). `apache_kafka` is always Apache Kafka, for
the few tests that check Kafka's own behaviour in every run (tests/test_apache_kafka.py).
"""
from __future__ import annotations

from typing import Type

import pytest

from pipelines.brokers.local_broker import LocalBroker

KAFKA_BROKERS = ("tansu", "apache")


def pytest_addoption(parser):
    parser.addoption("--kafka-broker", choices=KAFKA_BROKERS, default="tansu",
                     help="the broker the Kafka tests run against: tansu (default, in-memory) or apache "
                          "(Apache Kafka in KRaft mode; `make engine-kafka` fetches it)")


def _broker_class(kind: str) -> Type[LocalBroker]:
    if kind == "apache":
        from pipelines.brokers.apache_kafka import ApacheKafkaBroker

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
def prism(tmp_path_factory):
    """Beam's Prism runner (the binary `make engine-prism` built), one process per test session
    (and per xdist worker); pipelines reach it with --runner=PrismRunner --job_endpoint=prism.endpoint."""
    from tests.prism_helpers import PrismProcess

    process = PrismProcess(tmp_path_factory.mktemp("prism") / "prism.log").start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(params=["DirectRunner", "PrismRunner"])
def stream_options(request):
    """Streaming PipelineOptions for TestStream tests, once on the bundle-based DirectRunner and
    once on the shared Prism: the same assertions must hold on both."""
    from tests.beam_helpers import streaming_options
    from tests.prism_helpers import prism_streaming_options

    if request.param == "DirectRunner":
        return streaming_options()
    return prism_streaming_options(request.getfixturevalue("prism").endpoint)


@pytest.fixture(scope="session")
def apache_kafka(tmp_path_factory):
    """Apache Kafka (KRaft, one JVM) on free loopback ports, one per test session (and per xdist worker)."""
    from pipelines.brokers.apache_kafka import ApacheKafkaBroker

    log_path = tmp_path_factory.mktemp("apache-kafka") / "broker.log"
    with ApacheKafkaBroker(log_path=str(log_path)) as broker:
        yield broker


@pytest.fixture(scope="session")
def rabbitmq_broker(tmp_path_factory):
    """RabbitMQ (Debian's rabbitmq-server, `make engine-rabbitmq`) on free loopback ports with the stream
    plugin, one per test session (and per xdist worker)."""
    from pipelines.brokers.rabbitmq import RabbitMQBroker

    log_path = tmp_path_factory.mktemp("rabbitmq") / "broker.log"
    with RabbitMQBroker(log_path=str(log_path)) as broker:
        yield broker


@pytest.fixture(scope="session")
def flink_engine():
    """The Flink job server and Flink jars of deploy/fetch/flink.sh (`make engine-flink`), fetched on
    first use so a fresh machine needs no manual step (a no-op once the cache is complete)."""
    import subprocess
    from pathlib import Path

    from runners.engine_cache import EngineNotFetched
    from tests.flink_helpers import flink_engine_dir

    try:
        return flink_engine_dir()
    except EngineNotFetched:
        script = Path(__file__).resolve().parents[1] / "deploy" / "fetch" / "flink.sh"
        subprocess.run(["bash", str(script)], check=True, stdout=subprocess.DEVNULL)
        return flink_engine_dir()
