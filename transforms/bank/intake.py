"""Bank entries as the statement readers hand them over -> entries, dead letters and the first copy of each
(issue 21, docs/DESIGN.md 3.8): the per-record rules both engines run, pure.

The readers of schemas/bank check every entry as they read it, so an entry is accepted as read, and a
problem record (a truncated file, control totals off, an entity bomb, ...) is a decode dead letter with its
reason and its raw payload (masked there already; masked again here, as every dead letter is).

A statement delivered twice (a re-sent file, overlapping downloads) holds the same entries: an entry is
known by its account and `entry_ref` (statement id and position, schemas/bank/entry.py), and the copy read first (by
file, then record: transforms/redelivery.py's `delivery_order`, the order of every other input) is kept.
A later copy equal in every field is a plain duplicate; one that differs is a dead letter at stage
`dedup`, as a conflicting re-delivery of a payment is: the bank said two things about one entry.
"""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable, List, Mapping, Optional, Tuple, Union

from schemas.bank.entry import BANK_ENTRY_FIELDS, BANK_STATEMENTS
from schemas.internal_records import Judged
from schemas.records import RawRecord
from transforms.redelivery import STAGE_DEDUP, delivery_order
from transforms.validate import STAGE_DECODE, dead_letter

Entry = Mapping[str, Any]
SourcedEntry = Tuple[str, Entry]  # (where it was read, the entry's fields)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def judge_bank_record(record: RawRecord) -> Union[SourcedEntry, Judged]:
    """A reader's record -> (source, entry), or the dead letter of a problem record."""
    if record.fields is None:
        return dead_letter(record, STAGE_DECODE, record.decode_error or "no bank entry")
    return record.source, dict(record.fields)


def entry_key(sourced: SourcedEntry) -> Tuple[str, str]:
    """What makes an entry itself: its account and entry_ref (a statement id is the bank's, and two banks
    may number statements alike)."""
    return str(sourced[1]["account"]), str(sourced[1]["entry_ref"])


def first_copies(copies: Iterable[SourcedEntry]) -> Tuple[Entry, List[Judged]]:
    """Every copy of one entry -> (the copy read first, the dead letters of later copies that differ)."""
    ordered = sorted(copies, key=lambda copy: delivery_order(copy[0]))
    kept_source, kept = ordered[0]
    letters = []
    for source, entry in ordered[1:]:
        letter = conflict_letter(kept_source, kept, source, entry)
        if letter is not None:
            letters.append(letter)
    return kept, letters


def conflict_letter(kept_source: str, kept: Entry, source: str, entry: Entry) -> Optional[Judged]:
    """None when a later copy (`source`, `entry`) repeats the kept one in every field, else its dead letter at
    stage `dedup` (one wording for a batch run's first copies and a stream's first arrivals: live.py)."""
    differing = [name for name in BANK_ENTRY_FIELDS if entry.get(name) != kept.get(name)]
    if not differing:
        return None
    reason = (f"conflicting re-delivery of entry_ref {kept['entry_ref']}: "
              f"{', '.join(differing)} differ (kept {kept_source})")
    payload = json.dumps(dict(entry), sort_keys=True, separators=(",", ":"))
    return dead_letter(RawRecord(BANK_STATEMENTS, source, entry, payload), STAGE_DEDUP, reason)


def as_of_day(as_of_millis: int) -> date:
    """The day bank matching judges deadlines on: as_of's UTC date (bank days carry no time zone)."""
    return (_EPOCH + timedelta(milliseconds=as_of_millis)).date()
