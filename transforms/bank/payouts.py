"""A payout against its settlement lines (issue 21, docs/DESIGN.md 3.8): the per-payout rule, pure.

Every processor batches settled lines into payouts: the lines carry the payout id, and a PAYOUT line
says what was paid out (its gross, positive when money leaves the processor balance for the bank). The
lines' balance movements (BALANCE_SIGN x net: a capture in, a refund, chargeback or fee out, an
adjustment in) add up to the payout exactly, in its currency, or the payout is a break.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Optional, Sequence

from schemas.money import within_int64
from schemas.payouts import PayoutBalance
from schemas.records import SettlementLine
from schemas.rules import (
    BALANCE_SIGN,
    LINES_WITHOUT_PAYOUT,
    PAYOUT_BALANCED,
    PAYOUT_LINES_DIFFER,
    PAYOUT_RECORD_TYPE,
    PAYOUT_WITHOUT_LINES,
    PENDING,
)


@dataclass(frozen=True)
class PayoutPolicy:
    # How long after its last line a payout id waits for its PAYOUT line before LINES_WITHOUT_PAYOUT
    # (processors book the payout at the end of the day its lines settle in; reports may come a day late).
    payout_grace: timedelta = timedelta(days=1)

    def __post_init__(self):
        if self.payout_grace < timedelta(0):
            raise ValueError("the payout grace cannot be negative")

    @property
    def payout_grace_millis(self) -> int:
        return int(self.payout_grace.total_seconds() * 1000)


DEFAULT_PAYOUT_POLICY = PayoutPolicy()


def balance_payout(processor: str, payout_id: str, lines: Sequence[SettlementLine], as_of_millis: int,
                   policy: PayoutPolicy = DEFAULT_PAYOUT_POLICY) -> PayoutBalance:
    """The PayoutBalance of one payout from every settlement line that carries its id (PAYOUT lines included).

    Lines in another currency than the payout's make it differ with no difference (money in two currencies
    does not add up); a payout returned by the bank is a negative PAYOUT line and counts against it."""
    payout_lines = [line for line in lines if line.record_type == PAYOUT_RECORD_TYPE]
    settled = [line for line in lines if line.record_type != PAYOUT_RECORD_TYPE]
    first = (payout_lines or settled)[0]
    currency = first.currency
    currencies = {line.currency for line in lines}
    payout_minor = sum(line.gross_minor for line in payout_lines) if payout_lines else None
    lines_minor = sum(BALANCE_SIGN[line.record_type] * line.net_minor for line in settled) if settled else None
    one_currency = currencies == {currency}
    difference = payout_minor - lines_minor if (
        payout_minor is not None and lines_minor is not None and one_currency) else None
    if payout_lines and settled:
        status = PAYOUT_BALANCED if difference == 0 else PAYOUT_LINES_DIFFER
    elif payout_lines:
        status = PAYOUT_WITHOUT_LINES
    else:
        due = as_of_millis >= max(line.booked_time for line in settled) + policy.payout_grace_millis
        status = LINES_WITHOUT_PAYOUT if due else PENDING
    # Judged on exact sums; published as int64, null where a sum leaves it (never a wrong number).
    return PayoutBalance(
        processor=processor, payout_id=payout_id, merchant_id=first.merchant_id, currency=currency,
        payout_minor=published_sum(payout_minor), lines_minor=published_sum(lines_minor if one_currency else None),
        difference_minor=published_sum(difference), line_count=len(settled), payout_line_count=len(payout_lines),
        payout_date=min(line.settlement_date for line in payout_lines) if payout_lines else None, status=status)


def published_sum(total: Optional[int]) -> Optional[int]:
    """An exact sum as published: int64, or None where it leaves int64 (never a wrong number)."""
    return None if total is None else within_int64(total)
