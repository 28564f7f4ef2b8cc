"""DailyTotals: per (merchant_id, currency) and settlement day (docs/DESIGN.md 4.3).

Settlement days are local calendar days in a time zone, starting at a
cut-off hour (e.g. Europe/Amsterdam 06:00), so a day may last 23 or 25 hours
around a DST change; that is why this is a custom WindowFn rather than
FixedWindows with an offset. Panes accumulate; the trigger is a parameter
because Python batch runners crash on processing-time triggers (docs/DESIGN.md 7):
streaming passes early firings, batch the event-time trigger only.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional, Tuple
from zoneinfo import ZoneInfo

import apache_beam as beam
from apache_beam.coders.coders import IntervalWindowCoder
from apache_beam.transforms import trigger as triggers
from apache_beam.transforms.window import FixedWindows, IntervalWindow, NonMergingWindowFn
from apache_beam.utils.timestamp import Duration
from apache_beam.utils.windowed_value import PaneInfoTiming

from schemas import rules
from schemas.internal_records import Contribution
from schemas.money import within_int64
from schemas.records import DailyTotal, PaymentEvent, ReconciliationResult, SettlementLine
from schemas.rules import BREAK_STATUSES, LEDGER_EVENT_COUNT, RECORD_SUM_COLUMNS, SETTLEMENT_LINE_COUNT, SUM_INDEX
from schemas.timestamps import EPOCH
from transforms.event_time import ResultsAtRecordTime, beam_timestamp_to_millis, millis_to_beam_timestamp
from transforms.revisions import LatestCounts, merge_all, merge_revision, result_key_text, total

PANE_TIMINGS = {
    PaneInfoTiming.EARLY: "EARLY",
    PaneInfoTiming.ON_TIME: "ON_TIME",
    PaneInfoTiming.LATE: "LATE",
    # Batch runners may not label the single pane they fire at the end of input.
    PaneInfoTiming.UNKNOWN: "ON_TIME",
}


@dataclass(frozen=True)
class SettlementDay:
    """How instants map to settlement days: a time zone and the local hour a day starts."""

    time_zone: str = "UTC"
    cutoff_hour: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.cutoff_hour <= 23:
            raise ValueError("cutoff_hour must be between 0 and 23")
        ZoneInfo(self.time_zone)  # raises for an unknown zone

    def bounds(self, millis: int) -> Tuple[int, int, str]:
        """(start millis, end millis, YYYY-MM-DD label) of the settlement day containing `millis`."""
        zone = ZoneInfo(self.time_zone)
        local = (EPOCH + timedelta(milliseconds=millis)).astimezone(zone)
        day = (local - timedelta(hours=self.cutoff_hour)).date()
        start = datetime(day.year, day.month, day.day, self.cutoff_hour, tzinfo=zone)
        following = day + timedelta(days=1)
        end = datetime(following.year, following.month, following.day, self.cutoff_hour, tzinfo=zone)
        return _to_millis(start), _to_millis(end), day.isoformat()


    def fixed_utc_offset_seconds(self) -> Optional[int]:
        """The zone's UTC offset if it never changes (UTC, GMT and the Etc/ zones), else None."""
        key = ZoneInfo(self.time_zone).key
        if key in _FIXED_ZONES or key.startswith("Etc/"):
            offset = ZoneInfo(key).utcoffset(datetime(2000, 1, 1))
            return int(offset.total_seconds()) if offset is not None else 0
        return None


# IANA names of zones without DST or offset changes besides the Etc/ ones.
_FIXED_ZONES = frozenset({"UTC", "UCT", "GMT", "Universal", "Zulu", "Greenwich", "GMT0", "GMT+0", "GMT-0"})
DAY_SECONDS = 24 * 3600


def settlement_day_window_fn(settlement_day: SettlementDay) -> NonMergingWindowFn:
    """The WindowFn of settlement days. In a zone with a fixed UTC offset every day lasts 24 hours, so
    Beam's standard FixedWindows (one day, offset to the local cut-off) gives the very same windows,
    and it is the one a portable runner's Java side understands: the Flink runner rejects any
    Python-defined WindowFn ("Unknown or unsupported WindowFn: beam:window_fn:pickled_python:v1",
    docs/DESIGN.md 7). Zones with DST need the custom SettlementDayWindows."""
    offset = settlement_day.fixed_utc_offset_seconds()
    if offset is None:
        return SettlementDayWindows(settlement_day)
    return FixedWindows(DAY_SECONDS, (settlement_day.cutoff_hour * 3600 - offset) % DAY_SECONDS)


def _to_millis(moment: datetime) -> int:
    return int((moment - EPOCH) / timedelta(milliseconds=1))


class SettlementDayWindows(NonMergingWindowFn):
    """Assigns each element to its settlement day (see SettlementDay)."""

    def __init__(self, settlement_day: SettlementDay):
        self.settlement_day = settlement_day

    def assign(self, context):
        start, end, _ = self.settlement_day.bounds(beam_timestamp_to_millis(context.timestamp))
        return [IntervalWindow(millis_to_beam_timestamp(start), millis_to_beam_timestamp(end))]

    def get_window_coder(self):
        return IntervalWindowCoder()

    def __eq__(self, other):
        return type(other) is type(self) and other.settlement_day == self.settlement_day

    def __hash__(self):
        return hash(self.settlement_day)


@dataclass(frozen=True)
class TriggerPolicy:
    """When daily-total panes fire: early (streaming only), on time, and late."""

    early_firing_interval: Optional[timedelta] = None
    allowed_lateness: timedelta = timedelta(days=7)
    # With bounded input nothing can arrive after the on-time pane, so it is final;
    # Beam cannot know that and labels it not-last whenever lateness is allowed.
    bounded_input: bool = False

    @classmethod
    def batch(cls, allowed_lateness: timedelta = timedelta(days=7)) -> "TriggerPolicy":
        return cls(None, allowed_lateness, bounded_input=True)

    @classmethod
    def streaming(cls, early_firing_interval: timedelta = timedelta(minutes=5),
                  allowed_lateness: timedelta = timedelta(days=7)) -> "TriggerPolicy":
        return cls(early_firing_interval, allowed_lateness)

    @property
    def keys_windows_in_global_window(self) -> bool:
        """Bounded input without early panes: the settlement day (or alert window) is part of the key,
        in the global window, so no event-time WindowFn runs (DailyTotals, BreakRateAlerts). Event-time
        windows would see every result (judged at the end of input, re-stamped back to its record's
        time) and every deduplicated record (grouped in the global window) arrive behind a watermark
        already at infinity: late data, which a runner that applies the model's lateness to batch
        (Prism) drops."""
        return self.bounded_input and self.early_firing_interval is None

    def trigger(self) -> triggers.TriggerFn:
        """The trigger of event-time windows (used only when not `keys_windows_in_global_window`)."""
        early = None
        if self.early_firing_interval is not None:
            early = triggers.AfterProcessingTime(int(self.early_firing_interval.total_seconds()))
        return triggers.AfterWatermark(early=early, late=triggers.AfterCount(1))

    @property
    def allowed_lateness_duration(self) -> Duration:
        return Duration(micros=int(self.allowed_lateness.total_seconds() * 1_000_000))


# ---------------------------------------------------------------- per-record contributions

_SUMS = len(RECORD_SUM_COLUMNS)


def ledger_contribution(event: PaymentEvent) -> Contribution:
    sums = [0] * _SUMS
    column = rules.LEDGER_SUM_OF_EVENT_TYPE.get(event.event_type)
    if column is not None:
        sums[SUM_INDEX[column]] = event.amount_minor
    sums[SUM_INDEX[LEDGER_EVENT_COUNT]] = 1
    return Contribution(tuple(sums))


def settlement_contribution(line: SettlementLine) -> Contribution:
    """What the rules table (schemas/rules.py: SETTLEMENT_SUMS) adds for the line's record type."""
    sums = [0] * _SUMS
    for column, field, factor in rules.SETTLEMENT_SUMS.get(line.record_type, ()):
        sums[SUM_INDEX[column]] += factor * getattr(line, field)
    sums[SUM_INDEX[SETTLEMENT_LINE_COUNT]] = 1
    return Contribution(tuple(sums))


def withdrawn_contribution(line: SettlementLine) -> Contribution:
    """Takes back what `settlement_contribution` added (a streamed line moving to another merchant)."""
    return Contribution(tuple(-value for value in settlement_contribution(line).sums))


def result_contribution(row: ReconciliationResult) -> Contribution:
    return Contribution((0,) * _SUMS, result_key_text(row), row.revision, int(row.status in BREAK_STATUSES))


def published_sums(sums: Tuple[int, ...]) -> Tuple[Optional[int], ...]:
    """Exact Python-int sums as the output holds them: a sum outside int64 is null, never wrapped."""
    return tuple(within_int64(value) for value in sums)


# The columnar stream's contribution of many records of one (merchant, currency, day): their summed
# `SUM_COLUMNS` and the break counts of the result keys among them ({key: (revision, (breaks,))}).
PartialSums = Tuple[Tuple[int, ...], LatestCounts]


class DailyTotalsFn(beam.CombineFn):
    """Sums money and counts; counts breaks in the latest revision of each key only."""

    def create_accumulator(self):
        return [0] * _SUMS, {}

    def add_input(self, accumulator, contribution):
        """A record's `Contribution`, or a `PartialSums` (the columnar stream's sums of many records)."""
        sums, latest = accumulator
        if isinstance(contribution, Contribution):
            added, partial_latest = contribution.sums, None
        else:
            added, partial_latest = contribution
        for index, value in enumerate(added):
            sums[index] += value
        if partial_latest:
            merge_all(latest, partial_latest)
        elif partial_latest is None and contribution.result_key is not None:
            merge_revision(latest, contribution.result_key, contribution.revision, (contribution.breaks,))
        return accumulator

    def merge_accumulators(self, accumulators):
        merged_sums, merged_latest = self.create_accumulator()
        for sums, latest in accumulators:
            for index, value in enumerate(sums):
                merged_sums[index] += value
            merge_all(merged_latest, latest)
        return merged_sums, merged_latest

    def extract_output(self, accumulator):
        sums, latest = accumulator
        (break_count,) = total(latest, 1)
        return tuple(sums), break_count


class _ToDailyTotal(beam.DoFn):
    def __init__(self, settlement_day: SettlementDay, bounded_input: bool):
        self._settlement_day = settlement_day
        self._bounded_input = bounded_input

    def process(self, element, window=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        key, (sums, break_count) = element
        # (merchant, currency, day, start, end); a pane restored from a savepoint taken before the key
        # named its day has (merchant, currency).
        merchant_id, currency = key[:2]
        start = beam_timestamp_to_millis(window.start)
        _, _, day = self._settlement_day.bounds(start)
        timing = PANE_TIMINGS[pane.timing]
        yield DailyTotal(
            merchant_id, currency, day, start, beam_timestamp_to_millis(window.end),
            *published_sums(sums), break_count,
            pane_timing=timing,
            pane_index=pane.index,
            is_final=pane.is_last or (self._bounded_input and timing == "ON_TIME"),
        )


def _day_keyed(settlement_day: SettlementDay):
    def day_keyed(element, timestamp=beam.DoFn.TimestampParam):
        (merchant_id, currency), contribution = element
        start, end, day = settlement_day.bounds(beam_timestamp_to_millis(timestamp))
        return (merchant_id, currency, day, start, end), contribution
    return day_keyed


def _final_daily_total(element) -> DailyTotal:
    """The one pane of a bounded run's day: what the windowed path labels ON_TIME, index 0, final."""
    (merchant_id, currency, day, start, end), (sums, break_count) = element
    return DailyTotal(merchant_id, currency, day, start, end, *published_sums(sums), break_count,
                      pane_timing="ON_TIME", pane_index=0, is_final=True)


def _keyed(contribution_of):
    def keyed(record):
        return (record.merchant_id, record.currency), contribution_of(record)
    return keyed


class DailyTotals(beam.PTransform):
    """(ledger events, settlement lines[, results[, withdrawn settlement lines]]) -> DailyTotal panes.

    Inputs carry their event timestamps (AssignEventTime). Results are
    re-stamped with their record's own time so breaks land on the day of the
    payment they concern, not the day the verdict was reached.
    """

    def __init__(self, settlement_day: SettlementDay = SettlementDay(),
                 trigger_policy: TriggerPolicy = TriggerPolicy.batch()):
        super().__init__()
        self._settlement_day = settlement_day
        self._trigger_policy = trigger_policy

    def expand(self, inputs):
        ledger, settlements, *rest = inputs
        parts = [
            ledger | "LedgerContributions" >> beam.Map(_keyed(ledger_contribution)),
            settlements | "SettlementContributions" >> beam.Map(_keyed(settlement_contribution)),
        ]
        if rest:
            parts.append(
                rest[0]
                | "AtRecordTime" >> ResultsAtRecordTime()
                | "BreakContributions" >> beam.Map(_keyed(result_contribution))
            )
        if len(rest) > 1:
            parts.append(rest[1] | "WithdrawnContributions" >> beam.Map(_keyed(withdrawn_contribution)))
        contributions = parts | "AllContributions" >> beam.Flatten()
        return _summed(contributions, self._settlement_day, self._trigger_policy)


class SumDailyTotals(beam.PTransform):
    """((merchant_id, currency), Contribution or PartialSums) at event time -> DailyTotal panes."""

    def __init__(self, settlement_day: SettlementDay, trigger_policy: TriggerPolicy):
        super().__init__()
        self._settlement_day = settlement_day
        self._trigger_policy = trigger_policy

    def expand(self, contributions):
        return _summed(contributions, self._settlement_day, self._trigger_policy)


def _summed(contributions, settlement_day: SettlementDay, trigger_policy: TriggerPolicy):
    """The steps are applied in the caller's scope, so DailyTotals keeps its step names (Flink savepoints)."""
    if trigger_policy.keys_windows_in_global_window:
        return (
            contributions
            | "SettlementDays" >> beam.Map(_day_keyed(settlement_day))
            | "SumPerMerchantCurrencyDay" >> beam.CombinePerKey(DailyTotalsFn())
            | "FinalPanes" >> beam.Map(_final_daily_total).with_output_types(DailyTotal)
        )
    # Keyed per (merchant, currency, day), not per (merchant, currency): Prism 2.77 builds each triggered
    # pane by popping every pending element of the key, and ACCUMULATING panes keep a day's elements
    # pending for its allowed lateness, so a catch-up's late panes each rescanned up to eight days of
    # partials (DESIGN 7, "Seeing inside Prism"; the alerts' keys name their window for the same reason).
    # The window, and so every pane's timing and end, is the same.
    return (
        contributions
        | "DayKeys" >> beam.Map(_day_keyed(settlement_day))
        | "SettlementDays" >> beam.WindowInto(
            settlement_day_window_fn(settlement_day),
            trigger=trigger_policy.trigger(),
            accumulation_mode=triggers.AccumulationMode.ACCUMULATING,
            allowed_lateness=trigger_policy.allowed_lateness_duration,
        )
        | "SumPerMerchantCurrencyDay" >> beam.CombinePerKey(DailyTotalsFn())
        | "WithPaneMetadata" >> beam.ParDo(
            _ToDailyTotal(settlement_day, trigger_policy.bounded_input)).with_output_types(DailyTotal)
    )
