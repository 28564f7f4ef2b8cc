"""schemas.money: exact decimal major units <-> integer minor units (docs/DESIGN.md 3, 3.2)."""
from __future__ import annotations

from decimal import Decimal

import pytest

from schemas.money import (
    MoneyError,
    currency_exponent,
    normalize_currency,
    parse_minor_units,
    to_major_units,
    to_minor_units,
)

# ---------------------------------------------------------------- to_minor_units


@pytest.mark.parametrize(
    "amount, currency, expected",
    [
        ("12.34", "USD", 1234),
        ("1000", "JPY", 1000),  # 0 decimals
        ("1.234", "KWD", 1234),  # 3 decimals
        ("1,000.50", "USD", 100050),  # thousands separator
        ("1,000", "JPY", 1000),
        ("0.01", "USD", 1),
        ("12", "USD", 1200),
        ("12.3", "USD", 1230),
        (" 7.50 ", "EUR", 750),
        ("-12.34", "USD", -1234),
        (Decimal("12.34"), "USD", 1234),
        (5, "USD", 500),
    ],
)
def test_to_minor_units_exact(amount, currency, expected):
    result = to_minor_units(amount, currency)
    assert result == expected
    assert type(result) is int


def test_to_minor_units_large_amount_has_no_float_error():
    # 0.1 + 0.2 style errors would show up here with floats.
    assert to_minor_units("9999999999999.99", "USD") == 999999999999999


@pytest.mark.parametrize(
    "amount, currency",
    [
        ("1.5", "JPY"),
        ("1.0001", "KWD"),
        ("0.001", "USD"),
        ("12.345", "EUR"),
    ],
)
def test_to_minor_units_too_many_decimals_is_an_error_not_rounded(amount, currency):
    with pytest.raises(MoneyError, match="decimal places"):
        to_minor_units(amount, currency)


def test_trailing_zero_decimals_are_exact_and_accepted():
    assert to_minor_units("1.0", "JPY") == 1
    assert to_minor_units("1.2340", "KWD") == 1234


@pytest.mark.parametrize("amount", [12.34, 1.0, 0.5])
def test_to_minor_units_rejects_binary_float(amount):
    with pytest.raises(MoneyError, match="float"):
        to_minor_units(amount, "USD")


@pytest.mark.parametrize("amount", ["abc", "", "12.3.4", "NaN", "Infinity"])
def test_to_minor_units_rejects_non_numbers(amount):
    with pytest.raises(MoneyError):
        to_minor_units(amount, "USD")


@pytest.mark.parametrize("currency", ["XYZ", "US", "DOLLAR", "", "   ", None])
def test_unknown_or_empty_currency_raises(currency):
    with pytest.raises(MoneyError):
        to_minor_units("1.00", currency)


def test_empty_currency_message_says_missing():
    with pytest.raises(MoneyError, match="missing currency"):
        normalize_currency("")


def test_unknown_currency_message_names_the_code():
    with pytest.raises(MoneyError, match="XYZ"):
        normalize_currency("XYZ")


def test_lower_case_currency_is_normalised():
    assert normalize_currency("usd") == "USD"
    assert normalize_currency(" jpy ") == "JPY"
    assert to_minor_units("12.34", "usd") == 1234
    assert to_minor_units("1.234", "kwd") == 1234
    assert to_minor_units("1000", "jpy") == 1000


def test_currency_exponents():
    assert currency_exponent("USD") == 2
    assert currency_exponent("EUR") == 2
    assert currency_exponent("JPY") == 0
    assert currency_exponent("KWD") == 3
    assert currency_exponent("BHD") == 3


def test_money_error_is_a_value_error():
    assert issubclass(MoneyError, ValueError)


# ---------------------------------------------------------------- to_major_units


@pytest.mark.parametrize(
    "minor, currency, text",
    [
        (1234, "USD", "12.34"),
        (-1234, "USD", "-12.34"),
        (5, "USD", "0.05"),
        (-5, "USD", "-0.05"),
        (0, "USD", "0.00"),
        (1000, "JPY", "1000"),
        (-1000, "JPY", "-1000"),
        (1234, "KWD", "1.234"),
        (-1, "KWD", "-0.001"),
        (100050, "USD", "1000.50"),
    ],
)
def test_to_major_units_and_round_trip(minor, currency, text):
    assert to_major_units(minor, currency) == text
    assert to_minor_units(to_major_units(minor, currency), currency) == minor


@pytest.mark.parametrize("currency", ["USD", "JPY", "KWD", "CLF"])
@pytest.mark.parametrize("minor", [0, 1, -1, 99, -99, 100, 12345, -12345, 10**15 + 7])
def test_round_trip_many(minor, currency):
    assert to_minor_units(to_major_units(minor, currency), currency) == minor


# ---------------------------------------------------------------- parse_minor_units


@pytest.mark.parametrize(
    "value, expected",
    [
        (12, 12),
        (0, 0),
        (-3, -3),
        ("12", 12),
        ("+12", 12),
        ("-3", -3),
        (" 42 ", 42),
    ],
)
def test_parse_minor_units_accepts_integers(value, expected):
    result = parse_minor_units(value, "amount_minor")
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize("value", ["12.5", "abc", "", "   ", None, True, False, 12.0, 12.5, "1e3", "0x10"])
def test_parse_minor_units_rejects(value):
    with pytest.raises(MoneyError):
        parse_minor_units(value, "amount_minor")


def test_parse_minor_units_messages_name_the_field():
    with pytest.raises(MoneyError, match="amount_minor is missing"):
        parse_minor_units("", "amount_minor")
    with pytest.raises(MoneyError, match="amount_minor is missing"):
        parse_minor_units(None, "amount_minor")
    with pytest.raises(MoneyError, match="fee_minor .*'abc'"):
        parse_minor_units("abc", "fee_minor")
    with pytest.raises(MoneyError, match="boolean"):
        parse_minor_units(True, "gross_minor")


@pytest.mark.parametrize("value", ["+-3", "--5", "-+5", "++1", "\u00b2"])
def test_parse_minor_units_malformed_digits_raise_money_error(value):
    # Callers (transforms.validate) catch MoneyError only: any other exception
    # escapes validation and crashes the pipeline instead of dead-lettering.
    with pytest.raises(MoneyError):
        parse_minor_units(value, "amount_minor")
