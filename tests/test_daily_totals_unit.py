"""transforms.daily_totals, pure parts: settlement days, contributions, the CombineFn, triggers.

docs/DESIGN.md 4.3. No pipelines here. Every id below is made up.
"""
from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest

from schemas.records import PaymentEvent, ReconciliationResult, SettlementLine
from transforms.daily_totals import (
    DailyTotalsFn,
    SettlementDay,
    TriggerPolicy,
    ledger_contribution,
    result_contribution,
    settlement_contribution,
)
from transforms.event_time import result_event_time

HOUR = 3_600_000
UTC = timezone.utc
AMS = ZoneInfo("Europe/Amsterdam")

# Column positions of Contribution.sums / DailyTotalsFn output.
CAPTURED, REFUNDED, CHARGEBACK, LEDGER_COUNT, GROSS, FEE, NET, ADJUSTMENT, PAYOUT, LINE_COUNT = range(10)


def ms(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1))


# ---------------------------------------------------------------- SettlementDay.bounds


def test_utc_midnight_days():
    day = SettlementDay()
    start, end, label = day.bounds(ms(datetime(2026, 3, 10, 15, 30, tzinfo=UTC)))
    assert start == ms(datetime(2026, 3, 10, tzinfo=UTC))
    assert end == ms(datetime(2026, 3, 11, tzinfo=UTC))
    assert label == "2026-03-10"


def test_utc_day_boundaries_are_half_open():
    day = SettlementDay()
    midnight = ms(datetime(2026, 3, 11, tzinfo=UTC))
    assert day.bounds(midnight)[2] == "2026-03-11"
    assert day.bounds(midnight)[0] == midnight
    assert day.bounds(midnight - 1)[2] == "2026-03-10"
    assert day.bounds(midnight - 1)[1] == midnight


def test_cutoff_hour_six_utc():
    day = SettlementDay("UTC", 6)
    before = ms(datetime(2026, 3, 10, 5, 59, tzinfo=UTC))
    start, end, label = day.bounds(before)
    assert label == "2026-03-09"
    assert start == ms(datetime(2026, 3, 9, 6, tzinfo=UTC))
    assert end == ms(datetime(2026, 3, 10, 6, tzinfo=UTC))
    start, end, label = day.bounds(ms(datetime(2026, 3, 10, 6, 0, tzinfo=UTC)))
    assert label == "2026-03-10"
    assert start == ms(datetime(2026, 3, 10, 6, tzinfo=UTC))


def test_cutoff_hour_six_local_amsterdam():
    day = SettlementDay("Europe/Amsterdam", 6)
    # 05:59 local (CET, +01:00) on 2026-01-15 belongs to the 14th
    start, end, label = day.bounds(ms(datetime(2026, 1, 15, 5, 59, tzinfo=AMS)))
    assert label == "2026-01-14"
    assert start == ms(datetime(2026, 1, 14, 5, tzinfo=UTC))
    assert end == ms(datetime(2026, 1, 15, 5, tzinfo=UTC))
    assert day.bounds(ms(datetime(2026, 1, 15, 6, 0, tzinfo=AMS)))[2] == "2026-01-15"


def test_amsterdam_spring_forward_day_is_23_hours():
    day = SettlementDay("Europe/Amsterdam")
    start, end, label = day.bounds(ms(datetime(2026, 3, 29, 12, tzinfo=UTC)))
    assert label == "2026-03-29"
    assert start == ms(datetime(2026, 3, 28, 23, tzinfo=UTC))  # 00:00 CET
    assert end == ms(datetime(2026, 3, 29, 22, tzinfo=UTC))  # 00:00 CEST
    assert end - start == 23 * HOUR


def test_amsterdam_fall_back_day_is_25_hours():
    day = SettlementDay("Europe/Amsterdam")
    start, end, label = day.bounds(ms(datetime(2026, 10, 25, 12, tzinfo=UTC)))
    assert label == "2026-10-25"
    assert start == ms(datetime(2026, 10, 24, 22, tzinfo=UTC))  # 00:00 CEST
    assert end == ms(datetime(2026, 10, 25, 23, tzinfo=UTC))  # 00:00 CET
    assert end - start == 25 * HOUR


def test_amsterdam_instants_inside_the_repeated_hour():
    day = SettlementDay("Europe/Amsterdam")
    # 02:30 local happens twice on 2026-10-25: 00:30Z (CEST) and 01:30Z (CET)
    for instant in (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 25, 1, 30, tzinfo=UTC)):
        assert day.bounds(ms(instant))[2] == "2026-10-25"
    # the day before ends at 22:00Z
    assert day.bounds(ms(datetime(2026, 10, 24, 21, 59, tzinfo=UTC)))[2] == "2026-10-24"
    assert day.bounds(ms(datetime(2026, 10, 24, 22, 0, tzinfo=UTC)))[2] == "2026-10-25"


@pytest.mark.parametrize(
    "zone, cutoff, first_day",
    [
        ("UTC", 0, datetime(2026, 3, 27, tzinfo=UTC)),
        ("Europe/Amsterdam", 0, datetime(2026, 3, 27, tzinfo=UTC)),
        ("Europe/Amsterdam", 2, datetime(2026, 3, 27, tzinfo=UTC)),  # cut-off inside the skipped hour
        ("Europe/Amsterdam", 3, datetime(2026, 3, 27, tzinfo=UTC)),
        ("Europe/Amsterdam", 6, datetime(2026, 3, 27, tzinfo=UTC)),
        ("Europe/Amsterdam", 2, datetime(2026, 10, 23, tzinfo=UTC)),  # cut-off inside the repeated hour
        ("Europe/Amsterdam", 23, datetime(2026, 10, 23, tzinfo=UTC)),
        ("America/New_York", 17, datetime(2026, 3, 6, tzinfo=UTC)),
        ("America/Santiago", 0, datetime(2026, 9, 4, tzinfo=UTC)),  # local midnight skipped
        ("Asia/Kolkata", 6, datetime(2026, 3, 27, tzinfo=UTC)),
    ],
)
def test_settlement_days_tile_time(zone, cutoff, first_day):
    """Every instant lies in its day's [start, end); consecutive days meet without gap or overlap."""
    day = SettlementDay(zone, cutoff)
    step = 15 * 60_000
    begin = ms(first_day)
    previous = None
    for instant in range(begin, begin + 5 * 24 * HOUR, step):
        start, end, label = day.bounds(instant)
        assert start <= instant < end, (instant, start, end, label)
        assert 22 * HOUR <= end - start <= 26 * HOUR
        assert day.bounds(start) == (start, end, label)
        assert day.bounds(end - 1) == (start, end, label)
        assert day.bounds(end)[0] == end
        if previous is not None and previous != (start, end, label):
            assert previous[1] == start  # the new day starts where the last one ended
            assert previous[2] < label
        previous = (start, end, label)


@pytest.mark.parametrize("cutoff", [-1, 24, 25])
def test_invalid_cutoff_raises(cutoff):
    with pytest.raises(ValueError, match="cutoff_hour"):
        SettlementDay("UTC", cutoff)


def test_unknown_zone_raises():
    with pytest.raises(ZoneInfoNotFoundError):
        SettlementDay("Mars/Olympus_Mons", 0)


# ---------------------------------------------------------------- contributions


def line(record_type: str, gross: int, fee: int = 0, settlement_id: str = "stl-1") -> SettlementLine:
    return SettlementLine(settlement_id, "stripe", "ref-1", "m-001", record_type, gross, fee, gross - fee,
                          "EUR", "2026-03-10", ms(datetime(2026, 3, 10, 9, tzinfo=UTC)), None)


def event(event_type: str, amount: int, event_id: str = "evt-1") -> PaymentEvent:
    return PaymentEvent(event_id, "pay-1", event_type, "stripe", "ref-1", "m-001", amount, "EUR",
                        ms(datetime(2026, 3, 10, 9, tzinfo=UTC)))


def sums_of(**columns) -> tuple:
    names = ["CAPTURED", "REFUNDED", "CHARGEBACK", "LEDGER_COUNT", "GROSS", "FEE", "NET", "ADJUSTMENT",
             "PAYOUT", "LINE_COUNT"]
    return tuple(columns.get(name, 0) for name in names)


@pytest.mark.parametrize(
    "record_type, gross, fee, expected",
    [
        ("CAPTURE", 1000, 30, sums_of(GROSS=1000, FEE=30, NET=970, LINE_COUNT=1)),
        ("REFUND", 500, 10, sums_of(GROSS=-500, FEE=-10, NET=-490, LINE_COUNT=1)),
        ("CHARGEBACK", 700, 0, sums_of(GROSS=-700, FEE=0, NET=-700, LINE_COUNT=1)),
        ("FEE", 25, 0, sums_of(FEE=25, NET=-25, LINE_COUNT=1)),
        ("ADJUSTMENT", 40, 0, sums_of(ADJUSTMENT=40, LINE_COUNT=1)),
        ("PAYOUT", 9000, 0, sums_of(PAYOUT=9000, LINE_COUNT=1)),
        # Account-level lines are signed (DESIGN 3.2): a fee refund, a debit adjustment, a returned payout.
        ("FEE", -50, 0, sums_of(FEE=-50, NET=50, LINE_COUNT=1)),
        ("ADJUSTMENT", -1600, 0, sums_of(ADJUSTMENT=-1600, LINE_COUNT=1)),
        ("PAYOUT", -9000, 0, sums_of(PAYOUT=-9000, LINE_COUNT=1)),
        # A fee on an account-level line: part of a FEE line's cost (its net), with the fees for an
        # ADJUSTMENT (a dispute fee returned with a dispute reversal is -1500), against them for a PAYOUT.
        ("FEE", 40, 5, sums_of(FEE=35, NET=-35, LINE_COUNT=1)),
        ("ADJUSTMENT", 2500, -1500, sums_of(FEE=-1500, NET=1500, ADJUSTMENT=2500, LINE_COUNT=1)),
        ("PAYOUT", 9000, -30, sums_of(FEE=30, NET=-30, PAYOUT=9000, LINE_COUNT=1)),
    ],
)
def test_settlement_contribution(record_type, gross, fee, expected):
    contribution = settlement_contribution(line(record_type, gross, fee))
    assert contribution.sums == expected
    assert contribution.result_key is None
    assert contribution.breaks == 0


def test_settled_net_is_gross_minus_fee_over_any_mix():
    lines = [
        line("CAPTURE", 1000, 30, "stl-1"),
        line("CAPTURE", 2500, 75, "stl-2"),
        line("REFUND", 500, 10, "stl-3"),
        line("CHARGEBACK", 700, 15, "stl-4"),
        line("FEE", 25, 0, "stl-5"),
        line("FEE", 40, 5, "stl-6"),
        line("ADJUSTMENT", 40, 0, "stl-7"),
        line("PAYOUT", 9000, 0, "stl-8"),
    ]
    for size in range(1, len(lines) + 1):
        for subset in itertools.combinations(lines, size):
            totals = [sum(column) for column in zip(*(settlement_contribution(x).sums for x in subset))]
            assert totals[NET] == totals[GROSS] - totals[FEE], [x.record_type for x in subset]
            assert totals[LINE_COUNT] == size


def test_columnar_settlement_partials_equal_the_per_record_contributions_for_signed_lines():
    from schemas.record_tables import SETTLEMENT_TABLE, records_to_table
    from transforms.columnar.daily_totals import settlement_partials

    lines = [line(record_type, gross, fee, f"stl-{index}") for index, (record_type, gross, fee) in enumerate([
        ("CAPTURE", 1000, 30), ("REFUND", 500, 10), ("CHARGEBACK", 700, -15), ("FEE", 25, 0), ("FEE", -50, 0),
        ("FEE", 40, 5), ("ADJUSTMENT", -1600, 0), ("ADJUSTMENT", 2500, -1500), ("PAYOUT", 9000, 0),
        ("PAYOUT", -9000, 0), ("PAYOUT", 100, -30)])]
    per_record = [sum(column) for column in zip(*(settlement_contribution(x).sums for x in lines))]
    columnar = settlement_partials(records_to_table(lines, SETTLEMENT_TABLE), SettlementDay()).to_pylist()
    assert len(columnar) == 1
    names = ("settled_gross_minor", "fee_minor", "settled_net_minor", "adjustment_minor", "payout_minor",
             "settlement_line_count")
    assert tuple(columnar[0][name] for name in names) == tuple(per_record[GROSS:])
    # Balance change of the lines (net in vendor terms) = settled_net + adjustments - payouts.
    assert per_record[NET] + per_record[ADJUSTMENT] - per_record[PAYOUT] == (
        1000 - 30 - 500 + 10 - 700 - 15 - 25 + 50 - 35 - 1600 + 2500 + 1500 - 9000 + 9000 - 100 - 30)


def test_settlement_mix_exact_totals():
    lines = [line("CAPTURE", 1000, 30), line("REFUND", 500, 10), line("FEE", 25)]
    totals = tuple(sum(column) for column in zip(*(settlement_contribution(x).sums for x in lines)))
    assert totals == sums_of(GROSS=500, FEE=45, NET=455, LINE_COUNT=3)


@pytest.mark.parametrize(
    "event_type, expected",
    [
        ("CAPTURED", sums_of(CAPTURED=1200, LEDGER_COUNT=1)),
        ("REFUNDED", sums_of(REFUNDED=1200, LEDGER_COUNT=1)),
        ("CHARGEBACK", sums_of(CHARGEBACK=1200, LEDGER_COUNT=1)),
        ("AUTHORIZED", sums_of(LEDGER_COUNT=1)),
        ("VOIDED", sums_of(LEDGER_COUNT=1)),
        ("FAILED", sums_of(LEDGER_COUNT=1)),
    ],
)
def test_ledger_contribution(event_type, expected):
    contribution = ledger_contribution(event(event_type, 1200))
    assert contribution.sums == expected
    assert contribution.result_key is None


def result(status: str, revision: int, reference: str = "ref-1", kind: str = "CAPTURE",
           event_time=1_000, booked_time=2_000) -> ReconciliationResult:
    return ReconciliationResult("stripe", reference, kind, status, "m-001", "EUR", 1000, 1000, 0,
                                "evt-1", "stl-1", event_time, booked_time, revision, False)


def test_result_contribution():
    broken = result_contribution(result("AMOUNT_MISMATCH", 2))
    assert broken.sums == (0,) * 10
    assert broken.revision == 2
    assert broken.breaks == 1
    assert result_contribution(result("MATCHED", 1)).breaks == 0
    assert result_contribution(result("PENDING", 1)).breaks == 0
    for status in ("CURRENCY_MISMATCH", "MISSING_SETTLEMENT", "UNEXPECTED_SETTLEMENT",
                   "DUPLICATE_SETTLEMENT", "DUPLICATE_LEDGER_EVENT"):
        assert result_contribution(result(status, 1)).breaks == 1
    # keys differ per reference and per kind
    keys = {result_contribution(result("MATCHED", 1, ref, kind)).result_key
            for ref in ("ref-1", "ref-2") for kind in ("CAPTURE", "REFUND")}
    assert len(keys) == 4


def test_result_event_time():
    assert result_event_time(result("MATCHED", 1, event_time=1_000, booked_time=2_000)) == 1_000
    assert result_event_time(result("UNEXPECTED_SETTLEMENT", 1, event_time=None, booked_time=2_000)) == 2_000


# ---------------------------------------------------------------- DailyTotalsFn


def run_sequential(contributions):
    fn = DailyTotalsFn()
    accumulator = fn.create_accumulator()
    for contribution in contributions:
        accumulator = fn.add_input(accumulator, contribution)
    return fn.extract_output(accumulator)


def test_daily_totals_fn_sums():
    contributions = [
        ledger_contribution(event("CAPTURED", 1000, "evt-1")),
        ledger_contribution(event("REFUNDED", 300, "evt-2")),
        ledger_contribution(event("AUTHORIZED", 999, "evt-3")),
        settlement_contribution(line("CAPTURE", 1000, 30, "stl-1")),
        settlement_contribution(line("REFUND", 300, 0, "stl-2")),
        settlement_contribution(line("ADJUSTMENT", 12, 0, "stl-3")),
    ]
    sums, breaks = run_sequential(contributions)
    assert sums == sums_of(CAPTURED=1000, REFUNDED=300, LEDGER_COUNT=3, GROSS=700, FEE=30, NET=670,
                           ADJUSTMENT=12, LINE_COUNT=3)
    assert breaks == 0


def test_empty_accumulator():
    fn = DailyTotalsFn()
    assert fn.extract_output(fn.create_accumulator()) == ((0,) * 10, 0)


def test_break_then_matched_counts_zero():
    rows = [result_contribution(result("MISSING_SETTLEMENT", 1)), result_contribution(result("MATCHED", 2))]
    assert run_sequential(rows)[1] == 0
    assert run_sequential(list(reversed(rows)))[1] == 0  # order of arrival does not matter


def test_matched_then_break_counts_one():
    rows = [result_contribution(result("PENDING", 1)), result_contribution(result("AMOUNT_MISMATCH", 2))]
    assert run_sequential(rows)[1] == 1
    assert run_sequential(list(reversed(rows)))[1] == 1


def test_two_breaks_of_the_same_revision_count_two():
    rows = [result_contribution(result("AMOUNT_MISMATCH", 1)),
            result_contribution(result("DUPLICATE_SETTLEMENT", 1))]
    assert run_sequential(rows)[1] == 2


def test_newer_revision_replaces_all_rows_of_older_one():
    rows = [
        result_contribution(result("UNEXPECTED_SETTLEMENT", 1)),
        result_contribution(result("DUPLICATE_SETTLEMENT", 1)),
        result_contribution(result("MATCHED", 2)),
        result_contribution(result("DUPLICATE_SETTLEMENT", 2)),
        result_contribution(result("AMOUNT_MISMATCH", 1, reference="ref-2")),
    ]
    assert run_sequential(rows)[1] == 2  # ref-1 rev 2: one duplicate; ref-2: one mismatch


MIXED = [
    ledger_contribution(event("CAPTURED", 1000, "evt-1")),
    settlement_contribution(line("CAPTURE", 990, 20, "stl-1")),
    settlement_contribution(line("FEE", 7, 0, "stl-2")),
    result_contribution(result("AMOUNT_MISMATCH", 1, reference="ref-1")),
    result_contribution(result("DUPLICATE_SETTLEMENT", 1, reference="ref-1")),
    result_contribution(result("MATCHED", 2, reference="ref-2")),
    result_contribution(result("MISSING_SETTLEMENT", 1, reference="ref-2")),
    result_contribution(result("PENDING", 0, reference="ref-3")),
    result_contribution(result("MISSING_SETTLEMENT", 1, reference="ref-3")),
]


def test_mixed_sequential_expected():
    sums, breaks = run_sequential(MIXED)
    assert sums == sums_of(CAPTURED=1000, LEDGER_COUNT=1, GROSS=990, FEE=27, NET=963, LINE_COUNT=2)
    assert breaks == 3  # ref-1: 2 (rev 1), ref-2: 0 (rev 2), ref-3: 1 (rev 1)


def _split_and_merge(assignment, order):
    fn = DailyTotalsFn()
    parts = max(assignment) + 1
    accumulators = [fn.create_accumulator() for _ in range(parts)]
    for contribution, part in zip(MIXED, assignment):
        accumulators[part] = fn.add_input(accumulators[part], contribution)
    return fn.extract_output(fn.merge_accumulators([accumulators[i] for i in order]))


def test_merge_accumulators_equals_sequential_for_every_split():
    expected = run_sequential(MIXED)
    checked = 0
    # every assignment of the 9 contributions to 2 accumulators, merged in both orders
    for assignment in itertools.product(range(2), repeat=len(MIXED)):
        if len(set(assignment)) < 2:
            continue
        for order in ((0, 1), (1, 0)):
            assert _split_and_merge(assignment, order) == expected, (assignment, order)
            checked += 1
    assert checked == 2 * (2 ** len(MIXED) - 2)


def test_merge_accumulators_three_way_and_nested():
    fn = DailyTotalsFn()
    expected = run_sequential(MIXED)
    for order in itertools.permutations(range(3)):
        assignment = [i % 3 for i in range(len(MIXED))]
        assert _split_and_merge(assignment, order) == expected
    # merging merged accumulators, then adding more input afterwards
    first = fn.create_accumulator()
    for contribution in MIXED[:3]:
        first = fn.add_input(first, contribution)
    second = fn.create_accumulator()
    for contribution in MIXED[3:6]:
        second = fn.add_input(second, contribution)
    merged = fn.merge_accumulators([fn.merge_accumulators([first]), second, fn.create_accumulator()])
    for contribution in MIXED[6:]:
        merged = fn.add_input(merged, contribution)
    assert fn.extract_output(merged) == expected


# ---------------------------------------------------------------- TriggerPolicy


def test_batch_trigger_has_no_early_firing():
    policy = TriggerPolicy.batch()
    assert policy.bounded_input is True
    assert policy.early_firing_interval is None
    # Bounded input: days are keys in the global window, no event-time windows, no trigger.
    assert policy.keys_windows_in_global_window is True
    assert TriggerPolicy.streaming().keys_windows_in_global_window is False
    assert TriggerPolicy(None).keys_windows_in_global_window is False  # unbounded: windows, even without early
    # Unbounded without early firings: on time, then a late pane per late element.
    unbounded = TriggerPolicy(None).trigger()
    assert unbounded.early is None
    assert unbounded.late is not None


def test_streaming_trigger_fires_early():
    policy = TriggerPolicy.streaming(early_firing_interval=timedelta(minutes=2))
    assert policy.bounded_input is False
    trigger = policy.trigger()
    assert trigger.early is not None
    assert "AfterProcessingTime" in repr(trigger.early)
    assert trigger.early.underlying.delay == 120
    assert TriggerPolicy.streaming().trigger().early.underlying.delay == 300  # default 5 minutes


def test_allowed_lateness_default_and_duration():
    assert TriggerPolicy.batch().allowed_lateness == timedelta(days=7)
    assert TriggerPolicy.streaming().allowed_lateness == timedelta(days=7)
    assert TriggerPolicy.batch(timedelta(hours=2)).allowed_lateness_duration.micros == 2 * HOUR * 1000
