"""The status line of an unbounded `paybeam stream` (pipelines/stream_status.py): the pure line, the
metrics query against Beam's portable result, the reporter thread on a fake clock, and the flag."""
from __future__ import annotations

import contextlib
import io
import logging
import threading

import pytest
from apache_beam.metrics import monitoring_infos
from apache_beam.metrics.cells import GaugeData
from apache_beam.portability.api import beam_job_api_pb2
from apache_beam.runners.portability.portable_runner import PipelineResult

from pipelines.arguments import UsageError
from pipelines.cli import build_parser
from pipelines.reconcile_stream import status_reporter
from pipelines.stream_job import job_from_arguments
from pipelines.stream_status import LOG_LINE_SECONDS, MetricsSnapshot, StatusReporter, snapshot_of, status_line

STREAM = ["stream", "--bootstrap-servers", "localhost:9092", "--payments-topic", "p", "--settlements-topic", "s"]
WATERMARK = 1_796_318_405_123  # 2026-12-03T17:20:05.123Z


def _full() -> MetricsSnapshot:
    return MetricsSnapshot(
        counters={"payments.read": 120_345, "settlements.read": 60_112, "live.results.rows": 58_000,
                  "live.results.MATCHED": 50_100, "live.results.PENDING": 7_000,
                  "live.results.AMOUNT_MISMATCH": 600, "live.results.CURRENCY_MISMATCH": 300,
                  "live.payments.dead_letters": 30, "live.settlements.dead_letters": 1,
                  "live.payments.unique": 120_000, "live.settlements.unique": 60_000},
        gauges={"payments.lag.payments-topic.0": 7, "payments.lag.payments-topic.1": 3,
                "settlements.lag.settlements.v2.0": 5, "payments.watermark_millis": WATERMARK + 60_000,
                "settlements.watermark_millis": WATERMARK, "live.open_keys.0": 40_000, "live.open_keys.1": 200,
                "live.open_keys.7": 10})


def test_a_full_snapshot_is_one_readable_line():
    assert status_line(_full()) == (
        "paybeam stream: 120,345 payments · 60,112 settlements read · lag 15 · watermark 2026-12-03T17:20:05Z · "
        "58,000 result rows (MATCHED 50,100, PENDING 7,000, AMOUNT_MISMATCH 600, …) · 31 dead letters · "
        "40,210 open keys")


def test_lag_sums_every_partition_of_every_input_and_open_keys_every_shard():
    line = status_line(MetricsSnapshot(gauges={
        **{f"payments.lag.t.{partition}": 1_000_000 for partition in range(12)},
        "settlements.lag.u.0": 1, **{f"live.open_keys.{shard}": 250_000 for shard in range(8)}}))
    assert line == "paybeam stream: lag 12,000,001 · 2,000,000 open keys"


def test_no_metrics_yet_and_missing_parts_are_left_out_not_shown_as_zero():
    assert status_line(MetricsSnapshot()) == "paybeam stream: no metrics yet"
    # Only the settlements' reader has reported: its input's count, the other's 0 (nothing read yet).
    assert status_line(MetricsSnapshot(counters={"settlements.read": 4})) == (
        "paybeam stream: 0 payments · 4 settlements read")
    # Results by status without the rows counter: their sum; statuses with 0 rows are not listed.
    assert status_line(MetricsSnapshot(counters={"live.results.MATCHED": 2, "live.results.PENDING": 0})) == (
        "paybeam stream: 2 result rows (MATCHED 2)")
    assert status_line(MetricsSnapshot(counters={"live.results.rows": 0})) == "paybeam stream: 0 result rows"


def test_zeros_that_were_reported_are_shown():
    line = status_line(MetricsSnapshot(
        counters={"payments.read": 0, "settlements.read": 0, "live.payments.dead_letters": 0},
        gauges={"payments.lag.t.0": 0, "live.open_keys.0": 0}))
    assert line == "paybeam stream: 0 payments · 0 settlements read · lag 0 · 0 dead letters · 0 open keys"


def test_the_watermark_is_the_slowest_input_and_an_impossible_one_is_left_out():
    assert "watermark 2026-12-03T17:20:05Z" in status_line(MetricsSnapshot(gauges={
        "payments.watermark_millis": WATERMARK, "settlements.watermark_millis": WATERMARK + 3_600_000}))
    assert status_line(MetricsSnapshot(gauges={"payments.watermark_millis": -9_223_372_036_854_775})) == (
        "paybeam stream: no metrics yet")


def test_big_numbers_keep_their_digits():
    line = status_line(MetricsSnapshot(counters={"payments.read": 12_345_678_901, "settlements.read": 9_876_543_210}))
    assert line == "paybeam stream: 12,345,678,901 payments · 9,876,543,210 settlements read"


def test_the_line_holds_counts_only_never_money_or_keys():
    line = status_line(_full())
    assert all(text not in line for text in ("USD", "EUR", "amount", "merchant", "ref_", "bootstrap"))


class _JobService:
    """What GetJobMetrics of a job service answers: Prism's attempted (the bundles in flight) and
    committed (finished bundles) MonitoringInfos; each call answers the next snapshot."""

    def __init__(self, answers):
        self.answers, self.calls = list(answers), 0

    def GetJobMetrics(self, request):
        attempted, committed = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return beam_job_api_pb2.GetJobMetricsResponse(
            metrics=beam_job_api_pb2.MetricResults(attempted=attempted, committed=committed))


def _counter(name, value, step="Read"):
    return monitoring_infos.int64_user_counter("paybeam", name, value, ptransform=step)


def _gauge(name, value, millis, step="Match"):
    return monitoring_infos.int64_user_gauge("paybeam", name, GaugeData(value, millis), ptransform=step)


def test_snapshot_of_a_portable_result_asks_again_each_time_committed_first_counters_summed_latest_gauge():
    first = ([_counter("payments.read", 999)], [_counter("payments.read", 10)])
    second = ([_counter("payments.read", 5)],
              [_counter("payments.read", 30), _counter("live.results.rows", 4, "A"), _counter("live.results.rows", 2, "B"),
               _gauge("live.open_keys.0", 7, 1000, "A"), _gauge("live.open_keys.0", 9, 2000, "B"),
               _counter("other", 1)])
    attempted_only = ([_counter("settlements.read", 3), _gauge("live.open_keys.1", 4, 5)], [])
    service = _JobService([first, second, attempted_only])
    result = PipelineResult(service, "job-001", iter(()), iter(()))
    assert snapshot_of(result) == MetricsSnapshot({"payments.read": 10}, {})
    # Beam's portable result keeps its first answer (`_metrics`): the reporter must see the next one.
    assert snapshot_of(result) == MetricsSnapshot({"payments.read": 30, "live.results.rows": 6, "other": 1},
                                                  {"live.open_keys.0": 9})
    assert snapshot_of(result) == MetricsSnapshot({"settlements.read": 3}, {"live.open_keys.1": 4})
    assert service.calls == 3


class _Wrapped:
    """As runners/flink_job_server.py wraps Beam's result of a job on a Flink cluster: `_result`, the rest
    delegated."""

    def __init__(self, result):
        self._result = result

    def __getattr__(self, name):
        return getattr(self._result, name)


def test_snapshot_of_asks_the_wrapped_result_of_a_flink_cluster_job_again_too():
    service = _JobService([([], [_counter("payments.read", 1)]), ([], [_counter("payments.read", 2)])])
    wrapped = _Wrapped(PipelineResult(service, "job-1", iter(()), iter(())))
    assert snapshot_of(wrapped).counters == {"payments.read": 1}
    assert snapshot_of(wrapped).counters == {"payments.read": 2}


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _queries(*snapshots):
    answers = list(snapshots)

    def query():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer
    return query


def test_on_a_terminal_the_line_is_redrawn_in_place_and_ends_with_a_newline_when_stopped(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    stream = _Terminal()
    reporter = StatusReporter(_queries(MetricsSnapshot(), MetricsSnapshot(counters={"payments.read": 1})), stream, 5)
    reporter.report()
    reporter.report()
    reporter.stop()
    assert stream.getvalue() == ("\rpaybeam stream: no metrics yet\x1b[K"
                                 "\rpaybeam stream: 1 payments · 0 settlements read\x1b[K\n")
    reporter.report()  # stopped: nothing more, not even a query
    assert stream.getvalue().endswith("read\x1b[K\n")


def test_on_a_terminal_the_line_is_cut_to_its_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    stream = _Terminal()
    reporter = StatusReporter(_queries(_full()), stream, 5)
    reporter.report()
    drawn = stream.getvalue()[1:-len("\x1b[K")]
    assert len(drawn) == 39 and drawn.endswith("…") and drawn.startswith("paybeam stream: 120,345 payments")


def test_on_a_terminal_a_log_record_clears_the_drawn_line_first(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    stream = _Terminal()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        reporter = StatusReporter(_queries(MetricsSnapshot(), MetricsSnapshot()), stream, 5, wait=lambda _: True)
        with reporter:
            reporter.report()
            logging.getLogger("apache_beam.test").warning("a worker said something")
            reporter.report()
        logging.getLogger("apache_beam.test").warning("after the run")
    finally:
        root.removeHandler(handler)
    assert stream.getvalue() == ("\rpaybeam stream: no metrics yet\x1b[K\r\x1b[Ka worker said something\n"
                                 "\rpaybeam stream: no metrics yet\x1b[K\nafter the run\n")
    assert handler.filters == []


def test_stop_without_a_drawn_line_writes_nothing():
    stream = _Terminal()
    StatusReporter(_queries(), stream, 5).stop()
    assert stream.getvalue() == ""


def test_in_a_log_a_plain_line_at_most_every_30_seconds_and_no_query_in_between():
    clock, stream = _Clock(), io.StringIO()
    queried = []

    def query():
        queried.append(clock.now)
        return MetricsSnapshot(counters={"payments.read": len(queried)})
    reporter = StatusReporter(query, stream, 5, clock=clock)
    for _ in range(8):  # every 5 s for 40 s
        reporter.report()
        clock.now += 5
    reporter.stop()
    assert LOG_LINE_SECONDS == 30
    assert queried == [100.0, 130.0]
    assert stream.getvalue() == ("paybeam stream: 1 payments · 0 settlements read\n"
                                 "paybeam stream: 2 payments · 0 settlements read\n")


def test_a_failed_query_is_one_debug_line_and_the_next_interval_tries_again(caplog):
    clock, stream = _Clock(), io.StringIO()
    reporter = StatusReporter(_queries(RuntimeError("job service unavailable\nStatus: UNAVAILABLE"), MetricsSnapshot()),
                              stream, 5, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="pipelines.stream_status"):
        reporter.report()
        clock.now += 5
        reporter.report()
    assert [record.levelno for record in caplog.records] == [logging.DEBUG]
    assert "could not read the job's metrics: UNAVAILABLE" in caplog.records[0].getMessage()
    assert stream.getvalue() == "paybeam stream: no metrics yet\n"


def test_the_thread_reports_each_interval_until_stopped_and_stop_does_not_wait_for_the_interval():
    stream, waits, ready = _Terminal(), [], threading.Event()
    release = threading.Event()

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        if len(waits) == 3:  # two intervals reported: let the test stop the reporter
            ready.set()
            release.wait(10)  # bounded: the test's stop() releases it at once
            return True
        return False
    reporter = StatusReporter(_queries(MetricsSnapshot(), MetricsSnapshot(counters={"payments.read": 2})), stream, 1,
                              wait=wait)
    with reporter:
        assert ready.wait(10)
    release.set()
    assert waits == [1, 1, 1]
    assert stream.getvalue().count("\r") == 2 and stream.getvalue().endswith("\n")


def test_the_default_wait_ends_at_stop_not_after_the_interval():
    reporter = StatusReporter(_queries(), io.StringIO(), 3600).start()
    reporter.stop()  # joins the thread: a wait of an hour would fail the join's 1 s
    assert not reporter._thread.is_alive()


def test_the_flag_default_zero_and_negative():
    parser = build_parser()
    assert job_from_arguments(parser.parse_args(STREAM), []).status_interval_seconds == 5.0
    assert job_from_arguments(parser.parse_args(STREAM + ["--status-interval", "0"]), []).status_interval_seconds == 0
    with pytest.raises(UsageError, match="--status-interval"):
        job_from_arguments(parser.parse_args(STREAM + ["--status-interval", "-1"]), [])


def test_the_launcher_reports_for_unbounded_runs_with_an_interval_only():
    parser = build_parser()
    unbounded = job_from_arguments(parser.parse_args(STREAM), [])
    assert isinstance(status_reporter(unbounded, result=None), StatusReporter)
    off = job_from_arguments(parser.parse_args(STREAM + ["--status-interval", "0"]), [])
    assert isinstance(status_reporter(off, result=None), contextlib.nullcontext)
    bounded = job_from_arguments(parser.parse_args(STREAM + ["--bounded"]), [])
    assert isinstance(status_reporter(bounded, result=None), contextlib.nullcontext)


def test_the_shard_default_follows_the_runner_and_whether_state_is_restored():
    """One shard where no run restores state (measured faster on Prism); Flink keeps 8, the count its
    checkpoints hold; a bounded run and an explicit --shards are left as they are."""
    parser = build_parser()

    def shards(*extra):
        return job_from_arguments(parser.parse_args(STREAM + list(extra)), []).shards

    assert shards() == 1  # DirectRunner
    assert shards("--runner", "PrismRunner") == 1
    assert shards("--runner", "prism") == 1
    assert shards("--runner", "FlinkRunner") == 8
    assert shards("--runner", "PortableRunner") == 8
    assert shards("--runner", "PrismRunner", "--bounded") == 8
    assert shards("--runner", "PrismRunner", "--shards", "3") == 3
    assert shards("--runner", "FlinkRunner", "--shards", "1") == 1
    with pytest.raises(UsageError, match="--shards"):
        shards("--shards", "0")
