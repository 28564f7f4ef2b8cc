"""Money as integer minor units plus an ISO-4217 code, never floats.

Vendor reports carry decimal major units ("12.34", "1,000"); `to_minor_units`
converts them exactly with `Decimal` using the currency's exponent.
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_INTEGER = re.compile(r"[+-]?[0-9]+")
_GROUPED_THOUSANDS = re.compile(r"[+-]?[0-9]{1,3}(,[0-9]{3})+(\.[0-9]*)?")

# ISO-4217 active codes and their minor-unit exponents (currencies that are
# not listed are rejected as unknown). Zero- and three-decimal currencies are
# listed explicitly; everything else in ISO_4217_CODES uses two.
_ZERO_DECIMAL = {
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF",
    "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF",
}
_THREE_DECIMAL = {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"}
_FOUR_DECIMAL = {"CLF", "UYW"}
_TWO_DECIMAL = {
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN",
    "BAM", "BBD", "BDT", "BGN", "BMD", "BND", "BOB", "BRL", "BSD", "BTN",
    "BWP", "BYN", "BZD", "CAD", "CDF", "CHF", "CNY", "COP", "CRC", "CUP",
    "CVE", "CZK", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD",
    "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GTQ", "GYD", "HKD", "HNL",
    "HTG", "HUF", "IDR", "ILS", "INR", "IRR", "JMD", "KES", "KGS", "KHR",
    "KPW", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "MAD", "MDL",
    "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN",
    "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "PAB", "PEN",
    "PGK", "PHP", "PKR", "PLN", "QAR", "RON", "RSD", "RUB", "SAR", "SBD",
    "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN",
    "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TOP", "TRY", "TTD", "TWD",
    "TZS", "UAH", "USD", "UYU", "UZS", "VED", "VES", "WST", "XCD", "YER",
    "ZAR", "ZMW", "ZWL",
}

CURRENCY_EXPONENTS: dict[str, int] = {
    **{code: 2 for code in _TWO_DECIMAL},
    **{code: 0 for code in _ZERO_DECIMAL},
    **{code: 3 for code in _THREE_DECIMAL},
    **{code: 4 for code in _FOUR_DECIMAL},
}


# The largest amount paybeam accepts, in minor units: 10^15 is ten trillion in a two-decimal
# currency, beyond any real payment, and 9,000 such amounts still sum within int64.
MAX_MINOR_UNITS = 10**15
# A published sum (a day's totals) is an int64, the Parquet/Avro column type; more than 9,223 maximal
# amounts in one group leave it, and such a sum is published as null (`within_int64`), never wrapped.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def within_int64(total: int) -> "int | None":
    """An exact sum as published: itself when an int64 holds it, else None (unknown, never a wrong number)."""
    return total if INT64_MIN <= total <= INT64_MAX else None


class MoneyError(ValueError):
    """A currency or amount that cannot be represented exactly."""


def normalize_currency(code: object) -> str:
    """Upper-cases a currency code and checks it is a known ISO-4217 code."""
    if not isinstance(code, str) or not code.strip():
        raise MoneyError("missing currency")
    normalized = code.strip().upper()
    if normalized not in CURRENCY_EXPONENTS:
        raise MoneyError(f"unknown currency {code.strip()!r}")
    return normalized


def currency_exponent(code: str) -> int:
    return CURRENCY_EXPONENTS[normalize_currency(code)]


def to_minor_units(amount: object, currency: str) -> int:
    """Converts a decimal major-unit amount ("12.34", Decimal, int) to minor units.

    Exact: an amount with more fractional digits than the currency has
    (e.g. "1.5" JPY, "1.0001" KWD) is an error, never rounded.
    """
    exponent = currency_exponent(currency)
    if isinstance(amount, float):
        raise MoneyError("amount given as a binary float; pass text or Decimal")
    text = str(amount).strip()
    if "," in text:
        # Only thousands separators; a decimal comma ("12,34") would be read 100x too large.
        if not _GROUPED_THOUSANDS.fullmatch(text):
            raise MoneyError(f"amount {text!r} has commas that are not thousands separators")
        text = text.replace(",", "")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise MoneyError(f"amount {str(amount)!r} is not a decimal number") from None
    if not value.is_finite():
        raise MoneyError(f"amount {text!r} is not finite")
    scaled = value.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise MoneyError(
            f"amount {text!r} has more than {exponent} decimal places for {normalize_currency(currency)}"
        )
    return int(scaled)


def to_major_units(amount_minor: int, currency: str) -> str:
    """Formats minor units as an exact decimal string in major units ("12.34")."""
    exponent = currency_exponent(currency)
    value = Decimal(amount_minor).scaleb(-exponent)
    return f"{value:.{exponent}f}"


def parse_minor_units(value: object, field: str) -> int:
    """Reads an integer minor-unit amount from text or an int; floats and out-of-range amounts are refused."""
    amount = _minor_units(value, field)
    if abs(amount) > MAX_MINOR_UNITS:
        raise MoneyError(f"{field} {amount} is out of range (at most {MAX_MINOR_UNITS:,} minor units either way)")
    return amount


def _minor_units(value: object, field: str) -> int:
    if isinstance(value, bool):
        raise MoneyError(f"{field} must be an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if _INTEGER.fullmatch(text):
            return int(text)
        if not text:
            raise MoneyError(f"{field} is missing")
        raise MoneyError(f"{field} {value!r} is not an integer number of minor units")
    if value is None:
        raise MoneyError(f"{field} is missing")
    raise MoneyError(f"{field} must be an integer number of minor units, got {type(value).__name__}")
