"""DailyTotals (transforms/daily_totals.py) for bounded input: partial sums per shard, combined once.

Each record contributes the same signed amounts as `ledger_contribution`,
`settlement_contribution` and `result_contribution`; a shard sums them per
(merchant_id, currency, settlement day) and `combine_partials` adds the
shards' partial tables up. Settlement days come from the very
`SettlementDay.bounds` the windowed transform uses, evaluated once per
distinct day, so DST and cut-off hours give identical windows. In bounded
input there is one pane per window: ON_TIME, index 0, final.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Iterable, List

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas import arrow, rules
from schemas.money import INT64_MAX, INT64_MIN, MAX_MINOR_UNITS
from schemas.record_tables import concat, to_numpy
from schemas.records import DAILY_TOTAL_FIELDS
from schemas.rules import BREAK_COUNT, BREAK_STATUSES, LEDGER_EVENT_COUNT, SETTLEMENT_LINE_COUNT, SUM_COLUMNS
from transforms.daily_totals import SettlementDay

GROUP_COLUMNS = ("merchant_id", "currency", "window_start")
# Partial sums are exact: int64 sums wrap silently (numpy and Arrow alike), 38-digit decimals cannot
# overflow here. A total outside int64 is published as null (schemas/money.py: within_int64).
EXACT = pa.decimal128(38, 0)
PARTIAL_TABLE = pa.schema([("merchant_id", pa.string()), ("currency", pa.string()), ("window_start", pa.int64()),
                           *[(name, EXACT) for name in SUM_COLUMNS]])
_INT64_RANGE = (pa.scalar(Decimal(INT64_MIN), EXACT), pa.scalar(Decimal(INT64_MAX), EXACT))
# A record contributes at most MAX_MINOR_UNITS either way to each sum (validated amounts; a FEE line's gross
# goes to fees and net, never twice to one sum), so int64 sums of groups this small cannot wrap.
_INT64_SAFE_ROWS = INT64_MAX // MAX_MINOR_UNITS
CONTRIBUTION_TABLE = pa.schema([*[PARTIAL_TABLE.field(name) for name in GROUP_COLUMNS],
                                *[(name, pa.int64()) for name in SUM_COLUMNS]])


_WALK_LIMIT_DAYS = 20_000


def window_starts(times: np.ndarray, settlement_day: SettlementDay) -> np.ndarray:
    """The start (epoch millis) of the settlement day of each instant."""
    if len(times) == 0:
        return np.zeros(0, dtype=np.int64)
    earliest, latest = int(times.min()), int(times.max())
    starts: List[int] = []
    if (latest - earliest) // 86_400_000 < _WALK_LIMIT_DAYS:
        moment = earliest  # walk every day of the span: a few bounds() calls
        while moment <= latest:
            start, end, _ = settlement_day.bounds(moment)
            starts.append(start)
            moment = end
    else:  # a span of decades: only the days that occur
        distinct = np.unique(times)
        position = 0
        while position < len(distinct):
            start, end, _ = settlement_day.bounds(int(distinct[position]))
            starts.append(start)
            position = int(np.searchsorted(distinct, end, side="left"))
    starts_array = np.array(starts, dtype=np.int64)
    return starts_array[np.searchsorted(starts_array, times, side="right") - 1]


def _contributions(merchant, currency, times: np.ndarray, sums: dict,
                   settlement_day: SettlementDay) -> pa.Table:
    rows = len(times)
    columns = [merchant, currency, pa.array(window_starts(times, settlement_day), pa.int64())]
    zeros = np.zeros(rows, dtype=np.int64)
    columns += [pa.array(sums.get(name, zeros), pa.int64()) for name in SUM_COLUMNS]
    return pa.Table.from_arrays(columns, schema=CONTRIBUTION_TABLE)


def _amount_where(types, amounts: np.ndarray, value: str) -> np.ndarray:
    return np.where(to_numpy(pc.equal(types, value)), amounts, 0)


def _add_to(sums: dict, column: str, amounts: np.ndarray) -> None:
    sums[column] = sums[column] + amounts if column in sums else amounts


def ledger_partials(payments: pa.Table, settlement_day: SettlementDay) -> pa.Table:
    types, amount = payments.column("event_type"), to_numpy(payments.column("amount_minor"))
    sums: dict = {}
    for event_type, column in rules.LEDGER_SUM_OF_EVENT_TYPE.items():
        _add_to(sums, column, _amount_where(types, amount, event_type))
    sums[LEDGER_EVENT_COUNT] = np.ones(payments.num_rows, dtype=np.int64)
    return _sum_contributions(_contributions(payments.column("merchant_id"), payments.column("currency"),
                               to_numpy(payments.column("event_time")), sums, settlement_day))


def settlement_partials(settlements: pa.Table, settlement_day: SettlementDay) -> pa.Table:
    """What the rules table (schemas/rules.py: SETTLEMENT_SUMS) adds per record type, as settlement_contribution."""
    types = settlements.column("record_type")
    fields = {name: to_numpy(settlements.column(name)) for name in ("gross_minor", "fee_minor", "net_minor")}
    sums: dict = {}
    for record_type, terms in rules.SETTLEMENT_SUMS.items():
        of_type = to_numpy(pc.equal(types, record_type))
        for column, field, factor in terms:
            _add_to(sums, column, np.where(of_type, factor * fields[field], 0))
    sums[SETTLEMENT_LINE_COUNT] = np.ones(settlements.num_rows, dtype=np.int64)
    return _sum_contributions(_contributions(settlements.column("merchant_id"), settlements.column("currency"),
                               to_numpy(settlements.column("booked_time")), sums, settlement_day))


def break_partials(results: pa.Table, settlement_day: SettlementDay) -> pa.Table:
    """Break rows at their record's own time (ResultsAtRecordTime); bounded input has one revision per key."""
    times = to_numpy(pc.coalesce(results.column("event_time"), results.column("booked_time")))
    breaks = to_numpy(pc.is_in(results.column("status"), pa.array(sorted(BREAK_STATUSES)))).astype(np.int64)
    return _sum_contributions(_contributions(results.column("merchant_id"), results.column("currency"), times,
                               {BREAK_COUNT: breaks}, settlement_day))


def _sum_contributions(contributions: pa.Table) -> pa.Table:
    """Per-record int64 contributions -> a PARTIAL_TABLE: summed in int64 where no group can wrap (fast),
    else again in decimals."""
    summed = _grouped_sums(contributions, with_rows=True)
    if summed.num_rows and pc.max(summed.column("rows")).as_py() > _INT64_SAFE_ROWS:
        summed = _grouped_sums(contributions.cast(PARTIAL_TABLE))
    return summed.select(PARTIAL_TABLE.names).cast(PARTIAL_TABLE)


def sum_partials(partials: pa.Table) -> pa.Table:
    """PARTIAL_TABLE rows -> one row per group."""
    return _grouped_sums(partials).cast(PARTIAL_TABLE)


def _grouped_sums(table: pa.Table, with_rows: bool = False) -> pa.Table:
    """One row per group: its sums in the table's own types (and with `with_rows` its row count, "rows")."""
    names = list(table.schema.names) + (["rows"] if with_rows else [])
    if table.num_rows == 0:
        return pa.schema([*table.schema, *([("rows", pa.int64())] if with_rows else [])]).empty_table()
    summed = table.group_by(list(GROUP_COLUMNS), use_threads=False).aggregate(
        [(name, "sum") for name in SUM_COLUMNS] + ([(GROUP_COLUMNS[0], "count")] if with_rows else []))
    renamed = {f"{name}_sum": name for name in SUM_COLUMNS}
    renamed[f"{GROUP_COLUMNS[0]}_count"] = "rows"
    return summed.rename_columns([renamed.get(name, name) for name in summed.column_names]).select(names)


def within_int64_array(sums) -> pa.Array:
    """`within_int64` of exact decimal sums: int64, null where the sum leaves it."""
    low, high = _INT64_RANGE
    inside = pc.and_(pc.greater_equal(sums, low), pc.less_equal(sums, high))
    return pc.if_else(inside, sums, pa.scalar(None, EXACT)).cast(pa.int64())


def combine_partials(partials: Iterable[pa.Table], settlement_day: SettlementDay) -> pa.Table:
    """Partial tables of every shard -> the DailyTotal rows (schemas.arrow.DAILY_TOTAL), one pane per day."""
    summed = sum_partials(concat(partials, PARTIAL_TABLE))
    starts = summed.column("window_start").to_pylist()
    bounds = {start: settlement_day.bounds(start) for start in set(starts)}
    rows = summed.num_rows
    columns = {name: summed.column(name) for name in summed.column_names}
    columns.update({name: within_int64_array(summed.column(name)) for name in SUM_COLUMNS})
    columns["settlement_day"] = pa.array([bounds[start][2] for start in starts], pa.string())
    columns["window_end"] = pa.array([bounds[start][1] for start in starts], pa.int64())
    columns["pane_timing"] = pa.array(["ON_TIME"] * rows, pa.string())
    columns["pane_index"] = pa.array(np.zeros(rows, dtype=np.int64))
    columns["is_final"] = pa.array(np.ones(rows, dtype=bool))
    table = pa.Table.from_arrays([columns[name] for name in DAILY_TOTAL_FIELDS], names=list(DAILY_TOTAL_FIELDS))
    return table.cast(arrow.DAILY_TOTAL)
