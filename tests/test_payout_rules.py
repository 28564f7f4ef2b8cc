"""The pure rules of three-way reconciliation (issue 21): a payout against its lines (transforms/bank/payouts.py),
the references a bank credit names (references.py) and payouts against bank credits (matching.py)."""
from __future__ import annotations

import random
from collections import Counter
from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.payouts import PayoutBalance
from schemas.records import SettlementLine
from schemas.rules import (
    AMBIGUOUS_BANK_MATCH,
    LINES_WITHOUT_PAYOUT,
    PAYOUT_AMOUNT_DIFFERS,
    PAYOUT_BALANCED,
    PAYOUT_LINES_DIFFER,
    PAYOUT_NOT_RECEIVED,
    PAYOUT_RECEIVED,
    PAYOUT_WITHOUT_LINES,
    PENDING,
    UNEXPECTED_BANK_CREDIT,
)
from transforms.bank.matching import (
    MATCHED_BY_AMOUNT,
    MATCHED_BY_REFERENCE,
    BankPolicy,
    add_business_days,
    match_bank_credits,
)
from transforms.bank.payouts import PayoutPolicy, balance_payout
from transforms.bank.references import credit_references, references_in

DAY_MS = 86_400_000


def line(record_type: str, net: int, currency: str = "EUR", booked_day: int = 0, payout_id: str = "po_AAAA1111",
         gross: int = None) -> SettlementLine:
    return SettlementLine(settlement_id=f"s{random.random()}", processor="stripe", processor_reference="r",
                          merchant_id="m1", record_type=record_type, gross_minor=net if gross is None else gross,
                          fee_minor=0, net_minor=net, currency=currency, settlement_date="2026-03-02",
                          booked_time=booked_day * DAY_MS, payout_id=payout_id)


def test_a_payout_balances_when_its_lines_balance_movements_add_up_to_it():
    lines = [line("CAPTURE", 10_000), line("CAPTURE", 2_500), line("REFUND", 1_000), line("FEE", 300),
             line("ADJUSTMENT", 50), line("PAYOUT", 11_250)]
    balance = balance_payout("stripe", "po_AAAA1111", lines, as_of_millis=0)
    assert (balance.status, balance.payout_minor, balance.lines_minor, balance.difference_minor) == (
        PAYOUT_BALANCED, 11_250, 11_250, 0)
    assert (balance.line_count, balance.payout_line_count, balance.payout_date) == (5, 1, "2026-03-02")


def test_a_payout_whose_lines_differ_carries_the_difference():
    balance = balance_payout("stripe", "p", [line("CAPTURE", 10_000), line("PAYOUT", 9_990)], 0)
    assert (balance.status, balance.difference_minor) == (PAYOUT_LINES_DIFFER, -10)


def test_a_returned_payout_counts_against_it():
    balance = balance_payout("stripe", "p", [line("CAPTURE", 500), line("PAYOUT", 500), line("PAYOUT", -500)], 0)
    assert (balance.status, balance.payout_minor, balance.difference_minor) == (PAYOUT_LINES_DIFFER, 0, -500)


def test_lines_in_another_currency_make_the_payout_differ_without_a_difference():
    balance = balance_payout("stripe", "p", [line("CAPTURE", 500, "USD"), line("PAYOUT", 500)], 0)
    assert (balance.status, balance.currency, balance.lines_minor, balance.difference_minor) == (
        PAYOUT_LINES_DIFFER, "EUR", None, None)


def test_a_payout_line_alone_and_lines_alone():
    assert balance_payout("stripe", "p", [line("PAYOUT", 700)], 0).status == PAYOUT_WITHOUT_LINES
    lines = [line("CAPTURE", 500, booked_day=10), line("CAPTURE", 500, booked_day=12)]
    policy = PayoutPolicy(payout_grace=timedelta(days=1))
    assert balance_payout("stripe", "p", lines, 13 * DAY_MS - 1, policy).status == PENDING
    late = balance_payout("stripe", "p", lines, 13 * DAY_MS, policy)
    assert (late.status, late.payout_minor, late.lines_minor) == (LINES_WITHOUT_PAYOUT, None, 1_000)


def test_references_are_tokens_of_every_searched_field_and_adyen_batches():
    assert references_in("STRIPE PAYOUT PO_1ABCDEF ref") == {"STRIPE", "PAYOUT", "PO_1ABCDEF"}
    assert references_in("Adyen BV Batch: 0123 MerchantX") >= {"BATCH-123"}
    assert references_in("ADYEN BATCH 4567") >= {"BATCH-4567"} and references_in("batch-4567") >= {"BATCH-4567"}
    assert references_in(None) == frozenset() and references_in("ab cd") == frozenset()
    entry = {"end_to_end_id": "po_AAAA1111", "bank_reference": None, "remittance_unstructured": "x wpo_77777777"}
    assert credit_references(entry) == {"PO_AAAA1111", "WPO_77777777"}


def test_add_business_days_skips_weekends():
    friday = date(2026, 3, 6)
    assert add_business_days(friday, 1) == date(2026, 3, 9)
    assert add_business_days(friday, 3) == date(2026, 3, 11)
    assert add_business_days(date(2026, 3, 7), 0) == date(2026, 3, 9)  # a Saturday counts from Monday


def payout(payout_id: str, amount: int, day: str = "2026-03-02", currency: str = "EUR") -> PayoutBalance:
    return PayoutBalance(processor="stripe", payout_id=payout_id, merchant_id="m1", currency=currency,
                         payout_minor=amount, lines_minor=amount, difference_minor=0, line_count=1,
                         payout_line_count=1, payout_date=day, status=PAYOUT_BALANCED)


def credit(ref: str, amount: int, day: str = "2026-03-03", text: str = "", currency: str = "EUR",
           credit_debit: str = "CRDT", reversal: bool = False) -> dict:
    return {"entry_ref": ref, "account": "NL00BANK0123456789", "credit_debit": credit_debit, "amount_minor": amount,
            "currency": currency, "booking_date": day, "value_date": day, "bank_reference": None,
            "end_to_end_id": None, "customer_reference": None, "remittance_unstructured": text,
            "remittance_structured": None, "reversal": reversal}


AS_OF = date(2026, 3, 4)


def statuses(rows) -> dict:
    return {(row.payout_id, row.entry_ref): (row.status, row.matched_by, row.difference_minor) for row in rows}


def test_a_credit_naming_its_payout_is_received_or_differs():
    rows = match_bank_credits([payout("po_AAAA1111", 1_000), payout("po_BBBB2222", 2_000)],
                              [credit("c1", 1_000, text="STRIPE PO_AAAA1111"),
                               credit("c2", 1_990, text="payout po_BBBB2222")], AS_OF)
    assert statuses(rows) == {("po_AAAA1111", "c1"): (PAYOUT_RECEIVED, MATCHED_BY_REFERENCE, 0),
                              ("po_BBBB2222", "c2"): (PAYOUT_AMOUNT_DIFFERS, MATCHED_BY_REFERENCE, -10)}


def test_a_reference_wins_over_an_amount_and_an_unnamed_credit_of_the_same_amount_is_unexpected_later():
    rows = match_bank_credits([payout("po_AAAA1111", 1_000)],
                              [credit("named", 990, text="po_AAAA1111"), credit("same-amount", 1_000)],
                              date(2026, 3, 10), BankPolicy(credit_grace=timedelta(days=3)))
    assert statuses(rows) == {("po_AAAA1111", "named"): (PAYOUT_AMOUNT_DIFFERS, MATCHED_BY_REFERENCE, -10),
                              (None, "same-amount"): (UNEXPECTED_BANK_CREDIT, None, None)}


def test_without_a_reference_one_credit_of_the_amount_in_the_window_is_received():
    rows = match_bank_credits([payout("po_AAAA1111", 1_000)],
                              [credit("c1", 1_000, day="2026-03-05"), credit("other-currency", 1_000, currency="USD"),
                               credit("too-late", 1_000, day="2026-03-06"), credit("debit", 1_000, credit_debit="DBIT"),
                               credit("reversal", 1_000, reversal=True),
                               {**credit("pending", 1_000), "status": "PDNG"}], AS_OF)
    assert statuses(rows) == {("po_AAAA1111", "c1"): (PAYOUT_RECEIVED, MATCHED_BY_AMOUNT, 0),
                              (None, "other-currency"): (PENDING, None, None),
                              (None, "too-late"): (PENDING, None, None)}


def test_two_candidates_are_never_guessed():
    two_credits = match_bank_credits([payout("po_AAAA1111", 1_000)], [credit("c1", 1_000), credit("c2", 1_000)],
                                     AS_OF)
    assert sorted(row.status for row in two_credits) == [AMBIGUOUS_BANK_MATCH] * 3
    two_payouts = match_bank_credits([payout("po_AAAA1111", 1_000), payout("po_BBBB2222", 1_000)],
                                     [credit("c1", 1_000)], AS_OF)
    assert sorted(row.status for row in two_payouts) == [AMBIGUOUS_BANK_MATCH] * 3
    named_twice = match_bank_credits([payout("po_AAAA1111", 1_000)],
                                     [credit("c1", 1_000, text="po_AAAA1111"), credit("c2", 1_000, text="po_AAAA1111")],
                                     AS_OF)
    assert sorted(row.status for row in named_twice) == [AMBIGUOUS_BANK_MATCH] * 3
    one_names_two = match_bank_credits([payout("po_AAAA1111", 500), payout("po_BBBB2222", 500)],
                                       [credit("c1", 1_000, text="po_AAAA1111 po_BBBB2222")], AS_OF)
    assert sorted(row.status for row in one_names_two) == [AMBIGUOUS_BANK_MATCH] * 3


def test_a_payout_waits_for_its_bank_sla_in_business_days():
    friday = payout("po_AAAA1111", 1_000, day="2026-03-06")
    policy = BankPolicy(bank_sla_business_days=3)
    assert [row.status for row in match_bank_credits([friday], [], date(2026, 3, 11), policy)] == [PENDING]
    assert [row.status for row in match_bank_credits([friday], [], date(2026, 3, 12), policy)] == [PAYOUT_NOT_RECEIVED]


def test_payouts_that_paid_nothing_out_expect_no_credit():
    nothing = payout("po_AAAA1111", 0)
    without_line = payout("po_BBBB2222", 100)._replace(payout_minor=None, payout_date=None)
    assert match_bank_credits([nothing, without_line], [], AS_OF) == []


_IDS = [f"po_{letter * 8}" for letter in "ABCDEF"]


@st.composite
def bank_worlds(draw):
    payouts = [payout(payout_id, draw(st.sampled_from([500, 1_000, 2_000])),
                      day=f"2026-03-0{draw(st.integers(1, 6))}", currency=draw(st.sampled_from(["EUR", "USD"])))
               for payout_id in draw(st.lists(st.sampled_from(_IDS), unique=True, max_size=5))]
    credits = []
    for index in range(draw(st.integers(0, 6))):
        named = draw(st.lists(st.sampled_from(_IDS), max_size=2))
        credits.append(credit(f"c{index}", draw(st.sampled_from([500, 1_000, 2_000, 990])),
                              day=f"2026-03-0{draw(st.integers(1, 9))}", text=" ".join(named),
                              currency=draw(st.sampled_from(["EUR", "USD"])),
                              credit_debit=draw(st.sampled_from(["CRDT", "CRDT", "CRDT", "DBIT"]))))
    return payouts, credits, date(2026, 3, draw(st.integers(1, 20)))


@settings(max_examples=300, deadline=None)
@given(bank_worlds(), st.randoms(use_true_random=False))
def test_every_payout_and_credit_is_in_exactly_one_row_and_order_does_not_matter(world, rnd):
    payouts, credits, as_of = world
    rows = match_bank_credits(payouts, credits, as_of)
    assert Counter(row.payout_id for row in rows if row.payout_id) == Counter(p.payout_id for p in payouts)
    matchable = [c["entry_ref"] for c in credits if c["credit_debit"] == "CRDT"]
    assert Counter(row.entry_ref for row in rows if row.entry_ref) == Counter(matchable)
    for row in rows:
        if row.status == PAYOUT_RECEIVED:
            assert (row.credit_minor, row.credit_currency) == (row.payout_minor, row.payout_currency)
        if row.payout_id and row.entry_ref:
            assert row.status in (PAYOUT_RECEIVED, PAYOUT_AMOUNT_DIFFERS)
    shuffled_payouts, shuffled_credits = list(payouts), list(credits)
    rnd.shuffle(shuffled_payouts)
    rnd.shuffle(shuffled_credits)
    assert Counter(match_bank_credits(shuffled_payouts, shuffled_credits, as_of)) == Counter(rows)
