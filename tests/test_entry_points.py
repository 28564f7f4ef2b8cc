"""Every way to start a job ends the same way: `paybeam COMMAND` and the Beam-style `python -m
pipelines.<module>` entry points go through one command runner (pipelines/command.py), so a mistake
is one `error:` line with exit 2, a failed run one line with exit 1, never a traceback. (Ctrl-C and
SIGTERM through both entry points: tests/test_run_output.py.)"""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.stream_helpers import REPO

ENTRY_POINTS = {
    "reconcile": (["pipelines.cli", "reconcile"], ["pipelines.reconcile_batch"]),
    "stream": (["pipelines.cli", "stream"], ["pipelines.reconcile_stream"]),
    "backfill": (["pipelines.cli", "backfill"], ["pipelines.backfill"]),
}


def _run(module_and_command, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *module_and_command, *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


MISTAKES = {
    "reconcile": (["--payments", "no-such-dir/*.csv", "--settlements", "no-such-dir/*.csv", "--output", "{tmp}/out"],
                  "no-such-dir"),
    "stream": (["--bootstrap-servers", "127.0.0.1:9", "--payments-topic", "p", "--settlements-topic", "s", "--bounded",
                "max_records"], "--max-records"),
    "backfill": (["--from", "2026-01-02", "--to", "2026-01-01", "--payments", "a/{{date}}", "--settlements",
                  "b/{{date}}", "--output", "{tmp}/out"], "is after --to"),
}


@pytest.mark.parametrize("command", sorted(ENTRY_POINTS))
def test_a_mistake_is_one_line_and_exit_2_through_every_entry_point(command, tmp_path):
    argv, expected = MISTAKES[command]
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    lines = []
    for entry in ENTRY_POINTS[command]:
        done = _run(entry, *argv)
        assert done.returncode == 2, done.stderr
        line = _one_error_line(done.stderr)
        assert expected in line
        lines.append(line.split(": error: ", 1))
    (paybeam_prog, paybeam_message), (module_prog, module_message) = lines
    assert paybeam_prog == f"paybeam {command}" and module_prog == f"python -m {ENTRY_POINTS[command][1][0]}"
    assert paybeam_message == module_message


@pytest.mark.parametrize("entry", ENTRY_POINTS["stream"])
def test_a_failed_run_is_one_line_and_exit_1_through_every_entry_point(entry):
    """Nothing listens on port 9: the broker is unreachable, which fails the run (the environment), not
    the arguments."""
    done = _run(entry, "--bootstrap-servers", "127.0.0.1:9", "--payments-topic", "p", "--settlements-topic", "s",
                "--bounded", "end_offsets", "--broker-timeout", "2")
    assert done.returncode == 1, done.stderr
    assert "127.0.0.1:9" in _one_error_line(done.stderr)


def test_a_worker_thread_ending_with_its_closed_channel_prints_nothing_but_other_thread_errors_still_print():
    """The in-process SDK worker's threads raise grpc errors when the job service closes their streams,
    after the run has failed; their tracebacks once cut the error line in two on stderr (CI, 2026-12-03).
    Run in a child process so the hook is installed as the CLI installs it."""
    script = """
import threading, grpc
from pipelines.run_errors import quiet_step_tracebacks
quiet_step_tracebacks()
class Closed(grpc.RpcError):
    pass
def closed(): raise Closed("Stream removed (Socket closed)")
def broken(): raise ValueError("a real bug in a thread")
for target in (closed, broken):
    thread = threading.Thread(target=target, name=target.__name__)
    thread.start(); thread.join()
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "Stream removed" not in done.stderr and "in thread closed" not in done.stderr, done.stderr
    assert "Exception in thread broken" in done.stderr and "a real bug in a thread" in done.stderr, done.stderr


def test_the_error_line_is_written_whole_in_one_write(monkeypatch):
    from pipelines import command

    writes = []
    monkeypatch.setattr(sys, "stderr", type("Recorder", (), {"write": lambda self, text: writes.append(text),
                                                            "flush": lambda self: None})())

    def fails(args, extra):
        raise RuntimeError("boom")

    assert command.run_command("paybeam stream", "stream", fails, None, []) == 1
    assert writes == ["paybeam stream: error: the run failed: RuntimeError: boom\n"]
