"""transforms/columnar/bank_matching.py against the rule over lists (transforms/bank/matching.py): every column of
every row, on hypothesis-drawn payouts and bank entries that reach every branch (names in every searched field,
two names in one credit, payout ids shared across processors, Adyen batches, amount collisions in and out of the
window, weekends, debits, pending entries, reversals, other currencies, payouts that paid nothing out)."""
from __future__ import annotations

import random
import time
from collections import Counter
from datetime import date, timedelta
from typing import List, Optional

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.arrow import BANK_ENTRY, BANK_MATCH, PAYOUT_BALANCE
from schemas.bank.entry import BOOKED, CREDIT, DEBIT
from schemas.payouts import BankMatch, PayoutBalance
from schemas.rules import BANK_MATCH_STATUSES, PAYOUT_BALANCED
from transforms.bank.matching import MATCHED_BY_AMOUNT, MATCHED_BY_REFERENCE, BankPolicy, match_bank_credits
from transforms.bank.references import SEARCHED_FIELDS, credit_references
from transforms.columnar.bank_matching import match_bank_credits_table, reference_keys

# Payout ids: "PO_AAAA1111" shares its key with "po_AAAA1111"; "po_1" is too short for any token to name it.
_IDS = ["po_AAAA1111", "PO_AAAA1111", "po_BBBB2222", "pyt_CCCC3333", "batch-1001", "batch-7", "po_1"]
# How a credit's text spells a payout id (an Adyen batch in its own forms, Arabic-Indic digits included).
_SPELLINGS = {"batch-1001": ["BATCH 1001", "Batch:01001", "batch-1001", "ADYEN BATCH #1001 X",
                            "BATCH \u0661\u0660\u0660\u0661"],
              "batch-7": ["BATCH 7", "batch_7", "Batch.7"]}
_NOISE = ["", "STRIPE PAYOUT", "ref", "Zahlung f\u00fcr", "BATCHED 12", "REF-000123456", "\u00e9po_BBBB2222"]
_DAYS = [(date(2026, 2, 26) + timedelta(days=offset)).isoformat() for offset in range(16)]  # Thu 26 Feb .. 13 Mar


def _spell(draw, payout_id: str) -> str:
    forms = _SPELLINGS.get(payout_id, [payout_id, payout_id.upper(), payout_id.lower(), f"x/{payout_id}/y"])
    return draw(st.sampled_from(forms))


@st.composite
def payout_rows(draw) -> List[dict]:
    rows = []
    for _ in range(draw(st.integers(0, 6))):
        payout_minor = draw(st.sampled_from([1_000] * 4 + [500, 2_000, 0, -500, None]))  # collisions, mostly
        payout_date = draw(st.sampled_from(_DAYS[2:10])) if payout_minor is not None else None
        if draw(st.integers(0, 9)) == 0:
            payout_date = None  # an amount without a day: not paid either
        rows.append(PayoutBalance(
            processor=draw(st.sampled_from(["stripe", "adyen"])), payout_id=draw(st.sampled_from(_IDS)),
            merchant_id=draw(st.sampled_from(["m1", "m2", None])), currency=draw(st.sampled_from(["EUR"] * 4 + ["USD", None])),
            payout_minor=payout_minor,
            lines_minor=payout_minor, difference_minor=0, line_count=1, payout_line_count=1,
            payout_date=payout_date, status=PAYOUT_BALANCED)._asdict())
    return rows


@st.composite
def entry_rows(draw) -> List[dict]:
    rows = []
    for index in range(draw(st.integers(0, 10))):
        texts = {name: None for name in SEARCHED_FIELDS}
        for payout_id in draw(st.lists(st.sampled_from(_IDS), max_size=2)):
            name = draw(st.sampled_from(SEARCHED_FIELDS))
            texts[name] = " ".join(filter(None, [texts[name], _spell(draw, payout_id)]))
        for name in draw(st.lists(st.sampled_from(SEARCHED_FIELDS), max_size=2)):
            texts[name] = " ".join(filter(None, [texts[name], draw(st.sampled_from(_NOISE))]))
        booking_date = draw(st.sampled_from(_DAYS))
        rows.append({
            "statement_format": "camt053", "statement_id": "s1",
            "account": draw(st.sampled_from(["NL00BANK0123456789", "DE00BANK0000000001"])), "account_currency": "EUR",
            "entry_ref": draw(st.sampled_from([f"e{index:02d}"] * 5 + ["dup"])),
            "status": draw(st.sampled_from([BOOKED] * 6 + ["PDNG", "INFO", None])),
            "credit_debit": draw(st.sampled_from([CREDIT] * 5 + [DEBIT])),
            "amount_minor": draw(st.sampled_from([1_000] * 4 + [500, 2_000, 990])),
            "currency": draw(st.sampled_from(["EUR"] * 5 + ["USD", None])), "booking_date": booking_date,
            "value_date": draw(st.sampled_from([booking_date, booking_date, None, "", *_DAYS])),
            **texts, "bank_transaction_code": "PMNT/RCDT/ESCT",
            "reversal": draw(st.sampled_from([False] * 6 + [True, None])),
            "original_amount_minor": None, "original_currency": None})
    return rows


def _tables(payouts: List[dict], entries: List[dict]):
    return pa.Table.from_pylist(payouts, PAYOUT_BALANCE), pa.Table.from_pylist(entries, BANK_ENTRY)


def _reference(payouts: pa.Table, entries: pa.Table, as_of: date, policy: BankPolicy) -> List[BankMatch]:
    """The rule over lists, on the records the tables hold (an entry as its row's dict, as the flow hands it)."""
    return match_bank_credits([PayoutBalance(**row) for row in payouts.to_pylist()], entries.to_pylist(), as_of,
                              policy)


def _order_key(row: BankMatch) -> tuple:
    """The documented order: payout rows by (processor, payout_id), then credit rows by entry_ref."""
    if row.payout_id is not None:
        return (0, row.processor, row.payout_id, "")
    return (1, "", "", row.entry_ref)


def _assert_equal_to_the_rule(payouts: pa.Table, entries: pa.Table, as_of: date,
                              policy: BankPolicy = BankPolicy()) -> List[BankMatch]:
    table = match_bank_credits_table(payouts, entries, as_of, policy)
    assert table.schema == BANK_MATCH
    rows = [BankMatch(**row) for row in table.to_pylist()]
    expected = _reference(payouts, entries, as_of, policy)
    assert Counter(rows) == Counter(expected)
    keys = [_order_key(row) for row in rows]
    assert keys == sorted(keys)
    return rows


@settings(max_examples=1000, deadline=None)
@given(payout_rows(), entry_rows(), st.integers(0, 20), st.integers(0, 4), st.integers(0, 4))
def test_the_columnar_bank_matches_equal_the_rule_on_every_column_of_every_row(payouts, entries, as_of_day,
                                                                               sla_days, grace_days):
    policy = BankPolicy(bank_sla_business_days=sla_days, credit_grace=timedelta(days=grace_days))
    _assert_equal_to_the_rule(*_tables(payouts, entries), date(2026, 3, 1) + timedelta(days=as_of_day), policy)


# Pieces of reference text where Python's Unicode-aware reading and a byte-wise one could part.
_PIECES = ["BATCH", "batch", "Batch", "bAtCh", " ", ":", "-", "_", "#", ".", "0", "7", "1001", "123456789012345",
           "\u0661", "\u00e9", "\u212a", "\u00a0", "\x1c", "\t", "po_AAAA1111", "x", "\u00df"]
_TEXT = st.lists(st.sampled_from(_PIECES), max_size=12).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.fixed_dictionaries({name: st.none() | _TEXT | st.text(max_size=20) for name in SEARCHED_FIELDS}),
                max_size=8))
def test_the_reference_keys_of_a_credit_are_credit_references_exactly(fields):
    credits = pa.Table.from_pylist(fields, pa.schema([(name, pa.string()) for name in SEARCHED_FIELDS]))
    rows, keys = reference_keys(credits)
    found = [set() for _ in fields]
    for row, key in zip(rows.tolist(), keys.to_pylist()):
        found[row].add(key)
    assert found == [set(credit_references(entry)) for entry in fields]


def _payout(payout_id: str, amount: Optional[int], day: Optional[str] = "2026-03-02", currency: str = "EUR") -> dict:
    return PayoutBalance(processor="stripe", payout_id=payout_id, merchant_id="m1", currency=currency,
                         payout_minor=amount, lines_minor=amount, difference_minor=0, line_count=1,
                         payout_line_count=1, payout_date=day, status=PAYOUT_BALANCED)._asdict()


def _entry(ref: str, amount: int, day: str = "2026-03-03", text: Optional[str] = None, currency: str = "EUR",
           credit_debit: str = CREDIT, status: str = BOOKED, reversal: bool = False) -> dict:
    return {"statement_format": "camt053", "statement_id": "s1", "account": "NL00BANK0123456789",
            "account_currency": currency, "entry_ref": ref, "status": status, "credit_debit": credit_debit,
            "amount_minor": amount, "currency": currency, "booking_date": day, "value_date": day,
            "bank_reference": None, "end_to_end_id": None, "customer_reference": None,
            "remittance_unstructured": text, "remittance_structured": None, "bank_transaction_code": None,
            "reversal": reversal, "original_amount_minor": None, "original_currency": None}


# Fixed worlds that between them reach every status and both kinds of match.
_WORLDS = [
    ([_payout("po_AAAA1111", 1_000), _payout("po_BBBB2222", 2_000)],
     [_entry("received", 1_000, text="STRIPE PO_AAAA1111"), _entry("differs", 1_990, text="payout po_BBBB2222")]),
    ([_payout("po_AAAA1111", 1_000)],
     [_entry("by-amount", 1_000, day="2026-03-05"), _entry("other-currency", 1_000, currency="USD"),
      _entry("too-late", 1_000, day="2026-03-06"), _entry("debit", 1_000, credit_debit=DEBIT),
      _entry("reversal", 1_000, reversal=True), _entry("pending", 1_000, status="PDNG"),
      _entry("old", 700, day="2026-02-20")]),
    ([_payout("po_AAAA1111", 1_000), _payout("po_BBBB2222", 1_000)], [_entry("c1", 1_000)]),
    ([_payout("po_AAAA1111", 500), _payout("po_BBBB2222", 500)], [_entry("c1", 1_000, text="po_AAAA1111 po_BBBB2222")]),
    ([_payout("po_AAAA1111", 1_000, day="2026-02-20"), _payout("po_CCCC3333", 1_000, day="2026-03-03"),
      _payout("batch-1001", 800), _payout("po_DDDD4444", 0), _payout("po_EEEE5555", None, day=None)],
     [_entry("adyen", 800, text="ADYEN BATCH 1001")]),
]


def test_every_bank_match_status_and_both_kinds_of_match_occur_in_the_fixed_worlds():
    rows = [row for payouts, entries in _WORLDS
            for row in _assert_equal_to_the_rule(*_tables(payouts, entries), date(2026, 3, 4))]
    assert {row.status for row in rows} == set(BANK_MATCH_STATUSES)
    assert {row.matched_by for row in rows} == {MATCHED_BY_REFERENCE, MATCHED_BY_AMOUNT, None}


def test_no_payouts_and_no_entries_is_an_empty_bank_match_table():
    table = match_bank_credits_table(PAYOUT_BALANCE.empty_table(), BANK_ENTRY.empty_table(), date(2026, 3, 4))
    assert table.schema == BANK_MATCH and table.num_rows == 0
    only_debits = pa.Table.from_pylist([_entry("debit", 1_000, credit_debit=DEBIT)], BANK_ENTRY)
    unpaid = pa.Table.from_pylist([_payout("po_AAAA1111", 0)], PAYOUT_BALANCE)
    table = match_bank_credits_table(unpaid, only_debits, date(2026, 3, 4))
    assert table.schema == BANK_MATCH and table.num_rows == 0


def _large_world(payout_count: int, credit_count: int, seed: int = 21):
    """Payouts a day apart over a month, most carried by a credit naming them or of their amount."""
    rnd = random.Random(seed)
    days = [(date(2026, 3, 2) + timedelta(days=offset)).isoformat() for offset in range(30)]
    payouts = [_payout(f"po_{index:08d}X", rnd.randrange(1, 2_000) * 100, rnd.choice(days),
                       rnd.choice(["EUR", "EUR", "USD"])) for index in range(payout_count)]
    entries = []
    for index in range(credit_count):
        payout = payouts[rnd.randrange(payout_count)]
        named = rnd.random() < 0.5
        day = (date.fromisoformat(payout["payout_date"]) + timedelta(days=rnd.randrange(-1, 5))).isoformat()
        text = (f"STRIPE PAYOUT {payout['payout_id']}" if named and rnd.random() < 0.8
                else f"ADYEN BATCH {rnd.randrange(10_000)}" if named else f"customer transfer {index}")
        entries.append(_entry(f"e{index:07d}", payout["payout_minor"] + rnd.choice([0, 0, 0, -5]), day, text,
                              payout["currency"]))
    return pa.Table.from_pylist(payouts, PAYOUT_BALANCE), pa.Table.from_pylist(entries, BANK_ENTRY)


def test_a_large_run_equals_the_rule():
    payouts, entries = _large_world(20_000, 50_000)
    started = time.perf_counter()
    table = match_bank_credits_table(payouts, entries, date(2026, 4, 10))
    elapsed = time.perf_counter() - started
    assert Counter(BankMatch(**row) for row in table.to_pylist()) == Counter(
        _reference(payouts, entries, date(2026, 4, 10), BankPolicy()))
    assert elapsed < 10, f"the columnar bank matcher took {elapsed:.1f} s for 20k payouts and 50k credits"
