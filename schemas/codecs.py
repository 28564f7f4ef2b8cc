"""Readers and writers for the canonical formats: CSV, JSON Lines, Avro, Parquet.

One field set for all formats (docs/DESIGN.md 3). Readers never raise on bad
content: every record comes out as a `RawRecord`, either with its field
mapping or with a decode error and the raw payload, so the pipeline can
dead-letter it and the counts still add up. Validation happens later, in
`transforms.validate`, identically for every format and for Kafka.
"""
from __future__ import annotations

import codecs
import csv
import io
import json
from datetime import date, datetime
from typing import IO, Any, Iterable, Iterator, List, Mapping, Optional, Sequence

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq

from schemas import arrow
from schemas.avro import avro_schema
from schemas.records import PAYMENTS, SETTLEMENTS, RawRecord
from schemas.timestamps import format_timestamp, millis_to_datetime
from schemas.vendors import VendorRowError, detect_vendor, settlement_fields_from_vendor_row

FORMATS = ("csv", "jsonl", "avro", "parquet")
_EXTENSIONS = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".avro": "avro",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst", ".deflate")

AVRO_SCHEMA_OF_INPUT = {PAYMENTS: "payment_event", SETTLEMENTS: "settlement_line"}
ARROW_SCHEMA_OF_INPUT = {PAYMENTS: arrow.PAYMENT_EVENT, SETTLEMENTS: arrow.SETTLEMENT_LINE}
_TIME_FIELDS = {"event_time", "booked_time"}


class UnknownFormatError(ValueError):
    """A path whose format cannot be told from its extension."""


def detect_format(path: str, explicit: Optional[str] = None) -> str:
    """The format of `path`: `explicit` if given, else from the extension (.csv.gz counts as csv)."""
    if explicit:
        if explicit not in FORMATS:
            raise UnknownFormatError(f"unknown format {explicit!r}; choose one of {', '.join(FORMATS)}")
        return explicit
    name = path.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    for extension, fmt in _EXTENSIONS.items():
        if name.endswith(extension):
            return fmt
    raise UnknownFormatError(
        f"cannot tell the format of {path!r} from its extension; pass --format ({', '.join(FORMATS)})"
    )


# ---------------------------------------------------------------- reading


def read_records(handle: IO[bytes], path: str, fmt: str, input_name: str) -> Iterator[RawRecord]:
    """Reads every record of one file; bad content becomes RawRecords with a decode error."""
    reader = {"csv": _read_csv, "jsonl": _read_jsonl, "avro": _read_avro, "parquet": _read_parquet}[fmt]
    yield from reader(handle, path, input_name)


def byte_lines(handle: IO[bytes]) -> Iterator[bytes]:
    # readline() only: Beam's CompressedFile (.gz, .bz2, ...) is neither iterable nor an io.RawIOBase.
    while True:
        line = handle.readline()
        if not line:
            return
        yield line


def _read_csv(handle: IO[bytes], path: str, input_name: str) -> Iterator[RawRecord]:
    text = codecs.iterdecode(byte_lines(handle), "utf-8-sig", errors="replace")
    reader = csv.reader(text)
    header = next(reader, None)
    if header is None:
        return
    yield from csv_body_records(reader, path, input_name, csv_header(header))


def csv_header(cells: Sequence[str]) -> List[str]:
    return [column.strip() for column in cells]


def csv_records_from_lines(lines: Iterable[bytes], path: str, input_name: str, header: Sequence[str],
                           lines_before: int) -> Iterator[RawRecord]:
    """The records of a CSV body that starts after `lines_before` lines (header included) of its file."""
    reader = csv.reader(codecs.iterdecode(iter(lines), "utf-8", errors="replace"))
    yield from csv_body_records(reader, path, input_name, header, lines_before)


def csv_body_records(reader, path: str, input_name: str, header: Sequence[str],
                     lines_before: int = 0) -> Iterator[RawRecord]:
    vendor = detect_vendor(header) if input_name == SETTLEMENTS else None
    for row in reader:
        source = f"{path}:{lines_before + reader.line_num}"
        raw = _csv_line(row)
        if not row or all(not cell.strip() for cell in row):
            continue  # blank lines carry no record (csv treats a trailing newline the same way)
        if len(row) != len(header):
            yield RawRecord(input_name, source, None, raw,
                            f"row has {len(row)} columns, the header has {len(header)}")
            continue
        fields = dict(zip(header, row))
        if vendor is None:
            yield RawRecord(input_name, source, fields, raw)
            continue
        try:
            yield RawRecord(input_name, source, settlement_fields_from_vendor_row(vendor, fields), raw)
        except VendorRowError as error:
            yield RawRecord(input_name, source, None, raw, f"{vendor} report row: {error}")


def _csv_line(row: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(row)
    return buffer.getvalue()


def _read_jsonl(handle: IO[bytes], path: str, input_name: str) -> Iterator[RawRecord]:
    for line_number, raw_bytes in enumerate(byte_lines(handle), start=1):
        raw = raw_bytes.decode("utf-8", errors="replace").rstrip("\r\n")
        if not raw.strip():
            continue
        source = f"{path}:{line_number}"
        try:
            fields = json.loads(raw)
        except json.JSONDecodeError as error:
            yield RawRecord(input_name, source, None, raw, f"invalid JSON: {error.msg} at column {error.colno}")
            continue
        if not isinstance(fields, dict):
            yield RawRecord(input_name, source, None, raw, "a JSON line must be an object")
            continue
        yield RawRecord(input_name, source, fields, raw)


def _read_avro(handle: IO[bytes], path: str, input_name: str) -> Iterator[RawRecord]:
    position = 0
    try:
        for fields in fastavro.reader(handle):
            position += 1
            yield RawRecord(input_name, f"{path}#{position}", fields, payload_json(fields))
    except Exception as error:  # fastavro raises several types for truncated or corrupt blocks
        yield RawRecord(
            input_name,
            f"{path}#{position + 1}",
            None,
            f"<unreadable Avro data in {path} after record {position}>",
            f"corrupt or truncated Avro file after {position} records ({type(error).__name__}: {error})",
        )


def _read_parquet(handle: IO[bytes], path: str, input_name: str) -> Iterator[RawRecord]:
    position = 0
    try:
        parquet = pq.ParquetFile(pa.PythonFile(handle, mode="r") if not _seekable(handle) else handle)
        for batch in parquet.iter_batches(batch_size=65_536):
            for fields in batch.to_pylist():
                position += 1
                yield RawRecord(input_name, f"{path}#{position}", fields, payload_json(fields))
    except Exception as error:  # pyarrow raises ArrowInvalid / OSError for corrupt files
        yield RawRecord(
            input_name,
            f"{path}#{position + 1}",
            None,
            f"<unreadable Parquet data in {path} after row {position}>",
            f"corrupt or truncated Parquet file after {position} rows ({type(error).__name__}: {error})",
        )


def _seekable(handle: IO[bytes]) -> bool:
    try:
        return handle.seekable()
    except AttributeError:
        return False


def payload_json(fields: Mapping[str, Any]) -> str:
    """A record as JSON text, for dead letters and JSON output (datetimes as RFC 3339)."""
    return json.dumps(fields, default=_json_default, sort_keys=False, separators=(",", ":"))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise TypeError(f"cannot encode {type(value).__name__}")


# ---------------------------------------------------------------- writing


def write_records(path: str, fmt: str, input_name: str, rows: Iterable[Mapping[str, Any]],
                  fieldnames: Sequence[str]) -> int:
    """Writes field mappings (times as epoch millis) in a canonical format; returns the count.

    CSV and JSON Lines write times as RFC 3339 text; a value that is already
    text is written as it is (the data generator uses this to inject bad rows).
    """
    writer = {"csv": _write_csv, "jsonl": _write_jsonl, "avro": _write_avro, "parquet": _write_parquet}[fmt]
    return writer(path, input_name, rows, fieldnames)


def _text_fields(row: Mapping[str, Any]) -> dict:
    return {name: format_timestamp(value) if name in _TIME_FIELDS and isinstance(value, int) else value
            for name, value in row.items()}


def _write_csv(path: str, input_name: str, rows: Iterable[Mapping[str, Any]], fieldnames: Sequence[str]) -> int:
    count = 0
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fieldnames), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in _text_fields(row).items()})
            count += 1
    return count


def _write_jsonl(path: str, input_name: str, rows: Iterable[Mapping[str, Any]], fieldnames: Sequence[str]) -> int:
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            text = _text_fields(row)
            handle.write(json.dumps({name: text.get(name) for name in fieldnames}) + "\n")
            count += 1
    return count


def _avro_value(name: str, value: Any) -> Any:
    if name == "settlement_date" and isinstance(value, str):
        return date.fromisoformat(value)
    if name in _TIME_FIELDS and isinstance(value, int):
        return millis_to_datetime(value)
    return value


def _write_avro(path: str, input_name: str, rows: Iterable[Mapping[str, Any]], fieldnames: Sequence[str]) -> int:
    counter = _Counter(({name: _avro_value(name, row.get(name)) for name in fieldnames} for row in rows))
    with open(path, "wb") as handle:
        fastavro.writer(handle, avro_schema(AVRO_SCHEMA_OF_INPUT[input_name]), counter, codec="deflate")
    return counter.count


def _write_parquet(path: str, input_name: str, rows: Iterable[Mapping[str, Any]], fieldnames: Sequence[str]) -> int:
    schema = ARROW_SCHEMA_OF_INPUT[input_name]
    count = 0
    with pq.ParquetWriter(path, schema) as writer:
        for chunk in _chunks(rows, 100_000):
            columns = {name: [row.get(name) for row in chunk] for name in schema.names}
            if "settlement_date" in columns:
                columns["settlement_date"] = [date.fromisoformat(v) if isinstance(v, str) else v
                                              for v in columns["settlement_date"]]
            writer.write_table(pa.table(columns, schema=schema))
            count += len(chunk)
    return count


def _chunks(rows: Iterable[Any], size: int) -> Iterator[list]:
    chunk: list = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _Counter:
    """Counts what an iterator yields, for writers that consume it internally."""

    def __init__(self, iterable: Iterable[Any]):
        self._iterator = iter(iterable)
        self.count = 0

    def __iter__(self) -> "_Counter":
        return self

    def __next__(self) -> Any:
        value = next(self._iterator)
        self.count += 1
        return value
