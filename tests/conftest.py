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


def pytest_configure(config):
    # Slow tests of the fetched engines (Prism, …): `pytest -m engines`; `make test` runs them too
    # unless deselected with -m "not engines".
    config.addinivalue_line("markers", "engines: slow tests that run a fetched engine (make engines first)")


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
