"""schemas.timestamps: RFC 3339 / aware datetimes <-> UTC epoch millis (docs/DESIGN.md 3)."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.timestamps import (
    TimestampError,
    format_timestamp,
    format_timestamps,
    millis_to_datetime,
    parse_date,
    parse_duration,
    parse_timestamp_millis,
)

# 2024-03-01T10:15:30Z
BASE = 1_709_288_130_000


def test_base_constant_is_right():
    assert datetime.fromtimestamp(BASE / 1000, tz=timezone.utc) == datetime(2024, 3, 1, 10, 15, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2024-03-01T10:15:30Z", BASE),
        ("2024-03-01T10:15:30z", BASE),
        ("2024-03-01T10:15:30+00:00", BASE),
        ("2024-03-01T12:15:30+02:00", BASE),
        ("2024-03-01T04:45:30-05:30", BASE),
        ("2024-03-01T10:15:30.123Z", BASE + 123),
        ("2024-03-01T10:15:30.5Z", BASE + 500),
        ("2024-03-01T10:15:30.123456Z", BASE + 123),  # microseconds truncated
        ("2024-03-01T10:15:30.999999Z", BASE + 999),  # truncated, never rounded up
        ("2024-03-01T12:15:30.000999+02:00", BASE),
        ("  2024-03-01T10:15:30Z  ", BASE),
        ("1970-01-01T00:00:00Z", 0),
        ("1969-12-31T23:59:59.999Z", -1),
    ],
)
def test_parse_text_with_offsets(text, expected):
    assert parse_timestamp_millis(text, "event_time") == expected


def test_parse_aware_datetime():
    assert parse_timestamp_millis(datetime(2024, 3, 1, 10, 15, 30, tzinfo=timezone.utc)) == BASE
    plus_two = timezone(timedelta(hours=2))
    assert parse_timestamp_millis(datetime(2024, 3, 1, 12, 15, 30, 123456, tzinfo=plus_two)) == BASE + 123
    minus_530 = timezone(-timedelta(hours=5, minutes=30))
    assert parse_timestamp_millis(datetime(2024, 3, 1, 4, 45, 30, tzinfo=minus_530)) == BASE


def test_int_passes_through():
    assert parse_timestamp_millis(BASE) == BASE
    assert parse_timestamp_millis(0) == 0
    assert parse_timestamp_millis(-5) == -5


@pytest.mark.parametrize("value", ["2024-03-01T10:15:30", "2024-03-01 10:15:30", "2024-03-01T10:15:30.123"])
def test_naive_text_is_rejected(value):
    with pytest.raises(TimestampError, match="no UTC offset") as info:
        parse_timestamp_millis(value, "event_time")
    assert "event_time" in str(info.value)
    assert value in str(info.value)


def test_naive_datetime_is_rejected():
    with pytest.raises(TimestampError, match="no UTC offset") as info:
        parse_timestamp_millis(datetime(2024, 3, 1, 10, 15, 30), "booked_time")
    assert "booked_time" in str(info.value)


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01T00:00:00Z", "2024-03-01T25:00:00Z", "12:00Z", "abcZ"])
def test_garbage_text_is_rejected(value):
    with pytest.raises(TimestampError, match="not an RFC 3339 timestamp"):
        parse_timestamp_millis(value, "event_time")


@pytest.mark.parametrize("value", ["", "   ", None])
def test_missing_is_rejected(value):
    with pytest.raises(TimestampError, match="event_time is missing"):
        parse_timestamp_millis(value, "event_time")


@pytest.mark.parametrize("value", [True, 1.5, [1], date(2024, 3, 1)])
def test_other_types_are_rejected(value):
    with pytest.raises(TimestampError):
        parse_timestamp_millis(value, "event_time")


def test_timestamp_error_is_a_value_error():
    assert issubclass(TimestampError, ValueError)


# ---------------------------------------------------------------- format_timestamp


def test_format_timestamp_exact_text():
    assert format_timestamp(BASE) == "2024-03-01T10:15:30.000Z"
    assert format_timestamp(BASE + 7) == "2024-03-01T10:15:30.007Z"
    assert format_timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert format_timestamp(-1) == "1969-12-31T23:59:59.999Z"


@pytest.mark.parametrize("millis", [0, 1, 999, BASE, BASE + 123, -1, -1001, 4_102_444_799_999])
def test_format_round_trip(millis):
    assert parse_timestamp_millis(format_timestamp(millis)) == millis


def test_millis_to_datetime_is_utc():
    moment = millis_to_datetime(BASE + 5)
    assert moment.utcoffset() == timedelta(0)
    assert moment == datetime(2024, 3, 1, 10, 15, 30, 5000, tzinfo=timezone.utc)


# ---------------------------------------------------------------- parse_date


def test_parse_date():
    assert parse_date("2024-03-01") == date(2024, 3, 1)
    assert parse_date(" 2024-03-01 ") == date(2024, 3, 1)
    assert parse_date(date(2024, 3, 1)) == date(2024, 3, 1)
    assert parse_date(datetime(2024, 3, 1, 23, 59, tzinfo=timezone.utc)) == date(2024, 3, 1)
    assert type(parse_date(datetime(2024, 3, 1, 23, 59, tzinfo=timezone.utc))) is date


@pytest.mark.parametrize("value", ["2024-02-30", "01/03/2024", "", "tomorrow"])
def test_parse_date_rejects_bad_text(value):
    with pytest.raises(TimestampError, match="settlement_date"):
        parse_date(value, "settlement_date")


def test_parse_date_rejects_missing_and_other_types():
    with pytest.raises(TimestampError, match="settlement_date is missing"):
        parse_date(None, "settlement_date")
    with pytest.raises(TimestampError):
        parse_date(20240301, "settlement_date")


# ---------------------------------------------------------------- parse_duration


@pytest.mark.parametrize(
    "text, expected",
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("36h", timedelta(hours=36)),
        ("3d", timedelta(days=3)),
        ("1d12h", timedelta(hours=36)),
        ("1h30m", timedelta(minutes=90)),
        ("500ms", timedelta(milliseconds=500)),
        ("3D", timedelta(days=3)),
        (" 15m ", timedelta(minutes=15)),
        ("0s", timedelta(0)),
    ],
)
def test_parse_duration_ok(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "3 days", "x", "1h2", "h", "-3d", "1.5h", "3w", "d3"])
def test_parse_duration_rejected(text):
    with pytest.raises(TimestampError):
        parse_duration(text)


def test_instants_outside_1900_to_9000_are_rejected_with_their_reason():
    from schemas.timestamps import EARLIEST_MILLIS, LATEST_MILLIS

    assert parse_timestamp_millis(EARLIEST_MILLIS, "event_time") == EARLIEST_MILLIS
    assert parse_timestamp_millis(LATEST_MILLIS - 1, "event_time") == LATEST_MILLIS - 1
    for value in (EARLIEST_MILLIS - 1, LATEST_MILLIS, 99999999999999999999, "9999-12-31T23:59:59Z",
                  "1899-12-31T23:59:59.999Z"):
        with pytest.raises(TimestampError, match=r"event_time .* is out of range \(1900-01-01 to 9000-01-01\)"):
            parse_timestamp_millis(value, "event_time")


def test_a_poison_event_time_gives_a_kafka_record_no_watermark_time_instead_of_a_crash():
    from schemas.kafka_values import payload_time_millis
    from schemas.records import PAYMENTS, RawRecord

    record = RawRecord(PAYMENTS, "payments/0@7", {"event_time": 99999999999999999999}, "{}")
    assert payload_time_millis(record) is None


def test_formatting_through_the_per_second_cache_equals_strftime_everywhere():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from schemas.timestamps import EARLIEST_MILLIS, LATEST_MILLIS, format_timestamp, millis_to_datetime

    @settings(max_examples=500, deadline=None)
    @given(st.integers(EARLIEST_MILLIS, LATEST_MILLIS - 1))
    def same(millis):
        expected = millis_to_datetime(millis).strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}Z"
        assert format_timestamp(millis) == format_timestamp(millis) == expected

    same()


# Every instant a datetime holds (years 1 to 9999), the edges of the years numpy writes with four digits.
_INSTANTS = st.one_of(st.integers(-62_135_596_800_000, 253_402_300_799_999),
                      st.sampled_from([-62_135_596_800_000, -30_610_224_000_001, -30_610_224_000_000, -1, 0,
                                       253_402_300_799_999]))


@given(st.lists(st.one_of(st.none(), _INSTANTS), max_size=40), st.integers(1, 3))
def test_a_column_of_instants_is_formatted_as_each_one_alone(values, pieces):
    """format_timestamps (numpy, a column at a time) against format_timestamp of each value, on plain and
    chunked columns with nulls."""
    size = -(-len(values) // pieces) or 1
    column = pa.chunked_array([values[start:start + size] for start in range(0, len(values), size)] or [[]],
                              pa.int64())
    assert format_timestamps(column) == [None if value is None else format_timestamp(value) for value in values]
    assert format_timestamps(pa.array(values, pa.int64())) == format_timestamps(column)


def test_an_instant_past_year_9999_fails_as_format_timestamp_does():
    with pytest.raises(OverflowError):
        format_timestamp(253_402_300_800_000)
    with pytest.raises(OverflowError):
        format_timestamps(pa.array([0, 253_402_300_800_000]))
