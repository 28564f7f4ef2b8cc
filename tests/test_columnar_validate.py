"""Differential fuzz: columnar reading + validation equals the per-record reader + `validate_raw_record`.

Rows mix valid values with every broken form the readers accept (padding,
case, signs, decimals, overflowing digits, impossible dates, other offsets,
naive times, unknown enums and currencies, blanks, wrong column counts,
quotes, non-ASCII, CRLF, BOM, text around its length bounds, card numbers and Adyen PSP references in
identifiers). Both sides must accept the same records with the same values,
reject the same rows with the same reason, source and (masked) raw payload,
and count the same card numbers masked.
"""
from __future__ import annotations

import csv
import io
import random
from datetime import date, datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import arrow
from schemas.arrow_readers import read_chunks
from schemas.codecs import read_records
from schemas.money import MAX_MINOR_UNITS
from schemas.pan import CANDIDATE_PATTERN
from schemas.record_tables import RECORD_TYPE_OF_INPUT, table_to_records
from schemas.records import PAYMENT_FIELDS, PAYMENTS, SETTLEMENT_FIELDS, SETTLEMENTS, DeadLetter
from schemas.timestamps import EARLIEST_MILLIS, LATEST_MILLIS
from tests.card_numbers import card_number, grouped, without_check_digit
from transforms.columnar.validate import PLAIN_TEXT, card_candidate_mask, judge_chunk, plain_text_mask
from transforms.validate import judge_raw_record

PSP_REFERENCE = card_number(16, "88", "3")  # Adyen's documented form, Luhn-valid
# Card numbers and look-alikes: refused, or kept (an Adyen PSP reference where Adyen documents it), or fine.
CARD_LIKE = [card_number(), grouped(card_number(), "-"), grouped(card_number(), " "), f"ref_{card_number(13)}",
             without_check_digit(card_number()[:-1]), card_number()[:12], card_number(20), PSP_REFERENCE,
             f"adyen:{PSP_REFERENCE}:Settled", f"adyen:{PSP_REFERENCE}:", f" {PSP_REFERENCE}"]
# Around the length bounds (transforms/validate.py: TEXT_LIMITS): characters once trimmed, not bytes.
LONG = ["x" * 256, "x" * 257, " " + "x" * 256 + " ", "é" * 256, "é" * 257, "x" * 2000]
TEXT = ["evt_1", "ref_9", "m_1", " padded", "padded ", "", "  ", "with space inside", "ünïcode", "x\u00a0",
        "tab\t", "a,b", 'q"uote'] + CARD_LIKE + LONG
TIMES = ["2026-01-05T00:00:00Z", "2026-01-05T10:11:12.345Z", "2026-01-05T10:11:12.345678Z",
         "2026-01-05T10:11:12+00:00", "2026-01-05T10:11:12+02:00", "2026-01-05T10:11:12", "2026-02-29T00:00:00Z",
         "2024-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-01-05T24:00:00Z", "2026-01-05T23:59:60Z",
         "2026-01-05 10:11:12Z", "2026-01-05T10:11:12.3Z", " 2026-01-05T00:00:00Z", "1969-12-31T23:59:59.999Z",
         "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z", "2026-01-05t00:00:00z", "", "yesterday",
         "1899-12-31T23:59:59.999Z", "1900-01-01T00:00:00Z", "8999-12-31T23:59:59.999Z", "9000-01-01T00:00:00Z"]
DATES = ["2026-01-05", "2026-02-30", "2024-02-29", " 2026-01-05", "2026/01/05", "20260105", "", "0999-01-01"]
MONEY = ["1000", "1", "0", "-5", "+5", "007", "1.5", "1e3", "", " 12", "999999999999999999", str(MAX_MINOR_UNITS),
         str(MAX_MINOR_UNITS + 1), str(-MAX_MINOR_UNITS), str(-MAX_MINOR_UNITS - 1),
         "9999999999999999999", "99999999999999999999999", "abc"]
FIELD_VALUES = {
    "event_type": ["CAPTURED", "REFUNDED", "AUTHORIZED", "captured", " CAPTURED", "SETTLED", ""],
    "record_type": ["CAPTURE", "REFUND", "FEE", "PAYOUT", "fee", "BOGUS", ""],
    "processor": ["stripe", "adyen", "Stripe", " adyen", "my proc", "", "ádyen", "p" * 64, "p" * 65, " " + "p" * 64],
    "currency": ["USD", "EUR", "JPY", "usd", "XXX", " EUR", ""],
    "amount_minor": MONEY, "gross_minor": MONEY, "fee_minor": MONEY + ["-1000"], "net_minor": MONEY,
    "event_time": TIMES, "booked_time": TIMES, "settlement_date": DATES,
    "payout_id": ["po_1", "", "  ", " po_2", None, card_number(), f"batch-{PSP_REFERENCE}", *LONG],
}


def _plain(value) -> bool:
    return value is None or (value.isascii() and "," not in value and '"' not in value)


def _value(rng: random.Random, field: str, valid_row: dict, plain: bool):
    if rng.random() < 0.7:
        return valid_row[field]
    choices = FIELD_VALUES.get(field, TEXT)
    return rng.choice([value for value in choices if _plain(value)] if plain else choices)


def valid_payment(index: int) -> dict:
    return {"event_id": f"evt_{index}", "payment_id": f"pay_{index}", "event_type": "CAPTURED",
            "processor": "stripe", "processor_reference": f"ref_{index}", "merchant_id": "m_1",
            "amount_minor": "1000", "currency": "USD", "event_time": "2026-01-05T10:11:12.345Z"}


def valid_settlement(index: int) -> dict:
    return {"settlement_id": f"s_{index}", "processor": "adyen", "processor_reference": f"ref_{index}",
            "merchant_id": "m_1", "record_type": "CAPTURE", "gross_minor": "1000", "fee_minor": "30",
            "net_minor": "970", "currency": "EUR", "settlement_date": "2026-01-06",
            "booked_time": "2026-01-06T01:00:00Z", "payout_id": "po_1"}


def _csv_text(rng: random.Random, input_name: str, rows: int, plain: bool) -> str:
    fields = list(PAYMENT_FIELDS if input_name == PAYMENTS else SETTLEMENT_FIELDS)
    if rng.random() < 0.3:
        rng.shuffle(fields)  # any column order
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=rng.choice(["\n", "\r\n"]))
    writer.writerow(fields)
    for index in range(rows):
        valid = (valid_payment if input_name == PAYMENTS else valid_settlement)(index)
        row = ["" if (v := _value(rng, name, valid, plain)) is None else v for name in fields]
        roll = rng.random()
        if roll < 0.03:
            row = row[:-1]  # too few columns
        elif roll < 0.05:
            row = row + ["extra"]
        elif roll < 0.07:
            row = [""] * len(row)  # a blank row
        writer.writerow(row)
        if rng.random() < 0.03:
            buffer.write("\n")  # an empty line
    return buffer.getvalue()


def _outcomes_of_records(path: str, fmt: str, input_name: str):
    """(accepted records, dead letters, card numbers masked) of the per-record reader + validator."""
    with open(path, "rb") as handle:
        judged = [judge_raw_record(raw) for raw in read_records(handle, path, fmt, input_name)]
    outcomes = [outcome for outcome, _ in judged]
    return (sorted((o for o in outcomes if not isinstance(o, DeadLetter)), key=_none_first),
            sorted(o for o in outcomes if isinstance(o, DeadLetter)), sum(masked for _, masked in judged))


def _none_first(record) -> tuple:
    """A sort key for records whose optional fields may be None (an attempt's): None before any value."""
    return tuple((value is not None, value if value is not None else 0) for value in record)


def _outcomes_of_chunks(path: str, fmt: str, input_name: str, chunks_seen: list = None):
    accepted, letters, pans_masked = [], [], 0
    with open(path, "rb") as handle:
        for chunk in read_chunks(handle, path, fmt, input_name):
            if chunks_seen is not None:
                chunks_seen.append(chunk)
            table, rejected, masked = judge_chunk(chunk)
            accepted += table_to_records(table, RECORD_TYPE_OF_INPUT[input_name])
            letters += rejected
            pans_masked += masked
    return sorted(accepted, key=_none_first), sorted(letters), pans_masked


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), input_name=st.sampled_from([PAYMENTS, SETTLEMENTS]),
       bom=st.booleans(), plain=st.sampled_from([True, True, True, False]))
def test_csv_columnar_equals_per_record(tmp_path, seed, input_name, bom, plain):
    rng = random.Random(seed)
    path = str(tmp_path / f"{seed}.csv")
    with open(path, "wb") as handle:
        handle.write((b"\xef\xbb\xbf" if bom else b"") + _csv_text(rng, input_name, 60, plain).encode("utf-8"))
    chunks = []
    assert _outcomes_of_chunks(path, "csv", input_name, chunks) == _outcomes_of_records(path, "csv", input_name)
    if plain:  # plain files are split by Arrow, not by the csv module
        assert all(chunk.table is not None for chunk in chunks)


def test_csv_switches_to_the_csv_module_mid_file(tmp_path, monkeypatch):
    """A quote or non-ASCII byte after the first block hands the rest of the file over, numbering intact."""
    import schemas.arrow_readers as readers

    monkeypatch.setattr(readers, "CSV_BLOCK_BYTES", 256)
    rng = random.Random(5)
    lines = _csv_text(rng, PAYMENTS, 40, plain=True).splitlines(keepends=True)
    lines.insert(25, '"evt_q","pay_q",CAPTURED,stripe,"ref, with comma",m_1,100,USD,2026-01-05T00:00:00Z\n')
    path = str(tmp_path / "late_quote.csv")
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.writelines(lines)
    chunks = []
    accepted, letters, masked = _outcomes_of_chunks(path, "csv", PAYMENTS, chunks)
    assert (accepted, letters, masked) == _outcomes_of_records(path, "csv", PAYMENTS)
    assert chunks[0].row_records is None  # split by Arrow compute
    assert chunks[-1].row_records is not None  # read by the csv module, then tabulated
    assert any(record.processor_reference == "ref, with comma" for record in accepted)


def _typed_column(rng: random.Random, field: str, rows: int):
    if field in ("event_time", "booked_time"):
        kind = rng.choice(["ts", "ts_us", "naive", "int", "text"])
        moments = [None if rng.random() < 0.05 else datetime(2026, 1, 5, 10, rng.randrange(60), rng.randrange(60),
                                                             rng.randrange(10**6), tzinfo=timezone.utc)
                   for _ in range(rows)]
        if kind == "ts":
            return pa.array(moments, arrow.TIMESTAMP)
        if kind == "ts_us":
            return pa.array(moments, pa.timestamp("us", tz="UTC"))
        if kind == "naive":
            return pa.array([m.replace(tzinfo=None) if m else None for m in moments], pa.timestamp("ms"))
        if kind == "int":
            return pa.array([rng.choice([0, -5, 1_767_571_200_000, None, EARLIEST_MILLIS - 1, EARLIEST_MILLIS,
                                         LATEST_MILLIS - 1, LATEST_MILLIS]) for _ in range(rows)], pa.int64())
        return pa.array([rng.choice(TIMES) for _ in range(rows)], pa.string())
    if field.endswith("_minor"):
        return pa.array([rng.choice([1000, 1, 0, -7, None, 2**61, MAX_MINOR_UNITS, MAX_MINOR_UNITS + 1,
                                     -MAX_MINOR_UNITS - 1]) for _ in range(rows)], pa.int64())
    if field == "settlement_date":
        return pa.array([rng.choice([date(2026, 1, 6), None, date(1999, 12, 31)]) for _ in range(rows)], pa.date32())
    values = FIELD_VALUES.get(field, TEXT)
    return pa.array([rng.choice(values + [None]) for _ in range(rows)], pa.string())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), input_name=st.sampled_from([PAYMENTS, SETTLEMENTS]))
def test_parquet_columnar_equals_per_record(tmp_path, seed, input_name):
    rng = random.Random(seed)
    fields = list(PAYMENT_FIELDS if input_name == PAYMENTS else SETTLEMENT_FIELDS)
    if rng.random() < 0.2:
        fields.remove(rng.choice(fields))  # a missing column
    table = pa.table({name: _typed_column(rng, name, 50) for name in fields})
    path = str(tmp_path / f"{seed}.parquet")
    pq.write_table(table, path)
    assert _outcomes_of_chunks(path, "parquet", input_name) == _outcomes_of_records(path, "parquet", input_name)


def test_the_vectorised_path_takes_the_common_rows(tmp_path):
    """Generated-looking rows never reach the per-record referee (the speed of the engine depends on it)."""
    import transforms.columnar.validate as validate

    path = str(tmp_path / "plain.csv")
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=PAYMENT_FIELDS)
        writer.writeheader()
        writer.writerows(valid_payment(index) for index in range(100))
    with open(path, "rb") as handle:
        (chunk,) = read_chunks(handle, path, "csv", PAYMENTS)
    fast, _ = validate._vectorised(PAYMENTS, chunk.table)
    assert fast.all()


JSON_ODDITIES = [None, True, 1.5, 12.0, [1], {"nested": 1}, 2**70, -3, "", " x", "2026-01-05T00:00:00Z", 1000]


def _json_line(rng: random.Random, record: dict) -> str:
    import json

    roll = rng.random()
    if roll < 0.03:
        return "{not json"
    if roll < 0.05:
        return "[1, 2, 3]"
    record = dict(record)
    for name in list(record):
        if rng.random() < 0.04:
            record[name] = rng.choice(JSON_ODDITIES)  # another type in this column
        elif rng.random() < 0.02:
            del record[name]  # a missing key
    if rng.random() < 0.03:
        record["extra"] = "field"
    if rng.random() < 0.3:
        record = dict(reversed(list(record.items())))  # key order is part of the raw payload
    text = json.dumps(record)
    if rng.random() < 0.03 and record:
        name = next(iter(record))
        text = text[:-1] + f', "{name}": "dup"}}'  # a duplicate key: the last one wins in json.loads
    return text


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), input_name=st.sampled_from([PAYMENTS, SETTLEMENTS]))
def test_jsonl_columnar_equals_per_record(tmp_path, seed, input_name):
    rng = random.Random(seed)
    lines = []
    for index in range(80):
        valid = (valid_payment if input_name == PAYMENTS else valid_settlement)(index)
        record = {name: _value(rng, name, valid, plain=False) for name in valid}
        for money in ("amount_minor", "gross_minor", "fee_minor", "net_minor"):
            if money in record and isinstance(record[money], str) and record[money].isdigit() and rng.random() < 0.8:
                record[money] = int(record[money])  # JSON numbers, mostly
        lines.append(_json_line(rng, record))
        if rng.random() < 0.03:
            lines.append("   ")  # a blank line still counts in the numbering
    path = str(tmp_path / f"{seed}.jsonl")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    chunks = []
    assert _outcomes_of_chunks(path, "jsonl", input_name, chunks) == _outcomes_of_records(path, "jsonl", input_name)
    assert any(chunk.table is not None and chunk.table.num_rows for chunk in chunks)


def test_avro_columnar_equals_per_record(tmp_path):
    """Generated Avro (typed timestamps and dates, nullable payout ids) is tabulated whole and judged the same."""
    from datagen.generator import GeneratorConfig, generate

    dataset = generate(GeneratorConfig(payments=400, seed=9, fmt="avro"), str(tmp_path / "data"))
    for input_name, (path,) in ((PAYMENTS, dataset.payment_files), (SETTLEMENTS, dataset.settlement_files)):
        chunks = []
        assert _outcomes_of_chunks(path, "avro", input_name, chunks) == _outcomes_of_records(path, "avro", input_name)
        tabulated = sum(chunk.table.num_rows for chunk in chunks if chunk.table is not None)
        assert tabulated >= 0.99 * sum(chunk.read_count for chunk in chunks)


def _card_like_rows(input_name: str) -> list:
    """Every card-like value in every identifier field, for Adyen and for another processor."""
    from transforms.validate import IDENTIFIER_FIELDS

    valid = valid_payment if input_name == PAYMENTS else valid_settlement
    rows = []
    for field in IDENTIFIER_FIELDS[input_name]:
        for value in CARD_LIKE:
            for processor in ("adyen", "stripe"):
                row = dict(valid(len(rows)), processor=processor)
                row[field] = value
                rows.append(row)
    return rows


def test_card_numbers_are_judged_alike_in_both_engines(tmp_path):
    """Refused, kept (Adyen PSP references) and masked the same way, in CSV and Parquet, with the same count."""
    for input_name in (PAYMENTS, SETTLEMENTS):
        rows = _card_like_rows(input_name)
        csv_path = str(tmp_path / f"{input_name}.csv")
        with open(csv_path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        parquet_path = str(tmp_path / f"{input_name}.parquet")
        pq.write_table(pa.Table.from_pylist(rows), parquet_path)
        for path, fmt in ((csv_path, "csv"), (parquet_path, "parquet")):
            accepted, letters, masked = _outcomes_of_chunks(path, fmt, input_name)
            assert (accepted, letters, masked) == _outcomes_of_records(path, fmt, input_name)
            assert sum("looks like a card number" in letter.reason for letter in letters) >= 10
            assert masked >= len(letters) and not any(card_number() in letter.raw_payload for letter in letters)
            assert any(record.processor_reference == PSP_REFERENCE for record in accepted)


def test_adyen_psp_references_stay_on_the_vectorised_path(tmp_path):
    """16-digit PSP references pass Luhn one time in ten: they must not send Adyen rows to the referee."""
    import transforms.columnar.validate as validate

    for input_name in (PAYMENTS, SETTLEMENTS):
        rows = [dict((valid_payment if input_name == PAYMENTS else valid_settlement)(index), processor="adyen",
                     processor_reference=PSP_REFERENCE) for index in range(20)]
        if input_name == SETTLEMENTS:
            for row in rows:
                row["settlement_id"] = f"adyen:{PSP_REFERENCE}:Settled"
        table = pa.Table.from_pylist(rows)
        fast, _ = validate._vectorised(input_name, table)
        assert fast.all()
        stripe = table.set_column(table.schema.get_field_index("processor"), "processor",
                                  pa.array(["stripe"] * len(rows)))
        assert not validate._vectorised(input_name, stripe)[0].any()


# Byte-wise twins of two regexes of the vectorised path, each compared with its regex on every row.
_TEXTS = st.lists(st.one_of(
    st.none(),
    st.text(max_size=30),
    st.text(alphabet=st.sampled_from(list("0123456789 -x\t\u00e9\u20ac")), max_size=40),
    st.from_regex(r"[ -~]{0,3}[0-9][ -]?[0-9]{5,14}[ -]?[0-9]{0,8}[ -~]{0,3}", fullmatch=True),
), max_size=60)


@settings(max_examples=300, deadline=None)
@given(_TEXTS, st.integers(0, 5))
def test_plain_text_mask_is_the_plain_text_regex_on_every_row(values, cut):
    array = pa.array(values, pa.string()).slice(min(cut, len(values)))  # a slice: offsets not from 0
    regex = pc.fill_null(pc.match_substring_regex(array, PLAIN_TEXT), False).to_pylist()
    assert plain_text_mask(array).tolist() == regex


@settings(max_examples=300, deadline=None)
@given(_TEXTS, st.integers(0, 5))
def test_card_candidate_mask_is_the_candidate_regex_on_every_row(values, cut):
    array = pa.array(values, pa.string()).slice(min(cut, len(values)))
    regex = pc.fill_null(pc.match_substring_regex(array, CANDIDATE_PATTERN), False).to_pylist()
    assert card_candidate_mask(array).tolist() == regex
