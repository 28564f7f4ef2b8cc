"""Differential test: the columnar matcher is `reconcile_key`, on every column of every row.

Key groups are generated to hit every rule's edges: duplicates on both sides,
equal times with different ids, an id delivered twice with different content,
currency differences, amounts exactly at the tolerance, deadlines exactly at
as_of, one-sided keys.
"""
from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import timedelta

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.internal_records import Candidate
from transforms.columnar.matching import CANDIDATE_TABLE, LEDGER_SIDE, reconcile_candidates
from transforms.matching import LEDGER, SETTLEMENT, MatchPolicy, reconcile_key, with_revision

DAY = 86_400_000
T0 = 1_767_571_200_000
SLA, GRACE = 3 * DAY, DAY

candidate_rows = st.tuples(
    st.sampled_from(["stripe", "adyen"]),
    st.sampled_from(["r0", "r1", "r2", "r3"]),
    st.sampled_from(["CAPTURE", "REFUND", "CHARGEBACK"]),
    st.sampled_from([LEDGER, SETTLEMENT]),
    st.sampled_from(["a", "b", "c", "d"]),  # few ids: the same id twice in a key, with other content
    st.sampled_from(["m_1", "m_2"]),
    st.sampled_from([995, 999, 1000, 1001, 1005, 1_000_000]),
    st.sampled_from(["USD", "EUR", "JPY"]),
    st.sampled_from([T0, T0, T0 + 1, T0 + DAY, T0 + 2 * DAY]),  # equal times are common
)


def _table(rows) -> pa.Table:
    columns = list(zip(*rows)) if rows else [[] for _ in CANDIDATE_TABLE.names]
    columns[3] = [LEDGER_SIDE if side == LEDGER else 1 for side in columns[3]]
    return pa.Table.from_arrays([pa.array(c, f.type) for c, f in zip(columns, CANDIDATE_TABLE)],
                                schema=CANDIDATE_TABLE)


def _reference(rows, as_of: int, policy: MatchPolicy) -> Counter:
    by_key = defaultdict(list)
    for processor, reference, kind, side, record_id, merchant, amount, currency, time in rows:
        by_key[(processor, reference, kind)].append(Candidate(side, record_id, merchant, amount, currency, time))
    expected = Counter()
    for key, candidates in by_key.items():
        expected.update(tuple(row) for row in with_revision(reconcile_key(key, candidates, as_of, policy), 1, True))
    return expected


def _columnar(rows, as_of: int, policy: MatchPolicy) -> Counter:
    table = reconcile_candidates(_table(rows), as_of, policy)
    return Counter(tuple(row.values()) for row in table.to_pylist())


@settings(max_examples=400, deadline=None)
@given(rows=st.lists(candidate_rows, max_size=40), tolerance=st.sampled_from([0, 1, 5]),
       as_of_offset=st.sampled_from([-1, 0, 1]), anchor=st.sampled_from([SLA, GRACE, SLA + DAY, 0]))
def test_columnar_matcher_equals_reconcile_key(rows, tolerance, as_of_offset, anchor):
    # as_of lands exactly on, just before or just after a deadline of the generated times
    as_of = T0 + anchor + as_of_offset
    policy = MatchPolicy(tolerance, timedelta(milliseconds=SLA), timedelta(milliseconds=GRACE))
    assert _columnar(rows, as_of, policy) == _reference(rows, as_of, policy)


def test_many_keys_at_once_equal_reconcile_key():
    rng = random.Random(20261125)
    rows = []
    for key in range(5000):
        for _ in range(rng.choice([1, 1, 2, 2, 3, 5])):
            rows.append(("stripe" if key % 3 else "adyen", f"ref_{key}", rng.choice(["CAPTURE", "REFUND"]),
                         rng.choice([LEDGER, SETTLEMENT]), rng.choice(["x", "y", f"id_{rng.randrange(10**6)}"]),
                         f"m_{key % 7}", rng.choice([1000, 1000, 1001, 7]), rng.choice(["USD", "USD", "EUR"]),
                         T0 + rng.randrange(5) * DAY + rng.choice([0, 0, 1])))
    policy = MatchPolicy(1, timedelta(days=3), timedelta(days=1))
    as_of = T0 + 4 * DAY
    expected = _reference(rows, as_of, policy)
    assert sum(expected.values()) > 5000
    assert _columnar(rows, as_of, policy) == expected


def test_no_candidates_give_no_rows():
    assert reconcile_candidates(_table([]), T0, MatchPolicy()).num_rows == 0


# ---------------------------------------------- settlement candidates: the matched side (issue 10)

def _line(index, record_type, gross, currency, matched):
    from schemas.records import SettlementLine

    return SettlementLine(f"s{index}", "adyen", f"r{index % 3}", "m_1", record_type, gross, 0, gross, currency,
                          "2026-01-05", T0 + index, None, *matched)


settlement_lines = st.builds(
    _line,
    st.integers(0, 50),
    st.sampled_from(["CAPTURE", "REFUND", "CHARGEBACK", "FEE", "ADJUSTMENT", "PAYOUT"]),
    st.sampled_from([1, 999, 1000, -5]),
    st.sampled_from(["USD", "EUR"]),
    # No matched side, one in another currency, one in the same currency.
    st.sampled_from([(None, None), (1000, "EUR"), (870, "JPY"), (999, "USD")]),
)


@given(lines=st.lists(settlement_lines, max_size=30))
def test_columnar_settlement_candidates_equal_candidate_of(lines):
    """A line with a matched side (a vendor's other-currency gross) is compared on it in both engines."""
    from schemas.record_tables import SETTLEMENT_TABLE, records_to_table
    from transforms.columnar.matching import settlement_candidates
    from transforms.matching import candidate_of, reconciliation_key

    expected = [(*reconciliation_key(line), SETTLEMENT, *candidate_of(line)[1:]) for line in lines
                if reconciliation_key(line) is not None]
    table = settlement_candidates(records_to_table(lines, SETTLEMENT_TABLE))
    got = [(row["processor"], row["processor_reference"], row["kind"], SETTLEMENT if row["side"] else LEDGER,
            row["record_id"], row["merchant_id"], row["amount_minor"], row["currency"], row["time"])
           for row in table.to_pylist()]
    assert got == expected
    # And the matched side is what is compared, where there is one.
    matched = [line for line in lines if line.record_type in ("CAPTURE", "REFUND", "CHARGEBACK")]
    assert [(row[6], row[7]) for row in got] == [
        (line.matched_minor, line.matched_currency) if line.matched_minor else (line.gross_minor, line.currency)
        for line in matched]


def test_a_table_in_pieces_keeps_every_row_in_order_in_bounded_pieces():
    import pyarrow as pa

    from transforms.columnar.shards import in_pieces

    table = pa.table({"id": [f"e{n}" for n in range(10)], "amount": list(range(10))})
    pieces = list(in_pieces(table, 4))
    assert [piece.num_rows for piece in pieces] == [4, 4, 2]
    assert pa.concat_tables(pieces).equals(table)
    assert list(in_pieces(table, 10)) == [table]
    # Each piece owns its buffers: what a shuffle encodes is the piece, not the table it came from.
    assert all(piece.column("amount").chunk(0).offset == 0 for piece in pieces)
