"""A risk backtest on Arrow tables: transforms/risk/flow.py's BacktestAttempts for the columnar engine (10.12).

    RawChunks ──► ValidateChunks (9.1: vectorised, the per-record rules as referee) ──► accepted tables
      ──► one table ──► first_deliveries (first read kept; conflicting copies dead letters)
      ──► decide_table ──► one decisions table (RISK_DECISION) ─► counts per action, rule and currency
                                 └─► with labels or a second rule set: as records through LabelsAndChanges

The same outputs and counts as the per-element flow (tests/test_risk_cli.py
runs both). The attempts meet in one worker, which decides them as one table.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam import pvalue

from schemas import arrow
from schemas.attempts import ATTEMPTS, LABELS, AuthorizationAttempt
from schemas.record_tables import TABLE_SCHEMA_OF_INPUT, table_to_records
from schemas.records import DeadLetter
from schemas.rules import CONFLICTING, PANS_MASKED, UNIQUE_RECORDS, count_name
from transforms.columnar.dedup import delivered_schema, first_deliveries
from transforms.columnar.flow import COUNTS, ValidateChunks
from transforms.columnar.risk import DecideAttemptsTable, decide_table, decisions_of
from transforms.dedup import UNIQUE
from transforms.risk.flow import (
    CHANGES,
    DECISION_COUNT,
    DECISIONS,
    LabelsAndChanges,
    action_count_name,
    money_count_name,
    rule_count_name,
)
from transforms.risk.rules import RuleSet
from transforms.validate import DEAD_LETTERS

DECISION_TABLE = "decision_table"


def _unique_attempts(tables: Sequence[pa.Table]) -> Iterator:
    """Every accepted table (with where each row was read) -> the first read copy of each attempt id, as one
    table; the conflicting later copies as dead letters, and their counts."""
    accepted = (pa.concat_tables([table.select(delivered_schema(ATTEMPTS).names) for table in tables])
                if tables else delivered_schema(ATTEMPTS).empty_table())
    unique, judged = first_deliveries(accepted, ATTEMPTS)
    for letter, _ in judged:
        yield pvalue.TaggedOutput(DEAD_LETTERS, letter)
    yield pvalue.TaggedOutput(COUNTS, (count_name(ATTEMPTS, CONFLICTING), len(judged)))
    yield pvalue.TaggedOutput(COUNTS, (count_name(ATTEMPTS, PANS_MASKED), sum(masked for _, masked in judged)))
    yield pvalue.TaggedOutput(COUNTS, (count_name(ATTEMPTS, UNIQUE_RECORDS), unique.num_rows))
    yield unique.select(TABLE_SCHEMA_OF_INPUT[ATTEMPTS].names)


def _grouped(table: pa.Table, keys: List[str], value: Optional[str]) -> List[Tuple[tuple, int]]:
    """(key values, count of rows or sum of `value`) per distinct key, in Python integers."""
    if not table.num_rows:
        return []
    if value is None:
        rows = table.group_by(keys, use_threads=False).aggregate([(keys[0], "count")]).to_pylist()
        return [(tuple(row[key] for key in keys), row[f"{keys[0]}_count"]) for row in rows]
    out: Dict[tuple, int] = {}
    columns = [table.column(key).to_pylist() for key in keys]
    for key, amount in zip(zip(*columns), table.column(value).to_pylist()):  # exact: no int64 wrap
        out[key] = out.get(key, 0) + amount
    return list(out.items())


def decision_table_counts(table: pa.Table) -> Iterator[Tuple[str, int]]:
    """What `transforms.risk.flow.decision_counts` adds up over every decision, from the table at once."""
    yield DECISION_COUNT, table.num_rows
    for (action,), count in _grouped(table, ["action"], None):
        yield action_count_name(action), count
    for (action, currency), total in _grouped(table, ["action", "currency"], "amount_minor"):
        yield money_count_name(action_count_name(action), currency), total
    for column, shadow in (("fired", False), ("shadow_fired", True)):
        lists = table.column(column).combine_chunks()
        owners = pc.list_parent_indices(lists)
        fired = pa.table({"rule_id": pc.list_flatten(lists).field("rule_id"),
                          "amount_minor": table.column("amount_minor").take(owners),
                          "currency": table.column("currency").take(owners)})
        for (rule_id,), count in _grouped(fired, ["rule_id"], None):
            yield rule_count_name(rule_id, shadow), count
        if not shadow:
            for (rule_id, currency), total in _grouped(fired, ["rule_id", "currency"], "amount_minor"):
                yield money_count_name(rule_count_name(rule_id, False), currency), total


def _attempt_records(table: pa.Table) -> List[AuthorizationAttempt]:
    return table_to_records(table, AuthorizationAttempt)


class ColumnarBacktest(beam.PTransform):
    """{attempts: RawChunks[, labels: RawRecords]} (bounded) -> {decision_table: one RISK_DECISION table,
    dead_letters, counts: (name, value) pairs[, changes]}: BacktestAttempts' outputs, columnar."""

    def __init__(self, rule_set: RuleSet, compare_with: Optional[RuleSet] = None):
        super().__init__()
        self._rule_set = rule_set
        self._compare_with = compare_with

    def expand(self, inputs: Dict[str, beam.PCollection]) -> Dict[str, beam.PCollection]:
        validated = inputs[ATTEMPTS] | "ValidateChunks" >> ValidateChunks()
        deduplicated = (validated["accepted"]
                        | "Tables" >> beam.Values()
                        | "AllTables" >> beam.combiners.ToList()
                        | "FirstDeliveries" >> beam.FlatMap(_unique_attempts).with_outputs(
                            DEAD_LETTERS, COUNTS, main=UNIQUE))
        unique = deduplicated[UNIQUE]
        unique.element_type = pa.Table
        deduplicated[DEAD_LETTERS].element_type = DeadLetter
        decided = unique | "DecideTable" >> beam.Map(decide_table, self._rule_set).with_output_types(pa.Table)
        counts = [validated[COUNTS] | "DropFile" >> beam.Values(), deduplicated[COUNTS],
                  decided | "DecisionCounts" >> beam.FlatMap(decision_table_counts)]
        letters = [validated[DEAD_LETTERS], deduplicated[DEAD_LETTERS]]
        outputs = {DECISION_TABLE: decided}
        if LABELS in inputs or self._compare_with is not None:
            judged = ({DECISIONS: decided | "DecisionRecords" >> beam.FlatMap(decisions_of),
                       UNIQUE: unique | "AttemptRecords" >> beam.FlatMap(_attempt_records),
                       **{name: inputs[name] for name in (LABELS,) if name in inputs}}
                      | "LabelsAndChanges" >> LabelsAndChanges(self._compare_with, DecideAttemptsTable))
            counts.append(judged["counts"])
            letters.append(judged[DEAD_LETTERS])
            if CHANGES in judged:
                outputs[CHANGES] = judged[CHANGES]
        outputs["counts"] = counts | "AllCounts" >> beam.Flatten()
        outputs[DEAD_LETTERS] = letters | "DeadLetters" >> beam.Flatten()
        return outputs


def decisions_for_output(table: pa.Table) -> pa.Table:
    return table.cast(arrow.RISK_DECISION)

