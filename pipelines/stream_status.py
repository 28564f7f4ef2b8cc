"""What a running unbounded `paybeam stream` is doing: its Beam metrics as one status line on stderr.

`status_line(snapshot)` is pure: the metrics of namespace "paybeam" (counters and gauges by name,
docs/DESIGN.md 5 and 9.5) as one line of counts, lag and watermark; no money, no keys, no
settings. `StatusReporter` is the launcher's thread (pipelines/reconcile_stream.py, unbounded runs
only): every `--status-interval` seconds it queries the running job's metrics and writes the line
to stderr, redrawn in place on a terminal, as a plain line at most every 30 s otherwise. A failed
query is one debug log line; the next interval tries again. What each runner answers while a job
runs: docs/DESIGN.md 6.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Callable, Dict, Mapping, Optional

from pipelines.run_errors import one_line_cause
from schemas.records import PAYMENTS, SETTLEMENTS
from transforms.columnar.live_flow import LIVE_PREFIX, METRICS_NAMESPACE

_LOGGER = logging.getLogger(__name__)

PREFIX = "paybeam stream:"
SEPARATOR = " · "
LOG_LINE_SECONDS = 30.0  # not on a terminal: a plain line at most this often, so a log stays readable
SHOWN_STATUSES = 3  # result rows by status: the largest few, then "…"
DEFAULT_INTERVAL_SECONDS = 5.0
_STOP_JOIN_SECONDS = 1.0  # the longest a stopping run waits for the reporter (a query may hang)
_CLEAR_TO_END = "\x1b[K"
_MAX_MILLIS = 253402300799999  # 9999-12-31T23:59:59.999Z: a gauge beyond it is no instant to show


@dataclass(frozen=True)
class MetricsSnapshot:
    """The "paybeam" metrics of a running job: counters and gauges by name (each name's value over
    every step that reports it: counters summed, the latest gauge)."""
    counters: Mapping[str, int] = field(default_factory=dict)
    gauges: Mapping[str, int] = field(default_factory=dict)


def _count(value: int) -> str:
    return f"{value:,}"


def _instant(millis: int) -> str:
    return datetime.fromtimestamp(millis // 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _summed(values: Mapping[str, int], prefix: str) -> Optional[int]:
    """The sum of every value whose name starts with `prefix`, None when there is none."""
    matching = [value for name, value in values.items() if name.startswith(prefix)]
    return sum(matching) if matching else None


def status_line(snapshot: MetricsSnapshot) -> str:
    """One line: records read per input, total lag, the watermark, result rows (the largest statuses),
    dead letters and open keys. A part whose metrics are all missing is left out (a missing metric is
    not a zero: nothing has reported it yet); a line with no part says so."""
    counters, gauges = snapshot.counters, snapshot.gauges
    parts = []
    reads = {name: counters.get(f"{name}.read") for name in (PAYMENTS, SETTLEMENTS)}
    if any(value is not None for value in reads.values()):
        parts.append(f"{_count(reads[PAYMENTS] or 0)} payments · {_count(reads[SETTLEMENTS] or 0)} settlements read")
    lags = [_summed(gauges, f"{name}.lag.") for name in (PAYMENTS, SETTLEMENTS)]
    if any(lag is not None for lag in lags):
        parts.append(f"lag {_count(sum(lag or 0 for lag in lags))}")
    watermarks = [gauges[f"{name}.watermark_millis"] for name in (PAYMENTS, SETTLEMENTS)
                  if 0 <= gauges.get(f"{name}.watermark_millis", -1) <= _MAX_MILLIS]
    if watermarks:  # the pipeline's watermark follows its slowest input
        parts.append(f"watermark {_instant(min(watermarks))}")
    parts.extend(_result_parts(counters))
    dead_letters = [counters.get(f"{LIVE_PREFIX}{name}.dead_letters") for name in (PAYMENTS, SETTLEMENTS)]
    if any(value is not None for value in dead_letters):
        parts.append(f"{_count(sum(value or 0 for value in dead_letters))} dead letters")
    open_keys = _summed(gauges, f"{LIVE_PREFIX}open_keys.")
    if open_keys is not None:
        parts.append(f"{_count(open_keys)} open keys")
    return f"{PREFIX} {SEPARATOR.join(parts) if parts else 'no metrics yet'}"


def _result_parts(counters: Mapping[str, int]) -> list:
    prefix = f"{LIVE_PREFIX}results."
    statuses = {name[len(prefix):]: value for name, value in counters.items()
                if name.startswith(prefix) and name != f"{prefix}rows" and value}
    rows = counters.get(f"{prefix}rows")
    if rows is None and not statuses:
        return []
    largest = sorted(statuses.items(), key=lambda item: (-item[1], item[0]))
    shown = ", ".join(f"{status} {_count(value)}" for status, value in largest[:SHOWN_STATUSES])
    more = ", …" if len(largest) > SHOWN_STATUSES else ""
    total = rows if rows is not None else sum(statuses.values())
    return [f"{_count(total)} result rows" + (f" ({shown}{more})" if shown else "")]


def snapshot_of(result) -> MetricsSnapshot:
    """The job's "paybeam" metrics now: committed values where the runner has them, attempted otherwise."""
    from apache_beam.metrics.metric import MetricsFilter

    _forget_cached_metrics(result)
    metrics = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    counters: Dict[str, int] = {}
    for counter in metrics["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        name = counter.key.metric.name
        counters[name] = counters.get(name, 0) + (value or 0)
    latest: Dict[str, tuple] = {}
    for gauge in metrics["gauges"]:
        value = gauge.committed if gauge.committed is not None else gauge.attempted
        if value is None or value.value is None:
            continue
        name = gauge.key.metric.name
        stamped = (value.timestamp or 0, value.value)
        if name not in latest or stamped[0] >= latest[name][0]:
            latest[name] = stamped
    return MetricsSnapshot(counters, {name: value for name, (_, value) in latest.items()})


def _forget_cached_metrics(result) -> None:
    """Beam 2.77's portable PipelineResult.metrics() asks the job service once and keeps that answer
    (`self._metrics`, portable_runner.py): forgotten here, so each query asks again.
    runners/flink_job_server.py's cluster result wraps Beam's as `_result`."""
    inner = vars(result).get("_result", result) if hasattr(result, "__dict__") else result
    if "_metrics" in getattr(inner, "__dict__", {}):
        inner._metrics = None


def _terminal_width(stream: IO) -> int:
    """Columns of the terminal `stream` draws on (COLUMNS first, like shutil); 0: unknown, no limit."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 0


def _is_terminal(stream: IO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class StatusReporter:
    """Writes `status_line(query())` to `stream` every `interval_seconds` until stopped.

    On a terminal the line is redrawn in place (carriage return, the line cut to the terminal's
    width, clear to the end of the line) and `stop()` ends it with a newline; otherwise a plain line
    is written at most every LOG_LINE_SECONDS on `clock`. `wait(seconds)` returns True once the
    reporter is stopped (default: the stop event's wait); tests pass their own clock and wait, so
    nothing sleeps.
    """

    def __init__(self, query: Callable[[], MetricsSnapshot], stream: IO, interval_seconds: float,
                 clock: Callable[[], float] = time.monotonic,
                 wait: Optional[Callable[[float], bool]] = None, terminal: Optional[bool] = None):
        self._query, self._stream, self._interval = query, stream, interval_seconds
        self._clock = clock
        self._stopped = threading.Event()
        self._wait = wait if wait is not None else self._stopped.wait
        self._terminal = _is_terminal(stream) if terminal is None else terminal
        self._lock = threading.RLock()  # the thread's writes, log records' clearing, stop()'s newline
        self._drawn = False  # a line is on the terminal without its newline
        self._last_written: Optional[float] = None
        self._thread: Optional[threading.Thread] = None
        self._log_handlers: list = []

    def start(self) -> "StatusReporter":
        if self._terminal:  # a log record would be glued to the drawn line: clear it first
            self._log_handlers = [handler for handler in logging.getLogger().handlers
                                  if getattr(handler, "stream", None) is self._stream]
            for handler in self._log_handlers:
                handler.addFilter(self._clear_before_log)
        self._thread = threading.Thread(target=self._run, name="paybeam-stream-status", daemon=True)
        self._thread.start()
        return self

    def _clear_before_log(self, record: logging.LogRecord) -> bool:
        """A logging filter that passes every record, clearing a drawn line first (the next interval
        draws it again below the record)."""
        with self._lock:
            if self._drawn:
                self._stream.write(f"\r{_CLEAR_TO_END}")
                self._stream.flush()
                self._drawn = False
        return True

    def _run(self) -> None:
        while not self._wait(self._interval):
            self.report()

    def report(self) -> None:
        """One interval: query and write, unless the log's line is not due; a failed query is logged."""
        if self._stopped.is_set():
            return
        if not self._terminal and self._last_written is not None \
                and self._clock() - self._last_written < LOG_LINE_SECONDS:
            return
        try:
            line = status_line(self._query())
        except Exception as error:  # noqa: BLE001 — a status line is never worth the run
            _LOGGER.debug("paybeam stream: could not read the job's metrics: %s", one_line_cause(error))
            return
        with self._lock:
            if self._stopped.is_set():
                return
            if self._terminal:
                width = _terminal_width(self._stream)
                if 0 < width <= len(line):
                    line = line[:max(width - 2, 0)] + "…"
                self._stream.write(f"\r{line}{_CLEAR_TO_END}")
                self._drawn = True
            else:
                self._stream.write(line + "\n")
            self._stream.flush()
            self._last_written = self._clock()

    def stop(self) -> None:
        """Stops the reporter at once (a query under way is not waited for beyond a second) and ends a
        drawn line with its newline, so what the run prints next starts on a line of its own."""
        self._stopped.set()
        for handler in self._log_handlers:
            handler.removeFilter(self._clear_before_log)
        self._log_handlers = []
        with self._lock:
            if self._drawn:
                self._stream.write("\n")
                self._stream.flush()
                self._drawn = False
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(_STOP_JOIN_SECONDS)

    def __enter__(self) -> "StatusReporter":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
