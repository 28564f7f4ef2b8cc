"""transforms.matching: the reconciliation rules of docs/DESIGN.md 3.3 as pure functions.

Every id below is made up.
"""
from __future__ import annotations

from datetime import timedelta

import pytest

from schemas.records import PaymentEvent, ReconciliationResult, SettlementLine
from schemas.rules import EVENT_TYPES, RECORD_TYPES
from transforms.matching import (
    LEDGER,
    SETTLEMENT,
    Candidate,
    MatchPolicy,
    candidate_of,
    key_status,
    next_deadline,
    reconcile_key,
    reconciliation_key,
    result_signature,
    with_revision,
)

T0 = 1_709_288_130_000  # 2024-03-01T10:15:30Z
HOUR = 3_600_000
DAY = 24 * HOUR
KEY = ("stripe", "ref-0001", "CAPTURE")
DEFAULT = MatchPolicy()
SLA = 3 * DAY  # default settlement_sla
GRACE = 1 * DAY  # default ledger_grace


def pair_status(ledger: Candidate, settlement: Candidate, tolerance_minor: int) -> str:
    """key_status of a key with both sides (judged at its ledger event's time)."""
    return key_status(ledger, settlement, ledger.time, MatchPolicy(amount_tolerance_minor=tolerance_minor))


def one_sided_status(candidate: Candidate, now_millis: int, policy: MatchPolicy) -> str:
    """key_status of a key with only one side, judged at `now_millis`."""
    if candidate.side == LEDGER:
        return key_status(candidate, None, now_millis, policy)
    return key_status(None, candidate, now_millis, policy)


def ledger(record_id: str = "evt-1", amount: int = 1000, currency: str = "EUR", time: int = T0,
           merchant: str = "m-001") -> Candidate:
    return Candidate(LEDGER, record_id, merchant, amount, currency, time)


def settled(record_id: str = "stl-1", amount: int = 1000, currency: str = "EUR", time: int = T0 + DAY,
            merchant: str = "m-001") -> Candidate:
    return Candidate(SETTLEMENT, record_id, merchant, amount, currency, time)


def statuses(rows) -> list:
    return [row.status for row in rows]


# ---------------------------------------------------------------- policy


def test_default_policy_matches_design():
    assert DEFAULT.amount_tolerance_minor == 0
    assert DEFAULT.settlement_sla == timedelta(days=3)
    assert DEFAULT.ledger_grace == timedelta(days=1)
    assert DEFAULT.settlement_sla_millis == SLA
    assert DEFAULT.ledger_grace_millis == GRACE


@pytest.mark.parametrize(
    "kwargs",
    [
        {"amount_tolerance_minor": -1},
        {"settlement_sla": timedelta(seconds=-1)},
        {"ledger_grace": timedelta(days=-1)},
    ],
)
def test_negative_policy_values_rejected(kwargs):
    with pytest.raises(ValueError):
        MatchPolicy(**kwargs)


# ---------------------------------------------------------------- pair_status


def test_pair_status_basic():
    assert pair_status(ledger(amount=1000), settled(amount=1000), 0) == "MATCHED"
    assert pair_status(ledger(amount=1000), settled(amount=999), 0) == "AMOUNT_MISMATCH"
    assert pair_status(ledger(amount=1000), settled(amount=1001), 0) == "AMOUNT_MISMATCH"
    assert pair_status(ledger(currency="EUR"), settled(currency="USD"), 0) == "CURRENCY_MISMATCH"
    # a currency mismatch wins even when the numbers agree or are within tolerance
    assert pair_status(ledger(amount=1000, currency="EUR"), settled(amount=1000, currency="GBP"), 100) \
        == "CURRENCY_MISMATCH"


@pytest.mark.parametrize("delta", [-5, 5])
def test_tolerance_boundary(delta):
    assert pair_status(ledger(amount=1000), settled(amount=1000 + delta), 5) == "MATCHED"
    step = 1 if delta > 0 else -1
    assert pair_status(ledger(amount=1000), settled(amount=1000 + delta + step), 5) == "AMOUNT_MISMATCH"


# ---------------------------------------------------------------- reconcile_key: both sides


def test_matched_row_contents():
    rows = reconcile_key(KEY, [ledger(), settled()], T0, DEFAULT)
    assert rows == [
        ReconciliationResult(
            processor="stripe",
            processor_reference="ref-0001",
            kind="CAPTURE",
            status="MATCHED",
            merchant_id="m-001",
            currency="EUR",
            ledger_amount_minor=1000,
            settled_amount_minor=1000,
            difference_minor=0,
            ledger_event_id="evt-1",
            settlement_id="stl-1",
            event_time=T0,
            booked_time=T0 + DAY,
            revision=0,
            is_final=False,
        )
    ]


def test_matched_regardless_of_now_or_order():
    forward = reconcile_key(KEY, [ledger(), settled()], T0 + 100 * DAY, DEFAULT)
    backward = reconcile_key(KEY, [settled(), ledger()], T0 - DAY, DEFAULT)
    assert forward == backward
    assert statuses(forward) == ["MATCHED"]


@pytest.mark.parametrize("ledger_amount, settled_amount", [(1000, 970), (1000, 1030)])
def test_amount_mismatch_difference_is_settled_minus_ledger(ledger_amount, settled_amount):
    (row,) = reconcile_key(KEY, [ledger(amount=ledger_amount), settled(amount=settled_amount)], T0, DEFAULT)
    assert row.status == "AMOUNT_MISMATCH"
    assert row.difference_minor == settled_amount - ledger_amount
    assert row.ledger_amount_minor == ledger_amount
    assert row.settled_amount_minor == settled_amount


def test_tolerance_in_reconcile_key_boundary():
    policy = MatchPolicy(amount_tolerance_minor=2)
    (within,) = reconcile_key(KEY, [ledger(amount=1000), settled(amount=998)], T0, policy)
    assert within.status == "MATCHED"
    assert within.difference_minor == -2  # reported even when within tolerance
    (beyond,) = reconcile_key(KEY, [ledger(amount=1000), settled(amount=997)], T0, policy)
    assert beyond.status == "AMOUNT_MISMATCH"
    assert beyond.difference_minor == -3
    (default_policy,) = reconcile_key(KEY, [ledger(amount=1000), settled(amount=999)], T0, DEFAULT)
    assert default_policy.status == "AMOUNT_MISMATCH"


def test_currency_mismatch_has_no_difference():
    (row,) = reconcile_key(KEY, [ledger(currency="EUR"), settled(currency="USD", amount=1200)], T0, DEFAULT)
    assert row.status == "CURRENCY_MISMATCH"
    assert row.difference_minor is None
    assert row.ledger_amount_minor == 1000
    assert row.settled_amount_minor == 1200
    assert row.currency == "EUR"  # anchored on the ledger side


# ---------------------------------------------------------------- one side only


def test_missing_settlement_exactly_at_sla():
    candidates = [ledger(time=T0)]
    assert statuses(reconcile_key(KEY, candidates, T0 + SLA, DEFAULT)) == ["MISSING_SETTLEMENT"]
    assert statuses(reconcile_key(KEY, candidates, T0 + SLA - 1, DEFAULT)) == ["PENDING"]
    assert statuses(reconcile_key(KEY, candidates, T0 + SLA + DAY, DEFAULT)) == ["MISSING_SETTLEMENT"]


def test_missing_settlement_row_contents():
    (row,) = reconcile_key(KEY, [ledger()], T0 + SLA, DEFAULT)
    assert row.ledger_event_id == "evt-1"
    assert row.settlement_id is None
    assert row.settled_amount_minor is None
    assert row.difference_minor is None
    assert row.booked_time is None
    assert row.event_time == T0


def test_unexpected_settlement_at_grace():
    booked = T0 + DAY
    candidates = [settled(time=booked)]
    assert statuses(reconcile_key(KEY, candidates, booked + GRACE, DEFAULT)) == ["UNEXPECTED_SETTLEMENT"]
    assert statuses(reconcile_key(KEY, candidates, booked + GRACE - 1, DEFAULT)) == ["PENDING"]
    (row,) = reconcile_key(KEY, candidates, booked + GRACE, DEFAULT)
    assert row.ledger_event_id is None
    assert row.ledger_amount_minor is None
    assert row.event_time is None
    assert row.settlement_id == "stl-1"
    assert row.booked_time == booked
    assert row.merchant_id == "m-001"


def test_one_sided_status_with_custom_policy():
    policy = MatchPolicy(settlement_sla=timedelta(hours=36), ledger_grace=timedelta(minutes=15))
    assert one_sided_status(ledger(time=T0), T0 + 36 * HOUR, policy) == "MISSING_SETTLEMENT"
    assert one_sided_status(ledger(time=T0), T0 + 36 * HOUR - 1, policy) == "PENDING"
    assert one_sided_status(settled(time=T0), T0 + 15 * 60_000, policy) == "UNEXPECTED_SETTLEMENT"
    assert one_sided_status(settled(time=T0), T0 + 15 * 60_000 - 1, policy) == "PENDING"


def test_zero_sla_is_due_immediately():
    policy = MatchPolicy(settlement_sla=timedelta(0), ledger_grace=timedelta(0))
    assert one_sided_status(ledger(time=T0), T0, policy) == "MISSING_SETTLEMENT"
    assert one_sided_status(settled(time=T0), T0, policy) == "UNEXPECTED_SETTLEMENT"


# ---------------------------------------------------------------- duplicates


def test_duplicate_settlement_primary_is_earliest_booked():
    early = settled("stl-9", time=T0 + HOUR)
    late = settled("stl-1", time=T0 + 2 * HOUR, amount=1000)
    rows = reconcile_key(KEY, [late, ledger(), early], T0, DEFAULT)
    assert statuses(rows) == ["MATCHED", "DUPLICATE_SETTLEMENT"]
    assert rows[0].settlement_id == "stl-9"  # earliest booked_time, even with the larger id
    assert rows[1].settlement_id == "stl-1"
    assert rows[1].ledger_event_id is None
    assert rows[1].difference_minor is None
    assert rows[1].settled_amount_minor == 1000


def test_duplicate_settlement_tie_broken_by_id():
    same_time = T0 + HOUR
    rows = reconcile_key(KEY, [settled("stl-b", time=same_time), ledger(), settled("stl-a", time=same_time)],
                         T0, DEFAULT)
    assert [(row.status, row.settlement_id) for row in rows] == [
        ("MATCHED", "stl-a"),
        ("DUPLICATE_SETTLEMENT", "stl-b"),
    ]


def test_duplicate_settlement_primary_decides_amount_status():
    # The primary (earliest) line mismatches; the later exact line is only a duplicate.
    rows = reconcile_key(
        KEY, [ledger(amount=1000), settled("stl-1", amount=900, time=T0 + HOUR),
              settled("stl-2", amount=1000, time=T0 + 2 * HOUR)], T0, DEFAULT)
    assert statuses(rows) == ["AMOUNT_MISMATCH", "DUPLICATE_SETTLEMENT"]
    assert rows[0].difference_minor == -100


def test_duplicate_ledger_event():
    rows = reconcile_key(
        KEY, [ledger("evt-2", time=T0 + HOUR), settled(), ledger("evt-1", time=T0 + 2 * HOUR)], T0, DEFAULT)
    assert [(row.status, row.ledger_event_id) for row in rows] == [
        ("MATCHED", "evt-2"),
        ("DUPLICATE_LEDGER_EVENT", "evt-1"),
    ]
    assert rows[1].settlement_id is None
    assert rows[1].event_time == T0 + 2 * HOUR


def test_duplicate_ledger_tie_broken_by_id():
    rows = reconcile_key(KEY, [ledger("evt-z"), ledger("evt-a")], T0, DEFAULT)
    assert [(row.status, row.ledger_event_id) for row in rows] == [
        ("PENDING", "evt-a"),
        ("DUPLICATE_LEDGER_EVENT", "evt-z"),
    ]


def test_duplicates_on_both_sides_and_one_sided_duplicates():
    rows = reconcile_key(
        KEY,
        [ledger("evt-1"), ledger("evt-2", time=T0 + 1), settled("stl-1"), settled("stl-2", time=T0 + 2 * DAY)],
        T0, DEFAULT)
    assert sorted(statuses(rows)) == sorted(["MATCHED", "DUPLICATE_LEDGER_EVENT", "DUPLICATE_SETTLEMENT"])
    assert rows[0].status == "MATCHED"
    # settlement side only, with a duplicate, past the grace
    rows = reconcile_key(KEY, [settled("stl-1", time=T0), settled("stl-2", time=T0 + 1)], T0 + GRACE, DEFAULT)
    assert statuses(rows) == ["UNEXPECTED_SETTLEMENT", "DUPLICATE_SETTLEMENT"]


def test_same_record_id_twice_is_not_a_duplicate():
    rows = reconcile_key(KEY, [ledger("evt-1"), settled("stl-1"), ledger("evt-1"), settled("stl-1")], T0, DEFAULT)
    assert statuses(rows) == ["MATCHED"]
    rows = reconcile_key(KEY, [ledger("evt-1"), ledger("evt-1")], T0 + SLA, DEFAULT)
    assert statuses(rows) == ["MISSING_SETTLEMENT"]


def test_ledger_and_settlement_may_share_an_id_string():
    # ids are per side; the same text on both sides is not a duplicate of anything
    rows = reconcile_key(KEY, [ledger("x-1"), settled("x-1")], T0, DEFAULT)
    assert statuses(rows) == ["MATCHED"]


def test_no_candidates_no_rows():
    assert reconcile_key(KEY, [], T0, DEFAULT) == []


def test_reconcile_key_leaves_revision_to_caller():
    rows = reconcile_key(KEY, [ledger(), settled("stl-1"), settled("stl-2", time=T0 + 2 * DAY)], T0, DEFAULT)
    assert all(row.revision == 0 and row.is_final is False for row in rows)
    revised = with_revision(rows, 3, True)
    assert [(row.revision, row.is_final) for row in revised] == [(3, True), (3, True)]
    assert [row[:-2] for row in revised] == [row[:-2] for row in rows]


# ---------------------------------------------------------------- reconciliation_key


def _event(event_type: str) -> PaymentEvent:
    return PaymentEvent("evt-1", "pay-1", event_type, "stripe", "ref-0001", "m-001", 1000, "EUR", T0)


def _line(record_type: str) -> SettlementLine:
    return SettlementLine("stl-1", "stripe", "ref-0001", "m-001", record_type, 1000, 0, 1000, "EUR",
                          "2024-03-02", T0, None)


@pytest.mark.parametrize(
    "event_type, kind",
    [("CAPTURED", "CAPTURE"), ("REFUNDED", "REFUND"), ("CHARGEBACK", "CHARGEBACK"),
     ("AUTHORIZED", None), ("VOIDED", None), ("FAILED", None)],
)
def test_reconciliation_key_of_events(event_type, kind):
    expected = None if kind is None else ("stripe", "ref-0001", kind)
    assert reconciliation_key(_event(event_type)) == expected


@pytest.mark.parametrize(
    "record_type, kind",
    [("CAPTURE", "CAPTURE"), ("REFUND", "REFUND"), ("CHARGEBACK", "CHARGEBACK"),
     ("FEE", None), ("ADJUSTMENT", None), ("PAYOUT", None)],
)
def test_reconciliation_key_of_lines(record_type, kind):
    expected = None if kind is None else ("stripe", "ref-0001", kind)
    assert reconciliation_key(_line(record_type)) == expected


def test_every_type_is_covered():
    assert {t for t in EVENT_TYPES} == {"AUTHORIZED", "CAPTURED", "REFUNDED", "CHARGEBACK", "VOIDED", "FAILED"}
    assert {t for t in RECORD_TYPES} == {"CAPTURE", "REFUND", "CHARGEBACK", "FEE", "ADJUSTMENT", "PAYOUT"}


def test_ledger_and_settlement_keys_meet():
    assert reconciliation_key(_event("CAPTURED")) == reconciliation_key(_line("CAPTURE"))
    assert reconciliation_key(_event("REFUNDED")) == reconciliation_key(_line("REFUND"))
    assert reconciliation_key(_event("CHARGEBACK")) == reconciliation_key(_line("CHARGEBACK"))
    assert reconciliation_key(_event("CAPTURED")) != reconciliation_key(_line("REFUND"))


def test_candidate_of():
    assert candidate_of(_event("CAPTURED")) == Candidate(LEDGER, "evt-1", "m-001", 1000, "EUR", T0)
    line = _line("CAPTURE")._replace(gross_minor=1000, fee_minor=30, net_minor=970)
    assert candidate_of(line) == Candidate(SETTLEMENT, "stl-1", "m-001", 1000, "EUR", T0)  # gross, not net


# ---------------------------------------------------------------- next_deadline


def test_next_deadline_ledger_only():
    assert next_deadline([ledger(time=T0)], T0, DEFAULT) == T0 + SLA
    assert next_deadline([ledger(time=T0)], T0 + SLA - 1, DEFAULT) == T0 + SLA
    assert next_deadline([ledger(time=T0)], T0 + SLA, DEFAULT) is None  # passed (due now)
    assert next_deadline([ledger(time=T0)], T0 + SLA + 1, DEFAULT) is None


def test_next_deadline_settlement_only_and_custom_policy():
    assert next_deadline([settled(time=T0)], T0, DEFAULT) == T0 + GRACE
    policy = MatchPolicy(settlement_sla=timedelta(hours=2), ledger_grace=timedelta(minutes=30))
    assert next_deadline([settled(time=T0)], T0, policy) == T0 + 30 * 60_000
    assert next_deadline([ledger(time=T0)], T0, policy) == T0 + 2 * HOUR


def test_next_deadline_uses_primary_record():
    candidates = [ledger("evt-2", time=T0 + HOUR), ledger("evt-1", time=T0 + 2 * HOUR)]
    assert next_deadline(candidates, T0, DEFAULT) == T0 + HOUR + SLA


def test_next_deadline_none_when_both_sides_or_nothing():
    assert next_deadline([ledger(), settled()], T0, DEFAULT) is None
    assert next_deadline([], T0, DEFAULT) is None


def test_deadline_and_status_agree():
    # PENDING until exactly the deadline next_deadline reports.
    for candidate in (ledger(time=T0), settled(time=T0)):
        deadline = next_deadline([candidate], T0, DEFAULT)
        assert one_sided_status(candidate, deadline - 1, DEFAULT) == "PENDING"
        assert one_sided_status(candidate, deadline, DEFAULT) != "PENDING"


# ---------------------------------------------------------------- result_signature


def test_result_signature_ignores_revision_and_final_only():
    rows = reconcile_key(KEY, [ledger()], T0, DEFAULT)
    assert result_signature(with_revision(rows, 1, False)) == result_signature(with_revision(rows, 5, True))
    later = reconcile_key(KEY, [ledger()], T0 + SLA, DEFAULT)
    assert result_signature(rows) != result_signature(later)  # PENDING -> MISSING_SETTLEMENT
    matched = reconcile_key(KEY, [ledger(), settled()], T0, DEFAULT)
    other_line = reconcile_key(KEY, [ledger(), settled("stl-2")], T0, DEFAULT)
    assert result_signature(matched) != result_signature(other_line)
    assert result_signature([]) == ()


def test_result_signature_sees_new_duplicate_rows():
    one = reconcile_key(KEY, [ledger(), settled()], T0, DEFAULT)
    two = reconcile_key(KEY, [ledger(), settled(), settled("stl-2", time=T0 + 2 * DAY)], T0, DEFAULT)
    assert result_signature(one) != result_signature(two)
    assert result_signature(two) == result_signature(list(two))
    assert isinstance(result_signature(two), tuple)
    assert hash(result_signature(two)) == hash(result_signature(with_revision(two, 9, True)))
