"""A reconcile run is published whole or not at all: staged aside, run.json and _SUCCESS last, on any filesystem.

Kills and interrupts use the explicit synchronisation point of
pipelines/io/run_output.py (a FIFO named by PAYBEAM_PUBLISH_BARRIER): the
test acts when every output is staged and nothing is published yet.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import signal
import subprocess
import sys

import pytest

from pipelines.cli import main
from pipelines.io.atomic_publish import PUBLISH_BARRIER_ENV
from pipelines.io.run_output import SUCCESS
from pipelines.reconcile_batch import ENGINES
from tests.cli_helpers import cli_with_file_size_limit, daily_totals, reconcile, results, run_summary

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    base = tmp_path_factory.mktemp("run-output")
    assert main(["generate", "--payments", "1500", "--out", str(base / "data"), "--quiet"]) == 0
    return str(base / "data" / "payments" / "*"), str(base / "data" / "settlements" / "*")


def _snapshot(root: str) -> dict:
    """Every file under root (hidden ones too) -> sha256."""
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, root)] = hashlib.sha256(handle.read()).hexdigest()
    return found


def _siblings(output: str) -> list:
    parent, name = os.path.split(output)
    return sorted(entry for entry in os.listdir(parent) if entry != name)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_rerun_replaces_the_previous_run_completely(sample, tmp_path, engine):
    payments, settlements = sample
    output = str(tmp_path / "out")
    assert reconcile(payments, settlements, output, "--engine", engine, "--csv", "--shards", "3") == 0
    assert os.path.isdir(os.path.join(output, "csv"))
    assert reconcile(payments, settlements, output, "--engine", engine, "--shards", "1") == 0
    summary = run_summary(output)
    assert sorted(os.listdir(output)) == [SUCCESS, "daily_totals", "dead_letters", "results", "run.json"]
    assert len(os.listdir(os.path.join(output, "results"))) == 1 or engine != "columnar"
    assert summary["results_rows"] == len(results(output))
    assert summary["daily_totals_rows"] == len(daily_totals(output))
    assert _siblings(output) == []  # no staging directory left behind


# `paybeam reconcile` and its Beam-style entry point end the same way (pipelines/command.py).
ENTRY_POINTS = {"paybeam": ["pipelines.cli", "reconcile"], "python -m": ["pipelines.reconcile_batch"]}


def _start_held_run(sample, output: str, fifo: str, *extra: str, entry: str = "paybeam") -> subprocess.Popen:
    payments, settlements = sample
    env = {**os.environ, PUBLISH_BARRIER_ENV: fifo}
    return subprocess.Popen([sys.executable, "-m", *ENTRY_POINTS[entry], "--payments", payments,
                             "--settlements", settlements, "--output", output, *extra],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_until_staged(fifo: str) -> None:
    with open(fifo, encoding="utf-8") as handle:  # blocks until the run has staged everything
        assert handle.read() == "staged\n"


@pytest.mark.parametrize("how, code, entry", [("SIGKILL", -signal.SIGKILL, "paybeam"), ("SIGINT", 130, "paybeam"),
                                              ("SIGTERM", 143, "paybeam"), ("SIGINT", 130, "python -m"),
                                              ("SIGTERM", 143, "python -m")])
def test_a_run_stopped_before_publishing_leaves_the_previous_run(sample, tmp_path, how, code, entry):
    payments, settlements = sample
    output = str(tmp_path / "out")
    assert reconcile(payments, settlements, output, "--csv") == 0
    before = _snapshot(output)
    fifo = str(tmp_path / "barrier")
    os.mkfifo(fifo)
    run = _start_held_run(sample, output, fifo, "--shards", "4", entry=entry)
    _wait_until_staged(fifo)
    run.send_signal(getattr(signal, how))
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == code
    assert _snapshot(output) == before
    if how != "SIGKILL":
        assert stderr.count("error:") == 1 and "Traceback" not in stderr and "nothing was published" in stderr
        assert _siblings(output) == ["barrier"]  # its staged outputs removed
    else:
        assert any(".paybeam-tmp-" in entry for entry in _siblings(output))
        # The next run removes what the killed one staged and publishes normally.
        assert reconcile(payments, settlements, output) == 0
        assert _siblings(output) == ["barrier"]
        assert run_summary(output)["results_rows"] == len(results(output))


# tgkill(2), which Python does not wrap: a signal to one thread of another process.
_TGKILL = {"x86_64": 234, "aarch64": 131}


def _signal_a_thread_other_than_the_main_one(pid: int, number: int) -> None:
    threads = sorted(int(tid) for tid in os.listdir(f"/proc/{pid}/task") if int(tid) != pid)
    assert threads, "the held run has no thread but its main one"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_TGKILL[os.uname().machine], pid, threads[0], number) != 0:
        raise OSError(ctypes.get_errno(), "tgkill")


def test_a_stop_signal_that_another_thread_receives_still_stops_a_held_run(sample, tmp_path):
    """The kernel may hand a process's signal to any of its threads; Python runs the handler in the main
    thread, which must not stay blocked in the barrier (it did: a SIGINT run hung, 2026-12-05)."""
    output = str(tmp_path / "out")
    fifo = str(tmp_path / "barrier")
    os.mkfifo(fifo)
    run = _start_held_run(sample, output, fifo)
    _wait_until_staged(fifo)
    _signal_a_thread_other_than_the_main_one(run.pid, signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 130
    assert stderr.count("error:") == 1 and "nothing was published" in stderr and "Traceback" not in stderr
    assert not os.path.exists(output)


def test_a_released_run_publishes(sample, tmp_path):
    output = str(tmp_path / "out")
    fifo = str(tmp_path / "barrier")
    os.mkfifo(fifo)
    run = _start_held_run(sample, output, fifo)
    _wait_until_staged(fifo)
    assert not os.path.exists(output)  # staged, not yet visible
    with open(fifo, "w", encoding="utf-8"):
        pass
    assert run.wait(timeout=120) == 0
    assert os.path.isfile(os.path.join(output, SUCCESS)) and os.path.isfile(os.path.join(output, "run.json"))


def test_a_full_disk_fails_the_run_in_one_line_and_keeps_the_previous_run(sample, tmp_path):
    """RLIMIT_FSIZE makes every write past 64 KiB fail (EFBIG) as a full disk would (ENOSPC)."""
    payments, settlements = sample
    output = str(tmp_path / "out")
    assert reconcile(payments, settlements, output) == 0
    before = _snapshot(output)

    run = subprocess.run(cli_with_file_size_limit(64 << 10, [
                             "reconcile", "--payments", payments, "--settlements", settlements,
                             "--output", output, "--engine", "columnar"]),
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("paybeam reconcile: error: the run failed:")
    assert "Traceback" not in run.stderr
    assert "File too large" in run.stderr
    assert _snapshot(output) == before and _siblings(output) == []


def test_a_directory_holding_other_files_is_not_replaced(sample, tmp_path, capsys):
    payments, settlements = sample
    output = tmp_path / "mine"
    output.mkdir()
    (output / "notes.txt").write_text("keep me", encoding="utf-8")
    assert reconcile(payments, settlements, str(output)) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "notes.txt" in error
    assert sorted(os.listdir(output)) == ["notes.txt"]


@pytest.mark.parametrize("where", ["under-a-file", "unwritable"])
def test_an_output_that_cannot_be_created_is_one_line(sample, tmp_path, capsys, where):
    payments, settlements = sample
    if where == "under-a-file":
        (tmp_path / "plain").write_text("x", encoding="utf-8")
        output = str(tmp_path / "plain" / "out")
    else:
        output = "/proc/paybeam-out/run"  # no process, root included, may create anything under /proc
    assert reconcile(payments, settlements, output) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--output" in error and "Traceback" not in error
