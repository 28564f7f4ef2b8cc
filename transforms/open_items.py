"""Judging a bounded stream run's keys against the open items carried from the previous run (docs/DESIGN.md 5).

A `--bounded` run judges every key once, at its `as_of`. A key can still change when a later
run brings its other side (PENDING -> MATCHED), a late duplicate, or an earlier primary; without
the key's records that run would judge the newcomer alone (issue 9: a payment in one run and
its settlement in the next gave two PENDING rows, both final). So, as the unbounded matcher
keeps a key's state until it expires, bounded runs keep it in a store
(`pipelines/io/open_items.py` encodes its entries, `pipelines/io/open_items_store.py` reads
and writes the topic); this module decides what a run writes:

* The carried records join the topics' records as input, so every key is judged on all its
  records: the answer one run over everything would give.
* A key's rows are written only when they differ from its carried rows (the matcher's
  `result_signature`), with the carried revision + 1 (1 for a new key); a one-sided verdict
  (schemas/rules.py: ONE_SIDED_STATUSES) is never final (`is_final` false).
* Every key of the run gets its entry; a key whose latest record is older than `as_of` minus
  the horizon (retention 7 days + max(SLA, grace), as the unbounded matcher's expiry) is
  marked `closed`, still with all its records, and deleted after the commit. If the deletes
  fail after the commit, a `closed` entry is carried once more and gives the same rows again
  (nothing is written). No key is ever judged on part of its records within the horizon.
"""
from __future__ import annotations

import hashlib
import json
from typing import Dict, Iterable, List, Optional, Tuple

import apache_beam as beam

from schemas.internal_records import OpenItem
from schemas.kafka_values import SCHEMA_OF_INPUT, encode_value
from schemas.records import PAYMENTS, SETTLEMENTS, DeadLetter, RawRecord, ReconciliationResult
from schemas.rules import ONE_SIDED_STATUSES
from transforms.matching import reconciliation_key, result_signature
from transforms.validate import validate_raw_record

_ID_FIELD = {PAYMENTS: "event_id", SETTLEMENTS: "settlement_id"}
ITEMS = "items"


def store_key(key: Tuple[str, str, str]) -> str:
    """A reconciliation key as the store's message key (and the key the judging groups by)."""
    return "|".join(key)


def keyed_record(raw: RawRecord) -> List[Tuple[str, Tuple[str, str, str]]]:
    """[(store key, (input, source, JSON value))] for a valid record matched by key; [] otherwise."""
    record = validate_raw_record(raw)
    key = None if isinstance(record, DeadLetter) else reconciliation_key(record)  # dead letters: never carried
    if key is None:
        return []
    return [(store_key(key), (raw.input, raw.source,
                              encode_value(record._asdict(), "json", SCHEMA_OF_INPUT[raw.input]).decode()))]


def rows_signature(rows: Iterable[ReconciliationResult]) -> str:
    """The matcher's `result_signature` as the text a store entry keeps: a hash of each row's repr with
    revision 0 and not final, sorted. Entries written by earlier runs hold this very text, so it must not
    change: an unequal signature would re-emit the key."""
    shown = sorted(repr(ReconciliationResult(*fields, revision=0, is_final=False))
                   for fields in result_signature(rows))
    return hashlib.sha256("\n".join(shown).encode()).hexdigest()


def unique_records(records: Iterable[Tuple[str, str, str]]) -> Tuple[Tuple[str, str, str], ...]:
    """One copy per id (the one with the smallest source, whatever the arrival order)."""
    unique: Dict[Tuple[str, str], Tuple[str, str, str]] = {}
    for record in sorted(records, key=lambda r: r[1]):
        unique.setdefault((record[0], str(json.loads(record[2]).get(_ID_FIELD[record[0]]))), record)
    return tuple(sorted(unique.values()))


def _latest_time(rows: Iterable[ReconciliationResult]) -> int:
    return max(max(t for t in (row.event_time, row.booked_time) if t is not None) for row in rows)


class _JudgeKey(beam.DoFn):
    """(key, {records, results}) -> the key's rows when they changed (main), its store entry (ITEMS)."""

    def __init__(self, carried: Dict[str, OpenItem], horizon_millis: int):
        self._revisions = {key: item.revision for key, item in carried.items()}
        self._signatures = {key: item.signature for key, item in carried.items()}
        self._horizon = horizon_millis

    def process(self, joined, as_of_millis: Optional[int]):
        key, grouped = joined
        rows = list(grouped["results"])
        if rows:  # a key's valid records always make rows; without rows there is nothing to store
            yield from self._judged(key, rows, list(grouped["records"]), as_of_millis)

    def _judged(self, key: str, rows: List[ReconciliationResult], records, as_of_millis: Optional[int]):
        signature = rows_signature(rows)
        previous = self._revisions.get(key, 0)
        changed = signature != self._signatures.get(key)
        revision = previous + 1 if changed else previous
        if changed:
            for row in rows:  # a one-sided verdict is never final: the other side may come next run
                yield row._replace(revision=revision, is_final=row.status not in ONE_SIDED_STATUSES)
        expired = as_of_millis is not None and as_of_millis >= _latest_time(rows) + self._horizon
        yield beam.pvalue.TaggedOutput(ITEMS, OpenItem(key, revision, expired, unique_records(records), signature))


class TrackOpenItems(beam.PTransform):
    """(records incl. carried, results, as_of) -> {results: new revisions only, items: entries, decided: keys}.

    Every key of the run (and every carried key) is tracked until it expires, as the unbounded
    matcher keeps a key's state: `horizon_millis` after its latest record (retention + max(SLA,
    grace)), so a late duplicate or late other side still finds it. `items`: the entries to
    write before the commit; `decided`: the expired keys, deleted after it.
    """

    def __init__(self, carried: Dict[str, OpenItem], horizon_millis: int):
        super().__init__()
        self._carried = carried
        self._horizon = horizon_millis

    def expand(self, inputs):
        records, results, as_of = inputs
        keyed_results = results | "KeyResults" >> beam.Map(
            lambda row: (store_key((row.processor, row.processor_reference, row.kind)), row))
        keyed_records = records | "KeyRecords" >> beam.FlatMap(keyed_record)
        judged = ({"records": keyed_records, "results": keyed_results}
                  | "ByKey" >> beam.CoGroupByKey()
                  | "Judge" >> beam.ParDo(_JudgeKey(self._carried, self._horizon),
                                          beam.pvalue.AsSingleton(as_of, default_value=None)
                                          ).with_outputs(ITEMS, main="results"))
        items = judged[ITEMS]
        return {
            "results": judged.results,
            "items": items,
            "decided": (items | "Decided" >> beam.Filter(lambda item: item.closed)
                        | "DecidedKeys" >> beam.Map(lambda item: item.key)),
        }
