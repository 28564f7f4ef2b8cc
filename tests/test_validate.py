"""transforms.validate: raw field mappings -> typed records or dead letters (docs/DESIGN.md 3.1, 3.2).

Every id below is made up.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from schemas.records import (
    PAYMENT_FIELDS,
    PAYMENTS,
    SETTLEMENT_FIELDS,
    SETTLEMENTS,
    DeadLetter,
    PaymentEvent,
    RawRecord,
    SettlementLine,
)
from transforms.validate import (
    DEAD_LETTERS,
    STAGE_DECODE,
    STAGE_VALIDATE,
    InvalidRecord,
    ParseAndValidate,
    parse_payment_event,
    parse_settlement_line,
    validate_raw_record,
)

# 2024-03-01T10:15:30Z and 2024-03-02T08:00:00Z
EVENT_MILLIS = 1_709_288_130_000
BOOKED_MILLIS = 1_709_366_400_000


def payment_text(**overrides) -> dict:
    """A valid payment as a CSV reader yields it: every value is text."""
    fields = {
        "event_id": "evt-0001",
        "payment_id": "pay-0001",
        "event_type": "CAPTURED",
        "processor": "stripe",
        "processor_reference": "ref-0001",
        "merchant_id": "m-001",
        "amount_minor": "1250",
        "currency": "EUR",
        "event_time": "2024-03-01T10:15:30Z",
    }
    fields.update(overrides)
    return fields


def settlement_text(**overrides) -> dict:
    fields = {
        "settlement_id": "stl-0001",
        "processor": "adyen",
        "processor_reference": "ref-0001",
        "merchant_id": "m-001",
        "record_type": "CAPTURE",
        "gross_minor": "1000",
        "fee_minor": "30",
        "net_minor": "970",
        "currency": "EUR",
        "settlement_date": "2024-03-02",
        "booked_time": "2024-03-02T08:00:00Z",
        "payout_id": "po-0001",
    }
    fields.update(overrides)
    return fields


EXPECTED_PAYMENT = PaymentEvent(
    event_id="evt-0001",
    payment_id="pay-0001",
    event_type="CAPTURED",
    processor="stripe",
    processor_reference="ref-0001",
    merchant_id="m-001",
    amount_minor=1250,
    currency="EUR",
    event_time=EVENT_MILLIS,
)

EXPECTED_SETTLEMENT = SettlementLine(
    settlement_id="stl-0001",
    processor="adyen",
    processor_reference="ref-0001",
    merchant_id="m-001",
    record_type="CAPTURE",
    gross_minor=1000,
    fee_minor=30,
    net_minor=970,
    currency="EUR",
    settlement_date="2024-03-02",
    booked_time=BOOKED_MILLIS,
    payout_id="po-0001",
)


# ---------------------------------------------------------------- valid records


def test_payment_from_text_fields():
    assert parse_payment_event(payment_text()) == EXPECTED_PAYMENT


def test_payment_from_typed_fields_equals_text_fields():
    typed = payment_text(
        amount_minor=1250,
        event_time=datetime(2024, 3, 1, 10, 15, 30, tzinfo=timezone.utc),
    )
    assert parse_payment_event(typed) == parse_payment_event(payment_text()) == EXPECTED_PAYMENT


def test_payment_with_offset_time_and_epoch_millis():
    assert parse_payment_event(payment_text(event_time="2024-03-01T11:15:30+01:00")).event_time == EVENT_MILLIS
    assert parse_payment_event(payment_text(event_time=EVENT_MILLIS)).event_time == EVENT_MILLIS


def test_settlement_from_text_fields():
    assert parse_settlement_line(settlement_text()) == EXPECTED_SETTLEMENT


def test_settlement_from_typed_fields_equals_text_fields():
    typed = settlement_text(
        gross_minor=1000,
        fee_minor=30,
        net_minor=970,
        settlement_date=date(2024, 3, 2),
        booked_time=datetime(2024, 3, 2, 9, 0, tzinfo=timezone(timedelta(hours=1))),
    )
    assert parse_settlement_line(typed) == parse_settlement_line(settlement_text()) == EXPECTED_SETTLEMENT


def test_field_values_are_stripped_and_normalised():
    event = parse_payment_event(
        payment_text(event_id=" evt-0001 ", event_type="captured", processor="  Stripe ", currency="eur")
    )
    assert event == EXPECTED_PAYMENT
    line = parse_settlement_line(settlement_text(record_type="capture", processor="ADYEN", currency=" eur "))
    assert line == EXPECTED_SETTLEMENT


def test_processor_lower_cased_event_type_upper_cased():
    event = parse_payment_event(payment_text(processor="STRIPE", event_type="Refunded"))
    assert event.processor == "stripe"
    assert event.event_type == "REFUNDED"
    line = parse_settlement_line(settlement_text(processor="AdYeN", record_type="Chargeback"))
    assert line.processor == "adyen"
    assert line.record_type == "CHARGEBACK"


@pytest.mark.parametrize("payout", ["", "   ", None])
def test_empty_payout_id_is_none(payout):
    assert parse_settlement_line(settlement_text(payout_id=payout)).payout_id is None


def test_payout_id_column_may_be_absent():
    fields = settlement_text()
    del fields["payout_id"]
    assert parse_settlement_line(fields) == EXPECTED_SETTLEMENT._replace(payout_id=None)


def test_zero_fee_and_negative_fee_keep_net_rule():
    assert parse_settlement_line(settlement_text(fee_minor="0", net_minor="1000")).net_minor == 1000
    line = parse_settlement_line(settlement_text(fee_minor="-5", net_minor="1005"))
    assert (line.gross_minor, line.fee_minor, line.net_minor) == (1000, -5, 1005)


def test_extra_columns_are_ignored():
    assert parse_payment_event({**payment_text(), "note": "ignored"}) == EXPECTED_PAYMENT


# ---------------------------------------------------------------- payment rejections


def _payment_reason(**overrides) -> str:
    with pytest.raises(InvalidRecord) as info:
        parse_payment_event(payment_text(**overrides))
    return str(info.value)


def _settlement_reason(**overrides) -> str:
    with pytest.raises(InvalidRecord) as info:
        parse_settlement_line(settlement_text(**overrides))
    return str(info.value)


def test_wrong_header_lists_every_missing_field():
    fields = {"id": "evt-0001", "type": "CAPTURED", "amount": "1250"}
    with pytest.raises(InvalidRecord) as info:
        parse_payment_event(fields)
    reason = str(info.value)
    assert reason.startswith("missing field(s):")
    for name in PAYMENT_FIELDS:
        assert name in reason


def test_missing_columns_listed_by_name_only_for_absent_ones():
    fields = payment_text()
    del fields["merchant_id"]
    del fields["event_time"]
    with pytest.raises(InvalidRecord) as info:
        parse_payment_event(fields)
    assert str(info.value) == "missing field(s): merchant_id, event_time"


def test_settlement_wrong_header_lists_missing_but_not_payout_id():
    fields = settlement_text()
    del fields["gross_minor"]
    del fields["payout_id"]
    with pytest.raises(InvalidRecord) as info:
        parse_settlement_line(fields)
    assert str(info.value) == "missing field(s): gross_minor"
    with pytest.raises(InvalidRecord) as info:
        parse_settlement_line({"foo": "bar"})
    for name in SETTLEMENT_FIELDS:
        if name != "payout_id":
            assert name in str(info.value)
    assert "payout_id" not in str(info.value)


@pytest.mark.parametrize("value", ["", "   ", None])
def test_missing_event_id(value):
    assert _payment_reason(event_id=value) == "event_id is missing"


def test_unknown_event_type():
    reason = _payment_reason(event_type="SETTLED")
    assert "event_type" in reason and "'SETTLED'" in reason
    assert "CAPTURED" in reason  # lists the allowed values


@pytest.mark.parametrize("value", ["12.50", "abc", "1,250", "1e3"])
def test_non_numeric_amount(value):
    reason = _payment_reason(amount_minor=value)
    assert "amount_minor" in reason
    assert "not an integer" in reason


def test_float_amount_from_json_is_rejected():
    assert "amount_minor" in _payment_reason(amount_minor=12.5)


def test_missing_amount():
    assert _payment_reason(amount_minor="") == "amount_minor is missing"


@pytest.mark.parametrize("value", ["0", "-1250", 0, -1])
def test_non_positive_amount(value):
    reason = _payment_reason(amount_minor=value)
    assert "amount_minor must be positive" in reason
    assert str(int(value)) in reason


def test_unknown_currency():
    reason = _payment_reason(currency="ABC")
    assert "unknown currency" in reason and "ABC" in reason
    assert _payment_reason(currency="") == "missing currency"


def test_bad_timestamp():
    reason = _payment_reason(event_time="yesterday")
    assert "event_time" in reason and "not an RFC 3339 timestamp" in reason


def test_naive_timestamp():
    reason = _payment_reason(event_time="2024-03-01T10:15:30")
    assert "event_time" in reason and "no UTC offset" in reason
    reason = _payment_reason(event_time=datetime(2024, 3, 1, 10, 15, 30))
    assert "no UTC offset" in reason


@pytest.mark.parametrize("value", ["--5", "+-3"])
def test_malformed_amount_is_an_invalid_record_not_a_crash(value):
    # A garbled number must become a dead letter, never an unhandled exception.
    assert "amount_minor" in _payment_reason(amount_minor=value)


# ---------------------------------------------------------------- settlement rejections


def test_net_not_gross_minus_fee_names_the_numbers():
    reason = _settlement_reason(gross_minor="1000", fee_minor="30", net_minor="900")
    assert "net_minor" in reason
    assert "900" in reason and "1000" in reason and "30" in reason


@pytest.mark.parametrize("gross, fee, net", [("0", "0", "0"), ("-1000", "-30", "-970"), ("-10", "0", "-10")])
def test_gross_must_be_positive(gross, fee, net):
    reason = _settlement_reason(gross_minor=gross, fee_minor=fee, net_minor=net)
    assert "gross_minor must be positive" in reason


@pytest.mark.parametrize("record_type", ["FEE", "ADJUSTMENT", "PAYOUT", "payout "])
@pytest.mark.parametrize("gross, fee, net", [("-1600", "0", "-1600"), ("0", "25", "-25"), ("-2500", "-30", "-2470")])
def test_account_level_lines_carry_a_signed_gross(record_type, gross, fee, net):
    # A fee refund, a debit adjustment, a returned payout (DESIGN 3.2).
    line = parse_settlement_line(settlement_text(record_type=record_type, gross_minor=gross, fee_minor=fee,
                                                 net_minor=net))
    assert (line.record_type, line.gross_minor, line.fee_minor, line.net_minor) == (
        record_type.strip().upper(), int(gross), int(fee), int(net))


def test_a_matched_side_is_read_when_a_record_has_one():
    # A vendor row paid in one currency and settled in another (DESIGN 3.2): matched on the first.
    line = parse_settlement_line({**settlement_text(), "matched_minor": 900, "matched_currency": "usd"})
    assert (line.gross_minor, line.currency, line.matched_minor, line.matched_currency) == (1000, "EUR", 900, "USD")
    plain = parse_settlement_line({**settlement_text(), "matched_minor": "", "matched_currency": ""})
    assert (plain.matched_minor, plain.matched_currency) == (None, None)


@pytest.mark.parametrize("amount, currency, reason", [
    (900, None, "matched_currency"), (None, "USD", "matched_minor"), (0, "USD", "matched_minor must be positive"),
    (-5, "USD", "matched_minor must be positive"), (900, "XYZ", "matched_currency")])
def test_a_matched_side_needs_both_a_positive_amount_and_a_currency(amount, currency, reason):
    with pytest.raises(InvalidRecord, match=reason):
        parse_settlement_line({**settlement_text(), "matched_minor": amount, "matched_currency": currency})


def test_signed_account_level_line_must_still_be_consistent():
    reason = _settlement_reason(record_type="ADJUSTMENT", gross_minor="-1600", fee_minor="0", net_minor="1600")
    assert reason == "net_minor 1600 != gross_minor -1600 - fee_minor 0"


@pytest.mark.parametrize("value", ["2024-02-30", "02/03/2024", "", None])
def test_bad_settlement_date(value):
    assert "settlement_date" in _settlement_reason(settlement_date=value)


def test_unknown_record_type():
    reason = _settlement_reason(record_type="SALE")
    assert "record_type" in reason and "'SALE'" in reason


def test_settlement_naive_booked_time():
    reason = _settlement_reason(booked_time="2024-03-02T08:00:00")
    assert "booked_time" in reason and "no UTC offset" in reason


def test_settlement_unknown_currency_and_bad_fee():
    assert "unknown currency" in _settlement_reason(currency="QQQ")
    assert "fee_minor" in _settlement_reason(fee_minor="3.5")


@pytest.mark.parametrize("name", ["event_id", "payment_id", "processor_reference", "merchant_id"])
def test_payment_text_is_bounded_in_characters_once_trimmed(name):
    assert getattr(parse_payment_event(payment_text(**{name: f"  {'é' * 256}  "})), name) == "é" * 256
    assert _payment_reason(**{name: "x" * 257}) == f"{name} is 257 characters long, longer than 256"


def test_settlement_text_is_bounded_processor_and_payout_id_included():
    assert _settlement_reason(settlement_id="s" * 300) == "settlement_id is 300 characters long, longer than 256"
    assert _settlement_reason(payout_id="p" * 257) == "payout_id is 257 characters long, longer than 256"
    assert _settlement_reason(processor="p" * 65) == "processor is 65 characters long, longer than 64"
    assert parse_settlement_line(settlement_text(processor="P" * 64)).processor == "p" * 64


# ---------------------------------------------------------------- validate_raw_record


def test_valid_raw_records_become_typed_records():
    assert validate_raw_record(RawRecord(PAYMENTS, "f.csv:2", payment_text(), "raw")) == EXPECTED_PAYMENT
    assert validate_raw_record(RawRecord(SETTLEMENTS, "f.csv:2", settlement_text(), "raw")) == EXPECTED_SETTLEMENT


def test_decode_error_becomes_decode_dead_letter_with_raw_payload():
    raw = RawRecord(PAYMENTS, "payments.jsonl:7", None, '{"event_id": "evt-', "invalid JSON: oops at column 13")
    assert validate_raw_record(raw) == DeadLetter(
        PAYMENTS, "payments.jsonl:7", STAGE_DECODE, "invalid JSON: oops at column 13", '{"event_id": "evt-'
    )


def test_no_fields_without_decode_error_is_a_decode_dead_letter():
    letter = validate_raw_record(RawRecord(SETTLEMENTS, "s.csv:3", None, "x,y"))
    assert isinstance(letter, DeadLetter)
    assert letter.stage == STAGE_DECODE
    assert letter.raw_payload == "x,y"


def test_invalid_record_becomes_validate_dead_letter():
    raw = RawRecord(SETTLEMENTS, "s.csv:4", settlement_text(net_minor="1"), "stl-0001,...,1")
    letter = validate_raw_record(raw)
    assert isinstance(letter, DeadLetter)
    assert letter.input == SETTLEMENTS
    assert letter.source == "s.csv:4"
    assert letter.stage == STAGE_VALIDATE
    assert "net_minor" in letter.reason
    assert letter.raw_payload == "stl-0001,...,1"


def test_malformed_amount_raw_record_is_dead_lettered():
    raw = RawRecord(PAYMENTS, "p.csv:9", payment_text(amount_minor="--5"), "evt-0001,--5")
    letter = validate_raw_record(raw)
    assert isinstance(letter, DeadLetter)
    assert letter.stage == STAGE_VALIDATE


def test_parse_and_validate_rejects_unknown_input():
    with pytest.raises(ValueError):
        ParseAndValidate("refunds")


# ---------------------------------------------------------------- Beam


def test_parse_and_validate_pipeline_routes_both_outputs():
    payment_inputs = [
        RawRecord(PAYMENTS, "p.csv:2", payment_text(), "p2"),
        RawRecord(PAYMENTS, "p.csv:3", payment_text(event_id="evt-0002", amount_minor="0"), "p3"),
        RawRecord(PAYMENTS, "p.csv:4", None, "p4", "row has 3 columns, the header has 9"),
        RawRecord(PAYMENTS, "p.csv:5", payment_text(event_id="evt-0003", event_type="refunded"), "p5"),
    ]
    settlement_inputs = [
        RawRecord(SETTLEMENTS, "s.csv:2", settlement_text(), "s2"),
        RawRecord(SETTLEMENTS, "s.csv:3", settlement_text(settlement_id="stl-0002", net_minor="1"), "s3"),
        RawRecord(SETTLEMENTS, "s.csv:4", None, "s4", "invalid JSON"),
    ]
    expected_payments = [
        EXPECTED_PAYMENT,
        EXPECTED_PAYMENT._replace(event_id="evt-0003", event_type="REFUNDED"),
    ]
    expected_payment_dead = [
        DeadLetter(
            PAYMENTS, "p.csv:3", STAGE_VALIDATE,
            "amount_minor must be positive (the event_type gives the direction), got 0", "p3",
        ),
        DeadLetter(PAYMENTS, "p.csv:4", STAGE_DECODE, "row has 3 columns, the header has 9", "p4"),
    ]
    expected_settlements = [EXPECTED_SETTLEMENT]
    expected_settlement_dead = [
        DeadLetter(SETTLEMENTS, "s.csv:3", STAGE_VALIDATE, "net_minor 1 != gross_minor 1000 - fee_minor 30", "s3"),
        DeadLetter(SETTLEMENTS, "s.csv:4", STAGE_DECODE, "invalid JSON", "s4"),
    ]
    assert len(expected_payments) + len(expected_payment_dead) == len(payment_inputs)
    assert len(expected_settlements) + len(expected_settlement_dead) == len(settlement_inputs)

    with BeamTestPipeline() as pipeline:
        payments = (
            pipeline
            | "CreatePayments" >> beam.Create(payment_inputs)
            | "ValidatePayments" >> ParseAndValidate(PAYMENTS)
        )
        settlements = (
            pipeline
            | "CreateSettlements" >> beam.Create(settlement_inputs)
            | "ValidateSettlements" >> ParseAndValidate(SETTLEMENTS)
        )
        assert_that(payments.valid, equal_to(expected_payments), label="ValidPayments")
        assert_that(payments[DEAD_LETTERS], equal_to(expected_payment_dead), label="DeadPayments")
        assert_that(settlements.valid, equal_to(expected_settlements), label="ValidSettlements")
        assert_that(settlements[DEAD_LETTERS], equal_to(expected_settlement_dead), label="DeadSettlements")

        for name, outputs, total in (
            ("Payments", payments, len(payment_inputs)),
            ("Settlements", settlements, len(settlement_inputs)),
        ):
            counted = (
                (outputs.valid, outputs[DEAD_LETTERS])
                | f"Flatten{name}" >> beam.Flatten()
                | f"Count{name}" >> beam.combiners.Count.Globally()
            )
            assert_that(counted, equal_to([total]), label=f"AllAccountedFor{name}")
