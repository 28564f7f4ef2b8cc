"""One settlement day replayed as a stream: daily-total panes and result revisions.

`run_pane_scenario()` feeds a `TestStream` through the shared flow
(`transforms.flow.ReconcileRecords`, the same composite the batch and Kafka
pipelines run) in streaming mode, with early, on-time and late arrivals:

1. the day's first records, then processing time advances  -> an EARLY pane;
2. more records, then the watermark passes the day's end    -> the ON_TIME pane;
3. the watermark passes a capture's settlement SLA          -> MISSING_SETTLEMENT;
4. its settlement arrives late (within allowed lateness)    -> MATCHED and LATE panes;
5. a late capture, still within the allowed lateness         -> another LATE pane;
6. the watermark passes the end of the allowed lateness, then
   one more capture of that day arrives: Beam drops it from
   the day's totals (it still reaches the matcher, whose state
   lives in the global window).

Outputs are captured with a module-level function (pickled by reference, so
on the in-process runners it fills `_CAPTURED` in this very module).
"""
from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Dict, List, Optional, Sequence, Tuple, Union

import apache_beam as beam
import pandas as pd
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that
from apache_beam.transforms.window import TimestampedValue

from analysis.results import records_frame
from schemas.records import (
    PAYMENTS,
    SETTLEMENTS,
    DailyTotal,
    PaymentEvent,
    RawRecord,
    ReconciliationResult,
    SettlementLine,
)
from schemas.timestamps import datetime_to_millis, format_timestamp
from transforms.daily_totals import SettlementDay, TriggerPolicy
from transforms.event_time import event_time_millis, millis_to_beam_timestamp
from transforms.flow import ReconcileConfig, ReconcileRecords
from transforms.reconcile import AsOf

HOUR = 3_600_000
DAY = 24 * HOUR

# Filled by _capture inside the pipeline (see the module docstring).
_CAPTURED: Dict[str, list] = defaultdict(list)


def _capture(name, values):
    _CAPTURED[name] = list(values)


Record = Union[PaymentEvent, SettlementLine]


@dataclass(frozen=True)
class Step:
    """One step of the replay: records arriving, processing time or the watermark moving."""

    kind: str  # "records" | "processing_time" | "watermark"
    note: str
    records: Tuple[Record, ...] = ()
    seconds: int = 0  # processing_time: how far it advances
    watermark: Optional[int] = None  # watermark: the new watermark, epoch millis
    beyond_lateness: bool = False  # records: they arrive after the day's allowed lateness (dropped from totals)

    def describe(self) -> str:
        if self.kind == "records":
            ids = ", ".join(getattr(r, "event_id", None) or r.settlement_id for r in self.records)
            return f"{len(self.records)} record(s) arrive ({ids})"
        if self.kind == "processing_time":
            return f"processing time +{self.seconds}s"
        return f"watermark -> {format_timestamp(self.watermark)}"


@dataclass(frozen=True)
class PaneScenario:
    day: str = "2026-01-05"  # the settlement day (UTC, cut-off 00:00)
    merchant_id: str = "m_demo"
    currency: str = "USD"
    processor: str = "stripe"
    early_firing: timedelta = timedelta(minutes=5)
    allowed_lateness: timedelta = timedelta(days=7)
    settlement_day: SettlementDay = field(default_factory=SettlementDay)

    @property
    def day_start(self) -> int:
        start = datetime.fromisoformat(self.day).replace(tzinfo=timezone.utc)
        return self.settlement_day.bounds(datetime_to_millis(start) + self.settlement_day.cutoff_hour * HOUR)[0]

    @property
    def day_end(self) -> int:
        return self.settlement_day.bounds(self.day_start)[1]

    def payment(self, event_id: str, reference: str, amount: int, hour: float) -> PaymentEvent:
        return PaymentEvent(event_id, f"pay_{reference}", "CAPTURED", self.processor, reference, self.merchant_id,
                            amount, self.currency, self.day_start + int(hour * HOUR))

    def settlement(self, settlement_id: str, reference: str, gross: int, hour: float, fee: int = 0) -> SettlementLine:
        return SettlementLine(settlement_id, self.processor, reference, self.merchant_id, "CAPTURE", gross, fee,
                              gross - fee, self.currency, self.day, self.day_start + int(hour * HOUR), None)

    def steps(self) -> List[Step]:
        """The replay (see the module docstring); the watched key is `ref_c`."""
        lateness_end = self.day_end + int(self.allowed_lateness.total_seconds() * 1000)
        return [
            Step("records", "on time: two captures and one settlement",
                 (self.payment("evt_a", "ref_a", 1000, 9), self.settlement("stl_a", "ref_a", 1000, 11, fee=30),
                  self.payment("evt_b", "ref_b", 2500, 10))),
            Step("processing_time", "early firing interval passes: provisional (EARLY) pane",
                 seconds=int(self.early_firing.total_seconds()) + 60),
            Step("records", "on time: ref_b settles, ref_c is captured (no settlement yet)",
                 (self.settlement("stl_b", "ref_b", 2500, 15, fee=75), self.payment("evt_c", "ref_c", 4000, 14))),
            Step("watermark", "watermark passes the end of the day: ON_TIME pane", watermark=self.day_end + HOUR),
            Step("watermark", "watermark passes ref_c's settlement SLA (3 days): MISSING_SETTLEMENT",
                 watermark=self.day_start + 3 * DAY + 15 * HOUR),
            Step("records", "late, within allowed lateness: ref_c's settlement (booked that day)",
                 (self.settlement("stl_c", "ref_c", 4000, 20, fee=120),)),
            Step("watermark", "watermark moves on", watermark=self.day_start + 3 * DAY + 16 * HOUR),
            Step("records", "late, within allowed lateness: a capture of that day",
                 (self.payment("evt_d", "ref_d", 700, 22),)),
            Step("watermark", "watermark passes ref_d's settlement SLA: MISSING_SETTLEMENT (a break on that day)",
                 watermark=self.day_start + 4 * DAY),
            Step("watermark", "watermark passes the end of the allowed lateness: the day is closed",
                 watermark=lateness_end + HOUR),
            Step("records", "too late: a capture of that day, beyond allowed lateness (dropped from the totals)",
                 (self.payment("evt_e", "ref_e", 300, 23),), beyond_lateness=True),
            Step("watermark", "watermark far ahead: every key passes its retention and is closed",
                 watermark=self.day_start + 30 * DAY),
        ]


def _raw(record: Record) -> RawRecord:
    fields = record._asdict()
    name = PAYMENTS if isinstance(record, PaymentEvent) else SETTLEMENTS
    for column in ("event_time", "booked_time"):
        if column in fields:
            fields[column] = format_timestamp(fields[column])
    fields = {key: ("" if value is None else value) for key, value in fields.items()}
    return RawRecord(name, f"scenario:{getattr(record, 'event_id', None) or record.settlement_id}", fields,
                     str(fields))


def build_test_stream(steps: Sequence[Step]) -> TestStream:
    stream = TestStream()
    for step in steps:
        if step.kind == "records":
            stream = stream.add_elements([
                TimestampedValue(_raw(record), millis_to_beam_timestamp(event_time_millis(record)))
                for record in step.records])
        elif step.kind == "processing_time":
            stream = stream.advance_processing_time(step.seconds)
        elif step.kind == "watermark":
            stream = stream.advance_watermark_to(millis_to_beam_timestamp(step.watermark))
        else:
            raise ValueError(f"unknown step kind {step.kind!r}")
    return stream


@dataclass
class PaneRun:
    scenario: PaneScenario
    steps: List[Step]
    daily_totals: List[DailyTotal]  # every pane, in pane order
    results: List[ReconciliationResult]  # every revision, by key and revision

    def day_panes(self, day: Optional[str] = None) -> List[DailyTotal]:
        day = day or self.scenario.day
        return [t for t in self.daily_totals if t.settlement_day == day]

    def revisions(self, reference: str) -> List[ReconciliationResult]:
        return [r for r in self.results if r.processor_reference == reference]


def run_pane_scenario(scenario: PaneScenario = PaneScenario()) -> PaneRun:
    """Runs the replay on the DirectRunner in streaming mode; returns every pane and revision."""
    steps = scenario.steps()
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    config = ReconcileConfig(
        as_of=AsOf.watermark(),
        settlement_day=scenario.settlement_day,
        trigger_policy=TriggerPolicy.streaming(scenario.early_firing, scenario.allowed_lateness),
    )
    _CAPTURED.clear()
    # A plain Pipeline (not TestPipeline, which reads sys.argv): the DirectRunner runs TestStream in streaming mode.
    with beam.Pipeline(runner="DirectRunner", options=options) as pipeline:
        arriving = pipeline | "Replay" >> build_test_stream(steps)
        raw = {name: arriving | f"Only[{name}]" >> beam.Filter(lambda r, n=name: r.input == n)
               for name in (PAYMENTS, SETTLEMENTS)}
        outputs = raw | "Reconcile" >> ReconcileRecords(config)
        for name in ("results", "daily_totals"):
            assert_that(outputs[name], functools.partial(_capture, name), label=f"Capture[{name}]")
    totals = sorted(_CAPTURED["daily_totals"], key=lambda t: (t.settlement_day, t.merchant_id, t.currency,
                                                              t.pane_index))
    results = sorted(_CAPTURED["results"], key=lambda r: (r.processor, r.processor_reference, r.kind,
                                                         r.revision, r.ledger_event_id or "", r.settlement_id or ""))
    return PaneRun(scenario, steps, totals, results)


def steps_frame(run: PaneRun) -> pd.DataFrame:
    """The replay as a table: what happens at each step."""
    return pd.DataFrame([{"step": index + 1, "what": step.describe(), "why": step.note}
                         for index, step in enumerate(run.steps)])


PANE_COLUMNS = ("pane_index", "pane_timing", "is_final", "captured_minor", "ledger_event_count",
                "settled_gross_minor", "fee_minor", "settled_net_minor", "settlement_line_count", "break_count")


def pane_table(run: PaneRun, day: Optional[str] = None) -> pd.DataFrame:
    """How the day's total evolves pane by pane (EARLY -> ON_TIME -> LATE)."""
    frame = records_frame(run.day_panes(day), DailyTotal)
    return frame[list(PANE_COLUMNS)].reset_index(drop=True)


REVISION_COLUMNS = ("revision", "status", "ledger_amount_minor", "settled_amount_minor", "difference_minor",
                    "ledger_event_id", "settlement_id", "is_final")


def revision_table(run: PaneRun, reference: str = "ref_c") -> pd.DataFrame:
    """How one key's result moves through its revisions."""
    frame = records_frame(run.revisions(reference), ReconciliationResult)
    return frame[list(REVISION_COLUMNS)].reset_index(drop=True)


def captured_check(run: PaneRun) -> pd.DataFrame:
    """The day's captured total: last pane vs. the captures that arrived within / beyond allowed lateness."""
    day_start, day_end = run.scenario.day_start, run.scenario.day_end

    def captured(beyond: bool) -> int:
        return sum(r.amount_minor for step in run.steps if step.kind == "records" and step.beyond_lateness == beyond
                   for r in step.records
                   if isinstance(r, PaymentEvent) and r.event_type == "CAPTURED" and day_start <= r.event_time < day_end)

    panes = run.day_panes()
    last = max(panes, key=lambda t: t.pane_index) if panes else None
    return pd.DataFrame([
        {"what": "captured_minor in the day's last pane", "minor_units": last.captured_minor if last else 0},
        {"what": "captures that arrived within allowed lateness", "minor_units": captured(False)},
        {"what": "captures that arrived beyond allowed lateness (dropped)", "minor_units": captured(True)},
    ])
