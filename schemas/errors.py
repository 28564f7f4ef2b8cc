"""paybeam's error model: every failure a command reports is a `PaybeamError`, one line, one exit code.

The base lives on the lowest floor because every floor raises it: runners (a wrong option), IO (an
input that does not exist, an output that cannot take a run), pipelines (a wrong argument). Only the
command runner (pipelines/command.py) catches them, prints `error: <message>` and exits with the
error's code; nobody else converts one error into another to get the exit code right.
"""
from __future__ import annotations


class PaybeamError(Exception):
    """A failure reported as one line (`str(error)`) and `exit_code`."""

    exit_code = 1


class UserError(PaybeamError, ValueError):
    """What the user gave cannot work: an option, an input, an output location (exit 2)."""

    exit_code = 2


class RunFailed(PaybeamError, RuntimeError):
    """The run failed for a reason outside the user's input: a broker down, a store refused (exit 1)."""

    exit_code = 1


def one_line(error: BaseException) -> str:
    """An exception as one short line: Beam wraps a DoFn's exception in a long message whose last line names
    the error and the step."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    line = lines[-1] if lines else ""
    line = f"{type(error).__name__}: {line}" if line else type(error).__name__
    return line if len(line) <= 300 else line[:297] + "..."
