"""The business rules of reconciliation as one table (docs/DESIGN.md 3.2, 3.3, 4.3).

Each rule is stated here once, as data, and read by both engines (`transforms/` per element,
`transforms/columnar/` on Arrow tables) and by the vendor adapters (`schemas/vendors/`), so a
rule changed here changes all of them. It lives in `schemas/`, the lowest floor, because the
adapters need the sign rule. tests/test_rules_table.py fails when an engine or adapter spells
a status, record type or sign of its own, and checks that both engines follow a changed table.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

# ---------------------------------------------------------------- record types and kinds (3.1-3.3)

# Ledger event types. Only the settling ones are reconciled.
EVENT_TYPES = ("AUTHORIZED", "CAPTURED", "REFUNDED", "CHARGEBACK", "VOIDED", "FAILED")
# Settlement record types. Only the matched ones are reconciled.
RECORD_TYPES = ("CAPTURE", "REFUND", "CHARGEBACK", "FEE", "ADJUSTMENT", "PAYOUT")
# The line that says what a payout paid out (its gross; money leaving the processor balance counts positive).
PAYOUT_RECORD_TYPE = "PAYOUT"
# Reconciliation kinds and how each side maps onto them; a matched record type is named as its kind.
KINDS = ("CAPTURE", "REFUND", "CHARGEBACK")
KIND_OF_EVENT_TYPE = {"CAPTURED": "CAPTURE", "REFUNDED": "REFUND", "CHARGEBACK": "CHARGEBACK"}
KIND_OF_RECORD_TYPE = {kind: kind for kind in KINDS}
MATCHED_RECORD_TYPES = frozenset(KIND_OF_RECORD_TYPE)
# Account-level record types: not matched, and their gross is signed (a fee refund, a returned
# payout, a debit adjustment is negative; docs/DESIGN.md 3.2).
SIGNED_RECORD_TYPES = tuple(record_type for record_type in RECORD_TYPES if record_type not in MATCHED_RECORD_TYPES)

# ---------------------------------------------------------------- statuses and how a key gets one (3.3)

MATCHED = "MATCHED"
AMOUNT_MISMATCH = "AMOUNT_MISMATCH"
CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
MISSING_SETTLEMENT = "MISSING_SETTLEMENT"
UNEXPECTED_SETTLEMENT = "UNEXPECTED_SETTLEMENT"
DUPLICATE_SETTLEMENT = "DUPLICATE_SETTLEMENT"
DUPLICATE_LEDGER_EVENT = "DUPLICATE_LEDGER_EVENT"
PENDING = "PENDING"
STATUSES = (MATCHED, AMOUNT_MISMATCH, CURRENCY_MISMATCH, MISSING_SETTLEMENT, UNEXPECTED_SETTLEMENT,
            DUPLICATE_SETTLEMENT, DUPLICATE_LEDGER_EVENT, PENDING)
BREAK_STATUSES = frozenset(STATUSES) - {MATCHED, PENDING}
# Verdicts on a key with one side only: a later run or record may still bring the other side.
ONE_SIDED_STATUSES = frozenset({PENDING, MISSING_SETTLEMENT, UNEXPECTED_SETTLEMENT})

# The facts a key's primary row is judged on; each engine computes every one of them per key.
PAIRED = "paired"  # the key has a ledger event and a settlement line
DIFFERENT_CURRENCY = "different_currency"  # paired, in two currencies
WITHIN_TOLERANCE = "within_tolerance"  # paired, abs(settled - ledger) <= amount_tolerance_minor
DUE = "due"  # as_of >= the primary ledger event's time + SLA, else the primary line's time + grace
HAS_LEDGER = "has_ledger"  # the key has a ledger event
FACTS = (PAIRED, DIFFERENT_CURRENCY, WITHIN_TOLERANCE, DUE, HAS_LEDGER)

# (facts that must all hold, status): the first rule that holds decides; none holds: UNDECIDED_STATUS.
STATUS_RULES: Tuple[Tuple[Tuple[str, ...], str], ...] = (
    ((PAIRED, DIFFERENT_CURRENCY), CURRENCY_MISMATCH),
    ((PAIRED, WITHIN_TOLERANCE), MATCHED),
    ((PAIRED,), AMOUNT_MISMATCH),
    ((DUE, HAS_LEDGER), MISSING_SETTLEMENT),
    ((DUE,), UNEXPECTED_SETTLEMENT),
)
UNDECIDED_STATUS = PENDING


def primary_status(facts: Mapping[str, bool]) -> str:
    """The status STATUS_RULES give a key's primary row with these facts."""
    for required, status in STATUS_RULES:
        if all(facts[fact] for fact in required):
            return status
    return UNDECIDED_STATUS


# ---------------------------------------------------------------- payouts and bank credits (issue 21, 3.8)

# A payout (processor, payout id) against its settlement lines: the lines' balance movements
# (BALANCE_SIGN x net) add up to what the PAYOUT line(s) paid out, or they do not.
PAYOUT_BALANCED = "PAYOUT_BALANCED"
PAYOUT_LINES_DIFFER = "PAYOUT_LINES_DIFFER"
PAYOUT_WITHOUT_LINES = "PAYOUT_WITHOUT_LINES"
LINES_WITHOUT_PAYOUT = "LINES_WITHOUT_PAYOUT"  # once due; PENDING before (the payout is booked later)
PAYOUT_STATUSES = (PAYOUT_BALANCED, PAYOUT_LINES_DIFFER, PAYOUT_WITHOUT_LINES, LINES_WITHOUT_PAYOUT, PENDING)
# A payout against the bank credit that should carry it, and a bank credit no payout claims.
PAYOUT_RECEIVED = "PAYOUT_RECEIVED"
PAYOUT_AMOUNT_DIFFERS = "PAYOUT_AMOUNT_DIFFERS"
PAYOUT_NOT_RECEIVED = "PAYOUT_NOT_RECEIVED"  # once the bank SLA has passed; PENDING before
UNEXPECTED_BANK_CREDIT = "UNEXPECTED_BANK_CREDIT"  # once the grace has passed; PENDING before
AMBIGUOUS_BANK_MATCH = "AMBIGUOUS_BANK_MATCH"  # more than one candidate: never guessed
BANK_MATCH_STATUSES = (PAYOUT_RECEIVED, PAYOUT_AMOUNT_DIFFERS, PAYOUT_NOT_RECEIVED, UNEXPECTED_BANK_CREDIT,
                       AMBIGUOUS_BANK_MATCH, PENDING)
# Streams only (3.8): a revision saying a row key has no row of its own any more (a credit a payout took
# after it was PENDING alone, a payout that no longer pays anything out). A batch run never writes it.
WITHDRAWN = "WITHDRAWN"
LIVE_BANK_MATCH_STATUSES = BANK_MATCH_STATUSES + (WITHDRAWN,)

# ---------------------------------------------------------------- signs of settlement money (3.2, 4.3)

# Which way a positive canonical gross moves the merchant's balance: +1 in, -1 out. A matched
# line's gross is positive and its record type gives the direction; an account-level line's gross
# is signed, FEE and PAYOUT counting money leaving as positive, ADJUSTMENT money coming in.
BALANCE_SIGN: Dict[str, int] = {"CAPTURE": 1, "REFUND": -1, "CHARGEBACK": -1,
                                "FEE": -1, "ADJUSTMENT": 1, "PAYOUT": -1}


def canonical_direction(record_type: str, vendor_gross: int) -> int:
    """s in (gross, fee, net)_canonical = s * (gross, fee, net) as a vendor signs them (balance in +).

    A matched line is made positive (its record type gives the direction); an account-level line
    keeps its direction, multiplied by BALANCE_SIGN so that its own direction counts positive."""
    if record_type in MATCHED_RECORD_TYPES:
        return -1 if vendor_gross < 0 else 1
    return BALANCE_SIGN[record_type]


def vendor_direction(record_type: str, gross_minor: int) -> int:
    """The `canonical_direction` of the vendor row written for a line (its own inverse)."""
    if record_type in MATCHED_RECORD_TYPES:
        return -1 if BALANCE_SIGN[record_type] < 0 and gross_minor != 0 else 1
    return BALANCE_SIGN[record_type]


# ---------------------------------------------------------------- daily-total sums (4.3)

LEDGER_EVENT_COUNT = "ledger_event_count"
SETTLEMENT_LINE_COUNT = "settlement_line_count"
BREAK_COUNT = "break_count"
# What a record adds to, in the order of Contribution.sums and of the DailyTotal fields.
RECORD_SUM_COLUMNS = ("captured_minor", "refunded_minor", "chargeback_minor", LEDGER_EVENT_COUNT,
                      "settled_gross_minor", "fee_minor", "settled_net_minor", "adjustment_minor", "payout_minor",
                      SETTLEMENT_LINE_COUNT)
# ... and, after them, what results add: the DailyTotal fields a day sums, in order.
SUM_COLUMNS = (*RECORD_SUM_COLUMNS, BREAK_COUNT)
SUM_INDEX = {name: index for index, name in enumerate(RECORD_SUM_COLUMNS)}

# A ledger event adds its amount to the sum of its type (the other types only count).
LEDGER_SUM_OF_EVENT_TYPE = {"CAPTURED": "captured_minor", "REFUNDED": "refunded_minor",
                            "CHARGEBACK": "chargeback_minor"}

SumTerm = Tuple[str, str, int]  # (sum column, settlement line field, factor)


def _matched_flow(sign: int) -> Tuple[SumTerm, ...]:
    return (("settled_gross_minor", "gross_minor", sign), ("fee_minor", "fee_minor", sign),
            ("settled_net_minor", "net_minor", sign))


def _balance_movement(column: str, sign: int) -> Tuple[SumTerm, ...]:
    # Signed gross into its own sum; a fee on it counts with the fees in the line's direction
    # (a dispute fee returned with a reversal: negative) and, as a cost, off the net.
    return ((column, "gross_minor", 1), ("fee_minor", "fee_minor", sign), ("settled_net_minor", "fee_minor", -sign))


# What a settlement line adds to the day's sums, per record type, so that every day's
# settled_net = settled_gross - fee and its balance change = settled_net + adjustment - payout.
SETTLEMENT_SUMS: Dict[str, Tuple[SumTerm, ...]] = {
    **{record_type: _matched_flow(BALANCE_SIGN[record_type]) for record_type in KINDS},
    # The whole line is a cost: its net (gross - any fee on it; negative for a fee refund) goes to
    # fees and comes off the net.
    "FEE": (("fee_minor", "net_minor", 1), ("settled_net_minor", "net_minor", -1)),
    "ADJUSTMENT": _balance_movement("adjustment_minor", BALANCE_SIGN["ADJUSTMENT"]),
    "PAYOUT": _balance_movement("payout_minor", BALANCE_SIGN["PAYOUT"]),
}

# ---------------------------------------------------------------- count names of a run's summary

# What is counted per input, as "<input>.<what>" (payments.read, settlements.unique, ...).
READ = "read"
ACCEPTED = "accepted"  # passed validation
REJECTED = "rejected"  # by validation
UNIQUE_RECORDS = "unique"  # after deduplication
CONFLICTING = "conflicting"  # conflicting re-deliveries (dead letters at stage dedup)
TRUNCATED_FILES = "truncated_files"
PANS_MASKED = "pans_masked"
PAN_REJECTIONS = "pan_rejections"
UNKNOWN_VENDOR_CATEGORIES = "unknown_vendor_categories"  # settlements only: read as adjustments
INPUT_COUNTS = (READ, ACCEPTED, REJECTED, UNIQUE_RECORDS, CONFLICTING, TRUNCATED_FILES, PANS_MASKED, PAN_REJECTIONS,
                UNKNOWN_VENDOR_CATEGORIES)
RESULT_ROWS = "results.rows"
DAILY_TOTAL_ROWS = "daily_totals.rows"
AS_OF_MILLIS = "as_of_millis"
_STATUS_PREFIX = "status."


def count_name(input_name: str, what: str) -> str:
    return f"{input_name}.{what}"


def status_count_name(status: str) -> str:
    return _STATUS_PREFIX + status


def status_of_count_name(name: str) -> Optional[str]:
    """The status a "status.<STATUS>" count counts, None for any other count."""
    return name[len(_STATUS_PREFIX):] if name.startswith(_STATUS_PREFIX) else None


# Three-way reconciliation's outputs (3.8): rows, and rows per status, as "<output>.rows" and
# "<output>.status.<STATUS>" (PENDING is a status of results, payouts and bank matches alike).
PAYOUTS = "payouts"
BANK_MATCHES = "bank_matches"


def rows_count_name(output: str) -> str:
    return f"{output}.rows"


def output_status_count_name(output: str, status: str) -> str:
    return f"{output}.{_STATUS_PREFIX}{status}"


def output_statuses(counts: Mapping[str, int], output: str) -> Dict[str, int]:
    """{status: rows} of one output from a run's counts."""
    prefix = f"{output}.{_STATUS_PREFIX}"
    return {name[len(prefix):]: count for name, count in counts.items() if name.startswith(prefix)}
