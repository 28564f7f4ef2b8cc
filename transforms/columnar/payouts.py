"""`transforms.bank.payouts.balance_payout` on an Arrow table of settlement lines (docs/DESIGN.md 3.8).

One pass of Arrow kernels over every line with a payout id: sorted by (processor, payout id, PAYOUT lines
first, booked time, settlement id) so that each payout's first row is the line balance_payout names it by;
the sums exact (38-digit decimals: int64 sums wrap silently) and published within int64. The per-payout
rule stays the reference: tests/test_columnar_payouts.py compares every column of every row with it.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Dict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.arrow import PAYOUT_BALANCE
from schemas.record_tables import to_numpy
from schemas.rules import (
    BALANCE_SIGN,
    LINES_WITHOUT_PAYOUT,
    PAYOUT_BALANCED,
    PAYOUT_LINES_DIFFER,
    PAYOUT_RECORD_TYPE,
    PAYOUT_WITHOUT_LINES,
    PENDING,
)
from transforms.bank.payouts import DEFAULT_PAYOUT_POLICY, PayoutPolicy
from transforms.columnar.daily_totals import EXACT, within_int64_array

KEY = ("processor", "payout_id")


def balance_payouts_table(lines: pa.Table, as_of_millis: int,
                          policy: PayoutPolicy = DEFAULT_PAYOUT_POLICY) -> pa.Table:
    """Settlement lines (schemas.arrow.SETTLEMENT_LINE columns) -> one PAYOUT_BALANCE row per (processor,
    payout id) of the lines that carry one, ordered by that key."""
    carried = lines.filter(pc.fill_null(pc.not_equal(lines.column("payout_id"), ""), False))
    is_payout = pc.equal(carried.column("record_type"), PAYOUT_RECORD_TYPE)
    sign = pc.cast(pc.index_in(carried.column("record_type"), pa.array(list(BALANCE_SIGN))), pa.int64())
    signs = pa.array(list(BALANCE_SIGN.values()), pa.int64())
    # A validated net is at most MAX_MINOR_UNITS either way: its signed int64 product cannot wrap.
    exact_net = pc.cast(pc.multiply(carried.column("net_minor"), pc.take(signs, sign)), EXACT)
    table = carried.append_column("settled", pc.invert(is_payout)).append_column(
        "payout_gross", pc.if_else(is_payout, pc.cast(carried.column("gross_minor"), EXACT), None)).append_column(
        "movement", pc.if_else(is_payout, None, exact_net)).append_column(
        "settled_booked", pc.if_else(is_payout, None, pc.cast(carried.column("booked_time"), pa.int64()))).append_column(
        "payout_day", pc.if_else(is_payout, carried.column("settlement_date"), None))
    table = table.sort_by([(KEY[0], "ascending"), (KEY[1], "ascending"), ("settled", "ascending"),
                           ("booked_time", "ascending"), ("settlement_id", "ascending")])
    grouped = table.group_by(list(KEY), use_threads=False).aggregate([
        ("merchant_id", "first"), ("currency", "first"), ("currency", "count_distinct"),
        ("payout_gross", "sum"), ("payout_gross", "count"), ("movement", "sum"), ("movement", "count"),
        ("settled_booked", "max"), ("payout_day", "min")]).sort_by([(KEY[0], "ascending"), (KEY[1], "ascending")])
    columns: Dict[str, pa.Array] = {name: grouped.column(name).combine_chunks() for name in KEY}
    payout_count = to_numpy(grouped.column("payout_gross_count"))
    line_count = to_numpy(grouped.column("movement_count"))
    one_currency = to_numpy(grouped.column("currency_count_distinct")) == 1
    payout_sum, lines_sum = grouped.column("payout_gross_sum"), grouped.column("movement_sum")
    both = (payout_count > 0) & (line_count > 0) & one_currency
    # 37 digits each (far above any sum of validated lines), so that their difference fits 38.
    narrower = pa.decimal128(37, 0)
    difference = pc.if_else(pa.array(both), pc.cast(pc.subtract(pc.cast(payout_sum, narrower),
                                                                pc.cast(lines_sum, narrower)), EXACT), None)
    balanced = pc.fill_null(pc.equal(difference, pa.scalar(Decimal(0), EXACT)), False).to_numpy(zero_copy_only=False)
    due = to_numpy(pc.fill_null(grouped.column("settled_booked_max"), 0)) + policy.payout_grace_millis <= as_of_millis
    status = np.where(
        (payout_count > 0) & (line_count > 0), np.where(balanced, PAYOUT_BALANCED, PAYOUT_LINES_DIFFER),
        np.where(payout_count > 0, PAYOUT_WITHOUT_LINES, np.where(due, LINES_WITHOUT_PAYOUT, PENDING)))
    columns.update(
        merchant_id=grouped.column("merchant_id_first").combine_chunks(),
        currency=grouped.column("currency_first").combine_chunks(),
        payout_minor=within_int64_array(pc.if_else(pa.array(payout_count > 0), payout_sum, None)),
        lines_minor=within_int64_array(pc.if_else(pa.array((line_count > 0) & one_currency), lines_sum, None)),
        difference_minor=within_int64_array(difference), line_count=pa.array(line_count, pa.int64()),
        payout_line_count=pa.array(payout_count, pa.int64()),
        payout_date=pc.cast(grouped.column("payout_day_min"), pa.string()).combine_chunks(),
        status=pa.array(status.tolist(), pa.string()), **judged_once(len(status)))
    return pa.Table.from_pydict({name: columns[name] for name in PAYOUT_BALANCE.names}, schema=PAYOUT_BALANCE)


def judged_once(rows: int) -> dict:
    """The revision columns of a batch judgement: each row's one revision, final (as results in batch)."""
    return {"revision": pa.array(np.ones(rows, np.int64)), "is_final": pa.array(np.ones(rows, np.bool_))}
