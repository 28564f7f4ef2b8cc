"""`paybeam kafka broker` never leaves its broker behind: stopped on SIGTERM and SIGINT, dead with its parent."""
from __future__ import annotations

import ctypes
import os
import platform
import signal
import socket
import subprocess
import sys

import pytest

from pipelines.brokers.local_broker import free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _children(pid: int) -> list:
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as handle:
        return [int(child) for child in handle.read().split()]


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


_TGKILL = {"x86_64": 234, "aarch64": 131}  # syscall numbers: Python has no tgkill


def _signal_one_thread(pid: int, tid: int, signum: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_TGKILL[platform.machine()], pid, tid, signum) != 0:
        raise OSError(ctypes.get_errno(), f"tgkill({pid}, {tid}, {signum})")


def _threads_accepting(pid: int, signum: int) -> list:
    """The process's threads other than the main one that do not block the signal."""
    accepting = []
    for tid in map(int, os.listdir(f"/proc/{pid}/task")):
        with open(f"/proc/{pid}/task/{tid}/status", encoding="ascii") as status:
            blocked = next(int(line.split()[1], 16) for line in status if line.startswith("SigBlk:"))
        if tid != pid and not blocked & (1 << (signum - 1)):
            accepting.append(tid)
    return accepting


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("target", ["process", "another thread"])
def test_the_broker_stops_with_the_command(stop, target, kafka_broker_kind):
    port = free_port()
    command = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "kafka", "broker", "--port", str(port),
                                "--kind", kafka_broker_kind],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert "broker" in command.stdout.readline()  # printed once the broker answers
        (broker,) = _children(command.pid)
        assert _listening(port)
        if target == "process":
            command.send_signal(stop)
        else:
            # The kernel gives a process's signal to any thread not blocking it, and the broker's client
            # libraries run such a thread: once it took the signal before the main thread waited (exit 130).
            other_threads = _threads_accepting(command.pid, stop)
            assert other_threads, "no thread but the main one accepts the signal: this no longer tests the race"
            _signal_one_thread(command.pid, other_threads[0], stop)
        assert command.wait(timeout=60) == 0
        assert not os.path.exists(f"/proc/{broker}")  # the command waited for its broker to exit
        assert not _listening(port)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
