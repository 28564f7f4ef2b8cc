"""Files a hostile or unlucky user hands over: every run finishes, nothing vanishes, both engines agree.

Random bytes, CR-only line endings, a field over the csv module's limit, a
`.csv.gz` that is not gzip, compressed, Avro and Parquet files cut short: each becomes dead letters
naming what was wrong (a truncated file says "truncated"), read = accepted +
rejected holds, and a truncated input makes the run exit 1 unless
--allow-truncated. A fuzz feeds random bytes through every reader, and random
rows (the validation fuzz's values, re-deliveries, over-long text, maximal
amounts) through every format's reader and both engines end to end.
"""
from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import random
import re
from datetime import date, datetime, timedelta, timezone

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.reconcile_batch import ENGINES
from schemas.avro import avro_schema
from schemas.money import MAX_MINOR_UNITS
from schemas.records import PAYMENT_FIELDS, PAYMENTS, SETTLEMENT_FIELDS, SETTLEMENTS, DeadLetter
from tests.cli_helpers import dead_letters, reconcile, run_summary
from tests.engine_parity import assert_same_outputs
from tests.test_columnar_validate import _value, valid_payment, valid_settlement
from transforms.columnar.validate import validate_chunk
from transforms.validate import validate_raw_record

PAYMENT_HEADER = b"event_id,payment_id,event_type,processor,processor_reference,merchant_id,amount_minor,currency,event_time"
SETTLEMENT = (b"settlement_id,processor,processor_reference,merchant_id,record_type,gross_minor,fee_minor,net_minor,"
              b"currency,settlement_date,booked_time,payout_id\n"
              b"s_ok,stripe,ch_0,m_1,CAPTURE,1000,30,970,USD,2026-01-06,2026-01-06T01:00:00Z,po_1\n")


def _payments(rows: int) -> bytes:
    lines = [PAYMENT_HEADER] + [f"e_{i},p_{i},CAPTURED,stripe,ch_{i},m_1,1000,USD,2026-01-05T10:00:00Z".encode()
                                for i in range(rows)]
    return b"\n".join(lines) + b"\n"


def _payment_records(rows: int) -> list:
    return [{"event_id": f"e_{i}", "payment_id": f"p_{i}", "event_type": "CAPTURED", "processor": "stripe",
             "processor_reference": f"ch_{i}", "merchant_id": "m_1", "amount_minor": 1000, "currency": "USD",
             "event_time": datetime(2026, 1, 5, 10, tzinfo=timezone.utc)} for i in range(rows)]


def _cut_avro(rows: int) -> bytes:
    buffer = io.BytesIO()
    fastavro.writer(buffer, avro_schema("payment_event"), _payment_records(rows), sync_interval=4_000)
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


def _cut_parquet(rows: int) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(_payment_records(rows)), buffer, row_group_size=1_000)
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]  # the footer (and half the row groups) gone


def _hostile_files() -> dict:
    rng = random.Random(17)
    huge = _payments(50).replace(b"e_7,", b"e_7" + b"x" * 200_000 + b",", 1)
    compressed = gzip.compress(_payments(20_000))
    return {
        "random.csv": bytes(rng.randrange(256) for _ in range(20_000)),
        "cr_only.csv": _payments(20).replace(b"\n", b"\r"),
        "huge_field.csv": huge,
        "not_gzip.csv.gz": b"this is not gzip\n",
        "cut.csv.gz": compressed[: len(compressed) // 3],
        "cut.csv.bz2": bz2.compress(_payments(20_000))[:4_000],
        "cut.avro": _cut_avro(5_000),
        "cut.parquet": _cut_parquet(5_000),
        "invalid_utf8.csv": _payments(10).replace(b"ch_3,", b"ch_\xff3,").replace(b"ch_5,", b"ch_\xfe5,"),
        "invalid_utf8.jsonl": (b'{"event_id": "e_1", "processor_reference": "ch_\xff1"}\n'
                               b'{"event_id": "e_2", "processor_reference": "ch_\xfe1"}\n'),
    }


@pytest.fixture(scope="module", params=sorted(_hostile_files()))
def hostile_runs(request, tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    (base / "payments").mkdir()
    (base / "settlements").mkdir()
    (base / "payments" / request.param).write_bytes(_hostile_files()[request.param])
    (base / "settlements" / "s.csv").write_bytes(SETTLEMENT)
    runs = {}
    for engine in ENGINES:
        output = str(base / f"out-{engine}")
        runs[engine] = (reconcile(str(base / "payments" / "*"), str(base / "settlements" / "*"), output,
                                  "--engine", engine), output)
    return request.param, base, runs


def test_every_hostile_file_is_dead_letters_and_counts_add_up(hostile_runs):
    name, _, runs = hostile_runs
    for exit_code, output in runs.values():
        counts = run_summary(output)["inputs"]["payments"]
        assert counts["read"] == counts["accepted"] + counts["rejected"] and counts["rejected"] >= 1
        letters = [letter for letter in dead_letters(output) if letter["input"] == "payments"]
        assert len(letters) == counts["rejected"]
        assert all(name in letter["source"] and letter["reason"] and letter["raw_payload"] for letter in letters)
        assert all(len(letter["raw_payload"]) < 70_000 for letter in letters)  # a 200k line is cut, saying so


def test_a_truncated_file_says_so_and_fails_the_run(hostile_runs):
    name, _, runs = hostile_runs
    truncated = name.startswith("cut.")
    for exit_code, output in runs.values():
        letters = dead_letters(output)
        assert any("truncated" in letter["reason"] and name in letter["reason"] for letter in letters) == truncated
        assert exit_code == (1 if truncated else 0)
        assert run_summary(output)["inputs"]["payments"]["truncated_files"] == (1 if truncated else 0)


def test_both_engines_agree_on_hostile_files(hostile_runs):
    _, _, runs = hostile_runs
    assert_same_outputs(runs["columnar"][1], runs["elementwise"][1])


def test_allow_truncated_accepts_the_incomplete_answer(tmp_path):
    (tmp_path / "payments").mkdir()
    (tmp_path / "settlements").mkdir()
    (tmp_path / "payments" / "cut.csv.gz").write_bytes(_hostile_files()["cut.csv.gz"])
    (tmp_path / "settlements" / "s.csv").write_bytes(SETTLEMENT)
    assert reconcile(str(tmp_path / "payments" / "*"), str(tmp_path / "settlements" / "*"), str(tmp_path / "out"),
                     "--allow-truncated") == 0
    assert run_summary(str(tmp_path / "out"))["inputs"]["payments"]["truncated_files"] == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=3_000), suffix=st.sampled_from([".csv", ".jsonl", ".avro", ".parquet", ".csv.gz"]),
       as_text=st.booleans())
def test_random_bytes_through_every_reader(tmp_path, data, suffix, as_text):
    """No exception escapes either reader, read = accepted + rejected, and both engines agree."""
    from apache_beam.io import fileio
    from apache_beam.io.filesystems import FileSystems

    from pipelines.io.arrow_files import chunks_of_file
    from pipelines.io.files import records_of_file

    if as_text:  # random rows under a real header
        data = PAYMENT_HEADER + b"\n" + data
    if suffix == ".csv.gz":
        data = gzip.compress(data)[: max(10, len(data) // 2)] if data else data
    path = str(tmp_path / f"input{suffix}")
    with open(path, "wb") as handle:
        handle.write(data)
    (metadata,) = FileSystems.match([path])[0].metadata_list
    fmt = None
    reference = [validate_raw_record(raw) for raw in records_of_file(fileio.ReadableFile(metadata), "payments", fmt)]
    accepted, letters, read = [], [], 0
    for chunk in chunks_of_file(fileio.ReadableFile(metadata), "payments", fmt, {path: 0}):
        table, rejected = validate_chunk(chunk)
        read += chunk.read_count
        accepted += table.to_pylist()
        letters += rejected
    assert read == len(accepted) + len(letters) == len(reference)
    assert sorted(letters) == sorted(o for o in reference if isinstance(o, DeadLetter))


@pytest.mark.parametrize("name", ["invalid_utf8.csv", "invalid_utf8.jsonl"])
@pytest.mark.parametrize("engine", ENGINES)
def test_invalid_utf8_is_rejected_never_replaced(tmp_path, name, engine):
    """Two lines that differ only in invalid bytes must not collapse into one replaced value."""
    (tmp_path / "payments").mkdir()
    (tmp_path / "settlements").mkdir()
    (tmp_path / "payments" / name).write_bytes(_hostile_files()[name])
    (tmp_path / "settlements" / "s.csv").write_bytes(SETTLEMENT)
    output = str(tmp_path / "out")
    assert reconcile(str(tmp_path / "payments" / "*"), str(tmp_path / "settlements" / "*"), output,
                     "--engine", engine) == 0
    letters = [letter for letter in dead_letters(output) if letter["reason"].startswith("not valid UTF-8")]
    expected_lines = ["5", "7"] if name.endswith(".csv") else ["1", "2"]  # a CSV's header is line 1
    assert sorted(letter["source"].rsplit(":", 1)[1] for letter in letters) == expected_lines
    payloads = {letter["raw_payload"] for letter in letters}
    assert len(payloads) == 2 and all("\\x" in payload for payload in payloads)


# ---------------------------------------------------------------- random rows, every reader, both engines


def _random_rows(rng: random.Random, input_name: str, count: int) -> list:
    """Rows mixing valid values with the validation fuzz's broken ones (tests/test_columnar_validate.py),
    identical and conflicting re-deliveries, text past its length bound and maximal amounts."""
    valid = valid_payment if input_name == PAYMENTS else valid_settlement
    names = PAYMENT_FIELDS if input_name == PAYMENTS else SETTLEMENT_FIELDS
    rows: list = []
    for index in range(count):
        roll = rng.random()
        if rows and roll < 0.15:  # a re-delivery, identical or with another amount
            row = dict(rng.choice(rows))
            if rng.random() < 0.5:
                amount = "amount_minor" if input_name == PAYMENTS else "fee_minor"
                row[amount] = rng.choice(["1", "7", str(MAX_MINOR_UNITS)])
        elif roll < 0.5:
            row = valid(index)
        else:
            row = {name: _value(rng, name, valid(index), plain=False) for name in names}
        rows.append(row)
    return rows


def _typed(row: dict, names, fallback: dict) -> dict:
    """A random text row as Avro can hold it: each field the fuzz's value where its type allows, else valid."""
    typed = {}
    for name in names:
        value, field_type = row.get(name), _AVRO_TYPES[name]
        if field_type is int:
            value = int(value) if value is not None and re.fullmatch(r"-?[0-9]{1,18}", value) else int(fallback[name])
        elif field_type is datetime:
            value = datetime(2026, 1, 5, 10, tzinfo=timezone.utc) + timedelta(minutes=len(value or ""))
        elif field_type is date:
            value = date(2026, 1, 6)
        elif value is None and name != "payout_id":
            value = fallback[name]
        typed[name] = value
    return typed


_AVRO_TYPES = {**{name: str for name in set(PAYMENT_FIELDS) | set(SETTLEMENT_FIELDS)},
               "amount_minor": int, "gross_minor": int, "fee_minor": int, "net_minor": int,
               "event_time": datetime, "booked_time": datetime, "settlement_date": date}


def _write_rows(path, fmt: str, input_name: str, rows: list) -> None:
    names = PAYMENT_FIELDS if input_name == PAYMENTS else SETTLEMENT_FIELDS
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([["" if row[name] is None else row[name] for name in names] for row in rows])
        path.write_text(buffer.getvalue(), encoding="utf-8")
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema([(name, pa.string()) for name in names])),
                       str(path))
    else:
        valid = valid_payment if input_name == PAYMENTS else valid_settlement
        schema = avro_schema("payment_event" if input_name == PAYMENTS else "settlement_line")
        with open(path, "wb") as handle:
            fastavro.writer(handle, schema, [_typed(row, names, valid(index)) for index, row in enumerate(rows)])


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "avro"])
def test_random_rows_through_every_reader_and_both_engines(tmp_path, fmt):
    """The run finishes (exit 0), every row read is accepted or a dead letter, both engines agree."""
    rng = random.Random(f"rows-{fmt}")
    written = {}
    for input_name in (PAYMENTS, SETTLEMENTS):
        (tmp_path / input_name).mkdir()
        written[input_name] = _random_rows(rng, input_name, 150)
        _write_rows(tmp_path / input_name / f"part-0.{fmt}", fmt, input_name, written[input_name][:100])
        _write_rows(tmp_path / input_name / f"part-1.{fmt}", fmt, input_name, written[input_name][100:])
    outputs = []
    for engine in ENGINES:
        outputs.append(str(tmp_path / f"out-{engine}"))
        assert reconcile(str(tmp_path / PAYMENTS / "*"), str(tmp_path / SETTLEMENTS / "*"), outputs[-1],
                         "--engine", engine) == 0
        for input_name, counts in run_summary(outputs[-1])["inputs"].items():
            assert counts["read"] == len(written[input_name]) == counts["accepted"] + counts["rejected"]
            letters = [letter for letter in dead_letters(outputs[-1]) if letter["input"] == input_name]
            assert len(letters) == counts["rejected"] >= 1
        assert sum(counts["conflicting"] for counts in run_summary(outputs[-1])["inputs"].values()) >= 1
    assert_same_outputs(*outputs)
