"""A real Apache Kafka broker for tests: one JVM, KRaft mode, broker and controller in one process.

    with ApacheKafkaBroker() as broker:
        broker.bootstrap_servers  # "127.0.0.1:PORT"

The jars are `org.apache.kafka:kafka_2.13` and its runtime dependencies from Maven Central,
fetched by `make engine-kafka` (deploy/fetch/kafka.sh) into the engine cache; the version is
KAFKA_VERSION in deploy/versions.env. Each broker gets a temporary directory (configuration,
log4j2 settings, data), free loopback ports for its client and controller listeners, a
storage formatted for a standalone controller quorum (StorageTool, as `kafka-storage.sh format
--standalone` does), and a small heap. Same interface as `LocalBroker` (the Tansu test broker),
whose process handling it shares: it dies with its parent, is ready once it answers metadata
with itself as a broker, and stops (and its directory is removed) on `stop()` / leaving the
`with` block. docs/DESIGN.md 5 and 7 say which Tansu deviations it is used to check.
"""
from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Dict, List, Optional

from pipelines.brokers.local_broker import LocalBroker, free_port
from pipelines.brokers.process_ties import dying_with_parent
from runners.engine_cache import fetched, pinned_versions

FETCH_TARGET = "engine-kafka"
# A test broker holds little: 512 MiB is plenty, and two of them (one per xdist worker) leave
# the machine's other JVMs room. SerialGC: no GC threads competing for the two cores. C1 only
# (TieredStopAtLevel=1): measured 0.5-1 s faster to start (about 3.5 s instead of 4.5 s, format
# included), and a test broker's load never pays for C2's compile time.
JVM_OPTIONS = ("-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true")
FORMAT_TIMEOUT_SECONDS = 120.0
_DIRECTORY_PREFIX = "paybeam-kafka-"
_OWNER_FILE = "owner.pid"  # the Python process that started the broker (which dies with it)

# Single-node settings (replication factors 1) and fewer threads and buffers than a production
# broker's defaults; everything else is Apache Kafka's default, so the tests see Kafka as shipped.
_SERVER_SETTINGS = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "num.partitions": "1",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "3",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "3",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    # The group coordinator's default 3 s wait for more members of a new group: nothing to wait for here.
    "group.initial.rebalance.delay.ms": "0",
    "num.network.threads": "2",
    "num.io.threads": "2",
    "num.recovery.threads.per.data.dir": "1",
    "background.threads": "2",
    "log.cleaner.threads": "1",
    "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
}

_LOG4J2 = """status = error
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = out
logger.start.name = kafka.server.KafkaRaftServer
logger.start.level = INFO
"""


def kafka_classpath(version: Optional[str] = None) -> str:
    """`<cache>/kafka-<version>/*`: the broker's jars, or EngineNotFetched naming `make engine-kafka`."""
    version = version or pinned_versions()["KAFKA_VERSION"]
    return str(fetched(f"kafka-{version}", FETCH_TARGET) / "*")


def java_binary() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return os.path.join(home, "bin", "java")
    found = shutil.which("java")
    if not found:
        raise RuntimeError("Apache Kafka needs Java (17 or later) on PATH or in JAVA_HOME")
    return found


def random_cluster_id() -> str:
    """A cluster id as Kafka's `Uuid.randomUuid()` writes it (URL-safe base64, never starting with '-')."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not text.startswith("-"):
            return text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_orphaned_directories(prefix: str = _DIRECTORY_PREFIX, owner_file: str = _OWNER_FILE) -> None:
    """Deletes broker directories whose owner died without `stop()` (SIGKILL): its broker died with it."""
    for directory in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        try:
            owner = int((directory / owner_file).read_text())
        except (OSError, ValueError):
            continue  # being created, or not ours
        if not _alive(owner):
            shutil.rmtree(directory, ignore_errors=True)


class ApacheKafkaBroker(LocalBroker):
    """`with ApacheKafkaBroker() as broker: broker.bootstrap_servers` — a single-node KRaft Kafka for the block."""

    def __init__(self, port: Optional[int] = None, startup_timeout: float = 120.0, log_path: Optional[str] = None,
                 advertised_port: Optional[int] = None, version: Optional[str] = None,
                 settings: Optional[Dict[str, str]] = None):
        super().__init__(port=port, startup_timeout=startup_timeout, log_path=log_path,
                         advertised_port=advertised_port)
        self.version = version or pinned_versions()["KAFKA_VERSION"]
        self.classpath = kafka_classpath(self.version)  # fails here, before any process, when not fetched
        self.controller_port = free_port()
        self._settings = {**_SERVER_SETTINGS, **(settings or {})}
        self._directory: Optional[Path] = None
        self._given_log_path = log_path

    def server_properties(self) -> Dict[str, str]:
        return {
            **self._settings,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.advertised_port}",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "log.dirs": str(self._directory / "data"),
        }

    def _java(self, main_class: str, *arguments: str) -> List[str]:
        return [java_binary(), *JVM_OPTIONS, f"-Dlog4j2.configurationFile={self._directory / 'log4j2.properties'}",
                "-cp", self.classpath, main_class, *arguments]

    def command(self) -> List[str]:
        return self._java("kafka.Kafka", str(self._directory / "server.properties"))

    def environment(self) -> Dict[str, str]:
        # JAVA_TOOL_OPTIONS would reach the JVM (heap, agents) and make it print a line; the broker stays as set here.
        return {key: value for key, value in os.environ.items() if key != "JAVA_TOOL_OPTIONS"}

    def start(self) -> "ApacheKafkaBroker":
        remove_orphaned_directories()
        self._directory = Path(tempfile.mkdtemp(prefix=_DIRECTORY_PREFIX))
        (self._directory / _OWNER_FILE).write_text(str(os.getpid()))
        self._log_path = self._given_log_path or str(self._directory / "broker.log")
        try:
            self._write_configuration()
            self._format_storage()
            super().start()
        except BaseException:
            self.stop()
            raise
        return self

    def _write_configuration(self) -> None:
        properties = "".join(f"{key}={value}\n" for key, value in self.server_properties().items())
        (self._directory / "server.properties").write_text(properties)
        (self._directory / "log4j2.properties").write_text(_LOG4J2)

    def _format_storage(self) -> None:
        """`kafka-storage.sh format --standalone`: a new cluster whose only controller is this node."""
        with open(self._log_path, "ab") as log:
            formatted = subprocess.run(
                dying_with_parent(self._java("kafka.tools.StorageTool", "format", "--config",
                                             str(self._directory / "server.properties"),
                                             "--cluster-id", random_cluster_id(), "--standalone")),
                stdout=log, stderr=subprocess.STDOUT, env=self.environment(), timeout=FORMAT_TIMEOUT_SECONDS)
        if formatted.returncode != 0:
            raise RuntimeError(f"formatting the Kafka storage failed (exit {formatted.returncode}){self.log_tail()}")

    def stop(self) -> None:
        super().stop()
        if self._directory is not None:
            # The data goes with the broker (like Tansu's in-memory storage); a given log_path stays.
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None
            self._log_path = self._given_log_path
