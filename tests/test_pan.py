"""schemas.pan: card numbers in text are found and masked (first 6 / last 4), nothing else is touched."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.pan import find_pan_spans, luhn_valid, mask_pans, may_hold_pan
from tests.card_numbers import card_number, grouped, with_check_digit, without_check_digit

NO_DIGITS = st.text(st.characters(blacklist_characters="0123456789", blacklist_categories=("Cs",)), max_size=30)
BODIES = st.integers(12, 18).flatmap(lambda n: st.text("0123456789", min_size=n, max_size=n))
SEPARATORS = st.sampled_from(["", "", " ", "-"])
# Every property below runs with deadline=None: no timed assertions, the machine is shared.


@st.composite
def separated(draw, digits: str) -> str:
    """`digits` with a random single separator (or none) in each gap."""
    return digits[0] + "".join(draw(SEPARATORS) + digit for digit in digits[1:])


def test_luhn_check():
    assert luhn_valid(card_number())
    assert luhn_valid(card_number(15, "37", "8"))
    assert not luhn_valid(card_number()[:-1] + str((int(card_number()[-1]) + 1) % 10))
    assert luhn_valid("0") and not luhn_valid("1")


def test_the_mask_keeps_the_first_six_and_last_four_digits_and_the_shape():
    pan = card_number()
    assert mask_pans(f"card {pan}.") == (f"card {pan[:6]}{'*' * 6}{pan[-4:]}.", 1)
    assert mask_pans(grouped(pan, "-")) == (f"{pan[:4]}-{pan[4:6]}**-****-{pan[-4:]}", 1)


@settings(max_examples=300, deadline=None)
@given(body=BODIES, data=st.data(), before=NO_DIGITS, after=NO_DIGITS)
def test_every_luhn_valid_run_of_13_to_19_digits_is_masked(body, data, before, after):
    pan = data.draw(separated(with_check_digit(body)))
    text = before + pan + after
    masked, count = mask_pans(text)
    assert find_pan_spans(text) == [(len(before), len(before) + len(pan))]
    assert count == 1
    assert len(masked) == len(text)
    digits = [char for char in masked[len(before):len(before) + len(pan)] if char != " " and char != "-"]
    assert "".join(digits[:6]) == with_check_digit(body)[:6]
    assert "".join(digits[-4:]) == with_check_digit(body)[-4:]
    assert set(digits[6:-4]) == {"*"}


@settings(max_examples=300, deadline=None)
@given(body=BODIES, before=NO_DIGITS, after=NO_DIGITS)
def test_runs_that_fail_luhn_are_untouched(body, before, after):
    text = before + without_check_digit(body) + after
    assert mask_pans(text) == (text, 0)


@settings(max_examples=300, deadline=None)
@given(digits=st.one_of(st.text("0123456789", min_size=1, max_size=12), st.text("0123456789", min_size=20,
                                                                                   max_size=40)),
       before=NO_DIGITS, after=NO_DIGITS)
def test_contiguous_runs_of_up_to_12_or_20_and_more_digits_are_untouched(digits, before, after):
    text = before + digits + after
    assert mask_pans(text) == (text, 0)


MIXED = st.lists(st.sampled_from(list("0123456789") * 4 + [" ", "-", "  ", "--", "x", ",", "*", "\n"]),
                 max_size=120).map("".join)


@settings(max_examples=500, deadline=None)
@given(text=MIXED)
def test_masked_text_holds_no_pan_and_masking_is_idempotent(text):
    masked, count = mask_pans(text)
    assert find_pan_spans(masked) == []
    assert mask_pans(masked) == (masked, 0)
    assert len(masked) == len(text)
    assert (count == 0) == (masked == text)


@settings(max_examples=200, deadline=None)
@given(text=MIXED, pan=st.integers(12, 18).flatmap(lambda n: st.text("0123456789", min_size=n, max_size=n)))
def test_pans_next_to_other_numbers_are_still_masked(text, pan):
    """A PAN inside a longer run of grouped numbers ("qty 2 4111...", "... 1111 12/29") is a window of it."""
    number = with_check_digit(pan)
    masked, _ = mask_pans(f"{text} {number} {text}")
    assert number not in masked


def test_kept_identifiers_are_left_as_they_are():
    reference = card_number(16, "88", "3")  # shaped like an Adyen PSP reference, Luhn-valid
    pan = card_number()
    masked, count = mask_pans(f"{reference},{pan}", keep=frozenset({reference}))
    assert masked == f"{reference},{pan[:6]}******{pan[-4:]}" and count == 1


def test_the_precheck_is_exact_about_what_it_rules_out():
    assert not may_hold_pan("evt-123456789012 m_1 2026-01-05T10:11:12Z 1000")
    assert may_hold_pan("1234 5678 9012 3")
    assert mask_pans("") == ("", 0)
