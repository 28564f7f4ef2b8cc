"""Validation of RawChunks: `transforms.validate` rules, vectorised, with the per-record rules as referee.

A row takes the vectorised path only when its every field is in a form whose
per-record outcome is certain and cheap to compute (plain ids, exact enum
values, digit strings, `YYYY-MM-DDTHH:MM:SS[.fff|.ffffff](Z|+00:00)`,
timestamp or integer columns, ...) and no identifier holds 13 digits in a row
(a possible card number; an Adyen PSP reference where Adyen documents one
excepted); those rows are accepted with exactly the
values `parse_payment_event` / `parse_settlement_line` would give. Every
other row is rebuilt as the `RawRecord` the per-record reader gives and
judged by `validate_raw_record` itself, so rejections carry the very same
reasons. tests/test_columnar_validate.py fuzzes the two paths against each
other.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.attempts import (
    APPROVED,
    ATTEMPT_FIELDS,
    ATTEMPT_TYPES,
    ATTEMPTS,
    BIN_DIGITS,
    OUTCOMES,
    REQUIRED_ATTEMPT_FIELDS,
    THREE_DS_RESULTS,
)
from schemas.money import CURRENCY_EXPONENTS, MAX_MINOR_UNITS
from schemas.pan import CANDIDATE_PATTERN
from schemas.raw_chunks import RawChunk, source_prefix
from schemas.record_tables import TABLE_SCHEMA_OF_INPUT, records_to_table, to_numpy
from schemas.records import PAYMENT_FIELDS, PAYMENTS, SETTLEMENT_FIELDS, DeadLetter, RawRecord
from schemas.rules import EVENT_TYPES, RECORD_TYPES
from schemas.timestamps import EARLIEST_MILLIS, LATEST_MILLIS
from schemas.vendors.adyen import PROCESSOR as ADYEN
from transforms.columnar.shards import string_bytes
from transforms.risk.attempts import ATTEMPT_IDENTIFIERS
from transforms.validate import IDENTIFIER_FIELDS, TEXT_LIMITS, judge_raw_record

ORIGIN_COLUMN = "_origin"
SOURCE_PREFIX_COLUMN = "_source_prefix"  # with _origin, where a row was read (a conflicting copy's dead letter)

_CURRENCIES = pa.array(sorted(CURRENCY_EXPONENTS))
# str.strip() leaves it as it is, and it is not empty: `plain_text_mask` checks it byte-wise
# (tests/test_columnar_validate.py compares the two).
PLAIN_TEXT = r"(?s)^[!-~](.*[!-~])?$"
_PLAIN_LOWER_ASCII = r"^[!-@\[-~]([ -@\[-~]*[!-@\[-~])?$"  # ... and str.lower() too
_INSTANT = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{3}|\.[0-9]{6})?(Z|\+00:00)$"
_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# Adyen's documented forms (schemas/vendors/adyen.py), the one digit run of their field.
_ADYEN_DOCUMENTED = {"processor_reference": r"^[0-9]{16}$", "settlement_id": r"^adyen:[0-9]{16}:[A-Za-z]+(:[a-p]{20})?$"}

Checked = Tuple[np.ndarray, pa.Array]  # (row can take the vectorised path, its parsed value)


def validate_chunk(chunk: RawChunk) -> Tuple[pa.Table, List[DeadLetter]]:
    """A chunk -> (accepted rows as a TABLE_SCHEMA_OF_INPUT table plus _origin, dead letters)."""
    accepted, letters, _ = judge_chunk(chunk)
    return accepted, letters


def judge_chunk(chunk: RawChunk) -> Tuple[pa.Table, List[DeadLetter], int]:
    """`validate_chunk`, plus how many card numbers the dead letters had masked."""
    schema = TABLE_SCHEMA_OF_INPUT[chunk.input]
    parts: List[pa.Table] = []
    letters: List[DeadLetter] = []
    pans_masked = 0
    referee: List[Tuple[RawRecord, int]] = [(record, chunk.record_origin(record.source)) for record in chunk.records]
    if chunk.table is not None and chunk.table.num_rows:
        fast, values = _vectorised(chunk.input, chunk.table)
        if fast.any():
            keep, rows = pa.array(fast), np.flatnonzero(fast)
            parts.append(_with_origin(pa.Table.from_arrays([values[name].filter(keep) for name in schema.names],
                                                            schema=schema), chunk.row_origins(rows),
                                      chunk.row_source_prefixes(rows)))
        slow = np.flatnonzero(~fast)
        referee += zip(chunk.row_raw_records(slow), chunk.row_origins(slow).tolist())
    accepted, accepted_origins, accepted_prefixes = [], [], []
    for raw, origin in referee:
        outcome, masked = judge_raw_record(raw)
        pans_masked += masked
        if isinstance(outcome, DeadLetter):
            letters.append(outcome)
        else:
            accepted.append(outcome)
            accepted_origins.append(origin)
            accepted_prefixes.append(source_prefix(raw.source))
    if accepted:
        parts.append(_with_origin(records_to_table(accepted, schema), np.array(accepted_origins, dtype=np.int64),
                                  accepted_prefixes))
    if not parts:
        return _with_origin(schema.empty_table(), np.zeros(0, dtype=np.int64), []), letters, pans_masked
    return pa.concat_tables(parts), letters, pans_masked


def _with_origin(table: pa.Table, origins: np.ndarray, prefixes: Union[List[str], pa.Array]) -> pa.Table:
    """Where each row was read (RawChunk.origins): the columnar deduplication keeps the earliest, and names
    both copies' sources (`origin_source`) when a later one conflicts."""
    return (table.append_column(ORIGIN_COLUMN, pa.array(origins, pa.int64()))
            .append_column(SOURCE_PREFIX_COLUMN,
                           prefixes if isinstance(prefixes, pa.Array) else pa.array(prefixes, pa.string())))


# ---------------------------------------------------------------- the vectorised path


def _vectorised(input_name: str, table: pa.Table) -> Tuple[np.ndarray, Dict[str, pa.Array]]:
    if input_name == ATTEMPTS:
        return _vectorised_attempts(table)
    expected = PAYMENT_FIELDS if input_name == PAYMENTS else SETTLEMENT_FIELDS
    required = [name for name in expected if name != "payout_id"]
    nothing = np.zeros(table.num_rows, dtype=bool)
    if any(name not in table.column_names for name in required):
        return nothing, {}
    column = {name: table.column(name).combine_chunks() for name in required}
    checks: Dict[str, Checked] = {}
    if input_name == PAYMENTS:
        for name in ("event_id", "payment_id", "processor_reference", "merchant_id"):
            checks[name] = _text(column[name], TEXT_LIMITS[name])
        checks["event_type"] = _one_of(column["event_type"], EVENT_TYPES)
        checks["amount_minor"] = _money(column["amount_minor"], positive=True)
        checks["event_time"] = _instant(column["event_time"])
    else:
        for name in ("settlement_id", "processor_reference", "merchant_id"):
            checks[name] = _text(column[name], TEXT_LIMITS[name])
        checks["record_type"] = _one_of(column["record_type"], RECORD_TYPES)
        checks["gross_minor"] = _money(column["gross_minor"], positive=True)
        checks["fee_minor"] = _money(column["fee_minor"], positive=False)
        checks["net_minor"] = _money(column["net_minor"], positive=False)
        checks["settlement_date"] = _date(column["settlement_date"])
        checks["booked_time"] = _instant(column["booked_time"])
        checks["payout_id"] = _optional_text(
            table.column("payout_id").combine_chunks() if "payout_id" in table.column_names
            else pa.nulls(table.num_rows, pa.string()), TEXT_LIMITS["payout_id"])
    checks["processor"] = _lower_text(column["processor"], TEXT_LIMITS["processor"])
    checks["currency"] = _one_of(column["currency"], _CURRENCIES)
    fast = np.ones(table.num_rows, dtype=bool)
    for ok, _ in checks.values():
        fast &= ok
    values = {name: value for name, (_, value) in checks.items()}
    if input_name != PAYMENTS:
        # The matched side is not a file column: a row that has one is judged per record.
        for name, kind in (("matched_minor", pa.int64()), ("matched_currency", pa.string())):
            if name in table.column_names:
                fast &= to_numpy(pc.is_null(table.column(name).combine_chunks())).astype(bool)
            values[name] = pa.nulls(table.num_rows, kind)
    if fast.any():
        fast &= ~_may_hold_card_numbers(input_name, values)
    if input_name != PAYMENTS and fast.any():
        gross, fee, net = (np.where(fast, to_numpy(values[name].fill_null(0)), 0)
                           for name in ("gross_minor", "fee_minor", "net_minor"))
        fast &= net == gross - fee
    return fast, values


# Forms whose per-record outcome is the value itself: a canonical IPv4 address (no leading zeros, which
# ipaddress refuses) prints as it is read; an upper-case country code and a BIN of digits are kept as they are.
_IPV4 = r"^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$"
_COUNTRY = r"^[A-Z]{2}$"
_BIN = r"^[0-9]{%d,%d}$" % BIN_DIGITS


def _optional_form(array: pa.Array, pattern: str) -> Checked:
    """An optional field taken as it is when it matches `pattern` (null or empty: None)."""
    return _optional(array, lambda text: _mask(pc.match_substring_regex(text, pattern)))


def _optional_one_of(array: pa.Array, allowed) -> Checked:
    return _optional(array, lambda text: _mask(pc.is_in(text, value_set=pa.array(list(allowed), pa.string()))))


def _vectorised_attempts(table: pa.Table) -> Tuple[np.ndarray, Dict[str, pa.Array]]:
    """transforms/risk/attempts.py's rules where a row's every field is in a form whose outcome is certain."""
    nothing = np.zeros(table.num_rows, dtype=bool)
    if any(name not in table.column_names for name in REQUIRED_ATTEMPT_FIELDS):
        return nothing, {}
    column = {name: table.column(name).combine_chunks() if name in table.column_names
              else pa.nulls(table.num_rows, pa.string()) for name in ATTEMPT_FIELDS}
    checks: Dict[str, Checked] = {
        "attempt_id": _text(column["attempt_id"], TEXT_LIMITS["attempt_id"]),
        "attempt_type": _one_of(column["attempt_type"], ATTEMPT_TYPES),
        "event_time": _instant(column["event_time"]),
        "merchant_id": _text(column["merchant_id"], TEXT_LIMITS["merchant_id"]),
        "amount_minor": _money(column["amount_minor"], positive=True),
        "currency": _one_of(column["currency"], _CURRENCIES),
        "card_fingerprint": _text(column["card_fingerprint"], TEXT_LIMITS["card_fingerprint"]),
        "card_bin": _optional_form(column["card_bin"], _BIN),
        "ip": _optional_form(column["ip"], _IPV4),
        "billing_country": _optional_form(column["billing_country"], _COUNTRY),
        "issuing_country": _optional_form(column["issuing_country"], _COUNTRY),
        "outcome": _one_of(column["outcome"], OUTCOMES),
        "three_ds": _optional_one_of(column["three_ds"], THREE_DS_RESULTS),
    }
    for name in ("customer_id", "device_id", "decline_code", "payment_id"):
        checks[name] = _optional_text(column[name], TEXT_LIMITS.get(name, 1 << 30))
    fast = np.ones(table.num_rows, dtype=bool)
    for ok, _ in checks.values():
        fast &= ok
    values = {name: value for name, (_, value) in checks.items()}
    if fast.any():
        # An approved attempt with a decline code is refused: the referee says so.
        fast &= ~(_mask(pc.equal(values["outcome"], APPROVED)) & _mask(pc.is_valid(values["decline_code"])))
        for name in ATTEMPT_IDENTIFIERS:
            if _is_text(values[name]):
                fast &= ~card_candidate_mask(values[name])
    return fast, values


def _may_hold_card_numbers(input_name: str, values: Dict[str, pa.Array]) -> np.ndarray:
    """Rows with 13 digits in a row in an identifier: the referee decides (`schemas.pan`, Luhn, Adyen's forms)."""
    suspect = np.zeros(len(values["processor"]), dtype=bool)
    adyen = None
    for name in IDENTIFIER_FIELDS[input_name]:
        if not _is_text(values[name]):
            continue  # such rows are not on the vectorised path anyway
        candidate = card_candidate_mask(values[name])
        if name in _ADYEN_DOCUMENTED and candidate.any():
            adyen = _mask(pc.equal(values["processor"], ADYEN)) if adyen is None else adyen
            candidate &= ~(adyen & _mask(pc.match_substring_regex(values[name], _ADYEN_DOCUMENTED[name])))
        suspect |= candidate
    return suspect


def plain_text_mask(array: pa.Array) -> np.ndarray:
    """Rows matching PLAIN_TEXT (not empty, first and last character printable ASCII but space), from their
    first and last bytes: a character of several bytes ends and starts with bytes >= 0x80. Null is False."""
    data, starts, lengths = string_bytes(array)
    plain = lengths > 0
    if plain.any():
        first = data[starts[plain]]
        last = data[starts[plain] + lengths[plain] - 1]
        plain[plain] = (first >= 0x21) & (first <= 0x7E) & (last >= 0x21) & (last <= 0x7E)
    return plain & ~to_numpy(pc.is_null(array)).astype(bool)


def card_candidate_mask(array: pa.Array) -> np.ndarray:
    """Rows matching CANDIDATE_PATTERN (13 digits in a row, single spaces or dashes between). Only rows
    holding 13 digits at all can: the regex runs on those alone. Null is False."""
    candidate = _digits_per_row(*string_bytes(array)) >= 13
    rows = np.flatnonzero(candidate)
    if len(rows):
        candidate[rows] = _mask(pc.match_substring_regex(array.take(pa.array(rows)), CANDIDATE_PATTERN))
    return candidate & ~to_numpy(pc.is_null(array)).astype(bool)


def _digits_per_row(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """ASCII digits in each row. Rows lie back to back in Arrow's data buffer, so one reduceat over the
    non-empty rows' starts sums each row's bytes (a cumulative sum over every byte took 4x as long)."""
    digits = np.zeros(len(lengths), dtype=np.int32)
    nonempty = np.flatnonzero(lengths > 0)
    if len(nonempty):
        first, end = starts[nonempty[0]], starts[nonempty[-1]] + lengths[nonempty[-1]]
        is_digit = np.subtract(data[first:end], 0x30, dtype=np.uint8) < 10  # below '0' wraps round to >= 10
        digits[nonempty] = np.add.reduceat(is_digit, starts[nonempty] - first, dtype=np.int32)
    return digits


def _mask(condition) -> np.ndarray:
    return to_numpy(pc.fill_null(condition, False)).astype(bool)


def _is_text(array: pa.Array) -> bool:
    return pa.types.is_string(array.type) or pa.types.is_large_string(array.type)


def _unchecked(array: pa.Array) -> Checked:
    return np.zeros(len(array), dtype=bool), array


def _fits(array: pa.Array, limit: int) -> np.ndarray:
    # Plain text is what str.strip() leaves as it is, so its length in characters is the trimmed length.
    return _mask(pc.less_equal(pc.utf8_length(array), limit))


def _text(array: pa.Array, limit: int) -> Checked:
    if not _is_text(array):
        return _unchecked(array)
    return plain_text_mask(array) & _fits(array, limit), array.cast(pa.string())


def _lower_text(array: pa.Array, limit: int) -> Checked:
    if not _is_text(array):
        return _unchecked(array)
    return (_mask(pc.match_substring_regex(array, _PLAIN_LOWER_ASCII)) & _fits(array, limit),
            array.cast(pa.string()))


def _optional(array: pa.Array, takes: Callable[[pa.Array], np.ndarray]) -> Checked:
    """An optional field: null or empty is None; other text takes the vectorised path where `takes` says."""
    if pa.types.is_null(array.type):
        return np.ones(len(array), dtype=bool), pa.nulls(len(array), pa.string())
    if not _is_text(array):
        return _unchecked(array)
    array = array.cast(pa.string())
    empty = _mask(pc.equal(array, ""))
    ok = takes(array) | empty | to_numpy(pc.is_null(array)).astype(bool)
    return ok, pc.if_else(pa.array(empty), pa.nulls(len(array), pa.string()), array)


def _optional_text(array: pa.Array, limit: int) -> Checked:
    return _optional(array, lambda text: plain_text_mask(text) & _fits(text, limit))


def _one_of(array: pa.Array, allowed) -> Checked:
    if not _is_text(array):
        return _unchecked(array)
    return _mask(pc.is_in(array, value_set=pa.array(list(allowed), pa.string()))), array.cast(pa.string())


def _money(array: pa.Array, positive: bool) -> Checked:
    if pa.types.is_integer(array.type) and not pa.types.is_uint64(array.type):
        values = array.cast(pa.int64())
    elif _is_text(array):
        digits = _mask(pc.match_substring_regex(array, r"^-?[0-9]{1,18}$"))
        values = pc.if_else(pa.array(digits), array, pa.scalar("0")).cast(pa.int64())
    else:
        return _unchecked(array)
    numbers = to_numpy(values.fill_null(0))
    ok = ~to_numpy(values.is_null()) & (np.abs(numbers) <= MAX_MINOR_UNITS)
    if _is_text(array):
        ok &= digits
    if positive:
        ok &= numbers > 0
    return ok, values


def _instant(array: pa.Array) -> Checked:
    if pa.types.is_timestamp(array.type):
        if array.type.tz is None or array.type.unit not in ("s", "ms", "us"):
            return _unchecked(array)
        raw = to_numpy(array.cast(pa.int64()).fill_null(0))
        millis = {"s": raw * 1000, "ms": raw, "us": raw // 1000}[array.type.unit]
        return ~to_numpy(array.is_null()) & _in_range(millis), pa.array(millis, pa.int64())
    if pa.types.is_integer(array.type) and not pa.types.is_uint64(array.type):
        values = array.cast(pa.int64())
        return ~to_numpy(values.is_null()) & _in_range(to_numpy(values.fill_null(0))), values
    if not _is_text(array):
        return _unchecked(array)
    ok = _mask(pc.match_substring_regex(array, _INSTANT))
    text = pc.if_else(pa.array(ok), array, pa.scalar("1970-01-01T00:00:00Z")).cast(pa.string())
    part = lambda start, stop: to_numpy(pc.utf8_slice_codeunits(text, start, stop).cast(pa.int64()))  # noqa: E731
    year, month, day = part(0, 4), part(5, 7), part(8, 10)
    hour, minute, second = part(11, 13), part(14, 16), part(17, 19)
    has_fraction = to_numpy(pc.equal(pc.utf8_slice_codeunits(text, 19, 20), "."))
    fraction = np.where(has_fraction, to_numpy(pc.utf8_slice_codeunits(
        pc.if_else(pa.array(has_fraction), text, pa.scalar("1970-01-01T00:00:00.000Z")), 20, 23
    ).cast(pa.int64())), 0)
    ok &= _calendar_day(year, month, day) & (hour <= 23) & (minute <= 59) & (second <= 59)
    days = _days_from_civil(year, month, day)
    millis = ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + fraction
    return ok & _in_range(millis), pa.array(millis, pa.int64())


def _in_range(millis: np.ndarray) -> np.ndarray:
    return (millis >= EARLIEST_MILLIS) & (millis < LATEST_MILLIS)


def _date(array: pa.Array) -> Checked:
    if pa.types.is_date32(array.type):
        days = to_numpy(array.cast(pa.int32()).fill_null(0)).astype(np.int64)
        ok = ~to_numpy(array.is_null()) & (days >= -354_285) & (days <= 2_932_896)  # years 1000 .. 9999
        return ok, array.cast(pa.string())
    if not _is_text(array):
        return _unchecked(array)
    ok = _mask(pc.match_substring_regex(array, _DATE))
    text = pc.if_else(pa.array(ok), array, pa.scalar("1970-01-01")).cast(pa.string())
    part = lambda start, stop: to_numpy(pc.utf8_slice_codeunits(text, start, stop).cast(pa.int64()))  # noqa: E731
    ok &= _calendar_day(part(0, 4), part(5, 7), part(8, 10))
    return ok, array.cast(pa.string())


def _calendar_day(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[np.clip(month, 1, 12) - 1]
    month_days = month_days + ((month == 2) & leap)
    return (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)


def _days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year = year - (month <= 2)
    era = np.floor_divide(year, 400)
    year_of_era = year - era * 400
    day_of_year = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468
