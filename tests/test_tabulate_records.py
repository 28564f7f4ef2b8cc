"""`tabulate_records`: per-record readers' records (JSON Lines, Avro, Kafka and RabbitMQ values) as Arrow columns.

Its promise (schemas/arrow_readers.py): a tabulated row holds its record's very values, every other record
is handed over as it is, and nothing is lost or repeated. Hypothesis draws records of every shape a decoder
gives (missing and extra keys, mixed and out-of-range types, decode errors); the rows it tabulates are the
ones the plain per-value rule below (the implementation before the column gathering moved into C) picks.
"""
from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.arrow_readers import FIELDS_OF_INPUT, tabulate_records
from schemas.attempts import ATTEMPTS
from schemas.records import PAYMENTS, SETTLEMENTS, RawRecord

_INT64 = (-(2**63), 2**63 - 1)
_VALUES = st.one_of(
    st.none(), st.text(max_size=4), st.integers(*_INT64), st.integers(min_value=2**63, max_value=2**70),
    st.floats(allow_nan=False), st.booleans(), st.dates(),
    st.datetimes(timezones=st.just(timezone.utc)), st.datetimes(timezones=st.just(timezone(timedelta(hours=2)))),
    st.datetimes(), st.lists(st.integers(), max_size=2))
# Most columns of a chunk hold one type (as a topic's values do); some rows break it.
_COLUMN_KINDS = st.sampled_from([st.text(max_size=6), st.integers(*_INT64), st.dates(),
                                 st.datetimes(timezones=st.just(timezone.utc))])


@st.composite
def _records(draw):
    input_name = draw(st.sampled_from([ATTEMPTS, PAYMENTS, SETTLEMENTS]))
    names = FIELDS_OF_INPUT[input_name]
    kinds = {name: draw(_COLUMN_KINDS) for name in names}
    records = []
    for number in range(draw(st.integers(0, 12))):
        shape = draw(st.sampled_from(["plain"] * 6 + ["odd value", "null", "missing", "extra", "matched side", "error",
                                                      "not a dict"]))
        fields = {name: draw(kinds[name]) for name in names}
        if shape == "odd value":
            fields[draw(st.sampled_from(names))] = draw(_VALUES)
        elif shape == "null":
            fields[draw(st.sampled_from(names))] = None
        elif shape == "missing":
            del fields[draw(st.sampled_from(names))]
        elif shape == "extra":
            fields["unexpected"] = draw(_VALUES)
        elif shape == "matched side":  # Avro settlement lines carry it, null by default
            fields.update(matched_minor=draw(st.none() | st.integers(0, 9)), matched_currency=None)
        source = f"topic/0@{number}"
        if shape == "error":
            records.append(RawRecord(input_name, source, None, "{", "cannot decode the value"))
        elif shape == "not a dict":
            records.append(RawRecord(input_name, source, [1, 2], "[1, 2]"))
        else:
            records.append(RawRecord(input_name, source, fields, f"payload {number}"))
    return input_name, records


def _reference_rows(records, names):
    """The rows the rule tabulates, value by value in Python: a plain record (exactly the input's keys, no
    decode error); per column in order, its most common non-null type if Arrow holds it; a row whose value
    is neither that type (int: within int64, datetime: aware) nor null is handed over per record."""
    matched_side = {"matched_minor", "matched_currency"} if records and records[0].input == SETTLEMENTS else set()

    def plain(fields):
        return fields.keys() == set(names) or (matched_side and fields.keys() == set(names) | matched_side
                                               and all(fields[name] is None for name in matched_side))
    rows = [index for index, record in enumerate(records)
            if record.decode_error is None and type(record.fields) is dict and plain(record.fields)]
    for name in names:
        kinds = Counter(type(records[index].fields[name]) for index in rows)
        kinds.pop(type(None), None)
        if not kinds:
            continue
        kind = kinds.most_common(1)[0][0]
        if kind not in (str, int, date, datetime):
            return []  # a column Arrow would not hold as its values are: the whole chunk per record

        def fits(value, kind=kind):
            if value is None:
                return True
            if type(value) is not kind:
                return False
            if kind is int:
                return _INT64[0] <= value <= _INT64[1]
            return kind is not datetime or value.utcoffset() is not None
        rows = [index for index in rows if fits(records[index].fields[name])]
    return rows


def _typed(value):
    return type(value), value


@settings(max_examples=300, deadline=None)
@given(_records())
def test_tabulated_rows_hold_their_records_values_and_every_record_is_handed_over_once(drawn):
    input_name, records = drawn
    names = FIELDS_OF_INPUT[input_name]
    chunk = tabulate_records(records, "topic", input_name)
    tabulated = chunk.row_records or []
    # Every record once: the tabulated ones and the rest, each in the order read.
    assert sorted(map(id, tabulated + chunk.records)) == sorted(map(id, records))
    positions = {id(record): index for index, record in enumerate(records)}
    assert [positions[id(record)] for record in tabulated] == sorted(positions[id(record)] for record in tabulated)
    assert [positions[id(record)] for record in chunk.records] == sorted(
        positions[id(record)] for record in chunk.records)
    if chunk.table is None:
        assert not tabulated
        return
    # A tabulated row holds its record's very values, of the same Python types.
    assert chunk.table.column_names == list(names)
    for row, record in zip(chunk.table.to_pylist(), tabulated):
        assert [_typed(row[name]) for name in names] == [_typed(record.fields[name]) for name in names]
    # The rows tabulated are the rule's.
    assert [positions[id(record)] for record in tabulated] == _reference_rows(records, names)


def test_a_chunk_of_plain_records_is_one_table():
    names = FIELDS_OF_INPUT[ATTEMPTS]
    records = [RawRecord(ATTEMPTS, f"topic/0@{number}", {name: f"{name}-{number}" for name in names}, "{}")
               for number in range(3)]
    chunk = tabulate_records(records, "topic", ATTEMPTS)
    assert chunk.records == [] and chunk.table.num_rows == 3
    assert chunk.table.column("attempt_id").to_pylist() == ["attempt_id-0", "attempt_id-1", "attempt_id-2"]
