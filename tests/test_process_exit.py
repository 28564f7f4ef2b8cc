"""How a `paybeam` process ends (pipelines/command.py: exit_process): its status, its exit handlers
and its buffered output as in a normal exit, without the interpreter's teardown; the normal exit
while a non-daemon thread still runs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.stream_helpers import REPO

PAYBEAM = str(Path(sys.executable).parent / "paybeam")


def _python(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_exit_handlers_run_and_buffered_output_is_flushed():
    done = _python("import atexit, sys\n"
                   "from pipelines.command import exit_process\n"
                   "atexit.register(lambda: print('exit handler ran'))\n"
                   "sys.stdout.write('buffered line\\n')  # stdout is a pipe here: block-buffered\n"
                   "exit_process(3)\n")
    assert done.returncode == 3, done.stderr
    assert done.stdout == "buffered line\nexit handler ran\n"


def test_a_running_non_daemon_thread_is_waited_for():
    done = _python("import threading, time\n"
                   "from pipelines.command import exit_process\n"
                   "def work():\n"
                   "    time.sleep(0.5)\n"
                   "    print('thread finished', flush=True)\n"
                   "threading.Thread(target=work).start()\n"
                   "exit_process(4)\n")
    assert done.returncode == 4, done.stderr
    assert done.stdout == "thread finished\n"


def test_the_console_script_keeps_argparse_exit_statuses():
    version = subprocess.run([PAYBEAM, "--version"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("paybeam ")
    usage = subprocess.run([PAYBEAM, "reconcile"], capture_output=True, text=True, timeout=120)
    assert usage.returncode == 2 and "the following arguments are required" in usage.stderr
    failed = subprocess.run([PAYBEAM, "reconcile", "--payments", "/nonexistent/*", "--settlements", "/nonexistent/*",
                             "--output", "/tmp/unused"], capture_output=True, text=True, timeout=120)
    assert failed.returncode == 2 and failed.stderr.count("error:") == 1


def test_a_profiled_process_exits_normally_so_the_profile_is_written(tmp_path):
    profile = tmp_path / "paybeam.prof"
    done = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "pipelines.cli", "--version"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert profile.stat().st_size > 0
