"""The Avro schemas (`schemas/avro/*.avsc`), parsed once with fastavro."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import fastavro

AVRO_DIR = Path(__file__).with_name("avro")
SCHEMA_NAMES = ("payment_event", "settlement_line", "reconciliation_result", "daily_total", "dead_letter", "break_rate_alert")


@functools.lru_cache(maxsize=None)
def avro_schema(name: str) -> dict:
    """Returns the parsed schema `schemas/avro/<name>.avsc` (usable by fastavro readers and writers)."""
    if name not in SCHEMA_NAMES:
        raise KeyError(f"no Avro schema named {name!r}; known: {', '.join(SCHEMA_NAMES)}")
    with open(AVRO_DIR / f"{name}.avsc", encoding="utf-8") as handle:
        return fastavro.parse_schema(json.load(handle))
