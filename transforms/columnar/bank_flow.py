"""ColumnarReconcileBank: `transforms.bank.flow.ReconcileBank` for the columnar engine (docs/DESIGN.md 3.8).

    (shard, unique settlement lines) ─► lines with a payout id, by (processor, payout id) ─► GroupByKey
        ─► balance_payouts_table(as_of) ─► (shard, payouts) ────────────────────────────────────┐
    bank statement records ─► BankIntake (transforms/bank/flow.py) ─► entries ─► all in one step ──┴─►
        match_bank_credits_table(as_of's day) ─► one bank-matches table

Payouts are balanced per shard of their key, as tables; bank matching takes every payout and every
entry in one step (side inputs), as the per-element flow does (a credit may name any payout). Bank entries arrive as
records, judged and deduplicated by the per-element intake: a statement holds about one entry per payout
and merchant day, not one per payment, and the intake's rules (and dead letters) stay one.
"""
from __future__ import annotations

from datetime import date
from functools import partial
from typing import Dict, Iterable, List, Optional, Tuple

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam import pvalue

import schemas.arrow_coder  # noqa: F401  (registers the Arrow table coder)
from schemas.arrow import BANK_ENTRY, PAYOUT_BALANCE
from schemas.bank.entry import BANK_STATEMENTS
from schemas.record_tables import RECONCILED_SCHEMA_OF_INPUT, concat
from schemas.records import SETTLEMENTS, SettlementLine
from schemas.rules import BANK_MATCHES, PAYOUTS, output_status_count_name, rows_count_name
from transforms.bank.flow import BankIntake
from transforms.bank.intake import as_of_day
from transforms.bank.live_flow import payout_key_text
from transforms.bank.matching import DEFAULT_BANK_POLICY, BankPolicy
from transforms.bank.payouts import DEFAULT_PAYOUT_POLICY, PayoutPolicy
from transforms.columnar.bank_matching import match_bank_credits_table
from transforms.columnar.flow import AS_OF, ShardTable, rows_and_statuses, shuffled_piece_rows
from transforms.columnar.payouts import KEY, balance_payouts_table
from transforms.columnar.shards import plain, split_by_shard
from transforms.columnar.shuffle import InShuffle
from transforms.validate import DEAD_LETTERS

_PAYOUT_LINE_COLUMNS = ("settlement_id", "processor", "merchant_id", "record_type", "gross_minor", "net_minor",
                        "currency", "settlement_date", "booked_time", "payout_id")
PAYOUT_LINES = pa.schema([RECONCILED_SCHEMA_OF_INPUT[SETTLEMENTS].field(name) for name in _PAYOUT_LINE_COLUMNS])


def payout_lines_by_key(shard_table: ShardTable, shards: int, spilled: bool = False):
    """A shard of unique settlement lines -> (shard of its payout key, its lines that carry a payout id), in
    pieces small enough for a runner's shuffle unless they are spilled."""
    lines = shard_table[1].select(list(_PAYOUT_LINE_COLUMNS))
    carried = lines.filter(pc.fill_null(pc.not_equal(lines.column("payout_id"), ""), False))
    yield from split_by_shard(carried, list(KEY), shards, shuffled_piece_rows(not spilled))


def _balance_shard(shard_tables, as_of_millis: int, policy: PayoutPolicy, shuffle):
    shard, tables = shard_tables
    yield shard, balance_payouts_table(plain(shuffle.loaded(tables), PAYOUT_LINES), as_of_millis, policy)


def entries_table(entries: Iterable[Dict]) -> pa.Table:
    return pa.Table.from_pylist([{name: entry.get(name) for name in BANK_ENTRY.names} for entry in entries],
                                schema=BANK_ENTRY)


def _match(payout_tables: List[pa.Table], entries: List[Dict], as_of_millis: Optional[int],
           policy: BankPolicy) -> pa.Table:
    # No as_of (no payment and no settlement line read): nothing can be judged late yet.
    day = as_of_day(as_of_millis) if as_of_millis is not None else date.min
    return match_bank_credits_table(concat(payout_tables, PAYOUT_BALANCE), entries_table(entries), day, policy)


def _rows_and_statuses(table: pa.Table, output: str):
    return rows_and_statuses(table, rows_count_name(output), partial(output_status_count_name, output))


class ColumnarReconcileBank(beam.PTransform):
    """{settlements: (shard, unique lines), bank_statements: RawRecords, as_of: as_of millis as one value}
    -> {payouts: (shard, PAYOUT_BALANCE table), bank_matches: one BANK_MATCH table, dead_letters, counts}."""

    def __init__(self, shards: int, shuffle=None, payout_policy: PayoutPolicy = DEFAULT_PAYOUT_POLICY,
                 bank_policy: BankPolicy = DEFAULT_BANK_POLICY):
        super().__init__()
        self._shards, self._shuffle = max(1, int(shards)), shuffle or InShuffle()
        self._payout_policy, self._bank_policy = payout_policy, bank_policy

    def expand(self, inputs: Dict[str, beam.PCollection]) -> Dict[str, beam.PCollection]:
        shards, shuffle, as_of = self._shards, self._shuffle, inputs[AS_OF]
        intake = inputs[BANK_STATEMENTS] | "BankIntake" >> BankIntake()
        payouts = (
            shuffle.stored(inputs[SETTLEMENTS] | "PayoutLines" >> beam.FlatMap(
                payout_lines_by_key, shards, shuffle.spills).with_output_types(ShardTable), "ByPayout", PAYOUT_LINES)
            | "ByPayout" >> beam.GroupByKey()
            | "BalancePayouts" >> beam.FlatMap(
                _balance_shard, pvalue.AsSingleton(as_of), self._payout_policy, shuffle).with_output_types(ShardTable)
        )
        # One decision over everything, made once even when there is nothing to match (an empty table).
        matches = (
            inputs[SETTLEMENTS].pipeline | "Once" >> beam.Create([None])
            | "MatchBankCredits" >> beam.Map(
                lambda _, payout_tables, entries, as_of_millis, policy: _match(
                    payout_tables, entries, as_of_millis, policy),
                pvalue.AsList(payouts | "PayoutTables" >> beam.Values()), pvalue.AsList(intake["entries"]),
                pvalue.AsSingleton(as_of), self._bank_policy).with_output_types(pa.Table)
        )
        counts = [intake["counts"],
                  payouts | "CountPayouts" >> beam.FlatMap(lambda st: _rows_and_statuses(st[1], PAYOUTS)),
                  matches | "CountBankMatches" >> beam.FlatMap(_rows_and_statuses, BANK_MATCHES)]
        return {PAYOUTS: payouts, BANK_MATCHES: matches, DEAD_LETTERS: intake[DEAD_LETTERS],
                "counts": counts | "AllCounts" >> beam.Flatten()}


def payout_lines_by_payout(shard_table: Tuple[int, pa.Table]) -> Iterable[Tuple[str, List[SettlementLine]]]:
    """The columnar engine's unique settlement lines (a shard's table) -> (payout key, the payout's lines in
    it), keyed as the per-element engine keys a single line (transforms/bank/live_flow.py): one element per
    payout a table touches, not per line, and a payout's state is its own whatever the shard count."""
    table = shard_table[1]
    with_payout = table.filter(pc.fill_null(pc.not_equal(table.column("payout_id"), ""), False))
    by_payout: Dict[str, List[SettlementLine]] = {}
    columns = [with_payout.column(name).to_pylist() for name in SettlementLine._fields]
    for line in (SettlementLine(*values) for values in zip(*columns)):
        by_payout.setdefault(payout_key_text(line.processor, line.payout_id), []).append(line)
    return by_payout.items()
