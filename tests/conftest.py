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
