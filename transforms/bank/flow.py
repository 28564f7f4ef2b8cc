"""Three-way reconciliation in Beam, per element (issue 21, docs/DESIGN.md 3.8): the reference flow.

    bank statement records ─► BankIntake: judged (dead letters), first copy of each entry ─► entries ─┐
    unique settlement lines with a payout id ─► by (processor, payout id) ─► BalancePayouts ─► payouts ┤
                                                              as_of (one value) ──────────────────────┤
                                                  payouts + entries, all in one step ─► MatchBankCredits ─► bank matches

A payout's lines meet under its key, and balance_payout judges them. Bank matching is one decision over
every payout and credit (a credit may name any payout, and an amount candidate is only unambiguous when
no other payout wants it), so one step takes them all (side inputs) and calls the rule over lists: payouts and
credits are few (about one per merchant, currency and day), not one per payment.
"""
from __future__ import annotations

from datetime import date
from typing import Dict, Iterable, List, Optional, Tuple

import apache_beam as beam
from apache_beam import pvalue

from schemas.bank.entry import BANK_STATEMENTS
from schemas.codecs import is_truncation
from schemas.internal_records import Judged
from schemas.payouts import BankMatch, PayoutBalance
from schemas.records import SettlementLine
from schemas.rules import (
    ACCEPTED,
    BANK_MATCHES,
    CONFLICTING,
    PANS_MASKED,
    PAYOUTS,
    READ,
    REJECTED,
    TRUNCATED_FILES,
    UNIQUE_RECORDS,
    count_name,
    output_status_count_name,
    rows_count_name,
)
from transforms.bank.intake import Entry, as_of_day, entry_key, first_copies, judge_bank_record
from transforms.bank.matching import DEFAULT_BANK_POLICY, BankPolicy, is_matchable_credit, match_bank_credits
from transforms.bank.payouts import DEFAULT_PAYOUT_POLICY, PayoutPolicy, balance_payout
from transforms.counting import CountEach, SumEach
from transforms.validate import DEAD_LETTERS


def _letter(judged: Judged) -> Iterable:
    yield pvalue.TaggedOutput(DEAD_LETTERS, judged.outcome)
    if judged.pans_masked:
        yield pvalue.TaggedOutput(PANS_MASKED, judged.pans_masked)


def _routed(judged) -> Iterable:
    if isinstance(judged, Judged):
        yield from _letter(judged)
    else:
        yield judged


def _kept(entry_copies) -> Iterable:
    kept, letters = first_copies(entry_copies[1])
    for judged in letters:
        yield from _letter(judged)
    yield kept


class BankIntake(beam.PTransform):
    """Bank statement RawRecords -> {entries: one field mapping per (account, entry_ref), dead_letters, counts}: counts
    as every input has them (bank_statements.read = accepted + rejected, unique, conflicting, ...)."""

    def expand(self, raw):
        judged = (raw | "Judge" >> beam.Map(judge_bank_record)
                  | "Route" >> beam.FlatMap(_routed).with_outputs(DEAD_LETTERS, PANS_MASKED, main="accepted"))
        unique = (judged.accepted
                  | "ByEntry" >> beam.Map(lambda sourced: (entry_key(sourced), sourced))
                  | "Copies" >> beam.GroupByKey()
                  | "FirstCopies" >> beam.FlatMap(_kept).with_outputs(DEAD_LETTERS, PANS_MASKED, main="entries"))
        rejected = judged[DEAD_LETTERS]
        named = {count_name(BANK_STATEMENTS, READ): raw, count_name(BANK_STATEMENTS, ACCEPTED): judged.accepted,
                 count_name(BANK_STATEMENTS, REJECTED): rejected,
                 count_name(BANK_STATEMENTS, UNIQUE_RECORDS): unique.entries,
                 count_name(BANK_STATEMENTS, CONFLICTING): unique[DEAD_LETTERS],
                 count_name(BANK_STATEMENTS, TRUNCATED_FILES): rejected | "Truncations" >> beam.Filter(
                     lambda letter: is_truncation(letter.reason))}
        masked = {count_name(BANK_STATEMENTS, PANS_MASKED): (judged[PANS_MASKED], unique[PANS_MASKED])
                  | "AllMasked" >> beam.Flatten()}
        return {"entries": unique.entries,
                DEAD_LETTERS: (rejected, unique[DEAD_LETTERS]) | "DeadLetters" >> beam.Flatten(),
                "counts": [named | "CountEach" >> CountEach(), masked | "SumEach" >> SumEach()]
                | "AllCounts" >> beam.Flatten()}


class BalancePayouts(beam.PTransform):
    """(settlement lines, as_of millis as one value) -> one PayoutBalance per (processor, payout id) of the
    lines that carry one."""

    def __init__(self, policy: PayoutPolicy = DEFAULT_PAYOUT_POLICY):
        super().__init__()
        self._policy = policy

    def expand(self, lines_and_as_of):
        lines, as_of = lines_and_as_of
        policy = self._policy
        return (lines
                | "WithPayout" >> beam.Filter(lambda line: bool(line.payout_id))
                | "ByPayout" >> beam.Map(lambda line: ((line.processor, line.payout_id), line)).with_output_types(
                    Tuple[Tuple[str, str], SettlementLine])
                | "Group" >> beam.GroupByKey()
                | "Balance" >> beam.Map(
                    lambda key_lines, as_of_millis: balance_payout(
                        *key_lines[0], _in_order(key_lines[1]), as_of_millis, policy),
                    pvalue.AsSingleton(as_of)).with_output_types(PayoutBalance))


class MatchBankCredits(beam.PTransform):
    """(PayoutBalances, bank entry field mappings, as_of millis as one value) -> BankMatch rows (matching.py's
    rule at as_of's UTC date)."""

    def __init__(self, policy: BankPolicy = DEFAULT_BANK_POLICY):
        super().__init__()
        self._policy = policy

    def expand(self, inputs):
        payouts, entries, as_of = inputs
        policy = self._policy
        credits = entries | "Credits" >> beam.Filter(is_matchable_credit)
        # One decision over everything, made once even when there is nothing to match.
        return (payouts.pipeline | "Once" >> beam.Create([None])
                | "Match" >> beam.FlatMap(
                    lambda _, payout_list, credit_list, as_of_millis: _match(
                        payout_list, credit_list, as_of_millis, policy),
                    pvalue.AsList(payouts), pvalue.AsList(credits), pvalue.AsSingleton(as_of)
                ).with_output_types(BankMatch))


class ReconcileBank(beam.PTransform):
    """{settlements: unique SettlementLines, bank_statements: RawRecords, as_of: as_of millis as one value}
    -> {payouts, bank_matches, dead_letters, counts}: the per-element engine's third leg."""

    def __init__(self, payout_policy: PayoutPolicy = DEFAULT_PAYOUT_POLICY,
                 bank_policy: BankPolicy = DEFAULT_BANK_POLICY):
        super().__init__()
        self._payout_policy, self._bank_policy = payout_policy, bank_policy

    def expand(self, inputs: Dict[str, beam.PCollection]) -> Dict[str, beam.PCollection]:
        intake = inputs[BANK_STATEMENTS] | "BankIntake" >> BankIntake()
        payouts = (inputs["settlements"], inputs["as_of"]) | "BalancePayouts" >> BalancePayouts(self._payout_policy)
        matches = (payouts, intake["entries"], inputs["as_of"]) | "MatchBankCredits" >> MatchBankCredits(
            self._bank_policy)
        return {PAYOUTS: payouts, BANK_MATCHES: matches, DEAD_LETTERS: intake[DEAD_LETTERS],
                "counts": [intake["counts"], payouts | "CountPayouts" >> CountRowsAndStatuses(PAYOUTS),
                           matches | "CountBankMatches" >> CountRowsAndStatuses(BANK_MATCHES)]
                | "AllCounts" >> beam.Flatten()}


class CountRowsAndStatuses(beam.PTransform):
    """Rows of one output (with a `status`) -> ("<output>.rows", n) and ("<output>.status.<STATUS>", n)."""

    def __init__(self, output: str):
        super().__init__()
        self._output = output

    def expand(self, rows):
        output = self._output
        statuses = (rows | "StatusName" >> beam.Map(lambda row: output_status_count_name(output, row.status))
                    | "CountPerStatus" >> beam.combiners.Count.PerElement())
        return ({rows_count_name(output): rows} | "CountRows" >> CountEach(), statuses) | "Both" >> beam.Flatten()


def _match(payouts: List[PayoutBalance], credits: List[Entry], as_of_millis: Optional[int],
           policy: BankPolicy) -> List[BankMatch]:
    # Sorted first: the rule's answer does not depend on input order, and sorted inputs make it plain.
    payouts = sorted(payouts, key=lambda payout: (payout.processor, payout.payout_id))
    credits = sorted(credits, key=lambda credit: (str(credit.get("entry_ref")), str(credit.get("account"))))
    # No as_of (no payment and no settlement line read): nothing can be judged late yet.
    as_of = as_of_day(as_of_millis) if as_of_millis is not None else date.min
    return match_bank_credits(payouts, credits, as_of, policy)


def _in_order(lines: Iterable[SettlementLine]) -> List[SettlementLine]:
    """A payout's lines in a fixed order, whatever order the shuffle gave them (its first line names it)."""
    return sorted(lines, key=lambda line: (line.booked_time, line.settlement_id))
