"""A real RabbitMQ broker for tests, demos and `paybeam rabbitmq broker`: Debian's `rabbitmq-server`.

    with RabbitMQBroker() as broker:
        broker.amqp_url     # "amqp://guest:guest@127.0.0.1:PORT/%2F"
        broker.stream_port  # the RabbitMQ Streams protocol port (the stream plugin is enabled)

Each broker is its own Erlang node: a unique node name, free loopback ports (AMQP, streams,
Erlang distribution and a private epmd), a temporary directory holding its configuration, data,
logs and Erlang cookie (HOME points there), removed on `stop()`. The VM is started the way
systemd starts it (`RUNNING_UNDER_SYSTEMD`: `exec erl -noinput`, no wrapper shell), so it is the
process this class starts, dies with its parent (SIGTERM: RabbitMQ's graceful stop) and can be
SIGKILLed by a test. `make engine-rabbitmq` installs the package (deploy/fetch/rabbitmq.sh).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional

from pipelines.brokers.apache_kafka import remove_orphaned_directories
from pipelines.brokers.local_broker import free_port
from pipelines.brokers.process_ties import dying_with_parent

SERVER_SCRIPT = "/usr/lib/rabbitmq/bin/rabbitmq-server"
EPMD = "epmd"
INSTALL_HINT = ("RabbitMQ is not installed: `make engine-rabbitmq` installs Debian's rabbitmq-server "
                "(as root: apt-get install rabbitmq-server)")
DIRECTORY_PREFIX = "paybeam-rabbitmq-"
_OWNER_FILE = "owner.pid"
# The default user may connect from anywhere (the test broker listens on loopback only); the rest is
# RabbitMQ's defaults except a smaller Erlang process limit and no disk-space alarm at 50 MB free
# (a CI machine's /tmp can be smaller than a production disk).
_CONFIG = """listeners.tcp.default = 127.0.0.1:{amqp_port}
stream.listeners.tcp.1 = 127.0.0.1:{stream_port}
stream.advertised_host = 127.0.0.1
stream.advertised_port = {stream_port}
loopback_users = none
disk_free_limit.absolute = 1MB
max_message_size = {max_message_size}
log.console = false
log.file.level = warning
"""
DEFAULT_MAX_MESSAGE_SIZE = 128 * 1024 * 1024  # RabbitMQ 3.10's default


def server_script() -> str:
    """The `rabbitmq-server` script, or RuntimeError saying how to install it."""
    if not os.access(SERVER_SCRIPT, os.X_OK):
        raise RuntimeError(INSTALL_HINT)
    return SERVER_SCRIPT


class RabbitMQBroker:
    """`with RabbitMQBroker() as broker: broker.amqp_url` — a single-node RabbitMQ for the block."""

    def __init__(self, port: Optional[int] = None, stream_port: Optional[int] = None,
                 startup_timeout: float = 60.0, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
                 log_path: Optional[str] = None):
        self.port = port or free_port()
        self.stream_port = stream_port or free_port()
        self.distribution_port = free_port()
        self.epmd_port = free_port()
        self.node_name = f"paybeam-{uuid.uuid4().hex[:12]}@localhost"
        self.amqp_url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"
        self.max_message_size = max_message_size
        self._startup_timeout = startup_timeout
        self._given_log_path = log_path
        self._directory: Optional[Path] = None
        self._process: Optional[subprocess.Popen] = None

    @property
    def pid(self) -> Optional[int]:
        return self._process.pid if self._process else None

    def environment(self) -> Dict[str, str]:
        directory = self._directory
        return {
            **{key: value for key, value in os.environ.items() if not key.startswith(("RABBITMQ_", "ERL_"))},
            "HOME": str(directory),  # the Erlang cookie is written here
            "RUNNING_UNDER_SYSTEMD": "true",  # exec the VM: no wrapper shell between us and it
            "RABBITMQ_NODENAME": self.node_name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.distribution_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(directory / "data"),
            "RABBITMQ_LOG_BASE": str(directory / "log"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(directory / "plugins"),
            "RABBITMQ_PID_FILE": str(directory / "broker.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "+P 65536",
        }

    def command(self) -> List[str]:
        return [server_script()]

    def start(self) -> "RabbitMQBroker":
        script = server_script()  # before any directory: a missing package fails with the hint only
        remove_orphaned_directories(DIRECTORY_PREFIX, _OWNER_FILE)
        self._directory = Path(tempfile.mkdtemp(prefix=DIRECTORY_PREFIX))
        (self._directory / _OWNER_FILE).write_text(str(os.getpid()))
        (self._directory / "rabbitmq.conf").write_text(_CONFIG.format(
            amqp_port=self.port, stream_port=self.stream_port, max_message_size=self.max_message_size))
        (self._directory / "enabled_plugins").write_text("[rabbitmq_stream].\n")
        log_path = self._given_log_path or str(self._directory / "broker.log")
        try:
            with open(log_path, "ab") as log:
                self._process = subprocess.Popen(dying_with_parent([script]), stdout=log, stderr=subprocess.STDOUT,
                                                 stdin=subprocess.DEVNULL, env=self.environment(),
                                                 cwd=str(self._directory))
            self._wait_until_ready(log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self, log_path: str) -> None:
        """Ready once the AMQP listener takes a connection that opens a channel and the stream port accepts."""
        import pika

        deadline = time.monotonic() + self._startup_timeout
        last_error: Optional[Exception] = None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"RabbitMQ exited with code {self._process.returncode} during start-up"
                                   f"{_tail(log_path)}")
            try:
                with socket.create_connection(("127.0.0.1", self.stream_port), timeout=1.0):
                    pass
                connection = pika.BlockingConnection(pika.URLParameters(
                    self.amqp_url + "?connection_attempts=1&socket_timeout=2&blocked_connection_timeout=5"))
                connection.channel()
                connection.close()
                return
            except Exception as error:  # noqa: BLE001 — refused until the listeners are up
                last_error = error
                time.sleep(0.2)
        raise RuntimeError(f"RabbitMQ on 127.0.0.1:{self.port} not ready after {self._startup_timeout:g}s: "
                           f"{last_error}{_tail(log_path)}")

    def kill(self) -> None:
        """SIGKILL, as a crash would: no graceful stop (the directory stays until `stop()`)."""
        if self._process and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()  # RabbitMQ's graceful stop
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._stop_epmd()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    def _stop_epmd(self) -> None:
        """The node's private epmd (started by the VM as a daemon) goes with it."""
        if shutil.which(EPMD):
            subprocess.run([EPMD, "-port", str(self.epmd_port), "-kill"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=10, check=False)

    def __enter__(self) -> "RabbitMQBroker":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, "rb") as log:
            text = log.read().decode("utf-8", "replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n" + "\n".join(text) if text else ""
