"""BreakRateAlerts: a processor's break rate in sliding windows, alerting above a threshold.

Results are placed at their record's own time (as in DailyTotals), keyed by
processor and windowed in sliding windows (e.g. one hour every five
minutes). Per window only each key's latest revision counts; PENDING rows
have no verdict yet and are left out of the rate. An alert is emitted for a
pane whose rate is at or above the threshold with at least `min_volume`
decided rows. Rates are integer basis points: no floats in outputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import List, Optional, Tuple

import apache_beam as beam
from apache_beam.transforms import trigger as triggers
from apache_beam.transforms.window import FixedWindows, SlidingWindows, TimestampedValue, WindowFn

from schemas.records import BreakRateAlert, ReconciliationResult
from schemas.rules import BREAK_STATUSES, UNDECIDED_STATUS
from transforms.daily_totals import PANE_TIMINGS, TriggerPolicy
from transforms.event_time import ResultsAtRecordTime, beam_timestamp_to_millis, millis_to_beam_timestamp
from transforms.revisions import merge_all, merge_revision, result_key_text, total


@dataclass(frozen=True)
class AlertPolicy:
    window: timedelta = timedelta(hours=1)
    period: timedelta = timedelta(minutes=5)
    threshold_bps: int = 500  # 5%
    min_volume: int = 20
    trigger_policy: TriggerPolicy = field(default_factory=TriggerPolicy.batch)

    def __post_init__(self) -> None:
        if self.period <= timedelta(0) or self.window < self.period:
            raise ValueError("alert window must be at least its period, and the period positive")
        if not 0 < self.threshold_bps <= 10_000:
            raise ValueError("threshold_bps must be in 1..10000")
        if self.min_volume < 1:
            raise ValueError("min_volume must be at least 1")


def break_rate_bps(decided: int, breaks: int) -> int:
    return breaks * 10_000 // decided if decided else 0


def should_alert(decided: int, breaks: int, policy: AlertPolicy) -> bool:
    return decided >= policy.min_volume and break_rate_bps(decided, breaks) >= policy.threshold_bps


class BreakRateFn(beam.CombineFn):
    """(key, revision, decided, breaks) per result row -> (decided, breaks) over latest revisions."""

    def create_accumulator(self):
        return {}

    def add_input(self, latest, row):
        """One result row's (key, revision, decided, breaks), or the columnar stream's partial of many rows
        ({key: (revision, (decided, breaks))})."""
        if isinstance(row, dict):
            merge_all(latest, row)
            return latest
        key, revision, decided, breaks = row
        merge_revision(latest, key, revision, (decided, breaks))
        return latest

    def merge_accumulators(self, accumulators):
        merged = {}
        for latest in accumulators:
            merge_all(merged, latest)
        return merged

    def extract_output(self, latest) -> Tuple[int, int]:
        return total(latest, 2)


def _rate_input(row: ReconciliationResult):
    decided = int(row.status != UNDECIDED_STATUS)
    return row.processor, (result_key_text(row), row.revision, decided, int(row.status in BREAK_STATUSES))


def sliding_windows(policy: AlertPolicy) -> SlidingWindows:
    return SlidingWindows(policy.window.total_seconds(), policy.period.total_seconds())


def windows_at(windows: WindowFn, millis: int) -> List[Tuple[int, int]]:
    """(start, end) millis of every window containing the instant."""
    return [(beam_timestamp_to_millis(window.start), beam_timestamp_to_millis(window.end))
            for window in windows.assign(WindowFn.AssignContext(millis_to_beam_timestamp(millis)))]


def at_window_end(window_key: Tuple[str, int, int], rates) -> TimestampedValue:
    """A window's rates as `AlertsFromWindowRates` takes them: stamped at the window's last instant.

    The alert panes are grouped per (processor, window) rather than per processor: Prism 2.77 builds each
    triggered pane by popping every pending element of the key, all windows included, and ACCUMULATING
    panes keep them pending until the window expires (end + allowed lateness), so keyed by processor a
    catch-up's late panes (one per late partial and window) each rescanned days of elements (DESIGN 7,
    "Seeing inside Prism"). A copy stamped at end - 1 ms falls, in `FixedWindows` of one period, in the
    window [end - period, end): the same end as its sliding window, so the same on-time, late and expiry
    points, and one pane per (key, window) as before. Stamping forward never makes a copy late, and
    `FixedWindows` is a window the Flink runner's Java side understands (a Python WindowFn it rejects)."""
    return TimestampedValue((window_key, rates), millis_to_beam_timestamp(window_key[2] - 1))


def _window_keyed(windows: WindowFn):
    def window_keyed(element, timestamp=beam.DoFn.TimestampParam):
        processor, row = element
        for start, end in windows_at(windows, beam_timestamp_to_millis(timestamp)):
            yield (processor, start, end), row
    return window_keyed


def _each_window_at_its_end(windows: WindowFn):
    """The streaming form of `_window_keyed`: one copy per window, stamped at its end (`at_window_end`)."""
    window_keyed = _window_keyed(windows)

    def each_window_at_its_end(element, timestamp=beam.DoFn.TimestampParam):
        for window_key, row in window_keyed(element, timestamp):
            yield at_window_end(window_key, row)
    return each_window_at_its_end


def _final_alert(element, policy: AlertPolicy):
    """The one pane of a bounded run's window: what the windowed path labels ON_TIME, index 0, final."""
    (processor, start, end), (decided, breaks) = element
    if should_alert(decided, breaks, policy):
        yield BreakRateAlert(processor, start, end, decided, breaks, break_rate_bps(decided, breaks),
                             policy.threshold_bps, "ON_TIME", 0, True)


class _ToAlert(beam.DoFn):
    def __init__(self, policy: AlertPolicy):
        self._policy = policy

    def process(self, element, window=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        key, (decided, breaks) = element
        if not should_alert(decided, breaks, self._policy):
            return
        if isinstance(key, str):  # a pane restored from a savepoint taken before the key named its window
            processor, start, end = key, beam_timestamp_to_millis(window.start), beam_timestamp_to_millis(window.end)
        else:
            processor, start, end = key
        timing = PANE_TIMINGS[pane.timing]
        yield BreakRateAlert(
            processor, start, end,
            decided, breaks, break_rate_bps(decided, breaks), self._policy.threshold_bps, timing, pane.index,
            pane.is_last or (self._policy.trigger_policy.bounded_input and timing == "ON_TIME"),
        )


class BreakRateAlerts(beam.PTransform):
    """ReconciliationResult revisions -> BreakRateAlert per processor and sliding window over the threshold."""

    def __init__(self, policy: Optional[AlertPolicy] = None):
        super().__init__()
        self._policy = policy or AlertPolicy()

    def expand(self, results):
        rates = results | "AtRecordTime" >> ResultsAtRecordTime() | "PerProcessor" >> beam.Map(_rate_input)
        return _alerts(rates, self._policy)


class AlertsFromWindowRates(beam.PTransform):
    """((processor, window start, window end), rate row or partial rates) stamped by `at_window_end` ->
    BreakRateAlert (the columnar stream sums a bundle's result tables per window first: one element per
    window and bundle instead of one per window and row)."""

    def __init__(self, policy: Optional[AlertPolicy] = None):
        super().__init__()
        self._policy = policy or AlertPolicy()

    def expand(self, window_rates):
        return _alerts_of_window_rates(window_rates, self._policy)


def _alerts(rates, policy: AlertPolicy):
    """Applied in the caller's scope, so BreakRateAlerts keeps its step names (Flink savepoints)."""
    windows = sliding_windows(policy)
    if policy.trigger_policy.keys_windows_in_global_window:
        return (
            rates
            | "SlidingWindows" >> beam.FlatMap(_window_keyed(windows))
            | "BreakRate" >> beam.CombinePerKey(BreakRateFn())
            | "OverThreshold" >> beam.FlatMap(_final_alert, policy).with_output_types(BreakRateAlert)
        )
    return _alerts_of_window_rates(rates | "SlidingWindows" >> beam.FlatMap(_each_window_at_its_end(windows)),
                                   policy)


def _alerts_of_window_rates(window_rates, policy: AlertPolicy):
    period = policy.period.total_seconds()
    return (
        window_rates
        | "WindowOfKey" >> beam.WindowInto(
            FixedWindows(period, policy.window.total_seconds() % period),
            trigger=policy.trigger_policy.trigger(),
            accumulation_mode=triggers.AccumulationMode.ACCUMULATING,
            allowed_lateness=policy.trigger_policy.allowed_lateness_duration,
        )
        | "BreakRate" >> beam.CombinePerKey(BreakRateFn())
        | "OverThreshold" >> beam.ParDo(_ToAlert(policy)).with_output_types(BreakRateAlert)
    )
