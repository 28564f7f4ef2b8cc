"""The reference engine of the batch benchmark: the reconciliation rules as one DuckDB query.

    python benchmarks/duckdb_reference.py DATA_DIR OUT_PARQUET

Validation (the checks a Parquet input can fail), de-duplication of
re-deliveries, primaries and duplicates per key, statuses at the same as_of,
and every result row written to Parquet, like paybeam writes its results.
Prints the per-status counts as JSON. Run as its own process so the
benchmark measures its whole-process time and peak memory like paybeam's.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from schemas.money import CURRENCY_EXPONENTS  # noqa: E402
from schemas.rules import EVENT_TYPES, RECORD_TYPES  # noqa: E402


def _sql_list(values) -> str:
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


# Written as a competent DuckDB user would (and checked against variants, docs/benchmarks.md
# "Batch reconciliation"): read only the columns used, literal IN lists, one DISTINCT ON per id,
# one row_number() window per side ranking the primaries, the scalar as_of cross-joined.
_VALID_PAYMENT = f"""event_id <> '' AND payment_id <> '' AND processor_reference <> '' AND merchant_id <> ''
      AND amount_minor > 0 AND upper(currency) IN {_sql_list(sorted(CURRENCY_EXPONENTS))}"""
_VALID_LINE = f"""settlement_id <> '' AND processor_reference <> '' AND merchant_id <> ''
      AND gross_minor > 0 AND net_minor = gross_minor - fee_minor
      AND upper(currency) IN {_sql_list(sorted(CURRENCY_EXPONENTS))}"""
_MATCHED_KINDS = ("CAPTURE", "REFUND", "CHARGEBACK")

RESULTS_SQL = f"""
WITH payments AS (
    SELECT DISTINCT ON (event_id) event_id, event_type, processor, processor_reference, merchant_id,
           amount_minor, upper(currency) AS currency, event_time
    FROM read_parquet($payments)
    WHERE {_VALID_PAYMENT} AND event_type IN ('CAPTURED', 'REFUNDED', 'CHARGEBACK')
),
lines AS (
    SELECT DISTINCT ON (settlement_id) settlement_id, record_type, processor, processor_reference, merchant_id,
           gross_minor, upper(currency) AS currency, booked_time
    FROM read_parquet($settlements)
    WHERE {_VALID_LINE} AND record_type IN {_sql_list(_MATCHED_KINDS)}
),
-- as_of is the latest time of every valid record, matched kinds or not (AUTHORIZED, PAYOUT, ...).
as_of AS (
    SELECT greatest(
        (SELECT max(event_time) FROM read_parquet($payments)
         WHERE {_VALID_PAYMENT} AND event_type IN {_sql_list(EVENT_TYPES)}),
        (SELECT max(booked_time) FROM read_parquet($settlements)
         WHERE {_VALID_LINE} AND record_type IN {_sql_list(RECORD_TYPES)})) AS t
),
ledger AS (
    SELECT processor, processor_reference,
           CASE event_type WHEN 'CAPTURED' THEN 'CAPTURE' WHEN 'REFUNDED' THEN 'REFUND' ELSE 'CHARGEBACK' END AS kind,
           event_id, merchant_id, amount_minor, currency, event_time,
           row_number() OVER (PARTITION BY processor, processor_reference, event_type
                              ORDER BY event_time, event_id) AS rank
    FROM payments
),
settled AS (
    SELECT processor, processor_reference, record_type AS kind,
           settlement_id, merchant_id, gross_minor, currency, booked_time,
           row_number() OVER (PARTITION BY processor, processor_reference, record_type
                              ORDER BY booked_time, settlement_id) AS rank
    FROM lines
),
primaries AS (
    SELECT coalesce(l.processor, s.processor) AS processor,
           coalesce(l.processor_reference, s.processor_reference) AS processor_reference,
           coalesce(l.kind, s.kind) AS kind,
           CASE
           WHEN l.event_id IS NOT NULL AND s.settlement_id IS NOT NULL THEN
               CASE WHEN l.currency <> s.currency THEN 'CURRENCY_MISMATCH'
                    WHEN abs(s.gross_minor - l.amount_minor) <= $tolerance THEN 'MATCHED'
                    ELSE 'AMOUNT_MISMATCH' END
           WHEN l.event_id IS NOT NULL THEN
               CASE WHEN as_of.t >= l.event_time + to_seconds($sla) THEN 'MISSING_SETTLEMENT' ELSE 'PENDING' END
           ELSE
               CASE WHEN as_of.t >= s.booked_time + to_seconds($grace) THEN 'UNEXPECTED_SETTLEMENT'
                    ELSE 'PENDING' END
           END AS status,
           coalesce(l.merchant_id, s.merchant_id) AS merchant_id, coalesce(l.currency, s.currency) AS currency,
           l.amount_minor AS ledger_amount_minor, s.gross_minor AS settled_amount_minor,
           CASE WHEN l.currency = s.currency THEN s.gross_minor - l.amount_minor END AS difference_minor,
           l.event_id AS ledger_event_id, s.settlement_id, l.event_time, s.booked_time
    FROM (SELECT * FROM ledger WHERE rank = 1) l
    FULL OUTER JOIN (SELECT * FROM settled WHERE rank = 1) s
      ON l.processor = s.processor AND l.processor_reference = s.processor_reference AND l.kind = s.kind
    CROSS JOIN as_of
)
SELECT * FROM primaries
UNION ALL
SELECT processor, processor_reference, kind, 'DUPLICATE_LEDGER_EVENT', merchant_id, currency, amount_minor, NULL,
       NULL, event_id, NULL, event_time, NULL FROM ledger WHERE rank > 1
UNION ALL
SELECT processor, processor_reference, kind, 'DUPLICATE_SETTLEMENT', merchant_id, currency, NULL, gross_minor,
       NULL, NULL, settlement_id, NULL, booked_time FROM settled WHERE rank > 1
"""


def reconcile(data: Path, out: Path) -> dict:
    connection = duckdb.connect()
    parameters = {
        "payments": str(data / "payments" / "*.parquet"),
        "settlements": str(data / "settlements" / "*.parquet"),
        "tolerance": 0, "sla": 3 * 86_400, "grace": 86_400,
    }
    connection.execute(f"COPY ({RESULTS_SQL}) TO '{out}' (FORMAT PARQUET)", parameters)
    rows = connection.execute(f"SELECT status, count(*) FROM read_parquet('{out}') GROUP BY status").fetchall()
    return dict(rows)


if __name__ == "__main__":
    print(json.dumps(reconcile(Path(sys.argv[1]), Path(sys.argv[2])), sort_keys=True))
