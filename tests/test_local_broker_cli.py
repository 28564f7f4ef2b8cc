"""`paybeam kafka broker` never leaves its broker behind: stopped on SIGTERM and SIGINT, dead with its parent."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from pipelines.io.local_broker import free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _children(pid: int) -> list:
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as handle:
        return [int(child) for child in handle.read().split()]


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_the_broker_stops_with_the_command(stop, kafka_broker_kind):
    port = free_port()
    command = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "kafka", "broker", "--port", str(port),
                                "--kind", kafka_broker_kind],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert "broker" in command.stdout.readline()  # printed once the broker answers
        (broker,) = _children(command.pid)
        assert _listening(port)
        command.send_signal(stop)
        assert command.wait(timeout=60) == 0
        assert not os.path.exists(f"/proc/{broker}")  # the command waited for its broker to exit
        assert not _listening(port)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
