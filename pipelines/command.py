"""The one place a paybeam command's failures become an `error:` line and an exit status.

`paybeam` (pipelines/cli.py) and the Beam-style entry points (`python -m pipelines.reconcile_batch`,
`pipelines.reconcile_stream`, `pipelines.backfill`) all run their command through `run_command`, so
each ends the same way: a `PaybeamError` prints its one line and exits with its code (2 for what the
user gave, 1 for a failed run), Ctrl-C exits 130 and SIGTERM 143 after the same cleanup, any other
exception is a failed run (1); never a traceback unless PAYBEAM_DEBUG=1.
"""
from __future__ import annotations

import argparse
import atexit
import os
import signal
import sys
import threading
import traceback
from typing import Callable, NoReturn, Optional, Sequence

from pipelines.run_errors import quiet_step_tracebacks
from schemas.errors import PaybeamError, one_line

Handler = Callable[[argparse.Namespace, Sequence[str]], int]

# What an interrupted command leaves: reconcile publishes whole runs only (pipelines/io/run_output.py).
_UNPUBLISHED = {"reconcile": "; nothing was published"}


class Interrupted(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be so the same cleanup runs (staged outputs removed)."""


def run_command(prog: str, command: str, handler: Handler, args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Runs `handler(args, extra)` and returns its exit status; every failure is one `<prog>: error:` line."""
    if not os.environ.get("PAYBEAM_DEBUG"):
        quiet_step_tracebacks()
    previous_sigterm = signal.signal(signal.SIGTERM, _interrupt) if _in_main_thread() else None
    try:
        return handler(args, extra)
    except PaybeamError as error:
        _error_line(f"{prog}: error: {error}")
        return error.exit_code
    except Interrupted as interrupted:
        _error_line(f"{prog}: error: stopped by {interrupted}{_UNPUBLISHED.get(command, '')}")
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        _error_line(f"{prog}: error: interrupted{_UNPUBLISHED.get(command, '')}")
        return 130
    except Exception as error:  # noqa: BLE001 — environment failures (disk full, ...) inside a run
        if os.environ.get("PAYBEAM_DEBUG"):
            traceback.print_exc()
        _error_line(f"{prog}: error: the run failed: {one_line(error)}")
        return 1
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)


def run_module(prog: str, description: str, add_arguments: Callable[[argparse.ArgumentParser], None],
               command: str, handler: Handler, argv: Optional[Sequence[str]] = None) -> int:
    """A Beam-style entry point (`python -m pipelines.<module>`): its own parser, then `paybeam COMMAND`'s
    handler through run_command; unrecognised --flags go to Beam, as with `paybeam`."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(parser)
    args, beam_args = parser.parse_known_args(argv)
    return run_command(prog, command, handler, args, beam_args)


def run_entry_point(main: Callable[[], int]) -> NoReturn:
    """An entry point's `main` (the `paybeam` console script, `python -m pipelines.…`), then
    `exit_process` with its status; argparse's own exits (--help, --version, a usage error it has
    printed) end the same way, with the status the interpreter would give them."""
    try:
        status = main()
    except SystemExit as exit_request:
        status = _exit_status(exit_request.code)
    exit_process(status)


def _exit_status(code) -> int:
    """What the interpreter exits with for `sys.exit(code)`."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")
    return 1


def exit_process(status: int) -> NoReturn:
    """Ends a `paybeam` process with `status` once its command has returned.

    Exit handlers run and stdout/stderr are flushed as in a normal exit, but the interpreter's own
    teardown is skipped: unloading Apache Beam's module graph (Google Cloud clients, IPython, gRPC
    among them) took 0.6-0.8 s of every command on the 2-core machine, measured with a process that
    only imports it. The normal exit while a non-daemon thread still runs (it waits for it) and under a
    profiler or tracer (cProfile, coverage: they write their results as the interpreter exits)."""
    if sys.getprofile() is not None or sys.gettrace() is not None or any(
            thread.is_alive() and not thread.daemon for thread in threading.enumerate()
            if thread is not threading.main_thread()):
        sys.exit(status)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(status)


def _error_line(line: str) -> None:
    # One write, newline included: print() writes the text and its end separately, and a worker
    # thread's output could land between them (a CI run, 2026-12-03).
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _interrupt(signum, frame) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
