"""Three-way reconciliation in Beam, per element (issue 21, docs/DESIGN.md 3.8): the reference flow.

    settlement lines ─► with a payout id, by (processor, payout id) ─► BalancePayouts ─► PayoutBalances
    PayoutBalances + bank entries (schemas/bank) ─► all in one group ─► MatchBankCredits ─► BankMatches

A payout's lines meet under its key, and balance_payout judges them. Bank matching is one decision over
every payout and credit (a credit may name any payout, and an amount candidate is only unambiguous when
no other payout wants it), so its reference form takes them all in one group, as `match_bank_credits`
does over lists: payouts and credits are few (about one per merchant, currency and day), not one per
payment.
"""
from __future__ import annotations

from datetime import date
from typing import Dict, Iterable, List, Tuple

import apache_beam as beam

from schemas.payouts import BankMatch, PayoutBalance
from schemas.records import SettlementLine
from transforms.bank.matching import DEFAULT_BANK_POLICY, BankPolicy, is_matchable_credit, match_bank_credits
from transforms.bank.payouts import DEFAULT_PAYOUT_POLICY, PayoutPolicy, balance_payout

_PAYOUTS, _CREDITS = "payouts", "credits"
_ONE_GROUP = None


class BalancePayouts(beam.PTransform):
    """Settlement lines -> one PayoutBalance per (processor, payout id) of the lines that carry one."""

    def __init__(self, as_of_millis: int, policy: PayoutPolicy = DEFAULT_PAYOUT_POLICY):
        super().__init__()
        self._as_of_millis, self._policy = as_of_millis, policy

    def expand(self, lines):
        as_of_millis, policy = self._as_of_millis, self._policy
        return (lines
                | "WithPayout" >> beam.Filter(lambda line: bool(line.payout_id))
                | "ByPayout" >> beam.Map(lambda line: ((line.processor, line.payout_id), line)).with_output_types(
                    Tuple[Tuple[str, str], SettlementLine])
                | "Group" >> beam.GroupByKey()
                | "Balance" >> beam.MapTuple(
                    lambda key, payout_lines: balance_payout(key[0], key[1], _in_order(payout_lines), as_of_millis,
                                                             policy)).with_output_types(PayoutBalance))


class MatchBankCredits(beam.PTransform):
    """(PayoutBalances, bank entry field mappings) -> BankMatch rows (matching.py's rule)."""

    def __init__(self, as_of: date, policy: BankPolicy = DEFAULT_BANK_POLICY):
        super().__init__()
        self._as_of, self._policy = as_of, policy

    def expand(self, inputs):
        payouts, entries = inputs
        as_of, policy = self._as_of, self._policy
        credits = entries | "Credits" >> beam.Filter(is_matchable_credit)
        return ({_PAYOUTS: payouts | "PayoutsInOneGroup" >> beam.Map(lambda payout: (_ONE_GROUP, payout)),
                 _CREDITS: credits | "CreditsInOneGroup" >> beam.Map(lambda credit: (_ONE_GROUP, credit))}
                | "Together" >> beam.CoGroupByKey()
                | "Match" >> beam.FlatMapTuple(
                    lambda _, grouped: _match(grouped, as_of, policy)).with_output_types(BankMatch))


def _match(grouped: Dict[str, Iterable], as_of: date, policy: BankPolicy) -> List[BankMatch]:
    # Sorted first: the rule's answer does not depend on input order, and sorted inputs make it plain.
    payouts = sorted(grouped[_PAYOUTS], key=lambda payout: (payout.processor, payout.payout_id))
    credits = sorted(grouped[_CREDITS], key=lambda credit: str(credit.get("entry_ref")))
    return match_bank_credits(payouts, credits, as_of, policy)


def _in_order(lines: Iterable[SettlementLine]) -> List[SettlementLine]:
    """A payout's lines in a fixed order, whatever order the shuffle gave them (its first line names it)."""
    return sorted(lines, key=lambda line: (line.booked_time, line.settlement_id))
