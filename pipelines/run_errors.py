"""A pipeline that fails because of its environment (a broker down, an output refused) ends in one line.

Beam re-raises a DoFn's exception from `pipeline.run()` with the whole worker traceback in
its text, and logs it (with the traceback) on the way. For a CLI user that is noise around
one fact: `schemas.errors.RunFailed` carries that fact as one line, and `quiet_beam_tracebacks` keeps
Beam's copies of the traceback off stderr while the run lasts (the error is reported once,
by the CLI, as `error: ...`).
"""
from __future__ import annotations

import contextlib
import logging
import threading
from typing import Iterator, Optional

from schemas.errors import last_informative_line

_LOGGER = logging.getLogger(__name__)


def _own_message(error: BaseException) -> str:
    # Beam's re-raised text ends with the original "Type: message [while running 'Step']" line; a gRPC
    # error's (a Job API stream cut) with a lone ">": its status and details are taken instead.
    last = last_informative_line(str(error))
    if not last:
        return type(error).__name__
    if last.startswith("gRPC DEADLINE_EXCEEDED"):
        return f"{last} (the job service's deadline, --job_server_timeout seconds)"
    return last.split(": ", 1)[1] if ": " in last and last.split(": ", 1)[0].replace(".", "").isidentifier() else last


def one_line_cause(error: BaseException) -> str:
    """The innermost meaningful message of an exception chain, on one line."""
    innermost: Optional[BaseException] = error
    seen = set()
    while innermost is not None and id(innermost) not in seen:
        seen.add(id(innermost))
        following = innermost.__cause__ or (None if innermost.__suppress_context__ else innermost.__context__)
        if following is None:
            break
        innermost = following
    return _own_message(innermost if innermost is not None else error)


class _DropTracebacks(logging.Filter):
    """Beam's records with a traceback, and Prism's job log lines that quote one (a failed bundle's, logged
    by Beam's "PrismRunner" logger once per retry and again when the job fails): the CLI says it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        beam = record.name.startswith("apache_beam")
        if record.exc_info and beam:
            return False
        # The SDK worker's "Error processing instruction … Original traceback is" and Prism's quoting
        # carry the traceback in the message text.
        return not ((beam or record.name == "PrismRunner")
                    and "Traceback (most recent call last)" in record.getMessage())


_DROP_TRACEBACKS = _DropTracebacks()


def quiet_step_tracebacks() -> None:
    """For the whole process: Beam logs a failing step's traceback before it re-raises the error,
    which the CLI then reports in one line (PAYBEAM_DEBUG=1 prints the traceback instead). The
    in-process SDK worker (LOOPBACK, Prism, the DirectRunner's portable mode) also logs and prints
    tracebacks when the job's gRPC channels close under it, after the run has already failed; those
    interleaved with the error line on stderr (CI, 2026-12-03), so they are kept off too."""
    for name in _BEAM_LOGGERS_WITH_TRACEBACKS:
        logger = logging.getLogger(name)
        if _DROP_TRACEBACKS not in logger.filters:
            logger.addFilter(_DROP_TRACEBACKS)
    if threading.excepthook is not _quiet_closed_channel:
        global _previous_excepthook
        _previous_excepthook = threading.excepthook
        threading.excepthook = _quiet_closed_channel


_BEAM_LOGGERS_WITH_TRACEBACKS = ("apache_beam.runners.common", "apache_beam.runners.worker.data_plane",
                                 "apache_beam.runners.worker.sdk_worker")
_previous_excepthook = threading.excepthook


def _quiet_closed_channel(hook_args) -> None:
    # grpc.RpcError is the worker's control or data stream ending with the job service; anything
    # else a thread raises is still printed by the hook that was there before.
    import grpc

    if isinstance(hook_args.exc_value, grpc.RpcError):
        _LOGGER.debug("thread %s ended: %s", getattr(hook_args.thread, "name", "?"),
                      one_line_cause(hook_args.exc_value))
        return
    _previous_excepthook(hook_args)


@contextlib.contextmanager
def quiet_beam_tracebacks() -> Iterator[None]:
    """While the block runs, Beam's log records that carry a traceback are not printed."""
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(_DROP_TRACEBACKS)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(_DROP_TRACEBACKS)


def wait_cancelling_on_interrupt(result) -> None:
    """wait_until_finish, but Ctrl-C / SIGTERM cancels the job first (then exits 130/143 as before).

    Beam's portable wait_until_finish stops its job server in a `finally` as soon as the wait is
    interrupted, which leaves the job running with nobody to cancel it; so the wait runs in a
    thread and the interrupt, delivered to the main thread, cancels the job through the
    still-running job server (and, on a Flink cluster, through its REST API:
    runners/flink_job_server.py) before the caller's cleanup runs: a batch run's staged outputs are
    removed only once no job can still write them. A stream's offsets are committed only when a
    checkpoint finalizes the bundles that read them, so what was read after the last commit is
    read again by the next run: nothing is lost. (In-process runners finish inside `run()`.)"""
    outcome: dict = {}

    def wait() -> None:
        try:
            result.wait_until_finish()
        except BaseException as error:  # noqa: BLE001 — handed to the main thread
            outcome["error"] = error

    waiter = threading.Thread(target=wait, name="paybeam-wait-until-finish", daemon=True)
    waiter.start()
    try:
        while waiter.is_alive():
            waiter.join(0.5)
    except KeyboardInterrupt:
        try:
            result.cancel()
        except Exception as error:  # noqa: BLE001 — the interrupt is what the caller must see
            _LOGGER.warning("could not cancel the job: %s", one_line_cause(error))
        waiter.join(60)
        raise
    if "error" in outcome:
        raise outcome["error"]
