"""The reference engine of the risk benchmark: the example rules as one DuckDB query with window functions.

    python benchmarks/duckdb_risk_reference.py 'ATTEMPTS_GLOB' OUT_PARQUET [--ten]

(--ten: benchmarks/ten_rules.yaml instead, the seven + customer and device velocity and card testing per BIN.)

transforms/risk/example_rules.yaml written by hand as SQL, as a competent
DuckDB user would: read the columns used, keep one row per attempt id (the
first read), and per rule a windowed count or sum over the earlier attempts of
its key (`before`: the decision order is (event_time, attempt_id)), plus the
attempt itself where the rule's filter has no
condition on the outcome; the distinct count of billing countries over `RANGE
BETWEEN W-1 PRECEDING AND CURRENT ROW` (exact unless one card has two attempts
in one millisecond). Writes every attempt's action, score and fired rule ids to
Parquet; prints the actions' counts as JSON. Its own process, so the benchmark
measures its whole-process time and memory like paybeam's.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from schemas.money import CURRENCY_EXPONENTS  # noqa: E402

MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
AUTHORIZATION = "attempt_type = 'AUTHORIZATION'"
SMALL_DECLINE = "outcome = 'DECLINED' AND amount_minor <= 500"
FIRED = (("amount-far-above-history", "amount_spike"), ("card-testing-card", "card_testing_card"),
         ("card-testing-ip", "card_testing_ip"), ("card-velocity", "velocity > 0"), ("geo-velocity", "geo_velocity"),
         ("merchant-decline-spike", "decline_spike"), ("refund-abuse", "refund_abuse"))  # by rule id
TEN_FIRED = tuple(sorted(FIRED + (("card-testing-bin", "card_testing_bin"), ("customer-velocity", "customer_velocity"),
                                  ("device-velocity", "device_velocity"))))


def before(value: str, condition: str, key: str, window_millis: int) -> str:
    """The sum of `value` over the key's attempts before this one within the window (the decision order):
    the frame up to the current millisecond, less this attempt and those of its millisecond with a larger id.

    The fastest exact form of the ones measured at 1M attempts (docs/benchmarks.md, 2026-12-05): `count(*)
    FILTER (...)` over `RANGE ... AND 1 PRECEDING` took 37.8 s, `sum(CASE ...)` over it 17.0 s, this 11.4 s."""
    counted = f"sum(CASE WHEN {condition} THEN {value} ELSE 0 END)"
    return (f"(coalesce({counted} OVER (PARTITION BY {key} ORDER BY t "
            f"RANGE BETWEEN {window_millis - 1} PRECEDING AND CURRENT ROW), 0)"
            f" - coalesce({counted} OVER (PARTITION BY {key}, t ORDER BY attempt_id "
            f"ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING), 0))")


def _ten_rules_aggregates() -> str:
    return f""",
    CASE WHEN customer_id IS NOT NULL
      THEN {before("1", AUTHORIZATION, "customer_id", HOUR)} + (attempt_type = 'AUTHORIZATION')::INT END
      AS customer_authorizations,
    CASE WHEN device_id IS NOT NULL
      THEN {before("1", AUTHORIZATION, "device_id", HOUR)} + (attempt_type = 'AUTHORIZATION')::INT END
      AS device_authorizations,
    CASE WHEN card_bin IS NOT NULL THEN {before("1", SMALL_DECLINE, "card_bin", 10 * MINUTE)} END AS bin_declines"""


TEN_RULES_FIRED = """,
    coalesce(customer_authorizations >= 12, false) AS customer_velocity,
    coalesce(device_authorizations >= 12, false) AS device_velocity,
    coalesce(bin_declines >= 20, false) AS card_testing_bin"""


def query(pattern: str, ten: bool = False) -> str:
    currencies = ", ".join(f"'{code}'" for code in sorted(CURRENCY_EXPONENTS))
    review = "decline_spike OR amount_spike OR refund_abuse" + (
        " OR customer_velocity OR device_velocity OR card_testing_bin" if ten else "")
    return f"""
WITH attempts AS (
  SELECT DISTINCT ON (attempt_id) attempt_id, attempt_type, epoch_ms(event_time) AS t, merchant_id, amount_minor,
         currency, card_fingerprint, customer_id, ip, billing_country, outcome{", device_id, card_bin" if ten else ""}
  FROM read_parquet('{pattern}', filename = true, file_row_number = true)
  WHERE attempt_id <> '' AND merchant_id <> '' AND card_fingerprint <> '' AND amount_minor > 0
    AND currency IN ({currencies}) AND attempt_type IN ('AUTHORIZATION', 'REFUND')
    AND outcome IN ('APPROVED', 'DECLINED')
  ORDER BY attempt_id, filename, file_row_number
), aggregates AS (
  SELECT *,
    CASE WHEN ip IS NOT NULL THEN {before("1", SMALL_DECLINE, "ip", 10 * MINUTE)} END AS ip_declines,
    {before("1", SMALL_DECLINE, "card_fingerprint", 10 * MINUTE)} AS card_declines,
    {before("1", AUTHORIZATION, "card_fingerprint", HOUR)} + (attempt_type = 'AUTHORIZATION')::INT
      AS card_authorizations,
    {before("1", AUTHORIZATION, "merchant_id", HOUR)} AS merchant_volume,
    {before("1", AUTHORIZATION + " AND outcome = 'DECLINED'", "merchant_id", HOUR)} AS merchant_declines,
    {before("1", AUTHORIZATION, "merchant_id", DAY)} AS merchant_day_volume,
    {before("1", AUTHORIZATION + " AND outcome = 'DECLINED'", "merchant_id", DAY)} AS merchant_day_declines,
    CASE WHEN customer_id IS NOT NULL
      THEN {before("1", AUTHORIZATION, "customer_id, currency", 30 * DAY)} END AS history_volume,
    CASE WHEN customer_id IS NOT NULL
      THEN {before("amount_minor", AUTHORIZATION, "customer_id, currency", 30 * DAY)} END AS history_total,
    count(DISTINCT billing_country) OVER (PARTITION BY card_fingerprint ORDER BY t
      RANGE BETWEEN {HOUR - 1} PRECEDING AND CURRENT ROW) AS card_countries,
    CASE WHEN customer_id IS NOT NULL
      THEN {before("1", "attempt_type = 'REFUND'", "customer_id", 7 * DAY)}
           + (attempt_type = 'REFUND')::INT END AS customer_refunds{_ten_rules_aggregates() if ten else ""}
  FROM attempts
), fired AS (
  SELECT attempt_id, t, merchant_id, amount_minor, currency,
    coalesce(ip_declines >= 5, false) AS card_testing_ip,
    card_declines >= 4 AS card_testing_card,
    CASE WHEN card_authorizations >= 10 THEN 2 WHEN card_authorizations >= 6 THEN 1 ELSE 0 END AS velocity,
    coalesce(merchant_volume >= 20 AND merchant_declines * 10000 // nullif(merchant_volume, 0) >= 3000
      AND merchant_day_volume >= 100
      AND merchant_declines::HUGEINT * merchant_day_volume * 100
          >= 300::HUGEINT * merchant_day_declines * merchant_volume, false) AS decline_spike,
    coalesce(history_volume >= 3 AND history_total > 0
      AND amount_minor::HUGEINT * 100 * history_volume // nullif(history_total, 0) >= 1000, false) AS amount_spike,
    card_countries >= 2 AS geo_velocity,
    coalesce(customer_refunds >= 3, false) AS refund_abuse{TEN_RULES_FIRED if ten else ""}
  FROM aggregates
), decided AS (
  SELECT *, CASE WHEN geo_velocity THEN 60 ELSE 0 END AS score,
    greatest(CASE WHEN card_testing_ip OR card_testing_card THEN 2 ELSE 0 END, velocity,
             CASE WHEN {review} THEN 1 ELSE 0 END,
             CASE WHEN geo_velocity THEN 1 ELSE 0 END) AS level  -- a score of 60: review at 50, block at 100
  FROM fired
)
SELECT attempt_id, make_timestamp(t * 1000) AS event_time, merchant_id, amount_minor, currency,
  CASE level WHEN 2 THEN 'block' WHEN 1 THEN 'review' ELSE 'allow' END AS action, score,
  {" || ".join(f"CASE WHEN {flag} THEN ['{rule}'] ELSE []::VARCHAR[] END" for rule, flag in (TEN_FIRED if ten else FIRED))} AS fired
FROM decided
"""


def main() -> int:
    pattern, out, ten = sys.argv[1], sys.argv[2], sys.argv[3:] == ["--ten"]
    connection = duckdb.connect()
    connection.execute(f"COPY ({query(pattern, ten)}) TO '{out}' (FORMAT parquet, COMPRESSION snappy)")
    counts = dict(connection.execute(f"SELECT action, count(*) FROM read_parquet('{out}') GROUP BY action")
                  .fetchall())
    print(json.dumps({action: counts.get(action, 0) for action in ("allow", "review", "block")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
