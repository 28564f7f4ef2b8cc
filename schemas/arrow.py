"""Arrow schemas for the Parquet inputs and outputs, field-for-field the Avro ones."""
from __future__ import annotations

import pyarrow as pa

TIMESTAMP = pa.timestamp("ms", tz="UTC")

PAYMENT_EVENT = pa.schema([
    ("event_id", pa.string()), ("payment_id", pa.string()), ("event_type", pa.string()),
    ("processor", pa.string()), ("processor_reference", pa.string()), ("merchant_id", pa.string()),
    ("amount_minor", pa.int64()), ("currency", pa.string()), ("event_time", TIMESTAMP),
])

SETTLEMENT_LINE = pa.schema([
    ("settlement_id", pa.string()), ("processor", pa.string()), ("processor_reference", pa.string()),
    ("merchant_id", pa.string()), ("record_type", pa.string()), ("gross_minor", pa.int64()),
    ("fee_minor", pa.int64()), ("net_minor", pa.int64()), ("currency", pa.string()),
    ("settlement_date", pa.date32()), ("booked_time", TIMESTAMP), ("payout_id", pa.string()),
])

AUTHORIZATION_ATTEMPT = pa.schema([
    ("attempt_id", pa.string()), ("attempt_type", pa.string()), ("event_time", TIMESTAMP),
    ("merchant_id", pa.string()), ("amount_minor", pa.int64()), ("currency", pa.string()),
    ("card_fingerprint", pa.string()), ("card_bin", pa.string()), ("customer_id", pa.string()), ("ip", pa.string()),
    ("device_id", pa.string()), ("billing_country", pa.string()), ("issuing_country", pa.string()),
    ("outcome", pa.string()), ("decline_code", pa.string()), ("three_ds", pa.string()), ("payment_id", pa.string()),
])

FIRED_RULE = pa.struct([
    ("rule_id", pa.string()), ("rule_version", pa.int64()), ("value", pa.int64()), ("volume", pa.int64()),
    ("action", pa.string()), ("score", pa.int64()), ("reason", pa.string()),
])

RISK_DECISION = pa.schema([
    ("attempt_id", pa.string()), ("event_time", TIMESTAMP), ("merchant_id", pa.string()),
    ("amount_minor", pa.int64()), ("currency", pa.string()), ("action", pa.string()), ("score", pa.int64()), ("fired", pa.list_(FIRED_RULE)), ("shadow_fired", pa.list_(FIRED_RULE)),
    ("rule_versions", pa.string()), ("ruleset", pa.string()),
])

RULE_CHANGE = pa.schema([
    ("attempt_id", pa.string()), ("event_time", TIMESTAMP), ("merchant_id", pa.string()),
    ("amount_minor", pa.int64()), ("currency", pa.string()), ("action_before", pa.string()),
    ("action_after", pa.string()), ("fired_before", pa.string()), ("fired_after", pa.string()),
])

RECONCILIATION_RESULT = pa.schema([
    ("processor", pa.string()), ("processor_reference", pa.string()), ("kind", pa.string()),
    ("status", pa.string()), ("merchant_id", pa.string()), ("currency", pa.string()),
    ("ledger_amount_minor", pa.int64()), ("settled_amount_minor", pa.int64()),
    ("difference_minor", pa.int64()), ("ledger_event_id", pa.string()), ("settlement_id", pa.string()),
    ("event_time", TIMESTAMP), ("booked_time", TIMESTAMP), ("revision", pa.int64()), ("is_final", pa.bool_()),
])

DAILY_TOTAL = pa.schema([
    ("merchant_id", pa.string()), ("currency", pa.string()), ("settlement_day", pa.string()),
    ("window_start", TIMESTAMP), ("window_end", TIMESTAMP),
    ("captured_minor", pa.int64()), ("refunded_minor", pa.int64()), ("chargeback_minor", pa.int64()),
    ("ledger_event_count", pa.int64()), ("settled_gross_minor", pa.int64()), ("fee_minor", pa.int64()),
    ("settled_net_minor", pa.int64()), ("adjustment_minor", pa.int64()), ("payout_minor", pa.int64()),
    ("settlement_line_count", pa.int64()), ("break_count", pa.int64()),
    ("pane_timing", pa.string()), ("pane_index", pa.int64()), ("is_final", pa.bool_()),
])

DEAD_LETTER = pa.schema([
    ("input", pa.string()), ("source", pa.string()), ("stage", pa.string()),
    ("reason", pa.string()), ("raw_payload", pa.string()),
])

BREAK_RATE_ALERT = pa.schema([
    ("processor", pa.string()), ("window_start", TIMESTAMP), ("window_end", TIMESTAMP),
    ("decided_count", pa.int64()), ("break_count", pa.int64()), ("break_rate_bps", pa.int64()),
    ("threshold_bps", pa.int64()), ("pane_timing", pa.string()), ("pane_index", pa.int64()), ("is_final", pa.bool_()),
])

# Three-way reconciliation (docs/DESIGN.md 3.7, 3.8): field for field schemas/bank's BankEntry and
# schemas/payouts.py's PayoutBalance and BankMatch; days are ISO text, as those records hold them.
BANK_ENTRY = pa.schema([
    ("statement_format", pa.string()), ("statement_id", pa.string()), ("account", pa.string()),
    ("account_currency", pa.string()), ("entry_ref", pa.string()), ("status", pa.string()),
    ("credit_debit", pa.string()), ("amount_minor", pa.int64()), ("currency", pa.string()),
    ("booking_date", pa.string()), ("value_date", pa.string()), ("bank_reference", pa.string()),
    ("end_to_end_id", pa.string()), ("customer_reference", pa.string()), ("remittance_unstructured", pa.string()),
    ("remittance_structured", pa.string()), ("bank_transaction_code", pa.string()), ("reversal", pa.bool_()),
    ("original_amount_minor", pa.int64()), ("original_currency", pa.string()),
])

PAYOUT_BALANCE = pa.schema([
    ("processor", pa.string()), ("payout_id", pa.string()), ("merchant_id", pa.string()), ("currency", pa.string()),
    ("payout_minor", pa.int64()), ("lines_minor", pa.int64()), ("difference_minor", pa.int64()),
    ("line_count", pa.int64()), ("payout_line_count", pa.int64()), ("payout_date", pa.string()),
    ("status", pa.string()), ("revision", pa.int64()), ("is_final", pa.bool_()),
])

BANK_MATCH = pa.schema([
    ("processor", pa.string()), ("payout_id", pa.string()), ("merchant_id", pa.string()),
    ("payout_currency", pa.string()),
    ("payout_minor", pa.int64()), ("payout_date", pa.string()), ("entry_ref", pa.string()), ("account", pa.string()),
    ("credit_currency", pa.string()), ("credit_minor", pa.int64()), ("value_date", pa.string()),
    ("matched_by", pa.string()), ("candidate_count", pa.int64()), ("difference_minor", pa.int64()),
    ("status", pa.string()), ("revision", pa.int64()), ("is_final", pa.bool_()),
])
