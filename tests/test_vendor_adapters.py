"""Vendor report adapters (schemas.vendors): Stripe and Adyen, both directions.

Plain pytest, no pipeline. Every id, account and reference below is made up.
"""
from __future__ import annotations

import re

import pytest

from schemas.records import SETTLEMENT_FIELDS, SettlementLine
from schemas.rules import RECORD_TYPES
from schemas.timestamps import format_timestamp, parse_timestamp_millis
from schemas.vendors import (
    VENDORS,
    VendorRowError,
    detect_vendor,
    settlement_fields_from_vendor_row,
    vendor_columns,
    vendor_row_from_settlement,
)
from schemas.vendors.adyen import ADYEN_COLUMNS, settlement_fields_from_adyen_row
from schemas.vendors.stripe import (
    PERSONAL_DATA_COLUMNS,
    STRIPE_COLUMNS,
    is_unknown_category,
    settlement_fields_from_stripe_row,
)

# ---------------------------------------------------------------- fixtures --


def stripe_row(**values: str) -> dict[str, str]:
    """A charge row with every documented column; keyword names override."""
    row = dict.fromkeys(STRIPE_COLUMNS, "")
    row.update(
        {
            "automatic_payout_id": "po_test_0001",
            "automatic_payout_effective_at": "2024-03-05 00:00:00",
            "balance_transaction_id": "txn_test_0001",
            "created_utc": "2024-03-01 10:15:30",
            "available_on_utc": "2024-03-04 00:00:00",
            "currency": "usd",
            "gross": "100.00",
            "fee": "3.20",
            "net": "96.80",
            "reporting_category": "charge",
            "source_id": "ch_test_0001",
            "charge_id": "ch_test_0001",
            "payment_intent_id": "pi_test_0001",
            "payment_metadata[merchant_id]": "m-test-1",
        }
    )
    row.update(values)
    return row


def adyen_row(**values: str) -> dict[str, str]:
    """A Settled row with every documented column; keys use '_' for ' '."""
    row = dict.fromkeys(ADYEN_COLUMNS, "")
    row.update(
        {
            "Company Account": "TestCompanyAcct",
            "Merchant Account": "TestMerchantAcct",
            "Psp Reference": "PSPTEST000000001",
            "Merchant Reference": "order-test-1",
            "Payment Method": "visa",
            "Creation Date": "2024-01-15 12:00:00",
            "TimeZone": "CET",
            "Type": "Settled",
            "Modification Reference": "MODTEST000000001",
            "Gross Currency": "EUR",
            "Gross Credit (GC)": "5.00",
            "Exchange Rate": "1",
            "Net Currency": "EUR",
            "Net Credit (NC)": "4.88",
            "Markup (NC)": "0.04",
            "Scheme Fees (NC)": "0.01",
            "Interchange (NC)": "0.07",
            "Payment Method Variant": "visaclassic",
            "Batch Number": "42",
        }
    )
    for key, value in values.items():
        row[_adyen_column(key)] = value
    return row


def _adyen_column(key: str) -> str:
    by_slug = {
        column.replace(" ", "_").replace("(", "").replace(")", "").lower(): column
        for column in ADYEN_COLUMNS
    }
    return by_slug[key.lower()]


def line(**values) -> SettlementLine:
    base = dict(
        settlement_id="stl-test-0001",
        processor="stripe",
        processor_reference="ch_test_0001",
        merchant_id="m-test-1",
        record_type="CAPTURE",
        gross_minor=10_000,
        fee_minor=320,
        net_minor=9_680,
        currency="USD",
        settlement_date="2024-03-05",
        booked_time=parse_timestamp_millis("2024-03-01T10:15:30.250Z"),
        payout_id="batch-7",
    )
    base.update(values)
    return SettlementLine(**base)


def canonical(settlement: SettlementLine) -> dict:
    """The reader's expected output for a line (booked_time as RFC 3339 text)."""
    fields = settlement._asdict()
    fields["booked_time"] = format_timestamp(settlement.booked_time)
    # The optional matched side is only there when a line has one.
    for name in ("matched_minor", "matched_currency"):
        if fields[name] is None:
            del fields[name]
    return fields


# ------------------------------------------------------------------ Stripe --


def test_stripe_charge_reads_all_canonical_fields() -> None:
    fields = settlement_fields_from_stripe_row(stripe_row())

    assert fields == {
        "settlement_id": "txn_test_0001",
        "processor": "stripe",
        "processor_reference": "ch_test_0001",
        "merchant_id": "m-test-1",
        "record_type": "CAPTURE",
        "gross_minor": 10_000,
        "fee_minor": 320,
        "net_minor": 9_680,
        "currency": "USD",
        "settlement_date": "2024-03-05",
        "booked_time": "2024-03-01T10:15:30.000Z",
        "payout_id": "po_test_0001",
    }
    assert tuple(fields) == SETTLEMENT_FIELDS


@pytest.mark.parametrize(
    "category, record_type",
    [
        ("charge", "CAPTURE"),
        ("refund", "REFUND"),
        ("dispute", "CHARGEBACK"),
        ("fee", "FEE"),
        ("network_cost", "FEE"),
        ("adjustment", "ADJUSTMENT"),
        ("other_adjustment", "ADJUSTMENT"),
        ("refund_failure", "ADJUSTMENT"),
        ("dispute_reversal", "ADJUSTMENT"),
        ("partial_capture_reversal", "ADJUSTMENT"),
        ("transfer", "ADJUSTMENT"),
        ("payout", "PAYOUT"),
        ("payout_reversal", "PAYOUT"),
    ],
)
def test_stripe_reporting_category_mapping(category: str, record_type: str) -> None:
    fields = settlement_fields_from_stripe_row(stripe_row(reporting_category=category))
    assert fields["record_type"] == record_type


def test_stripe_unknown_category_passes_as_a_signed_adjustment_and_is_flagged() -> None:
    row = stripe_row(reporting_category="brand_new_thing", gross="-7.25", fee="0.00", net="-7.25")
    fields = settlement_fields_from_stripe_row(row)
    assert (fields["record_type"], fields["gross_minor"], fields["fee_minor"], fields["net_minor"]) == (
        "ADJUSTMENT", -725, 0, -725)
    assert is_unknown_category(row)
    assert not is_unknown_category(stripe_row())
    assert not is_unknown_category(stripe_row(reporting_category="climate_order_purchase"))


def test_stripe_missing_category_is_rejected() -> None:
    with pytest.raises(VendorRowError, match="reporting_category is missing"):
        settlement_fields_from_stripe_row(stripe_row(reporting_category=""))


def test_stripe_refund_is_positive_with_direction_in_record_type() -> None:
    fields = settlement_fields_from_stripe_row(
        stripe_row(reporting_category="refund", gross="-50.00", fee="0.00", net="-50.00")
    )
    assert (fields["record_type"], fields["gross_minor"], fields["fee_minor"], fields["net_minor"]) == (
        "REFUND",
        5_000,
        0,
        5_000,
    )


def test_stripe_dispute_fee_adds_to_the_outgoing_net() -> None:
    # Stripe: the disputed amount and the dispute fee both leave the balance.
    fields = settlement_fields_from_stripe_row(
        stripe_row(reporting_category="dispute", gross="-100.00", fee="15.00", net="-115.00")
    )
    assert (fields["gross_minor"], fields["fee_minor"], fields["net_minor"]) == (10_000, -1_500, 11_500)
    assert fields["net_minor"] == fields["gross_minor"] - fields["fee_minor"]


def test_stripe_inconsistent_row_is_converted_not_judged() -> None:
    fields = settlement_fields_from_stripe_row(stripe_row(gross="100.00", fee="3.20", net="99.99"))
    assert (fields["gross_minor"], fields["fee_minor"], fields["net_minor"]) == (10_000, 320, 9_999)


@pytest.mark.parametrize(
    "currency, gross, fee, net, expected",
    [
        ("usd", "0.29", "0.01", "0.28", (29, 1, 28)),  # 0.29 is inexact as a float
        ("usd", "1,234.56", "0.00", "1,234.56", (123_456, 0, 123_456)),
        ("jpy", "1500", "54", "1446", (1_500, 54, 1_446)),
        ("kwd", "12.345", "0.370", "11.975", (12_345, 370, 11_975)),
    ],
)
def test_stripe_amounts_convert_exactly(currency, gross, fee, net, expected) -> None:
    fields = settlement_fields_from_stripe_row(stripe_row(currency=currency, gross=gross, fee=fee, net=net))
    assert (fields["gross_minor"], fields["fee_minor"], fields["net_minor"]) == expected
    assert fields["currency"] == currency.upper()


@pytest.mark.parametrize(
    "currency, amount",
    [("jpy", "1500.5"), ("usd", "10.001"), ("kwd", "1.0001")],
)
def test_stripe_too_many_decimals_is_rejected(currency: str, amount: str) -> None:
    with pytest.raises(VendorRowError, match="gross has more decimal places than") as error:
        settlement_fields_from_stripe_row(stripe_row(currency=currency, gross=amount))
    assert amount not in str(error.value)


@pytest.mark.parametrize(
    "values, reason",
    [
        ({"gross": "ten"}, "gross is not a decimal number"),
        ({"net": ""}, "net is missing"),
        ({"currency": "xyz"}, "currency is missing or not a known ISO-4217 currency"),
        ({"balance_transaction_id": ""}, "balance_transaction_id is missing"),
        ({"created_utc": "03/01/2024 10:15"}, "created_utc is not a 'YYYY-MM-DD HH:MM:SS' time"),
        (
            {"automatic_payout_effective_at": "", "available_on_utc": ""},
            "automatic_payout_effective_at_utc, automatic_payout_effective_at, available_on_utc and "
            "available_on are all missing",
        ),
        ({"created_utc": ""}, "created_utc and created are all missing"),
    ],
)
def test_stripe_unusable_rows_raise_vendor_row_error(values: dict, reason: str) -> None:
    with pytest.raises(VendorRowError, match=reason):
        settlement_fields_from_stripe_row(stripe_row(**values))


def test_stripe_reference_prefers_charge_then_payment_intent_then_source_then_own_id() -> None:
    read = settlement_fields_from_stripe_row
    assert read(stripe_row())["processor_reference"] == "ch_test_0001"
    assert read(stripe_row(charge_id=""))["processor_reference"] == "pi_test_0001"
    assert read(stripe_row(charge_id="", payment_intent_id=""))["processor_reference"] == "ch_test_0001"
    own = stripe_row(reporting_category="fee", charge_id="", payment_intent_id="", source_id="")
    assert read(own)["processor_reference"] == "txn_test_0001"


def test_stripe_merchant_falls_back_to_connected_account_then_unattributed() -> None:
    read = settlement_fields_from_stripe_row
    no_metadata = {"payment_metadata[merchant_id]": ""}
    assert read(stripe_row(**no_metadata, connected_account_id="acct_test_1"))["merchant_id"] == "acct_test_1"
    assert read(stripe_row(**no_metadata))["merchant_id"] == "UNATTRIBUTED"


def test_stripe_settlement_date_falls_back_to_available_on_and_payout_to_none() -> None:
    fields = settlement_fields_from_stripe_row(
        stripe_row(automatic_payout_id="", automatic_payout_effective_at="", available_on_utc="2024-03-04")
    )
    assert fields["settlement_date"] == "2024-03-04"
    assert fields["payout_id"] is None


def test_stripe_writer_emits_every_column_as_text_and_no_personal_data() -> None:
    refund = line(record_type="REFUND", gross_minor=5_000, fee_minor=0, net_minor=5_000)
    row = vendor_row_from_settlement("stripe", refund)

    assert tuple(row) == STRIPE_COLUMNS
    assert all(isinstance(value, str) for value in row.values())
    assert all(row[column] == "" for column in PERSONAL_DATA_COLUMNS)
    assert (row["currency"], row["gross"], row["fee"], row["net"]) == ("usd", "-50.00", "0.00", "-50.00")
    assert row["reporting_category"] == "refund"


# ------------------------------------------------------------------- Adyen --


def test_adyen_settled_reads_all_canonical_fields() -> None:
    fields = settlement_fields_from_adyen_row(adyen_row())

    assert re.fullmatch(r"adyen:MODTEST000000001:Settled:[a-p]{20}", fields.pop("settlement_id"))
    assert fields == {
        "processor": "adyen",
        "processor_reference": "PSPTEST000000001",
        "merchant_id": "TestMerchantAcct",
        "record_type": "CAPTURE",
        "gross_minor": 500,
        "fee_minor": 12,
        "net_minor": 488,
        "currency": "EUR",
        "settlement_date": "2024-01-15",
        "booked_time": "2024-01-15T11:00:00.000Z",
        "payout_id": "batch-42",
    }
    assert ("settlement_id", *fields) == SETTLEMENT_FIELDS


@pytest.mark.parametrize(
    "journal_type, record_type",
    [
        ("Settled", "CAPTURE"),
        ("Refunded", "REFUND"),
        ("Chargeback", "CHARGEBACK"),
        ("Fee", "FEE"),
        ("InvoiceDeduction", "FEE"),
        ("DepositCorrection", "ADJUSTMENT"),
        ("ChargebackReversed", "ADJUSTMENT"),
        ("ChargebackReversal", "ADJUSTMENT"),
        ("SecondChargeback", "ADJUSTMENT"),
        ("Balancetransfer", "ADJUSTMENT"),
        ("MerchantPayout", "PAYOUT"),
    ],
)
def test_adyen_type_mapping(journal_type: str, record_type: str) -> None:
    fields = settlement_fields_from_adyen_row(adyen_row(type=journal_type))
    assert fields["record_type"] == record_type
    assert fields["settlement_id"].startswith(f"adyen:MODTEST000000001:{journal_type}:")


def test_adyen_unknown_type_is_rejected_without_echoing_it() -> None:
    with pytest.raises(VendorRowError, match=r"unknown Adyen Type") as error:
        settlement_fields_from_adyen_row(adyen_row(type="SomethingNew"))
    assert "SomethingNew" not in str(error.value)


def test_adyen_refund_debit_is_positive_and_keeps_the_original_payment_reference() -> None:
    fields = settlement_fields_from_adyen_row(
        adyen_row(
            type="Refunded",
            modification_reference="MODTEST000000002",
            gross_credit_gc="",
            gross_debit_gc="50.00",
            net_credit_nc="",
            net_debit_nc="50.10",
            markup_nc="",
            scheme_fees_nc="",
            interchange_nc="",
            commission_nc="0.10",
        )
    )
    assert fields["record_type"] == "REFUND"
    assert fields["processor_reference"] == "PSPTEST000000001"
    assert (fields["gross_minor"], fields["fee_minor"], fields["net_minor"]) == (5_000, -10, 5_010)
    assert fields["net_minor"] == fields["gross_minor"] - fields["fee_minor"]


def test_adyen_chargeback_debit() -> None:
    fields = settlement_fields_from_adyen_row(
        adyen_row(
            type="Chargeback",
            gross_credit_gc="",
            gross_debit_gc="349.99",
            net_credit_nc="",
            net_debit_nc="357.49",
            markup_nc="",
            scheme_fees_nc="",
            interchange_nc="",
            commission_nc="7.5",
        )
    )
    assert (fields["gross_minor"], fields["fee_minor"], fields["net_minor"]) == (34_999, -750, 35_749)


def test_adyen_account_level_fee_without_gross_uses_net_and_own_reference() -> None:
    fields = settlement_fields_from_adyen_row(
        adyen_row(
            type="Fee",
            psp_reference="",
            modification_reference="Transaction Fees January 2024",
            gross_currency="",
            gross_credit_gc="",
            exchange_rate="",
            net_credit_nc="",
            net_debit_nc="10.08",
            markup_nc="",
            scheme_fees_nc="",
            interchange_nc="",
        )
    )
    assert fields["record_type"] == "FEE"
    assert fields["processor_reference"] == "Transaction Fees January 2024"
    assert (fields["gross_minor"], fields["fee_minor"], fields["net_minor"]) == (1_008, 0, 1_008)


def test_adyen_payout_without_any_reference_but_batch_uses_batch_number() -> None:
    fields = settlement_fields_from_adyen_row(
        adyen_row(type="MerchantPayout", psp_reference="", modification_reference="", gross_credit_gc="",
                  gross_currency="", net_credit_nc="", net_debit_nc="1000.00", markup_nc="",
                  scheme_fees_nc="", interchange_nc="")
    )
    assert fields["processor_reference"] == "42"
    assert fields["record_type"] == "PAYOUT"
    assert fields["settlement_id"].startswith("adyen:MerchantPayout:42:")


def test_adyen_settlement_id_without_modification_reference_is_a_stable_row_digest() -> None:
    row = adyen_row(modification_reference="")
    first = settlement_fields_from_adyen_row(row, 7)["settlement_id"]

    assert first == settlement_fields_from_adyen_row(dict(row), 7)["settlement_id"]
    assert first != settlement_fields_from_adyen_row(adyen_row(modification_reference="", net_credit_nc="4.87"), 7)[
        "settlement_id"
    ]
    digest = first.removeprefix("adyen:Settled:42:")
    # Letters only: an id never holds a digit run that could pass for a card number.
    assert len(digest) == 20 and all(ch in "abcdefghijklmnop" for ch in digest)


@pytest.mark.parametrize(
    "currency, gross, net, markup, expected",
    [
        ("USD", "19.99", "19.41", "0.58", (1_999, 58, 1_941)),
        ("JPY", "1500", "1455", "45", (1_500, 45, 1_455)),
        ("KWD", "12.345", "12.000", "0.345", (12_345, 345, 12_000)),
    ],
)
def test_adyen_amounts_convert_exactly(currency, gross, net, markup, expected) -> None:
    fields = settlement_fields_from_adyen_row(
        adyen_row(gross_currency=currency, net_currency=currency, gross_credit_gc=gross, net_credit_nc=net,
                  markup_nc=markup, scheme_fees_nc="", interchange_nc="")
    )
    assert (fields["gross_minor"], fields["fee_minor"], fields["net_minor"]) == expected
    assert fields["currency"] == currency


def test_adyen_too_many_decimals_is_rejected() -> None:
    with pytest.raises(VendorRowError, match=r"Net Credit \(NC\) has more decimal places than JPY allows"):
        settlement_fields_from_adyen_row(
            adyen_row(gross_currency="JPY", net_currency="JPY", gross_credit_gc="500", net_credit_nc="488.5",
                      markup_nc="", scheme_fees_nc="", interchange_nc="")
        )


def test_adyen_cross_currency_needs_no_exchange_rate() -> None:
    # Both sides are read as they are; the rate is not used to derive anything.
    fields = settlement_fields_from_adyen_row(adyen_row(gross_currency="USD", net_currency="EUR", exchange_rate=""))
    assert (fields["currency"], fields["gross_minor"], fields["net_minor"]) == ("EUR", 500, 488)
    assert (fields["matched_minor"], fields["matched_currency"]) == (500, "USD")


@pytest.mark.parametrize(
    "values, reason",
    [
        ({"net_credit_nc": "-4.88"}, r"Net Credit \(NC\) is negative"),
        ({"net_credit_nc": ""}, "Net Debit .* are both missing"),
        ({"merchant_account": ""}, "Merchant Account is missing"),
        ({"type": ""}, "Type is missing"),
        ({"creation_date": "15/01/2024 12:00"}, "Creation Date is not a 'YYYY-MM-DD HH:MM:SS' time"),
        ({"psp_reference": "", "modification_reference": "", "batch_number": ""}, "all missing"),
    ],
)
def test_adyen_unusable_rows_raise_vendor_row_error(values: dict, reason: str) -> None:
    with pytest.raises(VendorRowError, match=reason):
        settlement_fields_from_adyen_row(adyen_row(**values))


@pytest.mark.parametrize(
    "creation_date, zone, expected",
    [
        ("2024-01-15 12:00:00", "CET", "2024-01-15T11:00:00.000Z"),  # winter, UTC+1
        # An abbreviation names an offset, not a zone: CET is UTC+1 in July too.
        ("2024-07-15 12:00:00", "CET", "2024-07-15T11:00:00.000Z"),
        ("2024-07-15 12:00:00", "CEST", "2024-07-15T10:00:00.000Z"),
        ("2024-07-15 12:00:00", "BST", "2024-07-15T11:00:00.000Z"),
        ("2024-01-15 12:00:00", "GMT", "2024-01-15T12:00:00.000Z"),
        ("2024-01-15 12:00:00", "PST", "2024-01-15T20:00:00.000Z"),
        ("2024-07-15 12:00:00", "PDT", "2024-07-15T19:00:00.000Z"),
        ("2024-01-15 12:00:00", "EST", "2024-01-15T17:00:00.000Z"),
        ("2024-07-15 12:00:00", "EDT", "2024-07-15T16:00:00.000Z"),
        ("2024-01-15 12:00:00", "CST", "2024-01-15T18:00:00.000Z"),
        ("2024-07-15 12:00:00", "CDT", "2024-07-15T17:00:00.000Z"),
        ("2024-01-15 12:00:00", "MST", "2024-01-15T19:00:00.000Z"),
        ("2024-07-15 12:00:00", "MDT", "2024-07-15T18:00:00.000Z"),
        ("2024-01-15 12:00:00", "EET", "2024-01-15T10:00:00.000Z"),
        ("2024-07-15 12:00:00", "EEST", "2024-07-15T09:00:00.000Z"),
        ("2024-01-15 12:00:00", "WET", "2024-01-15T12:00:00.000Z"),
        ("2024-01-15 12:00:00", "AEDT", "2024-01-15T01:00:00.000Z"),
        ("2024-01-15 12:00:00", "IST", "2024-01-15T06:30:00.000Z"),
        ("2024-01-15 12:00:00", "JST", "2024-01-15T03:00:00.000Z"),
        ("2024-01-15 12:00:00", "SGT", "2024-01-15T04:00:00.000Z"),
        ("2024-01-15 12:00:00", "pst", "2024-01-15T20:00:00.000Z"),
        ("2024-01-15 12:00:00", "GMT+01:00", "2024-01-15T11:00:00.000Z"),
        ("2024-01-15 12:00:00", "UTC-05:30", "2024-01-15T17:30:00.000Z"),
        ("2024-07-15 12:00:00", "UTC", "2024-07-15T12:00:00.000Z"),
        ("2024-07-15 12:00:00", "America/New_York", "2024-07-15T16:00:00.000Z"),
        ("2024-07-15 12:00:00", "Japan", "2024-07-15T03:00:00.000Z"),  # an IANA name without a slash
        # The repeated autumn hour of an IANA zone reads as its first (summer-time) occurrence.
        ("2024-10-27 02:30:00", "Europe/Amsterdam", "2024-10-27T00:30:00.000Z"),
    ],
)
def test_adyen_creation_date_converts_to_utc(creation_date: str, zone: str, expected: str) -> None:
    fields = settlement_fields_from_adyen_row(adyen_row(creation_date=creation_date, timezone=zone))
    assert fields["booked_time"] == expected


def test_adyen_settlement_date_is_the_utc_day_of_the_booking() -> None:
    just_after_midnight = adyen_row(creation_date="2024-01-15 00:30:00", timezone="CET")
    assert settlement_fields_from_adyen_row(just_after_midnight)["settlement_date"] == "2024-01-14"

    booked_later = adyen_row(booking_date="2024-01-17 09:00:00", booking_date_timezone="CET")
    assert settlement_fields_from_adyen_row(booked_later)["settlement_date"] == "2024-01-17"


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "XYZT", "Europe", "../etc", "UTC+25", ""])
def test_adyen_unknown_time_zone_is_rejected(zone: str) -> None:
    with pytest.raises(VendorRowError, match="TimeZone is (not a known time zone|missing)"):
        settlement_fields_from_adyen_row(adyen_row(timezone=zone))


def test_adyen_wall_time_in_the_spring_gap_is_rejected() -> None:
    with pytest.raises(VendorRowError, match="daylight-saving gap"):
        settlement_fields_from_adyen_row(adyen_row(creation_date="2024-03-31 02:30:00",
                                                   timezone="Europe/Amsterdam"))


def test_adyen_writer_emits_every_column_as_text() -> None:
    chargeback = line(
        processor="adyen", record_type="CHARGEBACK", gross_minor=34_999, fee_minor=-750, net_minor=35_749, currency="EUR"
    )
    row = vendor_row_from_settlement("adyen", chargeback)
    assert tuple(row) == ADYEN_COLUMNS
    assert all(isinstance(value, str) for value in row.values())
    assert (row["Type"], row["Gross Debit (GC)"], row["Net Debit (NC)"], row["Commission (NC)"]) == (
        "Chargeback",
        "349.99",
        "357.49",
        "7.50",
    )
    assert (row["Gross Credit (GC)"], row["Net Credit (NC)"], row["Batch Number"]) == ("", "", "7")


def test_adyen_writer_refuses_a_payout_id_it_cannot_round_trip() -> None:
    with pytest.raises(VendorRowError, match="batch-"):
        vendor_row_from_settlement("adyen", line(processor="adyen", payout_id="po_test_0001"))


# -------------------------------------------------------- package surface --


def test_detect_vendor() -> None:
    assert detect_vendor(STRIPE_COLUMNS) == "stripe"
    assert detect_vendor(ADYEN_COLUMNS) == "adyen"
    assert detect_vendor(SETTLEMENT_FIELDS) is None
    assert detect_vendor(["\ufeffbalance_transaction_id", "reporting_category "]) == "stripe"
    assert detect_vendor(["Company Account", "Psp Reference", "Type"]) == "adyen"
    assert detect_vendor([]) is None


def test_dispatch_and_columns() -> None:
    assert VENDORS == ("stripe", "adyen")
    assert vendor_columns("stripe") == STRIPE_COLUMNS
    assert vendor_columns("adyen") == ADYEN_COLUMNS
    assert settlement_fields_from_vendor_row("stripe", stripe_row()) == settlement_fields_from_stripe_row(stripe_row())
    assert settlement_fields_from_vendor_row("adyen", adyen_row()) == settlement_fields_from_adyen_row(adyen_row())


def test_unknown_vendor_is_a_configuration_error_not_a_bad_row() -> None:
    for call in (
        lambda: settlement_fields_from_vendor_row("paypal", {}),
        lambda: vendor_columns("paypal"),
        lambda: vendor_row_from_settlement("paypal", line()),
    ):
        with pytest.raises(ValueError, match="unknown vendor") as error:
            call()
        assert not isinstance(error.value, VendorRowError)


# -------------------------------------------------------------- round trips --

# Every record type, the three exponents, and the awkward cases: inconsistent
# net (the generator writes those on purpose), zero gross, no payout,
# account-level lines identified by their own id, a booking instant with
# milliseconds, and a settlement day that is not the booking day.
_AMOUNTS = {
    "USD": (10_000, 320, 9_680),
    "JPY": (1_500, 45, 1_455),
    "KWD": (12_345, 370, 11_975),
}
ROUND_TRIP_LINES = [
    line(record_type=record_type, currency=currency, gross_minor=g, fee_minor=f, net_minor=n,
         settlement_id=f"stl-{record_type.lower()}-{currency.lower()}")
    for record_type in RECORD_TYPES
    for currency, (g, f, n) in _AMOUNTS.items()
] + [
    line(record_type=record_type, settlement_id=f"stl-odd-{record_type.lower()}", **odd)
    for record_type in RECORD_TYPES
    for odd in (
        {"net_minor": 9_999},  # net != gross - fee
        {"gross_minor": 0, "fee_minor": 25, "net_minor": -25},
        {"fee_minor": -1_500, "net_minor": 11_500},
        {"payout_id": None, "booked_time": parse_timestamp_millis("2024-03-01T23:59:59Z")},
        {"merchant_id": "UNATTRIBUTED", "settlement_date": "2024-02-28"},
    )
] + [
    line(record_type=record_type, settlement_id="stl-own-ref", processor_reference="stl-own-ref",
         gross_minor=700, fee_minor=0, net_minor=700)
    for record_type in ("FEE", "ADJUSTMENT", "PAYOUT")
] + [
    # Account-level lines are signed: a fee refund, a debit adjustment, a returned payout.
    line(record_type=record_type, settlement_id=f"stl-negative-{record_type.lower()}",
         gross_minor=-1_600, fee_minor=fee, net_minor=-1_600 - fee)
    for record_type in ("FEE", "ADJUSTMENT", "PAYOUT")
    for fee in (0, 25)
]


def _id(settlement: SettlementLine) -> str:
    return f"{settlement.settlement_id}-{settlement.currency}"


@pytest.mark.parametrize("settlement", ROUND_TRIP_LINES, ids=_id)
def test_stripe_round_trip(settlement: SettlementLine) -> None:
    settlement = settlement._replace(processor="stripe")
    row = vendor_row_from_settlement("stripe", settlement)
    assert settlement_fields_from_vendor_row("stripe", row) == canonical(settlement)


@pytest.mark.parametrize("settlement", ROUND_TRIP_LINES, ids=_id)
def test_adyen_round_trip(settlement: SettlementLine) -> None:
    settlement = settlement._replace(processor="adyen")
    row = vendor_row_from_settlement("adyen", settlement)
    fields = settlement_fields_from_vendor_row("adyen", row)

    # The one documented difference: the id gains the adyen:<ref>:<Type> form,
    # or, for an account-level line without a PSP reference, its batch form.
    if row["Psp Reference"]:
        assert re.fullmatch(f"adyen:{settlement.settlement_id}:{row['Type']}:[a-p]{{20}}", fields.pop("settlement_id"))
    else:
        assert fields.pop("settlement_id").startswith(f"adyen:{row['Type']}:{row['Batch Number'] or '-'}:")
    expected = canonical(settlement)
    del expected["settlement_id"]
    assert fields == expected


def test_round_trip_covers_every_record_type_in_both_vendors() -> None:
    assert {settlement.record_type for settlement in ROUND_TRIP_LINES} == set(RECORD_TYPES)


# ------------------------------------------- documented types and categories --

def _adyen_net_only(journal_type: str, debit: str = "", credit: str = "", **values: str) -> dict[str, str]:
    """An account-level line as Adyen writes one: no Psp Reference, no gross side, USD net."""
    return adyen_row(type=journal_type, psp_reference="", modification_reference=f"{journal_type} line",
                     gross_currency="", gross_credit_gc="", exchange_rate="", net_currency="USD",
                     net_debit_nc=debit, net_credit_nc=credit, markup_nc="", scheme_fees_nc="",
                     interchange_nc="", **values)


def _adyen_payment_line(journal_type: str, debit: str = "", credit: str = "") -> dict[str, str]:
    """A payment-level line: gross and net sides equal, in EUR, no costs."""
    return adyen_row(type=journal_type, gross_debit_gc=debit, gross_credit_gc=credit, net_debit_nc=debit,
                     net_credit_nc=credit, markup_nc="", scheme_fees_nc="", interchange_nc="")


# Every Type on Adyen's journal-types page, with the occurrence it documents
# (Debit, Credit, or both ways), and the canonical kind and signed gross
# written down by hand: matched kinds are positive; FEE and PAYOUT count a
# debit as +, ADJUSTMENT counts a credit as +.
ADYEN_DOCUMENTED_TYPES = [
    (_adyen_payment_line("Settled", credit="10.00"), "CAPTURE", 1_000),
    (_adyen_payment_line("Refunded", debit="10.00"), "REFUND", 1_000),
    (_adyen_payment_line("SettledBulk", credit="10.00"), "CAPTURE", 1_000),
    (_adyen_payment_line("RefundedBulk", debit="10.00"), "REFUND", 1_000),
    (_adyen_payment_line("Chargeback", debit="10.00"), "CHARGEBACK", 1_000),
    (_adyen_payment_line("SecondChargeback", debit="10.00"), "ADJUSTMENT", -1_000),
    (_adyen_payment_line("ChargebackReversed", credit="10.00"), "ADJUSTMENT", 1_000),
    (_adyen_payment_line("ChargebackReversal", credit="10.00"), "ADJUSTMENT", 1_000),
    (_adyen_payment_line("RefundedReversed", credit="10.00"), "ADJUSTMENT", 1_000),
    (_adyen_payment_line("PaymentCost", debit="10.00"), "FEE", 1_000),
    (_adyen_net_only("Fee", debit="10.00"), "FEE", 1_000),
    (_adyen_net_only("MiscCosts", debit="10.00"), "FEE", 1_000),
    (_adyen_net_only("MiscCosts", credit="10.00"), "FEE", -1_000),
    (_adyen_net_only("InvoiceDeduction", debit="10.00"), "FEE", 1_000),
    (_adyen_net_only("InvoiceDeduction", credit="10.00"), "FEE", -1_000),
    (_adyen_net_only("AuthorisationSchemeFee", debit="10.00"), "FEE", 1_000),
    (_adyen_net_only("MerchantPayout", debit="10.00"), "PAYOUT", 1_000),
    (_adyen_net_only("BankInstructionReturned", credit="10.00"), "PAYOUT", -1_000),
    (_adyen_net_only("DepositCorrection", debit="10.00"), "ADJUSTMENT", -1_000),
    (_adyen_net_only("DepositCorrection", credit="10.00"), "ADJUSTMENT", 1_000),
    (_adyen_net_only("DepositCorrection", debit="5.00", credit="3.00"), "ADJUSTMENT", -200),
    (_adyen_net_only("MatchedStatement", credit="10.00"), "ADJUSTMENT", 1_000),
    (_adyen_net_only("MatchedStatement", debit="10.00"), "ADJUSTMENT", -1_000),
    (_adyen_net_only("ManualCorrected", credit="10.00"), "ADJUSTMENT", 1_000),
    (_adyen_net_only("ManualCorrected", debit="10.00"), "ADJUSTMENT", -1_000),
    (_adyen_net_only("Balancetransfer", credit="10.00"), "ADJUSTMENT", 1_000),
    (_adyen_net_only("Balancetransfer", debit="10.00"), "ADJUSTMENT", -1_000),
    (_adyen_net_only("InternalCompanyPayout", debit="10.00"), "ADJUSTMENT", -1_000),
    (_adyen_net_only("InternalCompanyPayout", credit="10.00"), "ADJUSTMENT", 1_000),
    (_adyen_net_only("EpaPaid", debit="10.00"), "ADJUSTMENT", -1_000),
    (_adyen_net_only("PaidOut", debit="10.00"), "ADJUSTMENT", -1_000),
    (_adyen_net_only("PaidOutReversed", credit="10.00"), "ADJUSTMENT", 1_000),
]


@pytest.mark.parametrize("row, record_type, gross", ADYEN_DOCUMENTED_TYPES,
                         ids=[f"{row['Type']}-{row['Net Debit (NC)'] or '0'}-{row['Net Credit (NC)'] or '0'}"
                              for row, _, _ in ADYEN_DOCUMENTED_TYPES])
def test_adyen_every_documented_type_has_a_kind_and_a_sign(row, record_type, gross) -> None:
    fields = settlement_fields_from_adyen_row(row)
    assert (fields["record_type"], fields["gross_minor"], fields["fee_minor"], fields["net_minor"]) == (
        record_type, gross, 0, gross)


def test_adyen_documented_types_are_all_tested() -> None:
    from schemas.vendors.adyen import TYPE_RECORD_TYPES

    assert {row["Type"].lower() for row, _, _ in ADYEN_DOCUMENTED_TYPES} == set(TYPE_RECORD_TYPES)


def test_adyen_type_spelling_with_spaces_is_the_same_type() -> None:
    assert settlement_fields_from_adyen_row(_adyen_payment_line("Chargeback Reversed", credit="10.00"))[
        "gross_minor"] == 1_000


def test_adyen_deposit_correction_sample_row_from_the_docs() -> None:
    # Adyen's deposit-correction page: Net Debit 78.93 EUR, no PSP reference, no batch number.
    row = dict(zip(ADYEN_COLUMNS, (
        "TestCompany,TestMerchant,,,,2012-05-10 05:37:03,CET,DepositCorrection,Deposit Correction,EUR,,,,EUR,"
        "78.93,,,,,,,,,,,,,,,").split(",")))
    fields = settlement_fields_from_adyen_row(row, 2)
    assert (fields["record_type"], fields["gross_minor"], fields["net_minor"], fields["currency"]) == (
        "ADJUSTMENT", -7_893, -7_893, "EUR")
    assert fields["booked_time"] == "2012-05-10T04:37:03.000Z"
    assert fields["processor_reference"] == "Deposit Correction"


def test_adyen_documented_sample_rows_settled_and_chargeback() -> None:
    # The two transaction rows of the settlement details report page (CET = UTC+1).
    settled, chargeback = (dict(zip(ADYEN_COLUMNS, text.split(","))) for text in (
        "TestCompany,TestMerchant,1813702551707653,3vpzf7,visa,2013-06-03 11:26:49,CET,Settled,1713702551795048,"
        "GBP,,5.00,1,GBP,,4.88,,0.04,0.01,0.07,visaclassic,,,,,,,,,",
        "TestCompany,TestMerchant,1313642467023511,324959451,visa,2013-03-26 22:37:26,CET,Chargeback,"
        "2313642467170922,EUR,349.99,,1,EUR,357.49,,7.5,,,,visaclassic,,,,,,,,,"))
    read = [settlement_fields_from_adyen_row(row) for row in (settled, chargeback)]
    assert [(f["record_type"], f["gross_minor"], f["fee_minor"], f["net_minor"], f["currency"]) for f in read] == [
        ("CAPTURE", 500, 12, 488, "GBP"), ("CHARGEBACK", 34_999, -750, 35_749, "EUR")]
    assert read[0]["booked_time"] == "2013-06-03T10:26:49.000Z"
    assert read[0]["settlement_id"].startswith("adyen:1713702551795048:Settled:")


def test_adyen_payment_lines_with_placeholder_references_are_not_re_deliveries() -> None:
    # Adyen's published sample reuses placeholder references: two different rows, two lines;
    # the same row delivered twice, one line.
    first = settlement_fields_from_adyen_row(adyen_row())
    other = settlement_fields_from_adyen_row(adyen_row(merchant_reference="order-test-2", gross_credit_gc="6.00",
                                                       net_credit_nc="5.88"))
    again = settlement_fields_from_adyen_row(adyen_row(), 99)
    assert first["settlement_id"] != other["settlement_id"]
    assert again["settlement_id"] == first["settlement_id"]
    # Optional columns (Booking Date) do not change who a line is.
    booked = settlement_fields_from_adyen_row(adyen_row(booking_date="2024-01-17 09:00:00",
                                                        booking_date_timezone="CET"))
    assert booked["settlement_id"] == first["settlement_id"]


def test_adyen_account_level_lines_of_two_batches_have_different_ids() -> None:
    first = settlement_fields_from_adyen_row(_adyen_net_only("Balancetransfer", credit="12.00", batch_number="7"), 5)
    second = settlement_fields_from_adyen_row(_adyen_net_only("Balancetransfer", credit="12.00", batch_number="8"), 5)
    same_batch_other_line = settlement_fields_from_adyen_row(
        _adyen_net_only("Balancetransfer", credit="12.00", batch_number="7"), 6)
    again = settlement_fields_from_adyen_row(_adyen_net_only("Balancetransfer", credit="12.00", batch_number="7"), 5)
    assert len({first["settlement_id"], second["settlement_id"], same_batch_other_line["settlement_id"]}) == 3
    assert again["settlement_id"] == first["settlement_id"]  # a re-delivered file is still a re-delivery
    assert first["settlement_id"].startswith("adyen:Balancetransfer:7:")


@pytest.mark.parametrize(
    "gross_currency, gross, rate, net_currency, net, commission, expected",
    [
        # iDEAL EUR 100.00 paid out as USD 108.50 after 1.50 costs: settled USD 110.00 / 1.50 / 108.50,
        # matched on EUR 100.00.
        ("EUR", "100.00", "1.10", "USD", "108.50", "1.50", ("USD", 11_000, 150, 10_850, 10_000, "EUR")),
        # INR 1000.00 paid out as USD 11.70 after 0.30: USD 12.00 / 0.30 / 11.70, matched on INR 1000.00.
        ("INR", "1000.00", "0.012", "USD", "11.70", "0.30", ("USD", 1_200, 30, 1_170, 100_000, "INR")),
        # JPY 1500 paid out as EUR 9.00 after 0.30: EUR 9.30 / 0.30 / 9.00, matched on JPY 1500.
        ("JPY", "1500", "0.0062", "EUR", "9.00", "0.30", ("EUR", 930, 30, 900, 1_500, "JPY")),
    ],
)
def test_adyen_cross_currency_rows_settle_in_the_net_currency_and_match_on_the_gross_side(
        gross_currency, gross, rate, net_currency, net, commission, expected) -> None:
    fields = settlement_fields_from_adyen_row(adyen_row(
        gross_currency=gross_currency, gross_credit_gc=gross, exchange_rate=rate, net_currency=net_currency,
        net_credit_nc=net, commission_nc=commission, markup_nc="", scheme_fees_nc="", interchange_nc=""))
    assert (fields["currency"], fields["gross_minor"], fields["fee_minor"], fields["net_minor"],
            fields["matched_minor"], fields["matched_currency"]) == expected


def test_adyen_cross_currency_account_level_rows_have_no_matched_side() -> None:
    row = _adyen_net_only("Fee", debit="1.00")
    row.update({"Gross Currency": "EUR", "Gross Debit (GC)": "0.90"})
    fields = settlement_fields_from_adyen_row(row)
    assert "matched_minor" not in fields and fields["currency"] == "USD"


@pytest.mark.parametrize(
    "category, gross, fee, net, facing, expected",
    [
        # A EUR 100.00 charge settled as USD 108.00 gross, 3.44 fee: summed in USD, matched on EUR 100.00.
        ("charge", "108.00", "3.44", "104.56", "100.00", (10_800, 344, 10_456, 10_000)),
        # Its EUR 40.00 refund, USD -43.20.
        ("refund", "-43.20", "0.00", "-43.20", "-40.00", (4_320, 0, 4_320, 4_000)),
        ("dispute", "-43.20", "15.00", "-58.20", "-40.00", (4_320, -1_500, 5_820, 4_000)),
    ],
)
def test_stripe_customer_facing_side_is_matched_when_the_currencies_differ(category, gross, fee, net, facing,
                                                                           expected) -> None:
    fields = settlement_fields_from_stripe_row(stripe_row(
        reporting_category=category, gross=gross, fee=fee, net=net, customer_facing_amount=facing,
        customer_facing_currency="eur"))
    assert (fields["currency"], fields["matched_currency"]) == ("USD", "EUR")
    assert (fields["gross_minor"], fields["fee_minor"], fields["net_minor"], fields["matched_minor"]) == expected


def test_stripe_customer_facing_side_in_the_same_currency_or_on_account_lines_is_ignored() -> None:
    same = settlement_fields_from_stripe_row(stripe_row(customer_facing_amount="100.00",
                                                        customer_facing_currency="usd"))
    fee = settlement_fields_from_stripe_row(stripe_row(reporting_category="fee", gross="-1.00", fee="0.00",
                                                       net="-1.00", customer_facing_amount="0.92",
                                                       customer_facing_currency="eur"))
    assert "matched_minor" not in same and "matched_minor" not in fee


# Every reporting_category in Stripe's documentation (reporting categories page,
# report-run API enum), with its kind and the signed canonical gross of a row
# whose Stripe gross is given, written down by hand: matched kinds positive;
# FEE and PAYOUT count money leaving the balance as +; ADJUSTMENT keeps
# Stripe's sign.
STRIPE_DOCUMENTED_CATEGORIES = [
    ("charge", "10.00", "CAPTURE", 1_000),
    ("refund", "-10.00", "REFUND", 1_000),
    ("dispute", "-10.00", "CHARGEBACK", 1_000),
    ("fee", "-10.00", "FEE", 1_000),
    ("fee", "10.00", "FEE", -1_000),  # a fee refund
    ("network_cost", "-10.00", "FEE", 1_000),
    ("tax", "-10.00", "FEE", 1_000),
    ("payout", "-10.00", "PAYOUT", 1_000),
    ("payout_reversal", "10.00", "PAYOUT", -1_000),
    ("other_adjustment", "-16.00", "ADJUSTMENT", -1_600),
    ("other_adjustment", "50.00", "ADJUSTMENT", 5_000),
    ("dispute_reversal", "10.00", "ADJUSTMENT", 1_000),
    ("refund_failure", "10.00", "ADJUSTMENT", 1_000),
    ("charge_failure", "-10.00", "ADJUSTMENT", -1_000),
    ("partial_capture_reversal", "-10.00", "ADJUSTMENT", -1_000),
    ("transfer", "-10.00", "ADJUSTMENT", -1_000),
    ("transfer_reversal", "10.00", "ADJUSTMENT", 1_000),
    ("topup", "10.00", "ADJUSTMENT", 1_000),
    ("topup_reversal", "-10.00", "ADJUSTMENT", -1_000),
    ("platform_earning", "10.00", "ADJUSTMENT", 1_000),
    ("platform_earning_refund", "-10.00", "ADJUSTMENT", -1_000),
    ("connect_collection_transfer", "10.00", "ADJUSTMENT", 1_000),
    ("connect_reserved_funds", "-10.00", "ADJUSTMENT", -1_000),
    ("risk_reserved_funds", "-10.00", "ADJUSTMENT", -1_000),
    ("unreconciled_customer_funds", "10.00", "ADJUSTMENT", 1_000),
    ("contribution", "-10.00", "ADJUSTMENT", -1_000),
    ("climate_order_purchase", "-10.00", "ADJUSTMENT", -1_000),
    ("climate_order_refund", "10.00", "ADJUSTMENT", 1_000),
    ("advance", "10.00", "ADJUSTMENT", 1_000),
    ("advance_funding", "10.00", "ADJUSTMENT", 1_000),
    ("anticipation_repayment", "-10.00", "ADJUSTMENT", -1_000),
    ("financing_paydown", "-10.00", "ADJUSTMENT", -1_000),
    ("financing_paydown_reversal", "10.00", "ADJUSTMENT", 1_000),
    ("financing_payout", "10.00", "ADJUSTMENT", 1_000),
    ("financing_payout_reversal", "-10.00", "ADJUSTMENT", -1_000),
    ("issuing_authorization_hold", "-10.00", "ADJUSTMENT", -1_000),
    ("issuing_authorization_release", "10.00", "ADJUSTMENT", 1_000),
    ("issuing_dispute", "10.00", "ADJUSTMENT", 1_000),
    ("issuing_transaction", "-10.00", "ADJUSTMENT", -1_000),
]


@pytest.mark.parametrize("category, gross, record_type, expected", STRIPE_DOCUMENTED_CATEGORIES,
                         ids=[f"{c}{g}" for c, g, _, _ in STRIPE_DOCUMENTED_CATEGORIES])
def test_stripe_every_documented_category_has_a_kind_and_a_sign(category, gross, record_type, expected) -> None:
    row = stripe_row(reporting_category=category, gross=gross, fee="0.00", net=gross)
    fields = settlement_fields_from_stripe_row(row)
    assert (fields["record_type"], fields["gross_minor"], fields["net_minor"]) == (record_type, expected, expected)
    assert not is_unknown_category(row)


def test_stripe_documented_categories_are_all_tested() -> None:
    from schemas.vendors.stripe import CATEGORY_RECORD_TYPES

    documented = {category for category, _, _, _ in STRIPE_DOCUMENTED_CATEGORIES}
    assert documented == set(CATEGORY_RECORD_TYPES) - {"adjustment"}


def test_stripe_dispute_reversal_returns_the_dispute_fee_as_a_negative_fee() -> None:
    # Stripe: a won dispute gives back the amount and the dispute fee: gross 100.00, fee -15.00, net 115.00.
    fields = settlement_fields_from_stripe_row(
        stripe_row(reporting_category="dispute_reversal", gross="100.00", fee="-15.00", net="115.00"))
    assert (fields["record_type"], fields["gross_minor"], fields["fee_minor"], fields["net_minor"]) == (
        "ADJUSTMENT", 10_000, -1_500, 11_500)


@pytest.mark.parametrize(
    "present, booked, settles",
    [
        # Only the UTC payout date (a user-picked column set): issue 10's report.
        ({"automatic_payout_effective_at_utc": "2024-03-06 00:00:00"}, "created_utc", "2024-03-06"),
        ({"automatic_payout_effective_at": "2024-03-05"}, "created_utc", "2024-03-05"),
        ({"available_on_utc": "2024-03-04 00:00:00"}, "created_utc", "2024-03-04"),
        ({"available_on": "2024-03-03"}, "created", "2024-03-03"),
    ],
)
def test_stripe_uses_whichever_documented_time_columns_are_present(present, booked, settles) -> None:
    columns = ["balance_transaction_id", booked, "currency", "gross", "fee", "net", "reporting_category",
               *present]
    row = {column: stripe_row()[column] if column in stripe_row() else "" for column in columns}
    row[booked] = "2024-03-01 10:15:30"
    row.update(present)
    fields = settlement_fields_from_stripe_row(row)
    assert (fields["settlement_date"], fields["booked_time"]) == (settles, "2024-03-01T10:15:30.000Z")


def test_adyen_settlement_ids_keep_their_documented_psp_reference_exemption() -> None:
    from schemas.vendors.adyen import psp_references_in
    from tests.card_numbers import card_number

    # Fabricated 16-digit references that pass the Luhn check, as one in ten of Adyen's do.
    psp, modification = card_number(16, "88", "7"), card_number(16, "88", "9")
    read = settlement_fields_from_adyen_row(adyen_row(psp_reference=psp, modification_reference=modification))
    assert psp_references_in("settlement_id", read["settlement_id"]) == frozenset({modification})
    assert psp_references_in("processor_reference", read["processor_reference"]) == frozenset({psp})
    # The account-level form holds no digit run at all.
    fee = settlement_fields_from_adyen_row(_adyen_net_only("Fee", debit="1.00"), 12)
    assert not any(ch.isdigit() for ch in fee["settlement_id"].split(":", 3)[3])
