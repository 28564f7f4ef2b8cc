"""Attempt files through the columnar readers and validation: the per-record reader + validator's answer.

The same differential fuzz as tests/test_columnar_validate.py for the `attempts` input: rows mix valid
values with broken forms (case, padding, IPv6 and zero-padded IPv4, short and long BINs, lower-case
countries, unknown enums, an approved attempt with a decline code, card numbers in identifiers, missing
columns, typed Parquet columns). Both sides must accept the same attempts with the same values and reject
the same rows with the same reason, source and masked payload."""
from __future__ import annotations

import csv
import io
import random

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.arrow_readers import read_chunks
from schemas.attempts import ATTEMPT_FIELDS, ATTEMPTS
from tests.card_numbers import card_number, grouped
from tests.test_columnar_validate import MONEY, TEXT, TIMES, _outcomes_of_chunks, _outcomes_of_records, _typed_column

VALUES = {
    "attempt_type": ["AUTHORIZATION", "REFUND", "authorization", " REFUND", "CAPTURE", ""],
    "outcome": ["APPROVED", "DECLINED", "declined", "PENDING", ""],
    "currency": ["USD", "EUR", "usd", "XXX", ""],
    "card_bin": ["424242", "42424242", "4242424", "42424", "424242424", "42 4242", "", "abcdef", card_number()],
    "ip": ["10.0.0.1", "192.168.1.255", "255.255.255.255", "010.0.0.1", "256.1.1.1", "::1", "2001:db8::1",
           " 10.0.0.2", "1.2.3", "", "not an ip"],
    "billing_country": ["US", "GB", "us", "USA", "U", " GB", ""],
    "issuing_country": ["US", "DE", "de", "XX", "", "1A"],
    "decline_code": ["", "05", "51", " 05", "do_not_honor", "x" * 64, "x" * 65, card_number()],
    "three_ds": ["", "AUTHENTICATED", "FAILED", "authenticated", "MAYBE"],
    "amount_minor": MONEY, "event_time": TIMES,
    "card_fingerprint": ["fp_1", " fp_2", "", grouped(card_number(), "-"), *TEXT[:6]],
}


def valid_attempt(index: int) -> dict:
    return {"attempt_id": f"att_{index}", "attempt_type": "AUTHORIZATION", "event_time": "2026-01-05T10:11:12.345Z",
            "merchant_id": "m_1", "amount_minor": "1000", "currency": "USD", "card_fingerprint": f"fp_{index % 7}",
            "card_bin": "424242", "customer_id": f"cus_{index % 5}", "ip": "10.0.0.1", "device_id": "dev_1",
            "billing_country": "US", "issuing_country": "US", "outcome": "DECLINED", "decline_code": "05",
            "three_ds": "", "payment_id": ""}


def _value(rng: random.Random, name: str, valid: dict, plain: bool):
    if rng.random() < 0.75:
        return valid[name]
    choices = VALUES.get(name, TEXT)
    if plain:
        choices = [value for value in choices if value.isascii() and "," not in value and '"' not in value]
    return rng.choice(choices)


def _csv_text(rng: random.Random, rows: int, plain: bool) -> str:
    fields = list(ATTEMPT_FIELDS)
    if rng.random() < 0.3:
        rng.shuffle(fields)
    if rng.random() < 0.15:
        fields.remove(rng.choice(fields))  # a missing column: required ones reject every row, optional ones none
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(fields)
    for index in range(rows):
        valid = valid_attempt(index)
        if rng.random() < 0.3:
            valid.update(outcome="APPROVED", decline_code="")
        row = [_value(rng, name, valid, plain) for name in fields]
        if rng.random() < 0.03:
            row = row[:-1]
        writer.writerow(row)
    return buffer.getvalue()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), plain=st.sampled_from([True, True, False]))
def test_csv_attempts_columnar_equals_per_record(tmp_path, seed, plain):
    rng = random.Random(seed)
    path = str(tmp_path / f"{seed}.csv")
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(_csv_text(rng, 60, plain))
    assert _outcomes_of_chunks(path, "csv", ATTEMPTS) == _outcomes_of_records(path, "csv", ATTEMPTS)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_parquet_attempts_columnar_equals_per_record(tmp_path, seed):
    rng = random.Random(seed)
    fields = list(ATTEMPT_FIELDS)
    if rng.random() < 0.2:
        fields.remove(rng.choice(fields))
    columns = {}
    for name in fields:
        if name in ("event_time", "amount_minor"):
            columns[name] = _typed_column(rng, name, 50)
        else:
            columns[name] = pa.array([rng.choice(VALUES.get(name, TEXT) + [None, valid_attempt(0)[name]])
                                      for _ in range(50)], pa.string())
    path = str(tmp_path / f"{seed}.parquet")
    pq.write_table(pa.table(columns), path)
    assert _outcomes_of_chunks(path, "parquet", ATTEMPTS) == _outcomes_of_records(path, "parquet", ATTEMPTS)


def test_generated_attempts_take_the_vectorised_path(tmp_path):
    """Ordinary rows never reach the per-record referee (the engine's speed depends on it)."""
    import transforms.columnar.validate as validate

    path = str(tmp_path / "plain.csv")
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=ATTEMPT_FIELDS)
        writer.writeheader()
        writer.writerows(valid_attempt(index) for index in range(100))
    with open(path, "rb") as handle:
        (chunk,) = read_chunks(handle, path, "csv", ATTEMPTS)
    fast, _ = validate._vectorised(ATTEMPTS, chunk.table)
    assert fast.all()
