"""transforms/columnar/payouts.py against the per-payout rule (transforms/bank/payouts.py): every column of every
row, on hypothesis-drawn lines (several payouts, PAYOUT lines or not, currencies, ties in time, the largest amounts)."""
from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.arrow import PAYOUT_BALANCE, SETTLEMENT_LINE
from schemas.money import MAX_MINOR_UNITS
from schemas.records import SettlementLine
from schemas.rules import RECORD_TYPES
from transforms.bank.payouts import PayoutPolicy, balance_payout
from transforms.columnar.payouts import balance_payouts_table

DAY_MS = 86_400_000


@st.composite
def settlement_lines(draw):
    count = draw(st.integers(0, 40))
    big = draw(st.booleans())
    amounts = st.integers(-MAX_MINOR_UNITS, MAX_MINOR_UNITS) if big else st.integers(-3, 2_000)
    return [SettlementLine(
        settlement_id=f"s{index:03d}", processor=draw(st.sampled_from(["stripe", "adyen"])),
        processor_reference=f"r{index}", merchant_id=draw(st.sampled_from(["m1", "m2"])),
        record_type=draw(st.sampled_from(RECORD_TYPES)), gross_minor=draw(amounts), fee_minor=0,
        net_minor=draw(amounts), currency=draw(st.sampled_from(["EUR", "EUR", "EUR", "USD"])),
        settlement_date=f"2026-03-0{draw(st.integers(1, 9))}", booked_time=draw(st.integers(0, 4)) * DAY_MS,
        payout_id=draw(st.sampled_from(["po_AAAA1111", "po_BBBB2222", "batch-1001", "", None])))
        for index in range(count)]


def _reference(lines, as_of_millis, policy):
    by_payout = defaultdict(list)
    for line in lines:
        if line.payout_id:
            by_payout[(line.processor, line.payout_id)].append(line)
    return [balance_payout(processor, payout_id, sorted(group, key=lambda line: (line.booked_time, line.settlement_id)),
                           as_of_millis, policy)._asdict()
            for (processor, payout_id), group in sorted(by_payout.items())]


@settings(max_examples=400, deadline=None)
@given(settlement_lines(), st.integers(0, 8), st.integers(0, 3))
def test_the_columnar_payout_balances_equal_the_rule_on_every_column_of_every_row(lines, as_of_day, grace_days):
    policy = PayoutPolicy(payout_grace=timedelta(days=grace_days))
    rows = [{**line._asdict(), "settlement_date": date.fromisoformat(line.settlement_date)} for line in lines]
    table = balance_payouts_table(pa.Table.from_pylist(rows, SETTLEMENT_LINE), as_of_day * DAY_MS, policy)
    assert table.schema == PAYOUT_BALANCE
    assert table.to_pylist() == _reference(lines, as_of_day * DAY_MS, policy)
