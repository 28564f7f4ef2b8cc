"""Test card numbers, built at run time: never a literal card number in a fixture.

`card_number()` is the public test number 4111 1111 1111 1111 (prefix 4, ones,
and the Luhn check digit computed here); other lengths and prefixes come from
the same helper, e.g. the non-issued prefix 999 for numbers no network uses.
"""
from __future__ import annotations

from schemas.pan import luhn_valid


def with_check_digit(body: str) -> str:
    """`body` and the one digit that makes it pass the Luhn check."""
    return next(body + digit for digit in "0123456789" if luhn_valid(body + digit))


def without_check_digit(body: str) -> str:
    """`body` and a last digit that makes it fail the Luhn check."""
    return next(body + digit for digit in "0123456789" if not luhn_valid(body + digit))


def card_number(length: int = 16, prefix: str = "4", filler: str = "1") -> str:
    """A Luhn-valid test number: `prefix`, `filler` digits, the check digit (default: the public Visa test number)."""
    return with_check_digit((prefix + filler * length)[: length - 1])


def grouped(number: str, separator: str = " ", size: int = 4) -> str:
    """A number as people write it: groups of `size` digits joined by `separator`."""
    return separator.join(number[start:start + size] for start in range(0, len(number), size))


def digit_forms(number: str) -> list:
    """Every way the number's digits may appear in an output: contiguous, grouped by 4 with spaces or dashes."""
    return [number, grouped(number, " "), grouped(number, "-")]
