"""The Avro schemas (`schemas/avro/*.avsc`), parsed once with fastavro."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import fastavro

AVRO_DIR = Path(__file__).with_name("avro")
SCHEMA_NAMES = ("payment_event", "settlement_line", "reconciliation_result", "daily_total", "dead_letter", "break_rate_alert",
                "authorization_attempt", "risk_decision", "payout_balance", "bank_match")


@functools.lru_cache(maxsize=None)
def avro_schema(name: str) -> dict:
    """Returns the parsed schema `schemas/avro/<name>.avsc` (usable by fastavro readers and writers)."""
    if name not in SCHEMA_NAMES:
        raise KeyError(f"no Avro schema named {name!r}; known: {', '.join(SCHEMA_NAMES)}")
    with open(AVRO_DIR / f"{name}.avsc", encoding="utf-8") as handle:
        return _fields_in_one_order(fastavro.parse_schema(json.load(handle)))


# fastavro copies these field properties in the order of a set, which moves with PYTHONHASHSEED, and
# writes the parsed schema into every file's header: the same records gave different files per process.
_SET_ORDERED_FIELD_PROPERTIES = ("aliases", "default", "doc")


def _fields_in_one_order(schema):
    """The parsed schema with each record field's set-ordered properties first, sorted (in place)."""
    if isinstance(schema, list):
        for branch in schema:
            _fields_in_one_order(branch)
    elif isinstance(schema, dict):
        for field in schema.get("fields", ()):
            ordered = {key: field[key] for key in _SET_ORDERED_FIELD_PROPERTIES if key in field}
            ordered.update((key, value) for key, value in field.items() if key not in ordered)
            field.clear()
            field.update(ordered)
            _fields_in_one_order(field["type"])
        for key in ("items", "values"):
            if key in schema:
                _fields_in_one_order(schema[key])
    return schema
