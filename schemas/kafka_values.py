"""Kafka message values: JSON, schemaless Avro, and the Confluent Avro wire format.

Field names and types are the same as in files (docs/DESIGN.md 3): JSON values use
RFC 3339 text for times; Avro values use the `schemas/avro/*.avsc` schemas.
The Confluent wire format is a zero "magic" byte, a 4-byte big-endian schema
id, then the schemaless Avro body.
"""
from __future__ import annotations

import base64
import functools
import io
import json
import struct
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import fastavro
import pyarrow as pa

from schemas.attempts import ATTEMPTS
from schemas.avro import avro_schema
from schemas.bank.entry import BANK_STATEMENTS, STATEMENT_DOCUMENT
from schemas.codecs import capped
from schemas.pan import mask_pans
from schemas.records import PAYMENTS, SETTLEMENTS, RawRecord
from schemas.stable_schema import stable_schema
from schemas.timestamps import (
    TimestampError,
    format_timestamp,
    format_timestamps,
    millis_to_datetime,
    parse_timestamp_millis,
)

VALUE_FORMATS = ("json", "avro", "confluent-avro")
_TIME_FIELDS = ("event_time", "booked_time", "window_start", "window_end")
_CONFLUENT_MAGIC = 0


class ValueDecodeError(ValueError):
    """A message value that cannot be decoded in the configured format."""


_COMPACT_JSON = json.JSONEncoder(separators=(",", ":")).encode  # json.dumps(..., separators=(",", ":"))


# Written without class syntax: under `from __future__ import annotations` Beam reads a NamedTuple's field
# types as text and gives it an opaque schema. Stable, because a PCollection of them gets a Beam schema
# (tests/test_stable_schema.py: a real type per field, a name-based id).
EncodedMessage = stable_schema(NamedTuple("EncodedMessage", [("key", Optional[bytes]), ("value", bytes)]))
EncodedMessage.__doc__ = "A message ready for a sink: its key and value already encoded (`encode_table_values`)."


class EncodedMessages:
    """A table's messages as one element for a sink (`table_messages`): one Beam call per table, not per row
    (the per-element call with its window and timestamp was 12% of a live stream's worker, 2026-12-06).
    Not a NamedTuple: Beam would give it a schema and a row coder (a random schema id, DESIGN 7), and it
    only passes from the encoding step to the sink fused with it."""

    __slots__ = ("messages",)

    def __init__(self, messages: List[EncodedMessage]):
        self.messages = messages

    def __repr__(self) -> str:
        return f"EncodedMessages({len(self.messages)} messages)"


def sink_messages(record: Any, key_fn: Callable[[Any], Optional[bytes]],
                  encode: Callable[[Any], bytes]) -> Sequence[EncodedMessage]:
    """What a sink sends for one element: an EncodedMessage, the messages of an EncodedMessages, or a record
    encoded here (`encode(record)`, keyed by `key_fn(record)`)."""
    if isinstance(record, EncodedMessage):
        return (record,)
    if isinstance(record, EncodedMessages):
        return record.messages
    return (EncodedMessage(key_fn(record), encode(record)),)


def encode_value(fields: Mapping[str, Any], value_format: str, schema_name: str, schema_id: int = 1) -> bytes:
    """Encodes a record's fields (times as epoch millis) as a message value."""
    nested = record_list_fields(schema_name)
    if nested:
        fields = {name: [item._asdict() if hasattr(item, "_asdict") else item for item in value]
                  if name in nested else value for name, value in fields.items()}
    if value_format == "json":
        return _COMPACT_JSON({name: format_timestamp(value) if name in _TIME_FIELDS and isinstance(value, int)
                              else value for name, value in fields.items()}).encode()
    body = io.BytesIO()
    fastavro.schemaless_writer(body, avro_schema(schema_name), _avro_ready(fields))
    if value_format == "avro":
        return body.getvalue()
    if value_format == "confluent-avro":
        return struct.pack(">bI", _CONFLUENT_MAGIC, schema_id) + body.getvalue()
    raise ValueError(f"unknown value format {value_format!r}; choose one of {', '.join(VALUE_FORMATS)}")


def encode_table_values(table: pa.Table, value_format: str, schema_name: str, schema_id: int = 1) -> List[bytes]:
    """Every row of an Arrow table whose columns are a record's fields, as `encode_value` encodes that record:
    the same bytes (tested), column by column, with no record object per row (the columnar stream's sinks)."""
    names = table.column_names
    columns = []
    for name in names:
        column = table.column(name)
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64())
        if value_format == "json" and name in _TIME_FIELDS and pa.types.is_integer(column.type):
            columns.append(format_timestamps(column))
            continue
        values = column.to_pylist()
        if value_format == "json" and name in _TIME_FIELDS:
            values = [format_timestamp(value) if isinstance(value, int) else value for value in values]
        columns.append(values)
    if value_format == "json":
        return _json_rows(names, columns)
    rows = (dict(zip(names, values)) for values in zip(*columns))
    return [encode_value(row, value_format, schema_name, schema_id) for row in rows]


_NULL, _EMPTY_LIST = "null", "[]"  # as the encoder writes None and an empty list (most decisions fire no rule)


def _json_rows(names: List[str], columns: List[list]) -> List[bytes]:
    """The compact JSON object of each row, as `_COMPACT_JSON` writes a dict of those names and values, built
    from each value's JSON text: text as the encoder escapes it (`encode_basestring_ascii`, the very function
    it calls), whole numbers as `int.__repr__`, anything else through the encoder itself. A cell costs a C
    call, not a dict entry and the encoder's walk (half the time of the live risk stream's sink, 2026-12-07)."""
    template = "{" + ",".join(_COMPACT_JSON(name).replace("%", "%%") + ":%s" for name in names) + "}"
    texts = [_json_texts(values) for values in columns]
    return [(template % row).encode() for row in zip(*texts)]


def _json_texts(values: list) -> list:
    kinds = set(map(type, values))
    if kinds <= {str, type(None)}:
        return [_NULL if value is None else _ESCAPED(value) for value in values]
    if kinds <= {int, type(None)}:
        return [_NULL if value is None else int.__repr__(value) for value in values]
    return [_EMPTY_LIST if type(value) is list and not value else _COMPACT_JSON(value) for value in values]


_ESCAPED = json.encoder.encode_basestring_ascii  # what a JSONEncoder with ensure_ascii (the default) calls for str


def table_messages(table: pa.Table, value_format: str, schema_name: str, key_column: str) -> EncodedMessages:
    """A table's rows as messages keyed by one of its text columns (UTF-8), values as `encode_table_values`."""
    keys = [None if key is None else key.encode("utf-8") for key in table.column(key_column).to_pylist()]
    return EncodedMessages([EncodedMessage(key, value)
                            for key, value in zip(keys, encode_table_values(table, value_format, schema_name))])


_AVRO_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


@functools.lru_cache(maxsize=None)
def record_list_fields(schema_name: str) -> FrozenSet[str]:
    """The fields that hold lists of records (a decision's fired rules), from the Avro schema: their
    NamedTuples become field mappings in JSON and Avro alike; other records pay nothing for it."""
    return frozenset(field["name"] for field in avro_schema(schema_name)["fields"] if _is_record_list(field["type"]))


def _is_record_list(field_type: Any) -> bool:
    if not (isinstance(field_type, dict) and field_type.get("type") == "array"):
        return False
    items = field_type["items"]  # a record, or the name of one defined before
    return items.get("type") == "record" if isinstance(items, dict) else items not in _AVRO_PRIMITIVES


def _avro_ready(fields: Mapping[str, Any]) -> Dict[str, Any]:
    ready = dict(fields)
    for name in _TIME_FIELDS:
        if isinstance(ready.get(name), int):
            ready[name] = millis_to_datetime(ready[name])
    if isinstance(ready.get("settlement_date"), str):
        from datetime import date

        ready["settlement_date"] = date.fromisoformat(ready["settlement_date"])
    return ready


def decode_value(value: Optional[bytes], value_format: str, schema_name: str) -> Dict[str, Any]:
    """Decodes a message value into a field mapping; raises ValueDecodeError."""
    if value is None:
        raise ValueDecodeError("message has no value (a tombstone)")
    if value_format == "json":
        try:
            fields = json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueDecodeError(f"invalid JSON: {error}") from None
        if not isinstance(fields, dict):
            raise ValueDecodeError("a JSON value must be an object")
        return fields
    if value_format == "confluent-avro":
        if len(value) < 5 or value[0] != _CONFLUENT_MAGIC:
            raise ValueDecodeError("not in the Confluent wire format (magic byte 0 + 4-byte schema id)")
        value = value[5:]
    elif value_format != "avro":
        raise ValueError(f"unknown value format {value_format!r}; choose one of {', '.join(VALUE_FORMATS)}")
    try:
        return fastavro.schemaless_reader(io.BytesIO(value), avro_schema(schema_name), None)
    except Exception as error:  # fastavro raises EOFError, ValueError, IndexError… on bad bytes
        raise ValueDecodeError(f"invalid Avro value ({type(error).__name__})") from None


def raw_text(value: Optional[bytes], value_format: str) -> str:
    """A value as text for dead letters: JSON as it is, binary values base64-encoded."""
    if value is None:
        return ""
    if value_format == "json":
        return value.decode("utf-8", errors="replace")
    return BINARY_PREFIX + base64.b64encode(value).decode("ascii")


BINARY_PREFIX = "base64:"


def mask_payload(text: str, keep: FrozenSet[str] = frozenset()) -> Tuple[str, int]:
    """`schemas.pan.mask_pans` for a raw payload, also inside a binary value's base64.

    The value's bytes are read as Latin-1 (one character per byte), so the
    ASCII digits of a card number in an Avro string are masked in place and
    the value keeps its length; the base64 text is masked as text too.
    """
    if not text.startswith(BINARY_PREFIX):
        return mask_pans(text, keep)
    try:
        data = base64.b64decode(text[len(BINARY_PREFIX):], validate=True)
    except ValueError:  # not base64 after all: plain text
        return mask_pans(text, keep)
    inner, in_value = mask_pans(data.decode("latin-1"), keep)
    outer, in_text = mask_pans(BINARY_PREFIX + base64.b64encode(inner.encode("latin-1")).decode("ascii"), keep)
    return outer, in_value + in_text



SCHEMA_OF_INPUT = {PAYMENTS: "payment_event", SETTLEMENTS: "settlement_line", ATTEMPTS: "authorization_attempt"}
PAYLOAD_TIME_FIELD = {PAYMENTS: "event_time", SETTLEMENTS: "booked_time", ATTEMPTS: "event_time"}


_JSON_DECODER = json.JSONDecoder()  # what json.loads uses when given no options


# A bank statement topic carries whole statement documents (camt.053 XML or BAI2 text), whatever the value
# format of the other topics: the record holds the document's bytes, read into entries downstream
# (schemas/bank/formats.py: bank_records_of_message), where a document's problems become dead letters.
KAFKA_INPUTS = (*SCHEMA_OF_INPUT, BANK_STATEMENTS)


def raw_record_from_message(input_name: str, source: str, value: Optional[bytes], value_format: str) -> RawRecord:
    """A Kafka message as a RawRecord: decoded fields, or the decode error with the raw value kept."""
    if input_name == BANK_STATEMENTS:
        return RawRecord(input_name, source, {STATEMENT_DOCUMENT: bytes(value or b"")}, "")
    if value_format == "json" and type(value) is bytes and value[:1] == b"{" and value[1:2] != b"\x00":
        # The common case, decoded once: for a value opening with "{" and no NUL after it, json.loads
        # detects UTF-8 and decodes the same text this strict decode gives (when it succeeds, "replace"
        # gives it too), so fields, raw payload and errors are exactly those of the general path below.
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            try:
                fields = _JSON_DECODER.decode(text)
            except json.JSONDecodeError as error:
                return RawRecord(input_name, source, None, capped(text), f"invalid JSON: {error}")
            return RawRecord(input_name, source, fields, text)  # an object: it opens with "{"
    raw = raw_text(value, value_format)
    try:
        return RawRecord(input_name, source, decode_value(value, value_format, SCHEMA_OF_INPUT[input_name]), raw)
    except ValueDecodeError as error:
        return RawRecord(input_name, source, None, capped(raw), str(error))


def payload_time_millis(record: RawRecord) -> Optional[int]:
    """The event time in a RawRecord's payload (docs/DESIGN.md 4.1), or None if it has none that parses."""
    if record.fields is None or record.input not in PAYLOAD_TIME_FIELD:  # a statement: the broker's time
        return None
    try:
        return parse_timestamp_millis(record.fields.get(PAYLOAD_TIME_FIELD[record.input]))
    except TimestampError:
        return None
