"""transforms/bank/flow.py in Beam (TestPipeline): BalancePayouts and MatchBankCredits give what the pure rules
give over the same lists (transforms/bank/payouts.py, matching.py), whatever order Beam hands them over in."""
from __future__ import annotations

import random
from collections import defaultdict
from datetime import date

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from schemas.records import SettlementLine
from schemas.rules import PAYOUT_RECORD_TYPE, RECORD_TYPES
from transforms.bank.flow import BalancePayouts, MatchBankCredits
from transforms.bank.matching import match_bank_credits
from transforms.bank.payouts import balance_payout

DAY_MS = 86_400_000
AS_OF = date(2026, 3, 10)
AS_OF_MILLIS = 20_522 * DAY_MS  # 2026-03-10


def _world(seed: int):
    rnd = random.Random(seed)
    lines, credits = [], []
    for number in range(40):
        payout_id = f"po_{number:08d}"
        day = rnd.randrange(1, 10)
        lines += [SettlementLine(f"s{number}-{index}", "stripe", f"r{number}-{index}", f"m{number % 3}",
                                 rnd.choice([t for t in RECORD_TYPES if t != PAYOUT_RECORD_TYPE]),
                                 amount, 0, amount, "EUR", f"2026-03-{day:02d}", (20_512 + day) * DAY_MS + index,
                                 payout_id if rnd.random() < 0.9 else None)
                  for index, amount in enumerate(rnd.choices([100, 250, 1_000], k=rnd.randrange(0, 4)))]
        if rnd.random() < 0.8:
            amount = rnd.choice([100, 250, 1_000, 2_000])
            lines.append(SettlementLine(f"p{number}", "stripe", f"p{number}", f"m{number % 3}", PAYOUT_RECORD_TYPE,
                                        amount, 0, amount, "EUR", f"2026-03-{day:02d}", (20_513 + day) * DAY_MS - 1,
                                        payout_id))
            if rnd.random() < 0.7:
                named = payout_id if rnd.random() < 0.5 else ""
                credits.append({"entry_ref": f"c{number}", "account": "NL00BANK0123456789", "credit_debit": "CRDT",
                                "amount_minor": amount if rnd.random() < 0.8 else amount - 10, "currency": "EUR",
                                "booking_date": f"2026-03-{day + 1:02d}", "value_date": None, "status": "BOOK",
                                "bank_reference": None, "end_to_end_id": named, "customer_reference": None,
                                "remittance_unstructured": None, "remittance_structured": None, "reversal": False})
    return lines, credits


def _balances(lines):
    by_payout = defaultdict(list)
    for line in lines:
        if line.payout_id:
            by_payout[(line.processor, line.payout_id)].append(line)
    return [balance_payout(processor, payout_id, sorted(group, key=lambda line: (line.booked_time, line.settlement_id)),
                           AS_OF_MILLIS) for (processor, payout_id), group in by_payout.items()]


def test_the_beam_flow_gives_the_pure_rules_answer():
    lines, credits = _world(7)
    balances = _balances(lines)
    expected_matches = match_bank_credits(balances, credits, AS_OF)
    assert len({balance.status for balance in balances}) >= 3 and len({m.status for m in expected_matches}) >= 3
    shuffled = list(lines)
    random.Random(1).shuffle(shuffled)
    with TestPipeline() as pipeline:
        as_of = pipeline | "AsOf" >> beam.Create([AS_OF_MILLIS])
        payouts = (pipeline | "Lines" >> beam.Create(shuffled), as_of) | BalancePayouts()
        entries = pipeline | "Entries" >> beam.Create(list(reversed(credits)) + [
            {**credits[0], "entry_ref": "a-debit", "credit_debit": "DBIT"}])
        matches = (payouts, entries, as_of) | MatchBankCredits()
        assert_that(payouts, equal_to(balances), label="Balances")
        assert_that(matches, equal_to(expected_matches), label="Matches")
