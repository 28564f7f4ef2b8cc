"""A risk backtest on Arrow tables: transforms/risk/flow.py's BacktestAttempts for the columnar engine (10.12).

    RawChunks ──► ValidateChunks (9.1: vectorised, the per-record rules as referee) ──► accepted tables
      ──► (spilled when the run spills) ──► one group ──► DecideAll: first_deliveries (first read kept;
          conflicting copies dead letters), decide_table, the decisions table to the sink, counts per action,
          rule and currency ──► with labels or a second rule set: decisions as records through LabelsAndChanges

The same outputs and counts as the per-element flow (tests/test_risk_cli.py
runs both). The attempts meet in one worker, which decides them as one table.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Tuple

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam import pvalue

from schemas.attempts import ATTEMPTS, LABELS
from schemas.decisions import RiskDecision
from schemas.records import DeadLetter
from schemas.rules import CONFLICTING, PANS_MASKED, UNIQUE_RECORDS, count_name
from transforms.columnar.dedup import delivered_schema, first_deliveries
from transforms.columnar.flow import COUNTS, ShardTable, ValidateChunks
from transforms.columnar.risk import SAFE_ESTIMATE, columns_read, decide_table, decisions_of
from transforms.columnar.shuffle import InShuffle
from transforms.risk.flow import (
    AFTER,
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


def _grouped(table: pa.Table, keys: List[str], value: Optional[str]) -> List[Tuple[tuple, int]]:
    """(key values, count of rows or sum of `value`) per distinct key, exact: Arrow's int64 sums, and a
    group's sum again in Python integers where a float estimate says it could have left int64."""
    if not table.num_rows:
        return []
    if value is None:
        rows = table.group_by(keys, use_threads=False).aggregate([(keys[0], "count")]).to_pylist()
        return [(tuple(row[key] for key in keys), row[f"{keys[0]}_count"]) for row in rows]
    estimated = table.select([*keys, value]).append_column("_estimate", pc.cast(table.column(value), pa.float64(), safe=False))
    rows = estimated.group_by(keys, use_threads=False).aggregate([(value, "sum"), ("_estimate", "sum")]).to_pylist()
    sums = []
    for row in rows:
        key = tuple(row[name] for name in keys)
        total = row[f"{value}_sum"]
        if abs(row["_estimate_sum"]) >= SAFE_ESTIMATE:
            mask = None
            for name, wanted in zip(keys, key):
                equal = pc.equal(table.column(name), wanted)
                mask = equal if mask is None else pc.and_(mask, equal)
            total = sum(table.column(value).filter(mask).to_pylist())
        sums.append((key, total))
    return sums


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


class _DecideAll(beam.DoFn):
    """Every accepted table of the run -> the first read copy of each attempt id, decided as one table.

    The decisions table is written here, by the pipeline's sink, not handed on: at ten million attempts it
    is gigabytes, more than one element may be on a runner's data channel (gRPC's 2 GB). What leaves are
    the counts, the dead letters of conflicting copies and, when labels or a second rule set need them,
    the decisions as records (and the other rule set's)."""

    def __init__(self, rule_set: RuleSet, compare_with: Optional[RuleSet], shuffle, sink, as_records: bool):
        self._rule_set, self._compare_with, self._shuffle = rule_set, compare_with, shuffle
        self._sink, self._as_records = sink, as_records

    def process(self, keyed_tables):
        _, values = keyed_tables
        tables = [table.select(delivered_schema(ATTEMPTS).names) for table in self._shuffle.loaded(values)]
        accepted = pa.concat_tables(tables) if tables else delivered_schema(ATTEMPTS).empty_table()
        del tables
        unique, judged = first_deliveries(accepted, ATTEMPTS)
        del accepted
        rule_sets = [self._rule_set] + ([self._compare_with] if self._compare_with is not None else [])
        unique = unique.select(columns_read(*rule_sets))
        for letter, _ in judged:
            yield pvalue.TaggedOutput(DEAD_LETTERS, letter)
        yield pvalue.TaggedOutput(COUNTS, (count_name(ATTEMPTS, CONFLICTING), len(judged)))
        yield pvalue.TaggedOutput(COUNTS, (count_name(ATTEMPTS, PANS_MASKED), sum(masked for _, masked in judged)))
        yield pvalue.TaggedOutput(COUNTS, (count_name(ATTEMPTS, UNIQUE_RECORDS), unique.num_rows))
        decided = decide_table(unique, self._rule_set)
        self._sink.write(decided)
        for name_count in decision_table_counts(decided):
            yield pvalue.TaggedOutput(COUNTS, name_count)
        if self._as_records:
            yield from decisions_of(decided)
        if self._compare_with is not None:
            for decision in decisions_of(decide_table(unique, self._compare_with)):
                yield pvalue.TaggedOutput(AFTER, decision)


class ColumnarBacktest(beam.PTransform):
    """{attempts: RawChunks[, labels: RawRecords]} (bounded) -> {dead_letters, counts: (name, value) pairs[,
    changes][, decisions: records, with `as_records`]}: BacktestAttempts' outputs, columnar. The decisions
    table goes to `sink` (its `write(table)` runs in the worker that decides)."""

    def __init__(self, rule_set: RuleSet, sink, compare_with: Optional[RuleSet] = None, shuffle=None,
                 as_records: bool = False):
        super().__init__()
        self._rule_set, self._sink, self._compare_with = rule_set, sink, compare_with
        self._shuffle = shuffle or InShuffle()
        self._as_records = as_records

    def expand(self, inputs: Dict[str, beam.PCollection]) -> Dict[str, beam.PCollection]:
        shuffle = self._shuffle
        as_records = self._as_records or LABELS in inputs or self._compare_with is not None
        validated = inputs[ATTEMPTS] | "ValidateChunks" >> ValidateChunks()
        one_group = validated["accepted"] | "OneGroup" >> beam.Map(
            lambda file_table: (0, file_table[1].select(delivered_schema(ATTEMPTS).names))).with_output_types(ShardTable)
        decided = (shuffle.stored(one_group, "Accepted-attempts", delivered_schema(ATTEMPTS))
                   | "AllAttempts" >> beam.GroupByKey()
                   | "DecideAll" >> beam.ParDo(_DecideAll(self._rule_set, self._compare_with, shuffle, self._sink,
                                                          as_records)).with_outputs(DEAD_LETTERS, COUNTS, AFTER,
                                                                                    main=DECISIONS))
        decided[DEAD_LETTERS].element_type = DeadLetter
        decided[DECISIONS].element_type = RiskDecision
        counts = [validated[COUNTS] | "DropFile" >> beam.Values(), decided[COUNTS]]
        letters = [validated[DEAD_LETTERS], decided[DEAD_LETTERS]]
        outputs = {}
        if as_records:
            outputs[DECISIONS] = decided[DECISIONS]
        if LABELS in inputs or self._compare_with is not None:
            judged_inputs = {DECISIONS: decided[DECISIONS], **{name: inputs[name] for name in (LABELS,) if name in inputs}}
            if self._compare_with is not None:
                judged_inputs[AFTER] = decided[AFTER]
            judged = judged_inputs | "LabelsAndChanges" >> LabelsAndChanges()
            counts.append(judged["counts"])
            letters.append(judged[DEAD_LETTERS])
            if CHANGES in judged:
                outputs[CHANGES] = judged[CHANGES]
        outputs["counts"] = counts | "AllCounts" >> beam.Flatten()
        outputs[DEAD_LETTERS] = letters | "DeadLetters" >> beam.Flatten()
        return outputs
