"""ColumnarReconcile: `transforms.flow.ReconcileRecords` for bounded input, with Arrow tables as elements.

    raw chunks ─► ValidateChunks ─► ReconcileValidated: (shard by record id) ─► GroupByKey ─► FirstDeliveries ─┐
                      │ dead letters, counts per file                                                      │
                      ▼                                    ┌───────────────────────────────┘
                                                           ├─► MatchCandidates ─► (shard by reconciliation key)
                                                           │      ─► GroupByKey ─► MatchShards(as_of) ─► results
                                                           │                             └─► attributions ─┐
                                                           └─► DailyTotalPartials (+ results, lines under ◄┘
                                                                 their ledger's merchant) ─► CombineDailyTotals

Outputs: `results` as (shard, RESULT_TABLE) pairs, `daily_totals` as one
DAILY_TOTAL table, `dead_letters` as DeadLetter records and `counts` as
(name, count) pairs: the names `ReconcileRecords(with_counts=True)` gives.
Nothing here holds state between elements or reads files, so it runs on
any runner (docs/DESIGN.md 9).
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, Optional, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam import pvalue

import schemas.arrow_coder  # noqa: F401  (registers the Arrow table coder)
from schemas.attempts import ATTEMPTS
from schemas.codecs import is_truncation
from schemas.record_tables import (
    ID_COLUMN_OF_INPUT,
    RECONCILED_COLUMNS,
    RECONCILED_SCHEMA_OF_INPUT,
    TIME_COLUMN_OF_INPUT,
    concat,
)
from schemas.records import PAYMENTS, SETTLEMENTS, DeadLetter
from schemas.rules import (
    ACCEPTED,
    AS_OF_MILLIS,
    CONFLICTING,
    DAILY_TOTAL_ROWS,
    PAN_REJECTIONS,
    READ,
    REJECTED,
    RESULT_ROWS,
    TRUNCATED_FILES,
    UNIQUE_RECORDS,
    UNKNOWN_VENDOR_CATEGORIES,
    count_name,
    status_count_name,
)
from schemas.vendors import has_unknown_category
from transforms.attribution import ATTRIBUTIONS
from transforms.columnar.attribution import attributed_settlements, attribution_table
from transforms.columnar.daily_totals import (
    PARTIAL_TABLE,
    break_partials,
    combine_partials,
    ledger_partials,
    settlement_partials,
    sum_partials,
)
from transforms.columnar.dedup import delivered_schema, first_deliveries
from transforms.columnar.matching import (
    CANDIDATE_TABLE,
    ledger_candidates,
    reconcile_candidates,
    settlement_candidates,
)
from transforms.columnar.shards import compact, plain, split_by_shard
from transforms.columnar.shuffle import InShuffle
from transforms.columnar.validate import (
    ORIGIN_COLUMN,
    SOURCE_PREFIX_COLUMN,
    judge_chunk,
)
from transforms.flow import ReconcileConfig
from transforms.reconcile import latest_of
from transforms.validate import DEAD_LETTERS, PANS_MASKED, is_pan_rejection

COUNTS = "counts"
AS_OF = "as_of"
KEY_COLUMNS = ("processor", "processor_reference", "kind")
# Element types, so that Beam encodes (and sizes, when it samples) tables with schemas/arrow_coder.py:
# an untyped table would be pickled, buffers of the parent of a slice included.
ShardTable = beam.typehints.Tuple[int, pa.Table]
FileTable = beam.typehints.Tuple[str, pa.Table]


def _validated(chunk):
    accepted, letters, pans_masked = judge_chunk(chunk)
    name = chunk.input
    truncated = sum(1 for letter in letters if is_truncation(letter.reason))
    pan_rejections = sum(1 for letter in letters if is_pan_rejection(letter.reason))
    for what, count in ((READ, chunk.read_count), (ACCEPTED, accepted.num_rows), (REJECTED, len(letters)),
                        (TRUNCATED_FILES, truncated), (PANS_MASKED, pans_masked), (PAN_REJECTIONS, pan_rejections)):
        yield pvalue.TaggedOutput(COUNTS, (chunk.path, (count_name(name, what), count)))
    if name == SETTLEMENTS:
        # Such records are never tabulated (their fields have an extra key), so they are all here.
        unknown = sum(1 for record in chunk.records if has_unknown_category(record.fields))
        yield pvalue.TaggedOutput(COUNTS, (chunk.path, (count_name(name, UNKNOWN_VENDOR_CATEGORIES), unknown)))
    for letter in letters:
        yield pvalue.TaggedOutput(DEAD_LETTERS, letter)
    if accepted.num_rows:
        yield chunk.path, accepted


# Rows of one shuffled element when tables travel through the runner's shuffle: Flink's batch sort refuses
# a record larger than its sort buffer (about 4.5 MB on the embedded Flink), and a Parquet batch of 262,144
# rows split in a few shards made elements of several MB. 16,384 compacted rows stay near 1.5 MB.
SHUFFLED_PIECE_ROWS = 16_384


def shuffled_piece_rows(in_shuffle: bool) -> Optional[int]:
    """The most rows of one element when tables travel through the shuffle (None: spilled, an element is a
    path)."""
    return SHUFFLED_PIECE_ROWS if in_shuffle else None

_LOW_CARDINALITY = {PAYMENTS: ("event_type", "processor", "merchant_id", "currency"),
                    SETTLEMENTS: ("record_type", "processor", "merchant_id", "currency", "settlement_date", "payout_id"),
                    ATTEMPTS: ("attempt_type", "merchant_id", "currency", "outcome", "billing_country",
                               "issuing_country")}
_LOW_CARDINALITY_CANDIDATES = ("processor", "kind", "merchant_id", "currency")


def by_record_id(path_table: Tuple[str, pa.Table], input_name: str, shards: int, compacted: bool = True,
                 whole: bool = False):
    """(shard, the table's rows of that shard); `whole`: never in pieces (the live risk stream's one shard: a
    streaming runner carries an element of any size, and on Flink each of its chunks is a bundle of the deciding
    step, whose cost a chunk cut in two paid twice)."""
    reconciled = path_table[1].select([*RECONCILED_COLUMNS[input_name], ORIGIN_COLUMN, SOURCE_PREFIX_COLUMN])
    # Spilled (not compacted), a table goes to a file and only its path through the shuffle: no pieces.
    piece_rows = None if whole else shuffled_piece_rows(compacted)
    for shard, table in split_by_shard(reconciled, [ID_COLUMN_OF_INPUT[input_name]], shards, piece_rows):
        yield shard, compact(table, (*_LOW_CARDINALITY[input_name], SOURCE_PREFIX_COLUMN)) if compacted else table


def _first_deliveries(shard_tables, input_name: str, shuffle):
    """A shard's copies -> (shard, unique rows); conflicting copies' dead letters and their counts tagged."""
    shard, tables = shard_tables
    unique, judged = first_deliveries(plain(shuffle.loaded(tables), delivered_schema(input_name)), input_name)
    for letter, _ in judged:
        yield pvalue.TaggedOutput(DEAD_LETTERS, letter)
    yield pvalue.TaggedOutput(COUNTS, (count_name(input_name, CONFLICTING), len(judged)))
    yield pvalue.TaggedOutput(COUNTS, (count_name(input_name, PANS_MASKED), sum(masked for _, masked in judged)))
    yield shard, unique


def _latest_time(shard_table: ShardTable, input_name: str) -> Iterable[int]:
    times = shard_table[1].column(TIME_COLUMN_OF_INPUT[input_name])
    if len(times):
        yield pc.max(times).as_py()


def candidates_by_key(shard_table: ShardTable, to_candidates, shards: int, compacted: bool = True):
    for shard, table in split_by_shard(to_candidates(shard_table[1]), KEY_COLUMNS, shards, shuffled_piece_rows(compacted)):
        yield shard, compact(table, _LOW_CARDINALITY_CANDIDATES) if compacted else table



def _match_shard(shard_tables, as_of_millis: Optional[int], policy, shuffle):
    """A shard's candidates -> (shard, results); the attributions of its UNATTRIBUTED lines tagged."""
    shard, tables = shard_tables
    candidates = plain(shuffle.loaded(tables), CANDIDATE_TABLE)
    results = reconcile_candidates(candidates, as_of_millis, policy)
    attributions = attribution_table(candidates, results)
    if attributions.num_rows:
        yield pvalue.TaggedOutput(ATTRIBUTIONS, attributions)
    yield shard, results


def _settlement_partials(shard_table, attributions, day, shuffle) -> pa.Table:
    settlements = plain(shuffle.loaded([shard_table[1]]), RECONCILED_SCHEMA_OF_INPUT[SETTLEMENTS])
    return settlement_partials(attributed_settlements(settlements, attributions), day)


def _status_counts(shard_table: ShardTable):
    return rows_and_statuses(shard_table[1], RESULT_ROWS, status_count_name)


def rows_and_statuses(table: pa.Table, rows_name: str, status_name: Callable[[str], str]):
    """(rows_name, rows) and (status_name(status), rows) per status of a table with a `status` column."""
    yield rows_name, table.num_rows
    for entry in pc.value_counts(table.column("status")).to_pylist():
        yield status_name(entry["values"]), entry["counts"]


class _CombineTables(beam.CombineFn):
    """Partial daily-total tables -> their sum, merged as they come (bounded memory per worker)."""

    def __init__(self, settlement_day):
        self._settlement_day = settlement_day

    def create_accumulator(self):
        return PARTIAL_TABLE.empty_table()

    def add_input(self, accumulator, partial):
        return _add(accumulator, partial)

    def merge_accumulators(self, accumulators):
        merged = PARTIAL_TABLE.empty_table()
        for accumulator in accumulators:
            merged = _add(merged, accumulator)
        return merged

    def extract_output(self, accumulator):
        return combine_partials([accumulator], self._settlement_day)


def _add(left: pa.Table, right: pa.Table) -> pa.Table:
    return sum_partials(concat([left, right], PARTIAL_TABLE))


class ValidateChunks(beam.PTransform):
    """RawChunks of one input -> {accepted: (file, table), dead_letters: DeadLetter, counts: (file, (name, n))}.

    Keyed by file, so a backfill can validate each file once and hand every
    date the files of its window.
    """

    def expand(self, chunks):
        validated = chunks | "Validate" >> beam.FlatMap(_validated).with_outputs(
            DEAD_LETTERS, COUNTS, main="accepted")
        validated[DEAD_LETTERS].element_type = DeadLetter
        validated.accepted.element_type = FileTable
        return {"accepted": validated.accepted, DEAD_LETTERS: validated[DEAD_LETTERS], COUNTS: validated[COUNTS]}


class ReconcileValidated(beam.PTransform):
    """{payments, settlements}: (file, accepted table) -> {results, daily_totals, dead_letters (conflicting
    re-deliveries), counts, settlements: (shard, unique lines), as_of: as_of millis as one value}."""

    def __init__(self, config: ReconcileConfig, shards: int, shuffle=None):
        super().__init__()
        if config.as_of.mode == "watermark":
            raise ValueError("the columnar engine is for bounded input; it judges deadlines at a fixed as_of")
        self._config = config
        self._shards = max(1, int(shards))
        self._shuffle = shuffle or InShuffle()

    def expand(self, accepted: Dict[str, beam.PCollection]) -> Dict[str, beam.PCollection]:
        config, shards, shuffle = self._config, self._shards, self._shuffle
        compacted = not shuffle.spills
        unique, counts, letters = {}, [], []
        for name in (PAYMENTS, SETTLEMENTS):
            deduplicated = (
                shuffle.stored(accepted[name] | f"ShardById[{name}]" >> beam.FlatMap(
                    by_record_id, name, shards, compacted).with_output_types(ShardTable), f"ById-{name}",
                    delivered_schema(name))
                | f"ById[{name}]" >> beam.GroupByKey()
                | f"FirstDeliveries[{name}]" >> beam.FlatMap(_first_deliveries, name, shuffle).with_outputs(
                    DEAD_LETTERS, COUNTS, main="unique")
            )
            unique[name] = deduplicated.unique
            unique[name].element_type = ShardTable
            letters.append(deduplicated[DEAD_LETTERS])
            counts.append(deduplicated[COUNTS])
            counts.append(unique[name] | f"CountUnique[{name}]" >> beam.Map(
                lambda shard_table, name=name: (count_name(name, UNIQUE_RECORDS), shard_table[1].num_rows)))
        as_of = self._as_of(unique)
        # Each side is stored before the Flatten: a runner may materialise a Flatten's input (the
        # DirectRunner does), which should hold paths when the shuffle spills, not every candidate.
        candidates = (
            [shuffle.stored(unique[PAYMENTS] | "LedgerCandidates" >> beam.FlatMap(
                candidates_by_key, ledger_candidates, shards, compacted).with_output_types(ShardTable),
                f"ByKey-{PAYMENTS}", CANDIDATE_TABLE),
             shuffle.stored(unique[SETTLEMENTS] | "SettlementCandidates" >> beam.FlatMap(
                 candidates_by_key, settlement_candidates, shards, compacted).with_output_types(ShardTable),
                 f"ByKey-{SETTLEMENTS}", CANDIDATE_TABLE)]
            | "AllCandidates" >> beam.Flatten()
        )
        matched = (
            candidates
            | "ByReconciliationKey" >> beam.GroupByKey()
            | "MatchShards" >> beam.FlatMap(
                _match_shard, pvalue.AsSingleton(as_of), config.policy, shuffle).with_outputs(
                ATTRIBUTIONS, main="results")
        )
        results = matched.results
        results.element_type = ShardTable
        matched[ATTRIBUTIONS].element_type = pa.Table
        day = config.settlement_day
        daily_totals = (
            [unique[PAYMENTS] | "LedgerPartials" >> beam.Map(
                lambda st: ledger_partials(st[1], day)).with_output_types(pa.Table),
             # Read again once every attribution is known: spilled, the unique lines wait on disk.
             shuffle.stored(unique[SETTLEMENTS], "Unique-settlements", RECONCILED_SCHEMA_OF_INPUT[SETTLEMENTS])
             | "SettlementPartials" >> beam.Map(
                 _settlement_partials, pvalue.AsList(matched[ATTRIBUTIONS]), day, shuffle).with_output_types(pa.Table),
             results | "BreakPartials" >> beam.Map(lambda st: break_partials(st[1], day)).with_output_types(pa.Table)]
            | "AllPartials" >> beam.Flatten()
            | "CombineDailyTotals" >> beam.CombineGlobally(_CombineTables(day)).with_output_types(pa.Table)
        )
        counts += [results | "CountStatuses" >> beam.FlatMap(_status_counts),
                   daily_totals | "CountDailyTotals" >> beam.Map(lambda table: (DAILY_TOTAL_ROWS, table.num_rows)),
                   as_of | "NameAsOf" >> beam.Map(lambda millis: (AS_OF_MILLIS, millis))]
        return {"results": results, "daily_totals": daily_totals,
                "dead_letters": letters | "ConflictingCopies" >> beam.Flatten(),
                "counts": counts | "AllCounts" >> beam.Flatten(),
                SETTLEMENTS: unique[SETTLEMENTS], AS_OF: as_of}

    def _as_of(self, unique):
        if self._config.as_of.mode == "fixed":
            return unique[PAYMENTS].pipeline | "FixedAsOf" >> beam.Create([self._config.as_of.millis])
        return (
            [unique[name] | f"LatestTime[{name}]" >> beam.FlatMap(_latest_time, name)
             for name in (PAYMENTS, SETTLEMENTS)]
            | "AllLatest" >> beam.Flatten()
            | "LatestEventTime" >> beam.CombineGlobally(latest_of)
        )


class SumCounts(beam.PTransform):
    """(name, count) pairs, several per name -> one (name, total) per name (as_of_millis passes as it is)."""

    def expand(self, counts):
        return counts | "SumPerName" >> beam.CombinePerKey(_sum_or_value)


class ColumnarReconcile(beam.PTransform):
    """{payments, settlements}: RawChunks -> {results, daily_totals, dead_letters, counts}, and for the third
    leg (transforms/columnar/bank_flow.py) `settlements`: (shard, unique lines) and `as_of` (one value)."""

    def __init__(self, config: ReconcileConfig = ReconcileConfig(), shards: int = 8, shuffle=None):
        super().__init__()
        self._config = config
        self._shards = shards
        self._shuffle = shuffle

    def expand(self, chunks: Dict[str, beam.PCollection]) -> Dict[str, beam.PCollection]:
        validated = {name: chunks[name] | f"ValidateChunks[{name}]" >> ValidateChunks()
                     for name in (PAYMENTS, SETTLEMENTS)}
        outputs = ({name: validated[name]["accepted"] for name in validated}
                   | "ReconcileValidated" >> ReconcileValidated(self._config, self._shards, self._shuffle))
        file_counts = [validated[name][COUNTS] | f"DropFile[{name}]" >> beam.Values() for name in validated]
        return {
            "results": outputs["results"],
            "daily_totals": outputs["daily_totals"],
            SETTLEMENTS: outputs[SETTLEMENTS],
            AS_OF: outputs[AS_OF],
            "dead_letters": ([*[validated[name][DEAD_LETTERS] for name in validated], outputs["dead_letters"]]
                             | "DeadLetters" >> beam.Flatten()),
            "counts": [*file_counts, outputs["counts"]] | "AllCounts" >> beam.Flatten() | "SumCounts" >> SumCounts(),
        }


def _sum_or_value(values) -> Optional[int]:
    # as_of_millis is one value (possibly None); every other name is a sum of partial counts.
    values = list(values)
    if any(value is None for value in values):
        return None
    return int(np.sum(values, dtype=np.int64)) if values else 0
