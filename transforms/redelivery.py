"""Re-deliveries that disagree with the copy kept (docs/DESIGN.md 3.3): the one rule both engines apply.

Several deliveries of one id (`event_id` / `settlement_id`) keep one copy:
the first read, i.e. the lowest (file by path, line or record number), on
Kafka the lowest (partition, offset) — the columnar engine's `_origin`
order; an unbounded stream keeps the first to arrive. Another copy whose
payload fields equal the kept one's is a plain duplicate (counted as
deduplicated); one that differs is a dead letter at stage "dedup" whose
reason names the differing fields and the kept copy's source, and which is
counted as rejected (`conflicting`), so read = accepted + rejected still
holds with accepted = unique + deduplicated.
"""
from __future__ import annotations

from typing import Any, Iterable, List, Mapping, Optional, Tuple

from schemas.codecs import payload_json
from schemas.internal_records import Judged
from schemas.raw_chunks import kafka_position, ordinal_of, source_path
from schemas.record_tables import ID_COLUMN_OF_INPUT, RECONCILED_COLUMNS
from schemas.records import RawRecord
from schemas.timestamps import format_timestamp
from transforms.validate import dead_letter

STAGE_DEDUP = "dedup"
# The payload of a delivery: every field a result, a daily total or a payout balance is computed from.
# The other (a payment's payment_id) changes no output, and the columnar engine does not carry it past
# validation (docs/DESIGN.md 9.4), so copies differing only there are plain duplicates.
PAYLOAD_FIELDS = RECONCILED_COLUMNS
ID_FIELD_OF_INPUT = ID_COLUMN_OF_INPUT
_TIME_FIELDS = frozenset({"event_time", "booked_time"})

Delivery = Tuple[str, Any]  # (source, typed record or field mapping)


def delivery_order(source: str) -> Tuple[str, int, int]:
    """Sort key of a copy by where it was read, the order of the columnar engine's `_origin`:
    (file path, 0, line or record number) for files, ("", partition, offset) for Kafka (one topic per input)."""
    position = kafka_position(source)
    if position is not None:
        return "", position[0], position[1]
    return source_path(source), 0, ordinal_of(source)


def _shown(name: str, value: Any) -> str:
    if value is None:
        return "null"
    return format_timestamp(value) if name in _TIME_FIELDS else str(value)


def _as_mapping(record: Any) -> Mapping[str, Any]:
    return record if isinstance(record, Mapping) else record._asdict()


def conflict_letter(input_name: str, copy: Delivery, kept: Delivery) -> Optional[Judged]:
    """None when `copy` repeats `kept` in every payload field, else its dead letter:
    "conflicting re-delivery of event_id e1: amount_minor 1200 != 1000 (kept f.csv:2)" (copy's value first)."""
    (copy_source, copy_record), (kept_source, kept_record) = copy, kept
    copy_fields, kept_fields = _as_mapping(copy_record), _as_mapping(kept_record)
    names = PAYLOAD_FIELDS[input_name]
    differing = [name for name in names if copy_fields[name] != kept_fields[name]]
    if not differing:
        return None
    id_name = ID_FIELD_OF_INPUT[input_name]
    details = ", ".join(f"{name} {_shown(name, copy_fields[name])} != {_shown(name, kept_fields[name])}"
                        for name in differing)
    reason = f"conflicting re-delivery of {id_name} {copy_fields[id_name]}: {details} (kept {kept_source})"
    # The copy's bytes are not carried past validation (neither engine keeps them), so its payload is the
    # copy as validated: its payload fields as JSON, times in RFC 3339. The source says where the bytes are.
    shown = {name: format_timestamp(copy_fields[name]) if name in _TIME_FIELDS else copy_fields[name]
             for name in names}
    return dead_letter(RawRecord(input_name, copy_source, shown, payload_json(shown)), STAGE_DEDUP, reason)


def settle_deliveries(input_name: str, deliveries: Iterable[Delivery]) -> Tuple[Delivery, List[Judged]]:
    """All deliveries of one id -> (the copy kept: the first read, the conflicting copies' dead letters)."""
    ordered = sorted(deliveries, key=lambda delivery: delivery_order(delivery[0]))
    kept = ordered[0]
    letters = [conflict_letter(input_name, copy, kept) for copy in ordered[1:]]
    return kept, [letter for letter in letters if letter is not None]
