"""No card numbers in anything paybeam writes (issue 9 §6), below the pipelines.

Identifiers holding a card number (PAN) are refused, never rewritten; an Adyen
PSP reference, a 16-digit number that often passes Luhn, is kept where Adyen
documents it; every dead letter's reason and raw payload is masked; vendor
rows never carry personal columns into dead letters. All numbers are built by
tests/card_numbers.py.
"""
from __future__ import annotations

import base64
import csv
import io

import pytest

from schemas.codecs import MAX_RAW_PAYLOAD_CHARS, capped, read_records
from schemas.kafka_values import encode_value, raw_record_from_message
from schemas.records import PAYMENT_FIELDS, PAYMENTS, SETTLEMENT_FIELDS, SETTLEMENTS, DeadLetter, RawRecord
from schemas.vendors import vendor_columns
from tests.card_numbers import card_number, grouped, without_check_digit
from tests.test_validate import EXPECTED_PAYMENT, payment_text, settlement_text
from transforms.validate import (
    IDENTIFIER_FIELDS,
    InvalidRecord,
    judge_raw_record,
    parse_payment_event,
    parse_settlement_line,
    validate_raw_record,
)

PAN = card_number()
MASKED = f"{PAN[:6]}******{PAN[-4:]}"
PSP_REFERENCE = card_number(16, "88", "3")  # Adyen's documented 16 digits, and Luhn-valid


def _parse(input_name):
    return parse_payment_event if input_name == PAYMENTS else parse_settlement_line


def _text(input_name, **overrides):
    # Not Adyen: a 16-digit processor_reference of an Adyen record is its PSP reference (tested below).
    return (payment_text if input_name == PAYMENTS else settlement_text)(**{"processor": "stripe", **overrides})


@pytest.mark.parametrize("input_name, field", [(name, field) for name in (PAYMENTS, SETTLEMENTS)
                                                for field in IDENTIFIER_FIELDS[name]])
@pytest.mark.parametrize("form", ["plain", "spaces", "dashes", "embedded"])
def test_a_card_number_in_an_identifier_refuses_the_record(input_name, field, form):
    value = {"plain": PAN, "spaces": grouped(PAN, " "), "dashes": grouped(PAN, "-"),
             "embedded": f"ref_{PAN}_x"}[form]
    with pytest.raises(InvalidRecord) as error:
        _parse(input_name)(_text(input_name, **{field: value}))
    assert str(error.value) == f"{field} looks like a card number (PAN); not published"


def test_identifiers_that_are_not_card_numbers_pass():
    for value in (without_check_digit(PAN[:-1]), PAN[:12], PAN + "1234", f"{PAN[:8]}.{PAN[8:]}"):
        assert parse_payment_event(payment_text(merchant_id=value, processor_reference=value)).merchant_id == value


def test_the_identifier_checks_cover_every_text_field_that_is_not_an_enum_a_currency_or_a_date():
    not_identifiers = {"event_type", "record_type", "currency", "settlement_date", "event_time", "booked_time"}
    for input_name, fields in ((PAYMENTS, PAYMENT_FIELDS), (SETTLEMENTS, SETTLEMENT_FIELDS)):
        assert set(IDENTIFIER_FIELDS[input_name]) == {name for name in fields
                                                      if not name.endswith("_minor") and name not in not_identifiers}


def test_an_adyen_psp_reference_that_passes_luhn_is_kept_where_adyen_documents_it():
    payment = parse_payment_event(payment_text(processor=" Adyen ", processor_reference=PSP_REFERENCE))
    assert payment.processor_reference == PSP_REFERENCE
    line = parse_settlement_line(settlement_text(processor_reference=PSP_REFERENCE,
                                                 settlement_id=f"adyen:{PSP_REFERENCE}:Settled"))
    assert (line.processor_reference, line.settlement_id) == (PSP_REFERENCE, f"adyen:{PSP_REFERENCE}:Settled")


@pytest.mark.parametrize("overrides", [
    {"processor": "stripe", "processor_reference": PSP_REFERENCE},  # not Adyen: no documented format
    {"processor": "adyen", "merchant_id": PSP_REFERENCE},  # Adyen, but not where Adyen documents it
    {"processor": "adyen", "processor_reference": grouped(PSP_REFERENCE)},  # not the documented form
    {"processor": "adyen", "processor_reference": card_number(15, "88", "3")},
    {"processor": "adyen", "payout_id": f"batch-{PSP_REFERENCE}"},
])
def test_psp_reference_forms_elsewhere_are_refused(overrides):
    with pytest.raises(InvalidRecord, match="looks like a card number"):
        parse_settlement_line(settlement_text(**overrides))


def test_a_refused_record_is_a_dead_letter_with_its_payload_masked_and_counted():
    raw = RawRecord(PAYMENTS, "p.csv:2", payment_text(merchant_id=PAN), f"evt-0001,{grouped(PAN, '-')},{PAN}")
    outcome, masked = judge_raw_record(raw)
    assert outcome == DeadLetter(PAYMENTS, "p.csv:2", "validate",
                                 "merchant_id looks like a card number (PAN); not published",
                                 f"evt-0001,{PAN[:4]}-{PAN[4:6]}**-****-{PAN[-4:]},{MASKED}")
    assert masked == 2


def test_every_dead_letter_is_masked_reason_and_payload_but_not_its_source():
    decode = judge_raw_record(RawRecord(SETTLEMENTS, f"s_{PAN}.csv:3", None, f"{{\"note\": \"{PAN}\"",
                                        "invalid JSON"))
    assert decode == (DeadLetter(SETTLEMENTS, f"s_{PAN}.csv:3", "decode", "invalid JSON", f"{{\"note\": \"{MASKED}\""),
                      1)
    echoed = judge_raw_record(RawRecord(PAYMENTS, "p.csv:4", payment_text(event_type=PAN), "raw"))
    assert PAN not in echoed.outcome.reason and MASKED in echoed.outcome.reason and echoed.pans_masked == 1


def test_a_dead_letter_keeps_the_adyen_psp_references_its_fields_hold():
    fields = settlement_text(processor_reference=PSP_REFERENCE, settlement_id=f"adyen:{PSP_REFERENCE}:Settled",
                             net_minor="1")
    letter, masked = judge_raw_record(RawRecord(SETTLEMENTS, "s.csv:2", fields, f"{PSP_REFERENCE},note {PAN}"))
    assert letter.raw_payload == f"{PSP_REFERENCE},note {MASKED}" and masked == 1
    stripe = dict(fields, processor="stripe")
    letter, masked = judge_raw_record(RawRecord(SETTLEMENTS, "s.csv:2", stripe, f"{PSP_REFERENCE}"))
    assert PSP_REFERENCE not in letter.raw_payload and masked == 1


def test_accepted_records_count_nothing():
    assert judge_raw_record(RawRecord(PAYMENTS, "p.csv:2", payment_text(), f"note {PAN}")) == (
        parse_payment_event(payment_text()), 0)


# ---------------------------------------------------------------- raw payloads as read


def test_a_long_payload_is_never_cut_inside_a_number():
    for before in range(MAX_RAW_PAYLOAD_CHARS - 20, MAX_RAW_PAYLOAD_CHARS + 1):
        text = "x" * before + grouped(PAN) + "y" * 100
        kept = capped(text).split("...[cut:")[0]
        assert grouped(PAN) in kept or not any(char.isdigit() for char in kept)
        assert validate_raw_record(RawRecord(PAYMENTS, "p", None, capped(text), "e")).raw_payload.count(PAN[6:12]) == 0


def _stripe_report(values: dict, extra_column: str = "") -> bytes:
    columns = list(vendor_columns("stripe")) + ([extra_column] if extra_column else [])
    row = {column: "" for column in columns}
    row.update(values)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerow(row)
    return buffer.getvalue().encode("utf-8")


def _dead_letters_of(data: bytes, path: str):
    records = list(read_records(io.BytesIO(data), path, "csv", SETTLEMENTS))
    return [letter for letter in map(validate_raw_record, records) if isinstance(letter, DeadLetter)]


STRIPE_ROW = {"balance_transaction_id": "txn_1", "created_utc": "2026-01-05 10:00:00", "currency": "usd",
              "gross": "10.00", "fee": "0.30", "net": "9.00",  # net != gross - fee: a validation dead letter
              "reporting_category": "charge", "charge_id": "ch_1", "available_on_utc": "2026-01-06 00:00:00",
              "customer_email": "someone@example.com", "customer_name": "Some One", "description": "for Some One",
              "customer_shipping_address_line1": "1 Some Street", "statement_descriptor": f"card {PAN}"}


def test_stripe_personal_columns_and_undocumented_ones_never_reach_dead_letters():
    (letter,) = _dead_letters_of(_stripe_report(STRIPE_ROW, "payment_metadata[buyer]"), "stripe.csv")
    assert "net_minor" in letter.reason
    for private in ("someone@example.com", "Some One", "1 Some Street"):
        assert private not in letter.raw_payload
    assert "txn_1" in letter.raw_payload and "ch_1" in letter.raw_payload and MASKED in letter.raw_payload
    assert letter.raw_payload.count(",") == len(vendor_columns("stripe"))  # the columns stay aligned


def test_a_vendor_row_whose_cells_do_not_line_up_is_withheld():
    data = _stripe_report(STRIPE_ROW).rstrip(b"\n") + b",someone@example.com\n"
    (letter,) = _dead_letters_of(data, "stripe.csv")
    assert "columns" in letter.reason and "someone@example.com" not in letter.raw_payload
    assert letter.raw_payload.startswith("<not shown")
    bad_bytes = _stripe_report(STRIPE_ROW).rstrip(b"\n") + b"\n\xff someone@example.com\n"
    letters = {letter.source: letter for letter in _dead_letters_of(bad_bytes, "s.csv")}
    assert "not valid UTF-8" in letters["s.csv:3"].reason and letters["s.csv:3"].raw_payload.startswith("<not shown")


def test_adyen_rows_keep_their_documented_columns_and_psp_reference():
    columns = list(vendor_columns("adyen")) + ["Shopper Email"]
    row = dict.fromkeys(columns, "")
    row.update({"Merchant Account": "Shop", "Psp Reference": PSP_REFERENCE, "Type": "Settled",
                "Creation Date": "2026-01-05 10:00:00", "TimeZone": "UTC", "Net Currency": "EUR",
                "Gross Currency": "EUR", "Gross Credit (GC)": "10.00", "Net Credit (NC)": "9.00",
                "Modification Reference": PSP_REFERENCE, "Merchant Reference": f"order {PAN}",
                "Shopper Email": "someone@example.com"})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerow(row)
    (letter,) = _dead_letters_of(buffer.getvalue().encode(), "adyen.csv")  # net 9.00 != gross 10.00 - 0
    assert "net_minor" in letter.reason
    assert letter.raw_payload.count(PSP_REFERENCE) == 2 and f"order {MASKED}" in letter.raw_payload
    assert "someone@example.com" not in letter.raw_payload


@pytest.mark.parametrize("value_format", ["json", "avro", "confluent-avro"])
def test_kafka_values_are_masked_binary_ones_inside_their_base64(value_format):
    value = encode_value(EXPECTED_PAYMENT._replace(merchant_id=PAN)._asdict(), value_format, "payment_event")
    for message in (value, value[:-3]):  # refused for its merchant_id; cut short: undecodable
        letter, masked = judge_raw_record(raw_record_from_message(PAYMENTS, "t/0@1", message, value_format))
        assert isinstance(letter, DeadLetter) and masked == 1
        payload = letter.raw_payload
        shown = base64.b64decode(payload[len("base64:"):]).decode("latin-1") if value_format != "json" else payload
        assert PAN not in shown and MASKED in shown
