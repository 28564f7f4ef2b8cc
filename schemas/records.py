"""Typed records shared by every format, transform and pipeline (docs/DESIGN.md 3).

NamedTuples with Beam-compatible type hints, so Beam encodes them with its
schema-aware RowCoder (compact and deterministic) instead of pickling.
Timestamps are epoch milliseconds (UTC); money is integer minor units. The values a field
may hold and what they mean (record types, kinds, statuses, signs) are in schemas/rules.py.
"""

from typing import Any, Mapping, NamedTuple, Optional

import apache_beam as beam

from schemas.stable_schema import stable_schema

PAYMENTS = "payments"
# The merchant of a settlement line whose file names none (a Stripe row without the merchant
# metadata or a connected account). Daily totals count such a line under the merchant of the
# ledger event it is paired with, when it is (transforms/attribution.py, docs/DESIGN.md 4.3).
UNATTRIBUTED = "UNATTRIBUTED"
SETTLEMENTS = "settlements"


@stable_schema
class PaymentEvent(NamedTuple):
    event_id: str
    payment_id: str
    event_type: str
    processor: str
    processor_reference: str
    merchant_id: str
    amount_minor: int
    currency: str
    event_time: int  # epoch millis, UTC


@stable_schema
class SettlementLine(NamedTuple):
    settlement_id: str
    processor: str
    processor_reference: str
    merchant_id: str
    record_type: str
    gross_minor: int
    fee_minor: int
    net_minor: int
    currency: str
    settlement_date: str  # ISO date, YYYY-MM-DD
    booked_time: int  # epoch millis, UTC
    payout_id: Optional[str]
    # The side the ledger is matched with, when a vendor reports the payment
    # in another currency than it settled it in (Adyen's gross side, Stripe's
    # customer-facing amount); gross/fee/net/currency stay the settled side,
    # which the totals sum. Not a canonical file column (DESIGN 3.2).
    matched_minor: Optional[int] = None
    matched_currency: Optional[str] = None


@stable_schema
class ReconciliationResult(NamedTuple):
    processor: str
    processor_reference: str
    kind: str
    status: str
    merchant_id: str
    currency: str
    ledger_amount_minor: Optional[int]
    settled_amount_minor: Optional[int]
    difference_minor: Optional[int]
    ledger_event_id: Optional[str]
    settlement_id: Optional[str]
    event_time: Optional[int]
    booked_time: Optional[int]
    revision: int
    is_final: bool


@stable_schema
class DailyTotal(NamedTuple):
    merchant_id: str
    currency: str
    settlement_day: str  # the local calendar day the window covers, YYYY-MM-DD
    window_start: int  # epoch millis
    window_end: int  # epoch millis
    # Money sums are null when the exact sum leaves int64 (schemas/money.py: within_int64).
    captured_minor: Optional[int]
    refunded_minor: Optional[int]
    chargeback_minor: Optional[int]
    ledger_event_count: int
    settled_gross_minor: Optional[int]
    fee_minor: Optional[int]
    settled_net_minor: Optional[int]
    adjustment_minor: Optional[int]
    payout_minor: Optional[int]
    settlement_line_count: int
    break_count: int
    pane_timing: str  # EARLY | ON_TIME | LATE
    pane_index: int
    is_final: bool


@stable_schema
class BreakRateAlert(NamedTuple):
    processor: str
    window_start: int  # epoch millis
    window_end: int  # epoch millis
    decided_count: int  # result rows with a verdict (not PENDING), latest revision per key
    break_count: int
    break_rate_bps: int  # breaks per 10,000 decided rows, rounded down
    threshold_bps: int
    pane_timing: str
    pane_index: int
    is_final: bool


@stable_schema
class DeadLetter(NamedTuple):
    input: str  # payments | settlements
    source: str  # where the record came from: file:line, topic/partition@offset
    stage: str  # decode | validate
    reason: str
    raw_payload: str


@stable_schema
class RawRecord(NamedTuple):
    """A record as read, before validation: a field mapping or a decode error."""

    input: str
    source: str
    fields: Optional[Mapping[str, Any]]
    raw_payload: str
    decode_error: Optional[str] = None


PAYMENT_FIELDS = PaymentEvent._fields
# The canonical settlement file columns; the matched side is optional and travels only in records.
SETTLEMENT_FIELDS = SettlementLine._fields[:12]
MATCHED_SIDE_FIELDS = ("matched_minor", "matched_currency")
RESULT_FIELDS = ReconciliationResult._fields
DAILY_TOTAL_FIELDS = DailyTotal._fields
DEAD_LETTER_FIELDS = DeadLetter._fields

BREAK_RATE_ALERT_FIELDS = BreakRateAlert._fields

for _record in (PaymentEvent, SettlementLine, ReconciliationResult, DailyTotal, BreakRateAlert, DeadLetter):
    beam.coders.registry.register_coder(_record, beam.coders.RowCoder)
