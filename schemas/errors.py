"""paybeam's error model: every failure a command reports is a `PaybeamError`, one line, one exit code.

The base lives on the lowest floor because every floor raises it: runners (a wrong option), IO (an
input that does not exist, an output that cannot take a run), pipelines (a wrong argument). Only the
command runner (pipelines/command.py) catches them, prints `error: <message>` and exits with the
error's code; nobody else converts one error into another to get the exit code right.
"""
from __future__ import annotations

import re


class PaybeamError(Exception):
    """A failure reported as one line (`str(error)`) and `exit_code`."""

    exit_code = 1


class UserError(PaybeamError, ValueError):
    """What the user gave cannot work: an option, an input, an output location (exit 2)."""

    exit_code = 2


class RunFailed(PaybeamError, RuntimeError):
    """The run failed for a reason outside the user's input: a broker down, a store refused (exit 1)."""

    exit_code = 1


# A failed gRPC call's text (grpc.RpcError, e.g. Beam's Job API state stream past --job_server_timeout):
#   <_MultiThreadedRendezvous of RPC that terminated with:
#   	status = StatusCode.DEADLINE_EXCEEDED
#   	details = "Stream removed (Deadline Exceeded)"
#   	debug_error_string = "DEADLINE_EXCEEDED:Stream removed (Deadline Exceeded)"
#   >
# Its last line says nothing; its status and details are the cause.
_GRPC_ERROR = re.compile(r"of RPC that terminated with:\s*status = StatusCode\.(\w+)(?:\s*details = \"(.*)\")?")


def grpc_cause(text: str) -> str | None:
    """`gRPC <STATUS>: <details>` for a failed gRPC call's text, else None."""
    match = _GRPC_ERROR.search(text)
    if match is None:
        return None
    return f"gRPC {match.group(1)}: {match.group(2)}" if match.group(2) else f"gRPC {match.group(1)}"


def last_informative_line(text: str) -> str:
    """The line of an error's text that names it: a gRPC error's status and details, else the last line
    with a letter or digit in it (Beam's re-raised errors end with the original one; a line of
    punctuation such as gRPC's closing `>` says nothing)."""
    return grpc_cause(text) or _last_line_with_a_word(text)


def _last_line_with_a_word(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if any(char.isalnum() for char in line)]
    return lines[-1] if lines else ""


def one_line(error: BaseException) -> str:
    """An exception as one short line: Beam wraps a DoFn's exception in a long message whose last line names
    the error and the step; a gRPC error is named by its status and details."""
    text = str(error)
    line = grpc_cause(text)
    if line is None:
        last = _last_line_with_a_word(text)
        line = f"{type(error).__name__}: {last}" if last else type(error).__name__
    return line if len(line) <= 300 else line[:297] + "..."
