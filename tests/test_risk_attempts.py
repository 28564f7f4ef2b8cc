"""Authorization attempts (schemas/attempts.py, transforms/risk/attempts.py): the contract, and dead letters."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.attempts import ATTEMPT_FIELDS, ATTEMPTS, AuthorizationAttempt
from schemas.avro import avro_schema
from schemas.records import DeadLetter, RawRecord
from transforms.record_fields import InvalidRecord
from transforms.risk.attempts import parse_authorization_attempt
from transforms.validate import is_pan_rejection, judge_raw_record

# A Luhn-valid test number (Visa's documented 4111…); never a real card.
TEST_PAN = "4111111111111111"

GOOD = {"attempt_id": "att_1", "attempt_type": "authorization", "event_time": "2026-12-05T10:00:00Z",
        "merchant_id": "m_1", "amount_minor": "1250", "currency": "usd", "card_fingerprint": "fp_8Kq2",
        "card_bin": "424242", "customer_id": "cus_1", "ip": "2001:DB8:0:0:0:0:0:1", "device_id": "dev_1",
        "billing_country": "us", "issuing_country": "GB", "outcome": "declined", "decline_code": "05",
        "three_ds": "authenticated", "payment_id": "pay_1"}


def test_a_good_attempt_is_typed_and_normalized():
    assert parse_authorization_attempt(GOOD) == AuthorizationAttempt(
        "att_1", "AUTHORIZATION", 1796464800000, "m_1", 1250, "USD", "fp_8Kq2", "424242", "cus_1", "2001:db8::1",
        "dev_1", "US", "GB", "DECLINED", "05", "AUTHENTICATED", "pay_1")


def test_optional_fields_may_be_missing_or_empty():
    minimal = {name: GOOD[name] for name in ("attempt_id", "attempt_type", "event_time", "merchant_id",
                                             "amount_minor", "currency", "card_fingerprint")}
    minimal["outcome"] = "APPROVED"
    parsed = parse_authorization_attempt({**minimal, "ip": "", "card_bin": None})
    assert (parsed.card_bin, parsed.ip, parsed.customer_id, parsed.decline_code) == (None, None, None, None)


@pytest.mark.parametrize("change, reason", [
    ({"attempt_type": "CAPTURE"}, "attempt_type 'CAPTURE' is not one of AUTHORIZATION, REFUND"),
    ({"amount_minor": "0"}, "amount_minor must be positive"),
    ({"amount_minor": "12.50"}, "amount_minor"),
    ({"currency": "XXQ"}, "currency"),
    ({"outcome": "MAYBE"}, "outcome 'MAYBE' is not one of APPROVED, DECLINED"),
    ({"outcome": "APPROVED"}, "decline_code is given for an APPROVED attempt"),
    ({"card_bin": "42"}, "card_bin must be 6 to 8 digits"),
    ({"card_bin": "42424242424"}, "card_bin must be 6 to 8 digits"),
    ({"card_bin": "４２４２４２"}, "card_bin must be 6 to 8 digits"),  # full-width digits
    ({"ip": "999.1.1.1"}, "is not an IPv4 or IPv6 address"),
    ({"billing_country": "USA"}, "billing_country 'USA' is not an ISO 3166-1 alpha-2"),
    ({"three_ds": "MAGIC"}, "three_ds 'MAGIC' is not one of"),
    ({"event_time": "yesterday"}, "event_time"),
    ({"card_fingerprint": ""}, "card_fingerprint is missing"),
    ({"attempt_id": "a" * 257}, "attempt_id is 257 characters long, longer than 256"),
])
def test_each_broken_field_is_named_in_the_reason(change, reason):
    with pytest.raises(InvalidRecord) as info:
        parse_authorization_attempt({**GOOD, **change})
    assert reason in str(info.value)


def test_a_missing_required_column_is_named():
    with pytest.raises(InvalidRecord, match="missing field.*outcome"):
        parse_authorization_attempt({name: value for name, value in GOOD.items() if name != "outcome"})


@pytest.mark.parametrize("name", ["card_fingerprint", "customer_id", "attempt_id", "device_id", "payment_id"])
def test_a_card_number_in_any_identifier_is_a_masked_dead_letter(name):
    fields = {**GOOD, name: f"x-{TEST_PAN}"}
    raw = RawRecord(ATTEMPTS, "attempts.jsonl:7", fields, f'{{"{name}": "x-{TEST_PAN}"}}')
    letter, masked = judge_raw_record(raw)
    assert isinstance(letter, DeadLetter) and is_pan_rejection(letter.reason) and name in letter.reason
    assert TEST_PAN not in letter.raw_payload and TEST_PAN not in letter.reason and masked >= 1
    assert letter.input == ATTEMPTS and letter.source == "attempts.jsonl:7" and letter.stage == "validate"


def test_a_card_number_given_as_the_bin_is_refused_without_echoing_it():
    letter, _ = judge_raw_record(RawRecord(ATTEMPTS, "s", {**GOOD, "card_bin": TEST_PAN}, f"bin={TEST_PAN}"))
    assert isinstance(letter, DeadLetter) and TEST_PAN not in letter.reason + letter.raw_payload


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(ATTEMPT_FIELDS + ("extra",)),
                       st.one_of(st.none(), st.text(max_size=40), st.integers(), st.binary(max_size=8),
                                 st.floats(allow_nan=True)), max_size=20))
def test_any_mapping_is_an_attempt_or_a_dead_letter_never_a_crash(fields):
    judged, _ = judge_raw_record(RawRecord(ATTEMPTS, "fuzz", {**GOOD, **fields}, repr(fields)))
    assert isinstance(judged, (AuthorizationAttempt, DeadLetter))
    if isinstance(judged, DeadLetter):
        assert judged.reason and judged.stage == "validate"


def test_the_avro_schema_has_the_record_s_fields_in_order():
    schema = avro_schema("authorization_attempt")
    assert tuple(field["name"] for field in schema["fields"]) == ATTEMPT_FIELDS
    optional = {field["name"] for field in schema["fields"] if isinstance(field["type"], list)}
    assert optional == {"card_bin", "customer_id", "ip", "device_id", "billing_country", "issuing_country",
                        "decline_code", "three_ds", "payment_id"}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "avro", "parquet"])
def test_every_file_format_reads_back_the_attempts_it_wrote(tmp_path, fmt):
    from schemas.codecs import read_records, write_records

    attempts = [parse_authorization_attempt(GOOD),
                parse_authorization_attempt({**GOOD, "attempt_id": "att_2", "outcome": "APPROVED", "decline_code": "",
                                             "ip": "", "three_ds": None, "card_bin": "42424242"})]
    path = str(tmp_path / f"attempts.{fmt}")
    assert write_records(path, fmt, ATTEMPTS, [a._asdict() for a in attempts], ATTEMPT_FIELDS) == 2
    with open(path, "rb") as handle:
        raws = list(read_records(handle, path, fmt, ATTEMPTS))
    judged = [judge_raw_record(raw).outcome for raw in raws]
    assert judged == attempts
    assert [raw.source for raw in raws] == ([f"{path}:2", f"{path}:3"] if fmt == "csv" else
                                            [f"{path}:1", f"{path}:2"] if fmt == "jsonl" else
                                            [f"{path}#1", f"{path}#2"])
