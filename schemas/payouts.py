"""The records of three-way reconciliation (issue 21, docs/DESIGN.md 3.8): a payout against its settlement
lines (`PayoutBalance`), and a payout against the bank credit that carries it (`BankMatch`).

Money is integer minor units, null where an exact sum leaves int64 (schemas/money.py: within_int64);
dates are ISO days (YYYY-MM-DD). The statuses are schemas/rules.py's
PAYOUT_STATUSES and BANK_MATCH_STATUSES.
"""
from typing import NamedTuple, Optional

from schemas.stable_schema import stable_schema


@stable_schema
class PayoutBalance(NamedTuple):
    processor: str
    payout_id: str
    merchant_id: Optional[str]  # the PAYOUT line's, else the first line's
    currency: str  # the PAYOUT line's, else the lines'
    payout_minor: Optional[int]  # what the PAYOUT line(s) paid out; None without one
    lines_minor: Optional[int]  # the lines' balance movements; None without lines or in several currencies
    difference_minor: Optional[int]  # payout - lines; None unless both exist in one currency
    line_count: int  # settlement lines other than the PAYOUT line(s)
    payout_line_count: int
    payout_date: Optional[str]  # the PAYOUT line's settlement date
    status: str
    # As for results (3.4): a batch run judges each payout once, finally; a stream revises it.
    revision: int = 1
    is_final: bool = True


@stable_schema
class BankMatch(NamedTuple):
    # The payout side (None on a bank credit's own row).
    processor: Optional[str]
    payout_id: Optional[str]
    merchant_id: Optional[str]  # the payout's: whose cash a credit taken by it is
    payout_currency: Optional[str]
    payout_minor: Optional[int]
    payout_date: Optional[str]
    # The bank side (None on a payout's row without a credit).
    entry_ref: Optional[str]
    account: Optional[str]
    credit_currency: Optional[str]
    credit_minor: Optional[int]
    value_date: Optional[str]  # the credit's value date, else its booking date
    matched_by: Optional[str]  # MATCHED_BY_REFERENCE | MATCHED_BY_AMOUNT
    candidate_count: int  # credits the payout could be (or payouts the credit could carry)
    difference_minor: Optional[int]  # credit - payout, when both exist in one currency
    status: str
    # As for results (3.4): a batch run judges each row once, finally; a stream revises a row under its
    # row key (transforms/bank/live.py), and WITHDRAWN says a key no longer has a row of its own.
    revision: int = 1
    is_final: bool = True
