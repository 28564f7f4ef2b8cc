"""Typed records as Arrow tables and back: the columnar engine's in-memory form of DESIGN.md 3.

Times are epoch-millis int64 columns here (the output writers cast them to
the timestamp columns of `schemas.arrow`); `settlement_date` stays ISO text,
exactly as the NamedTuple records hold it, so a row converts both ways
without loss.
"""
from __future__ import annotations

from typing import Iterable, List, NamedTuple, Sequence, Tuple, Type

import numpy as np
import pyarrow as pa

from schemas import arrow
from schemas.attempts import ATTEMPT_FIELDS, ATTEMPTS, AuthorizationAttempt
from schemas.records import PAYMENTS, DailyTotal, PaymentEvent, ReconciliationResult, SettlementLine

_TEXT, _INT, _BOOL = pa.string(), pa.int64(), pa.bool_()


def _schema_of(record_type: Type[NamedTuple], ints: Sequence[str], bools: Sequence[str] = ()) -> pa.Schema:
    return pa.schema([(name, _INT if name in ints else _BOOL if name in bools else _TEXT)
                      for name in record_type._fields])


PAYMENT_TABLE = _schema_of(PaymentEvent, ints=("amount_minor", "event_time"))
SETTLEMENT_TABLE = _schema_of(SettlementLine, ints=("gross_minor", "fee_minor", "net_minor", "booked_time",
                                                    "matched_minor"))
RESULT_TABLE = _schema_of(
    ReconciliationResult,
    ints=("ledger_amount_minor", "settled_amount_minor", "difference_minor", "event_time", "booked_time",
          "revision"),
    bools=("is_final",))

ATTEMPT_TABLE = _schema_of(AuthorizationAttempt, ints=("amount_minor", "event_time"))

TABLE_SCHEMA_OF_INPUT = {PAYMENTS: PAYMENT_TABLE, "settlements": SETTLEMENT_TABLE, ATTEMPTS: ATTEMPT_TABLE}
RECORD_TYPE_OF_INPUT = {PAYMENTS: PaymentEvent, "settlements": SettlementLine, ATTEMPTS: AuthorizationAttempt}
TIME_COLUMN_OF_INPUT = {PAYMENTS: "event_time", "settlements": "booked_time", ATTEMPTS: "event_time"}
ID_COLUMN_OF_INPUT = {PAYMENTS: "event_id", "settlements": "settlement_id", ATTEMPTS: "attempt_id"}


# What deduplication, matching, daily totals and payout balances read of each input: the columnar
# engine shuffles only these (payment_id is validated, then never read again).
RECONCILED_COLUMNS = {
    PAYMENTS: ("event_id", "event_type", "processor", "processor_reference", "merchant_id", "amount_minor",
               "currency", "event_time"),
    "settlements": ("settlement_id", "processor", "processor_reference", "merchant_id", "record_type",
                    "gross_minor", "fee_minor", "net_minor", "currency", "booked_time", "matched_minor",
                    "matched_currency", "settlement_date", "payout_id"),
    ATTEMPTS: ATTEMPT_FIELDS,  # an attempt's every field decides (filters and keys read any of them)
}
RECONCILED_SCHEMA_OF_INPUT = {name: pa.schema([TABLE_SCHEMA_OF_INPUT[name].field(column) for column in columns])
                              for name, columns in RECONCILED_COLUMNS.items()}


def records_to_table(records: Sequence[NamedTuple], schema: pa.Schema) -> pa.Table:
    columns = list(zip(*records)) if records else [[] for _ in schema.names]
    return pa.Table.from_arrays([pa.array(column, type=field.type) for column, field in zip(columns, schema)],
                                schema=schema)


def table_to_records(table: pa.Table, record_type: Type[NamedTuple]) -> List[NamedTuple]:
    columns = [table.column(name).to_pylist() for name in record_type._fields]
    return [record_type(*values) for values in zip(*columns)]


def results_for_output(results: pa.Table) -> pa.Table:
    """A RESULT_TABLE in the Parquet output schema (timestamps instead of epoch millis)."""
    return results.select(arrow.RECONCILIATION_RESULT.names).cast(arrow.RECONCILIATION_RESULT)


def daily_total_records(table: pa.Table) -> List[DailyTotal]:
    """A schemas.arrow.DAILY_TOTAL table -> DailyTotal records (times back to epoch millis)."""
    columns = [column.cast(pa.int64()) if pa.types.is_timestamp(column.type) else column for column in table.columns]
    return table_to_records(pa.Table.from_arrays(columns, names=table.column_names), DailyTotal)


def result_records(shard_table: Tuple[int, pa.Table]) -> List[ReconciliationResult]:
    """A columnar (shard, RESULT_TABLE) element -> its rows as ReconciliationResult records."""
    return table_to_records(shard_table[1], ReconciliationResult)


def to_numpy(column) -> np.ndarray:
    """An Arrow array or chunked array as one numpy array (copying where Arrow cannot share, e.g. booleans)."""
    array = column if isinstance(column, pa.Array) else column.combine_chunks()
    return array.to_numpy(zero_copy_only=False)


def concat(tables: Iterable[pa.Table], schema: pa.Schema) -> pa.Table:
    tables = [table for table in tables if table.num_rows]
    return pa.concat_tables(tables).combine_chunks() if tables else schema.empty_table()
