"""Open items: what a bounded stream run may still have to revise is carried to the next run (docs/DESIGN.md 5).

A `--bounded` run judges every key once, at its `as_of`. A key can still change when a later
run brings its other side (PENDING -> MATCHED), a late duplicate, or an earlier primary; without
the key's records that run would judge the newcomer alone (issue 9: a payment in one run and
its settlement in the next gave two PENDING rows, both final). So, as the unbounded matcher
keeps a key's state until it expires, bounded runs keep it in a store:

* Store: a compacted topic next to the group's committed offsets (default
  `<group>.open-items`), one entry per reconciliation key, value = JSON {revision, closed,
  records: [[input, source, value]], signature} (the key's unique valid records as JSON values,
  and a hash of its latest rows).
* At start the launcher reads the store (latest entry per key; a tombstone deletes) and the
  carried records join the topics' records as input, so every key is judged on all its
  records: the answer one run over everything would give.
* A key's rows are written only when they differ from its carried rows, with the carried
  revision + 1 (1 for a new key); a one-sided verdict is never final (`is_final` false).
* Before the offsets are committed (the store is one more output the commit waits for)
  every key of the run gets its entry; a key whose latest record is older than `as_of` minus
  the horizon (retention 7 days + max(SLA, grace), as the unbounded matcher's expiry) is
  marked `closed`, still with all its records, and deleted (a tombstone) after the commit.
  If a run fails before committing, the next run re-reads its input and the entries hold
  what they held; if the deletes fail after the commit, a `closed` entry is carried once
  more and gives the same rows again (nothing is written). No key is ever judged on part of
  its records within the horizon.
"""

import hashlib
import json
import logging
from typing import Dict, Iterable, Iterator, List, NamedTuple, Optional, Tuple

import apache_beam as beam

from schemas.kafka_values import SCHEMA_OF_INPUT, encode_value, raw_record_from_message
from schemas.records import PAYMENTS, SETTLEMENTS, DeadLetter, RawRecord, ReconciliationResult
from transforms.matching import reconciliation_key
from transforms.validate import validate_raw_record
from schemas.internal_records import OpenItem

_LOG = logging.getLogger(__name__)
ONE_SIDED = frozenset({"PENDING", "MISSING_SETTLEMENT", "UNEXPECTED_SETTLEMENT"})
_ID_FIELD = {PAYMENTS: "event_id", SETTLEMENTS: "settlement_id"}
ITEMS = "items"


def store_key(key: Tuple[str, str, str]) -> str:
    return "|".join(key)


def encode_item(item: OpenItem) -> bytes:
    return json.dumps({"key": item.key, "revision": item.revision, "closed": item.closed,
                       "records": [list(record) for record in item.records], "signature": item.signature},
                      separators=(",", ":")).encode()


def decode_item(value: bytes) -> OpenItem:
    fields = json.loads(value)
    return OpenItem(fields["key"], int(fields["revision"]), bool(fields["closed"]),
                    tuple(tuple(record) for record in fields["records"]), str(fields["signature"]))


def latest_items(messages: Iterable[Tuple[Optional[bytes], Optional[bytes]]]) -> Dict[str, OpenItem]:
    """The store as of its last message per key, from (key, value) pairs in offset order per partition."""
    items: Dict[str, OpenItem] = {}
    for key, value in messages:
        if key is None:
            continue
        if value is None:
            items.pop(key.decode(), None)  # a tombstone: the key was decided and committed
        else:
            items[key.decode()] = decode_item(value)
    return items


def carried_records(items: Dict[str, OpenItem]) -> Dict[str, List[RawRecord]]:
    """The records of the carried keys, per input, as RawRecords like the topics' own."""
    carried: Dict[str, List[RawRecord]] = {PAYMENTS: [], SETTLEMENTS: []}
    for item in items.values():
        for input_name, source, value in item.records:
            carried[input_name].append(raw_record_from_message(input_name, source, value.encode(), "json"))
    return carried


def keyed_record(raw: RawRecord) -> List[Tuple[str, Tuple[str, str, str]]]:
    """[(store key, (input, source, JSON value))] for a valid record matched by key; [] otherwise."""
    record = validate_raw_record(raw)
    key = None if isinstance(record, DeadLetter) else reconciliation_key(record)  # dead letters: never carried
    if key is None:
        return []
    return [(store_key(key), (raw.input, raw.source,
                              encode_value(record._asdict(), "json", SCHEMA_OF_INPUT[raw.input]).decode()))]


def rows_signature(rows: Iterable[ReconciliationResult]) -> str:
    """What a key's answer is, revision and finality aside: equal signatures, nothing new to say."""
    shown = sorted(repr(row._replace(revision=0, is_final=False)) for row in rows)
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
                yield row._replace(revision=revision, is_final=row.status not in ONE_SIDED)
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
