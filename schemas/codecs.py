"""Readers and writers for the canonical formats: CSV, JSON Lines, Avro, Parquet.

One field set for all formats (docs/DESIGN.md 3). Readers never raise on bad
content: every record comes out as a `RawRecord`, either with its field
mapping or with a decode error and the raw payload, so the pipeline can
dead-letter it and the counts still add up. Validation happens later, in
`transforms.validate`, identically for every format and for Kafka.
"""
from __future__ import annotations

import csv
import io
import json
import re
from datetime import date, datetime
from typing import IO, Any, Iterable, Iterator, List, Mapping, Optional, Sequence

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq

from schemas import arrow
from schemas.attempts import ATTEMPTS
from schemas.avro import avro_schema
from schemas.records import PAYMENTS, SETTLEMENTS, RawRecord
from schemas.timestamps import format_timestamp, millis_to_datetime
from schemas.vendors import (
    DEFAULT_VENDOR_OPTIONS,
    VendorOptions,
    VendorRowError,
    detect_vendor,
    settlement_fields_from_vendor_row,
    shown_columns,
)

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

AVRO_SCHEMA_OF_INPUT = {PAYMENTS: "payment_event", SETTLEMENTS: "settlement_line", ATTEMPTS: "authorization_attempt"}
ARROW_SCHEMA_OF_INPUT = {PAYMENTS: arrow.PAYMENT_EVENT, SETTLEMENTS: arrow.SETTLEMENT_LINE,
                         ATTEMPTS: arrow.AUTHORIZATION_ATTEMPT}
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


def read_records(handle: IO[bytes], path: str, fmt: str, input_name: str,
                 vendor_options: VendorOptions = DEFAULT_VENDOR_OPTIONS) -> Iterator[RawRecord]:
    """Reads every record of one file; bad content becomes RawRecords with a decode error.

    `vendor_options` only concern settlement CSVs that are vendor reports."""
    if fmt == "csv":
        yield from _read_csv(handle, path, input_name, vendor_options)
        return
    reader = {"jsonl": _read_jsonl, "avro": _read_avro, "parquet": _read_parquet}[fmt]
    yield from reader(handle, path, input_name)


def byte_lines(handle: IO[bytes]) -> Iterator[bytes]:
    # readline() only: Beam's CompressedFile (.gz, .bz2, ...) is neither iterable nor an io.RawIOBase.
    while True:
        line = handle.readline()
        if not line:
            return
        yield line


class Counting:
    """Hands out what an iterable yields, counting it (plus `already`): lines read, rows a writer consumed."""

    def __init__(self, items: Iterable[Any], already: int = 0):
        self._items = iter(items)
        self.count = already

    def __iter__(self) -> "Counting":
        return self

    def __next__(self) -> Any:
        item = next(self._items)
        self.count += 1
        return item


MAX_RAW_PAYLOAD_CHARS = 65_536
_DIGIT_RUN = "0123456789 -"  # digits and the separators a card number may be written with (schemas/pan.py)


_ALREADY_CUT = re.compile(r"(?s).{0,64}\.\.\.\[cut: [0-9,]+ characters in all\]")


def capped(text: str) -> str:
    """A raw payload kept whole up to 64 Ki characters; longer ones are cut, saying so.

    The cut never falls inside a run of digits: the run is dropped whole, so no
    card number is cut into a part too short to be found and masked. Idempotent:
    a payload cut once (at reading) passes the dead-letter step unchanged.
    """
    if len(text) <= MAX_RAW_PAYLOAD_CHARS or _ALREADY_CUT.fullmatch(text[MAX_RAW_PAYLOAD_CHARS - 64:] or ""):
        return text
    cut = MAX_RAW_PAYLOAD_CHARS
    if text[cut] in _DIGIT_RUN:
        while cut and text[cut - 1] in _DIGIT_RUN:
            cut -= 1
    return f"{text[:cut]}...[cut: {len(text):,} characters in all]"


TRUNCATED = "is truncated (its compressed data ends early)"


CUT_SHORT = "is truncated or corrupt"


def is_truncation(reason: str) -> bool:
    """Whether a dead letter's reason says a file was cut short, so the rest of it was not read (see
    stream_error and unreadable_rest): the run's answer is incomplete."""
    return TRUNCATED in reason or CUT_SHORT in reason


def unreadable_rest(input_name: str, path: str, kind: str, unit: str, position: int,
                    error: BaseException) -> RawRecord:
    """The decode dead letter of an Avro or Parquet file that stops being readable after `position` records.

    The two cannot be told apart from inside the reader (a cut file fails like a corrupt one), and either
    way the rest of the file is lost, so both count as a truncated file."""
    return RawRecord(input_name, f"{path}#{position + 1}", None,
                     f"<unreadable {kind} data in {path} after {unit} {position}>",
                     f"{path} {CUT_SHORT}: unreadable {kind} data after {position} {unit}s "
                     f"({type(error).__name__}: {error})")


def stream_error(input_name: str, path: str, lines_read: int, error: BaseException) -> RawRecord:
    """The decode dead letter of a file whose bytes stop making sense (corrupt or truncated compression, ...)."""
    what = TRUNCATED if isinstance(error, EOFError) else "cannot be decoded"
    return RawRecord(input_name, path, None, f"<undecodable data in {path} after line {lines_read}>",
                     f"{path} {what} after line {lines_read} ({type(error).__name__}: {error})")


def guarded(records: Iterator[RawRecord], lines: Counting, path: str, input_name: str) -> Iterator[RawRecord]:
    """The records of a line reader, ending with a stream_error dead letter if reading the bytes fails."""
    try:
        yield from records
    except Exception as error:  # zlib/gzip/bz2/OS errors, a csv.Error outside any row: the file, not a record
        yield stream_error(input_name, path, lines.count, error)


class StrictText:
    """UTF-8 text lines from byte lines; a line that is not valid UTF-8 is handed on as an empty line (so the
    csv module's line numbers stay right) and queued as a decode dead letter in `rejected`."""

    def __init__(self, lines: Iterable[bytes], input_name: str, path: str, first_line: int, bom: bool = False):
        self._lines = iter(lines)
        self._input_name, self._path = input_name, path
        self._number = first_line - 1
        self._bom = bom
        self.rejected: List[RawRecord] = []

    def __iter__(self) -> "StrictText":
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self._number += 1
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as error:
            self.rejected.append(invalid_utf8(self._input_name, f"{self._path}:{self._number}", line, error))
            return "\n"
        if self._bom:
            self._bom = False
            text = text[1:] if text.startswith("\ufeff") else text
        return text


def invalid_utf8(input_name: str, source: str, line: bytes, error: UnicodeDecodeError) -> RawRecord:
    shown = line.decode("utf-8", errors="backslashreplace").rstrip("\r\n")
    return RawRecord(input_name, source, None, capped(shown), f"not valid UTF-8 at byte {error.start}")


class _LastLine:
    """Text lines, remembering the last one handed out (the raw payload of a row csv cannot parse)."""

    def __init__(self, lines: Iterable[str]):
        self._lines = iter(lines)
        self.last = ""

    def __iter__(self) -> "_LastLine":
        return self

    def __next__(self) -> str:
        self.last = next(self._lines)
        return self.last


def _read_csv(handle: IO[bytes], path: str, input_name: str,
              vendor_options: VendorOptions = DEFAULT_VENDOR_OPTIONS) -> Iterator[RawRecord]:
    lines = Counting(byte_lines(handle))
    yield from guarded(_csv_records(lines, path, input_name, vendor_options), lines, path, input_name)


def _csv_records(lines: Counting, path: str, input_name: str,
                 vendor_options: VendorOptions = DEFAULT_VENDOR_OPTIONS) -> Iterator[RawRecord]:
    strict = StrictText(lines, input_name, path, first_line=1, bom=True)
    text = _LastLine(strict)
    reader = csv.reader(text)
    header = next(reader, None)
    yield from _drain(strict)
    if header is None:
        return
    yield from csv_body_records(reader, text, path, input_name, csv_header(header), strict=strict,
                                vendor_options=vendor_options)


def csv_header(cells: Sequence[str]) -> List[str]:
    return [column.strip() for column in cells]


def csv_records_from_lines(lines: Iterable[bytes], path: str, input_name: str, header: Sequence[str],
                           lines_before: int) -> Iterator[RawRecord]:
    """The records of a CSV body that starts after `lines_before` lines (header included) of its file."""
    counted = Counting(lines, already=lines_before)
    strict = StrictText(counted, input_name, path, first_line=lines_before + 1)
    text = _LastLine(strict)
    body = csv_body_records(csv.reader(text), text, path, input_name, header, lines_before, strict)
    yield from guarded(body, counted, path, input_name)


def _drain(strict: "StrictText", vendor: Optional[str] = None) -> Iterator[RawRecord]:
    while strict.rejected:
        record = strict.rejected.pop(0)
        yield record if vendor is None else record._replace(raw_payload=_withheld(vendor))


def csv_body_records(reader, text: _LastLine, path: str, input_name: str, header: Sequence[str],
                     lines_before: int = 0, strict: Optional["StrictText"] = None,
                     vendor_options: VendorOptions = DEFAULT_VENDOR_OPTIONS) -> Iterator[RawRecord]:
    vendor = detect_vendor(header) if input_name == SETTLEMENTS else None
    while True:
        try:
            row = next(reader)
        except StopIteration:
            if strict is not None:
                yield from _drain(strict, vendor)
            return
        except csv.Error as error:  # a field over csv's size limit, a bare CR inside a line, ...
            if strict is not None:
                yield from _drain(strict, vendor)
            raw = capped(text.last.rstrip("\r\n")) if vendor is None else _withheld(vendor)
            yield RawRecord(input_name, f"{path}:{lines_before + reader.line_num}", None,
                            raw, f"CSV row cannot be parsed: {error}")
            continue
        if strict is not None:
            yield from _drain(strict, vendor)
        source = f"{path}:{lines_before + reader.line_num}"
        if not row or all(not cell.strip() for cell in row):
            continue  # blank lines carry no record (csv treats a trailing newline the same way)
        if len(row) != len(header):
            yield RawRecord(input_name, source, None, _csv_line(row) if vendor is None else _withheld(vendor),
                            f"row has {len(row)} columns, the header has {len(header)}")
            continue
        fields = dict(zip(header, row))
        if vendor is None:
            yield RawRecord(input_name, source, fields, _csv_line(row))
            continue
        raw = _vendor_line(vendor, header, row)
        try:
            fields = settlement_fields_from_vendor_row(vendor, fields, lines_before + reader.line_num,
                                                       vendor_options)
            yield RawRecord(input_name, source, fields, raw)
        except VendorRowError as error:
            yield RawRecord(input_name, source, None, raw, f"{vendor} report row: {error}")


def _vendor_line(vendor: str, header: Sequence[str], row: Sequence[str]) -> str:
    """A vendor report row as CSV text, the columns a dead letter may not show left empty (personal data)."""
    shown = shown_columns(vendor)
    return _csv_line([cell if column in shown else "" for column, cell in zip(header, row)])


def _withheld(vendor: str) -> str:
    # A line whose cells cannot be matched to the header's columns may put personal data anywhere.
    return f"<not shown: a {vendor} report line whose cells do not match its columns may hold personal data>"


def _csv_line(row: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(row)
    return buffer.getvalue()


def _read_jsonl(handle: IO[bytes], path: str, input_name: str) -> Iterator[RawRecord]:
    lines = Counting(byte_lines(handle))
    yield from guarded(_jsonl_records(lines, path, input_name), lines, path, input_name)


def _jsonl_records(lines: Counting, path: str, input_name: str) -> Iterator[RawRecord]:
    for raw_bytes in lines:
        source = f"{path}:{lines.count}"
        try:
            raw = raw_bytes.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as error:
            yield invalid_utf8(input_name, source, raw_bytes, error)
            continue
        if not raw.strip():
            continue
        try:
            fields = json.loads(raw)
        except json.JSONDecodeError as error:
            yield RawRecord(input_name, source, None, capped(raw),
                            f"invalid JSON: {error.msg} at column {error.colno}")
            continue
        except RecursionError:
            yield RawRecord(input_name, source, None, capped(raw), "invalid JSON: nested too deeply")
            continue
        if not isinstance(fields, dict):
            yield RawRecord(input_name, source, None, capped(raw), "a JSON line must be an object")
            continue
        yield RawRecord(input_name, source, fields, raw)


def _read_avro(handle: IO[bytes], path: str, input_name: str) -> Iterator[RawRecord]:
    position = 0
    try:
        for fields in fastavro.reader(handle):
            position += 1
            yield RawRecord(input_name, f"{path}#{position}", fields, payload_json(fields))
    except Exception as error:  # fastavro raises several types for truncated or corrupt blocks
        yield unreadable_rest(input_name, path, "Avro", "record", position, error)


def _read_parquet(handle: IO[bytes], path: str, input_name: str) -> Iterator[RawRecord]:
    position = 0
    try:
        parquet = pq.ParquetFile(pa.PythonFile(handle, mode="r") if not _seekable(handle) else handle)
        for batch in parquet.iter_batches(batch_size=65_536):
            for fields in batch.to_pylist():
                position += 1
                yield RawRecord(input_name, f"{path}#{position}", fields, payload_json(fields))
    except Exception as error:  # pyarrow raises ArrowInvalid / OSError for corrupt files
        yield unreadable_rest(input_name, path, "Parquet", "row", position, error)


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
    counter = Counting(({name: _avro_value(name, row.get(name)) for name in fieldnames} for row in rows))
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
