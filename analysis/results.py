"""Reconciliation outputs as pandas DataFrames, and the break analyses on them.

Sources: the records `ib.collect(..., raw_records=True)` returns (or any list
of the typed records), the DataFrames `ib.collect` returns, or an output
directory written by `paybeam reconcile` (`load_outputs`). Every frame is
normalised the same way: integer money and epoch-millis columns as pandas
nullable ``Int64`` (never float), so a missing side stays missing (<NA>)
instead of turning amounts into floats.
"""
from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas.money import to_major_units
from schemas.records import DailyTotal, DeadLetter, PaymentEvent, ReconciliationResult, SettlementLine
from schemas.rules import BREAK_STATUSES, KIND_OF_EVENT_TYPE, KIND_OF_RECORD_TYPE, STATUSES
from transforms.daily_totals import SettlementDay

KEY = ["processor", "processor_reference", "kind"]

_INTEGER_COLUMNS = {
    PaymentEvent: ("amount_minor", "event_time"),
    SettlementLine: ("gross_minor", "fee_minor", "net_minor", "booked_time"),
    ReconciliationResult: ("ledger_amount_minor", "settled_amount_minor", "difference_minor", "event_time",
                           "booked_time", "revision"),
    DailyTotal: ("window_start", "window_end", "captured_minor", "refunded_minor", "chargeback_minor",
                 "ledger_event_count", "settled_gross_minor", "fee_minor", "settled_net_minor", "adjustment_minor",
                 "payout_minor", "settlement_line_count", "break_count", "pane_index"),
    DeadLetter: (),
}
_BOOL_COLUMNS = {ReconciliationResult: ("is_final",), DailyTotal: ("is_final",)}


def normalize(frame: pd.DataFrame, record_type) -> pd.DataFrame:
    """The record type's columns, in order, integer columns as nullable Int64."""
    frame = frame.copy()
    for column in record_type._fields:
        if column not in frame.columns:
            frame[column] = None
    frame = frame[list(record_type._fields)]
    for column in _INTEGER_COLUMNS.get(record_type, ()):
        values = frame[column]
        if values.dtype.kind == "f":
            fractional = values.notna() & (values != values.round())
            if fractional.any():
                raise ValueError(f"{column} holds non-integer values; money and times are integers")
        frame[column] = values.astype("Int64")
    for column in _BOOL_COLUMNS.get(record_type, ()):
        frame[column] = frame[column].astype(bool)
    return frame.reset_index(drop=True)


def records_frame(records: Iterable, record_type) -> pd.DataFrame:
    """Typed records (NamedTuples or dicts) -> a normalised DataFrame."""
    rows = [record._asdict() if hasattr(record, "_asdict") else dict(record) for record in records]
    return normalize(pd.DataFrame(rows, columns=list(record_type._fields)), record_type)


@dataclass
class Outputs:
    results: pd.DataFrame
    daily_totals: pd.DataFrame
    dead_letters: pd.DataFrame
    payments: Optional[pd.DataFrame] = None  # accepted (validated, deduplicated) ledger events, when known
    settlements: Optional[pd.DataFrame] = None  # accepted settlement lines, when known


def parquet_rows(pattern: str) -> list:
    """Rows of the Parquet files matching `pattern`; timestamp columns as epoch millis (like the records)."""
    rows: list = []
    for path in sorted(glob.glob(pattern)):
        table = pq.read_table(path)
        for index, column in enumerate(table.schema):
            if pa.types.is_timestamp(column.type):
                millis = pc.cast(table.column(index), pa.timestamp("ms", tz=column.type.tz)).cast(pa.int64())
                table = table.set_column(index, column.name, millis)
        rows.extend(table.to_pylist())
    return rows


def load_outputs(output_dir: str) -> Outputs:
    """Reads what `paybeam reconcile` wrote under `output_dir`."""
    letters = []
    for path in sorted(glob.glob(os.path.join(output_dir, "dead_letters", "*.jsonl"))):
        with open(path, encoding="utf-8") as handle:
            letters.extend(json.loads(line) for line in handle if line.strip())
    return Outputs(
        results=records_frame(parquet_rows(os.path.join(output_dir, "results", "*.parquet")), ReconciliationResult),
        daily_totals=records_frame(parquet_rows(os.path.join(output_dir, "daily_totals", "*.parquet")), DailyTotal),
        dead_letters=records_frame(letters, DeadLetter),
    )


def outputs_from_records(collected: Mapping[str, Sequence]) -> Outputs:
    """{"results": [...], "daily_totals": [...], "dead_letters": [...], "payments": [...], "settlements": [...]}
    of typed records (e.g. from `ib.collect(..., raw_records=True)`) -> Outputs."""
    def frame(name, record_type):
        return records_frame(collected[name], record_type) if name in collected else None
    return Outputs(
        results=frame("results", ReconciliationResult),
        daily_totals=frame("daily_totals", DailyTotal),
        dead_letters=frame("dead_letters", DeadLetter),
        payments=frame("payments", PaymentEvent),
        settlements=frame("settlements", SettlementLine),
    )


# ------------------------------------------------------------------ results and breaks


def latest_revision(results: pd.DataFrame) -> pd.DataFrame:
    """The answer per key: the rows of its highest revision."""
    if results.empty:
        return results
    top = results.groupby(KEY)["revision"].transform("max")
    return results[results["revision"] == top].reset_index(drop=True)


def breaks(results: pd.DataFrame) -> pd.DataFrame:
    """Break rows (not MATCHED, not PENDING) of each key's answer."""
    answer = latest_revision(results)
    return answer[answer["status"].isin(BREAK_STATUSES)].reset_index(drop=True)


def _status_order(statuses: Iterable[str]) -> list:
    present = set(statuses)
    return [s for s in STATUSES if s in present] + sorted(present - set(STATUSES))


def status_counts(results: pd.DataFrame) -> pd.DataFrame:
    """Rows per status of each key's answer (every status, breaks flagged), in the order of docs/formats.md (Statuses)."""
    answer = latest_revision(results)
    counts = answer["status"].value_counts()
    order = _status_order(counts.index)
    return pd.DataFrame({"status": order, "rows": [int(counts[s]) for s in order],
                         "is_break": [s in BREAK_STATUSES for s in order]})


def breaks_by(results: pd.DataFrame, by: str) -> pd.DataFrame:
    """Break rows per `by` (e.g. processor, merchant_id, currency) and status, with a total, most breaks first."""
    rows = breaks(results)
    if rows.empty:
        return pd.DataFrame(columns=[by, "total"]).set_index(by)
    table = pd.crosstab(rows[by], rows["status"])
    table = table[_status_order(table.columns)]
    table["total"] = table.sum(axis=1)
    table.columns.name = None
    return table.sort_values("total", ascending=False, kind="stable").astype("int64")


# Which amount of a break row is at risk (minor units of the row's currency).
AT_RISK_RULE = {
    "AMOUNT_MISMATCH": "abs(difference_minor)",
    "CURRENCY_MISMATCH": "ledger_amount_minor",
    "MISSING_SETTLEMENT": "ledger_amount_minor",
    "DUPLICATE_LEDGER_EVENT": "ledger_amount_minor",
    "UNEXPECTED_SETTLEMENT": "settled_amount_minor",
    "DUPLICATE_SETTLEMENT": "settled_amount_minor",
}


def at_risk_minor(row: Mapping) -> int:
    """The amount at risk of one break row, in minor units of its currency."""
    status = row["status"]
    if status == "AMOUNT_MISMATCH":
        value = row["difference_minor"]
        return 0 if pd.isna(value) else abs(int(value))
    if status in ("CURRENCY_MISMATCH", "MISSING_SETTLEMENT", "DUPLICATE_LEDGER_EVENT"):
        value = row["ledger_amount_minor"]
    elif status in ("UNEXPECTED_SETTLEMENT", "DUPLICATE_SETTLEMENT"):
        value = row["settled_amount_minor"]
    else:
        return 0
    return 0 if pd.isna(value) else int(value)


def amount_at_risk(results: pd.DataFrame) -> pd.DataFrame:
    """Per break status and currency: rows and amount at risk (integer minor units, plus display text).

    Currencies are never added together: one row per (status, currency).
    """
    rows = breaks(results)
    columns = ["status", "currency", "rows", "at_risk_minor", "at_risk", "rule"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    rows = rows.assign(at_risk_minor=[at_risk_minor(r) for r in rows.to_dict("records")])
    table = (rows.groupby(["status", "currency"], sort=False)
             .agg(rows=("status", "size"), at_risk_minor=("at_risk_minor", "sum"))
             .reset_index())
    table["at_risk_minor"] = table["at_risk_minor"].astype("int64")
    table["rows"] = table["rows"].astype("int64")
    table["at_risk"] = [f"{to_major_units(int(m), c)} {c}" for m, c in zip(table["at_risk_minor"], table["currency"])]
    table["rule"] = table["status"].map(AT_RISK_RULE)
    order = {s: i for i, s in enumerate(STATUSES)}
    table = table.sort_values(["status", "currency"], key=lambda s: s.map(order) if s.name == "status" else s)
    return table[columns].reset_index(drop=True)


def with_major_units(frame: pd.DataFrame, columns: Sequence[str], currency_column: str = "currency") -> pd.DataFrame:
    """Adds `<column>_major` display columns (exact text in major units) next to minor-unit columns."""
    frame = frame.copy()
    for column in columns:
        if frame[column].dtype.kind == "f":
            raise TypeError(f"{column} is a float column; money must stay integer (use normalize / records_frame)")
        frame[column.replace("_minor", "") + "_major"] = [
            None if pd.isna(value) else to_major_units(int(value), currency)
            for value, currency in zip(frame[column], frame[currency_column])]
    return frame


# ------------------------------------------------------------------ drill-down


def pick_break(results: pd.DataFrame, status: str, index: int = 0) -> pd.Series:
    """A break row of `status` (deterministic: ordered by key), for drill-downs."""
    rows = breaks(results)
    rows = rows[rows["status"] == status].sort_values(KEY + ["ledger_event_id", "settlement_id"], na_position="first")
    if rows.empty:
        raise LookupError(f"no {status} break in these results")
    return rows.iloc[index]


@dataclass
class DrillDown:
    result: pd.DataFrame  # the break row
    ledger_events: pd.DataFrame  # the key's accepted ledger events; `is_this_row` marks the row's own event
    settlement_lines: pd.DataFrame  # the key's accepted settlement lines; `is_this_row` marks the row's own line
    key_results: pd.DataFrame  # every row of the key's answer (e.g. the MATCHED primary next to a duplicate)


def drill_down(row, payments: pd.DataFrame, settlements: pd.DataFrame,
               results: Optional[pd.DataFrame] = None) -> DrillDown:
    """From a result row to its ledger event(s) and settlement line(s) among the accepted records."""
    row = dict(row)
    key = (row["processor"], row["processor_reference"], row["kind"])
    ledger = payments[(payments["processor"] == key[0]) & (payments["processor_reference"] == key[1])
                      & (payments["event_type"].map(KIND_OF_EVENT_TYPE) == key[2])]
    ledger = ledger.assign(is_this_row=ledger["event_id"] == row.get("ledger_event_id"))
    lines = settlements[(settlements["processor"] == key[0]) & (settlements["processor_reference"] == key[1])
                        & (settlements["record_type"].map(KIND_OF_RECORD_TYPE) == key[2])]
    lines = lines.assign(is_this_row=lines["settlement_id"] == row.get("settlement_id"))
    key_results = pd.DataFrame(columns=list(ReconciliationResult._fields))
    if results is not None:
        answer = latest_revision(results)
        key_results = answer[(answer["processor"] == key[0]) & (answer["processor_reference"] == key[1])
                             & (answer["kind"] == key[2])].reset_index(drop=True)
    return DrillDown(
        result=pd.DataFrame([row]).reset_index(drop=True),
        ledger_events=ledger.sort_values(["event_time", "event_id"]).reset_index(drop=True),
        settlement_lines=lines.sort_values(["booked_time", "settlement_id"]).reset_index(drop=True),
        key_results=key_results,
    )


# ------------------------------------------------------------------ per day


def final_panes(daily_totals: pd.DataFrame) -> pd.DataFrame:
    """The last pane of each (merchant, currency, settlement day)."""
    if daily_totals.empty:
        return daily_totals
    top = daily_totals.groupby(["merchant_id", "currency", "settlement_day"])["pane_index"].transform("max")
    return daily_totals[daily_totals["pane_index"] == top].reset_index(drop=True)


DAY_SUM_COLUMNS = ("captured_minor", "refunded_minor", "chargeback_minor", "settled_gross_minor", "fee_minor",
                   "settled_net_minor", "ledger_event_count", "settlement_line_count", "break_count")


def totals_per_day(daily_totals: pd.DataFrame) -> pd.DataFrame:
    """Per settlement day and currency, the merchants' last panes summed (never across currencies)."""
    panes = final_panes(daily_totals)
    table = panes.groupby(["settlement_day", "currency"])[list(DAY_SUM_COLUMNS)].sum().reset_index()
    for column in DAY_SUM_COLUMNS:
        table[column] = table[column].astype("int64")
    return table.sort_values(["settlement_day", "currency"]).reset_index(drop=True)


def breaks_per_day(results: pd.DataFrame, settlement_day: SettlementDay = SettlementDay()) -> pd.DataFrame:
    """Break rows per settlement day and status: the day of the row's ledger event, or of its
    settlement line when it has none (how DailyTotals counts `break_count`)."""
    rows = breaks(results)
    if rows.empty:
        return pd.DataFrame()
    anchor = rows["event_time"].where(rows["event_time"].notna(), rows["booked_time"])
    rows = rows.assign(settlement_day=[settlement_day.bounds(int(t))[2] for t in anchor])
    table = pd.crosstab(rows["settlement_day"], rows["status"])
    table = table[_status_order(table.columns)]
    table.columns.name = None
    return table.sort_index()
