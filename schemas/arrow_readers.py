"""File readers for the columnar engine: bytes -> RawChunks of Arrow columns.

Each reader gives, row for row, the records `schemas.codecs.read_records`
gives (same fields, sources and raw payloads), in blocks:

* CSV: blocks of whole lines split by Arrow compute. A block is read this way
  only when it is plain ASCII without quotes or bare carriage returns; from
  the first block that is not, the rest of the file goes to the csv-module
  reader, which starts exactly there (no quoted field can span a boundary
  of quote-free text). Vendor reports go to it whole (their Decimal
  conversion is per row).
* Parquet: record batches as stored.
* JSON Lines and Avro (and Kafka values, pipelines/reconcile_stream.py):
  decoded by the per-record readers, then tabulated (`tabulate_records`).
"""
from __future__ import annotations

import bz2
import csv
import gzip
from collections import Counter
from datetime import date, datetime
from operator import itemgetter
from typing import IO, Iterator, List, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas.attempts import ATTEMPT_FIELDS, ATTEMPTS
from schemas.codecs import (
    byte_lines,
    csv_header,
    csv_records_from_lines,
    read_records,
    stream_error,
    unreadable_rest,
)
from schemas.raw_chunks import LINE, RECORD, RawChunk
from schemas.records import MATCHED_SIDE_FIELDS, PAYMENT_FIELDS, PAYMENTS, SETTLEMENT_FIELDS, SETTLEMENTS, RawRecord
from schemas.vendors import DEFAULT_VENDOR_OPTIONS, VendorOptions, detect_vendor

FIELDS_OF_INPUT = {PAYMENTS: PAYMENT_FIELDS, SETTLEMENTS: SETTLEMENT_FIELDS, ATTEMPTS: ATTEMPT_FIELDS}
CSV_BLOCK_BYTES = 16 << 20
PARQUET_BATCH_ROWS = 1 << 18
RECORDS_PER_CHUNK = 100_000
_BOM = b"\xef\xbb\xbf"
_BLANK_ROW = r"^[ \t,]*$"


def read_chunks(handle: IO[bytes], path: str, fmt: str, input_name: str,
                vendor_options: VendorOptions = DEFAULT_VENDOR_OPTIONS) -> Iterator[RawChunk]:
    if fmt == "csv":
        yield from _csv_chunks(handle, path, input_name, vendor_options)
    elif fmt == "parquet":
        yield from _parquet_chunks(handle, path, input_name)
    else:
        yield from record_chunks(read_records(handle, path, fmt, input_name), path, input_name)


def record_chunks(records, path: str, input_name: str) -> Iterator[RawChunk]:
    """Records of a per-record reader (JSON Lines, Avro, Kafka values, ...) in chunks, tabulated."""
    batch: List[RawRecord] = []
    for record in records:
        batch.append(record)
        if len(batch) == RECORDS_PER_CHUNK:
            yield tabulate_records(batch, path, input_name)
            batch = []
    if batch:
        yield tabulate_records(batch, path, input_name)


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_TABLE_TYPES = {str: pa.string(), int: pa.int64(), date: pa.date32(), type(None): pa.null()}


def _arrow_type(python_type) -> Optional[pa.DataType]:
    if python_type is datetime:
        return pa.timestamp("us", tz="UTC")
    return _TABLE_TYPES.get(python_type)


def tabulate_records(records: List[RawRecord], path: str, input_name: str) -> RawChunk:
    """Records whose fields are exactly the input's, each field of its column's one type (or null), as Arrow
    columns; every other record as it is.

    Exact by construction: a tabulated row holds its record's very values
    (str, int within int64, date, UTC datetime, None), and a row the
    vectorised checks cannot vouch for is judged from its original record
    (RawChunk.row_records), with its original source and raw payload.
    Column-wise passes, so the per-record cost stays in C.
    """
    names = FIELDS_OF_INPUT[input_name]
    expected_keys = frozenset(names)
    # Avro settlement lines always hold the optional matched side (null by default): a row whose matched side
    # is empty is tabulated like one without it; one that has it is judged per record.
    optional = frozenset(MATCHED_SIDE_FIELDS) if input_name == SETTLEMENTS else frozenset()

    def plain(fields: dict) -> bool:
        keys = fields.keys()
        return keys == expected_keys or (bool(optional) and keys == expected_keys | optional
                                         and all(fields[name] is None for name in optional))

    plain_rows = [index for index, record in enumerate(records)
                  if record.decode_error is None and type(record.fields) is dict and plain(record.fields)]
    # The plain rows' values column by column, gathered and transposed in C (a Python loop per value was
    # 8% of the live risk stream's worker, 2026-12-06).
    by_column = list(zip(*map(itemgetter(*names), (records[index].fields for index in plain_rows)))) \
        if plain_rows else [() for _ in names]
    kept = None  # positions in plain_rows of the rows still tabulated; None: all of them
    column_types = []
    for values in by_column:
        if kept is not None:
            values = [values[position] for position in kept]
        kind, uniform = _column_type(values)
        if not uniform:
            positions = range(len(plain_rows)) if kept is None else kept
            kept = [position for position, value in zip(positions, values) if kind is not None and _fits(value, kind)]
        column_types.append(kind)
    rows = plain_rows if kept is None else [plain_rows[position] for position in kept]
    if not rows:
        return RawChunk(input_name, path, records=records)
    try:
        columns = [pa.array(values if kept is None else [values[position] for position in kept],
                            type=_arrow_type(kind))
                   for kind, values in zip(column_types, by_column)]
    except (OverflowError, pa.ArrowException):  # a value Arrow would not hold as it is: judge all per record
        return RawChunk(input_name, path, records=records)
    taken = set(rows)
    return RawChunk(input_name, path, pa.Table.from_arrays(columns, names=list(names)),
                    records=[record for index, record in enumerate(records) if index not in taken],
                    row_records=[records[row] for row in rows])


def _column_type(values: list) -> tuple:
    """(the most common non-null type of a column if a column can hold it, whether every value fits it)."""
    kinds = Counter(map(type, values))
    nulls = kinds.pop(type(None), 0)
    if not kinds:
        return type(None), True
    kind = kinds.most_common(1)[0][0]
    if _arrow_type(kind) is None:
        return None, not values
    uniform = kinds[kind] + nulls == len(values)
    if uniform and kind is int:
        present = [value for value in values if value is not None]
        uniform = _INT64_MIN <= min(present) and max(present) <= _INT64_MAX
    elif uniform and kind is datetime:
        uniform = all(value is None or value.utcoffset() is not None for value in values)
    return kind, uniform


def _fits(value, kind: type) -> bool:
    if value is None:
        return True
    if type(value) is not kind:
        return False
    if kind is int:
        return _INT64_MIN <= value <= _INT64_MAX
    if kind is datetime:
        return value.utcoffset() is not None
    return True


# ---------------------------------------------------------------- CSV


def _plain_ascii(block: bytes) -> bool:
    """Only tab, newline, CR-before-newline and printable ASCII other than the quote character, and no line
    longer than the csv module's field limit (which rejects such a field, so its reader must see it)."""
    data = np.frombuffer(block, dtype=np.uint8)
    if len(data) > csv.field_size_limit():
        ends = np.flatnonzero(data == 0x0A)
        lengths = np.diff(np.concatenate(([-1], ends, [len(data)])))
        if lengths.max() > csv.field_size_limit():
            return False
    unusual = (data < 0x20) | (data > 0x7E) | (data == 0x22)
    if not unusual.any():
        return True
    odd = data[unusual]
    if not np.isin(odd, (0x09, 0x0A, 0x0D)).all():
        return False
    return block.count(b"\r") == block.count(b"\r\n") + (1 if block.endswith(b"\r") else 0)


def _csv_chunks(handle: IO[bytes], path: str, input_name: str,
                vendor_options: VendorOptions = DEFAULT_VENDOR_OPTIONS) -> Iterator[RawChunk]:
    try:
        first = handle.readline()
    except Exception as error:  # not gzip after all, unreadable: what the per-record reader says too
        yield RawChunk(input_name, path, records=[stream_error(input_name, path, 0, error)])
        return
    if not first:
        return
    header_line = first[len(_BOM):] if first.startswith(_BOM) else first
    header = csv_header(header_line.rstrip(b"\r\n").decode("ascii", errors="replace").split(","))
    if not (header_line.strip(b"\r\n") and _plain_ascii(header_line) and len(set(header)) == len(header)
            and not (input_name == SETTLEMENTS and detect_vendor(header))):
        yield from record_chunks(read_records(_LineSource(_chained(first, handle)), path, "csv", input_name,
                                              vendor_options), path, input_name)
        return
    lines_before = 1
    pending = b""
    while True:
        block, error = _read_block(handle)
        data = pending + block
        at_end = error is not None or not block
        cut = len(data) if at_end else data.rfind(b"\n") + 1
        if not at_end and cut == 0:
            pending = data
            continue
        body, pending = data[:cut], data[cut:]
        if body:
            if not _plain_ascii(body):
                source = _chained(body + pending, handle if error is None else None)
                rest = csv_records_from_lines(source, path, input_name, header, lines_before)
                if error is not None:  # the handle already failed: end the way the per-record reader ends
                    rest = _then(rest, lambda: stream_error(input_name, path, lines_before + _line_count(body),
                                                            error))
                yield from record_chunks(rest, path, input_name)
                return
            chunk, line_count = _csv_block(body, path, input_name, header, lines_before)
            lines_before += line_count
            if chunk.read_count:
                yield chunk
        if error is not None:
            yield RawChunk(input_name, path, records=[stream_error(input_name, path, lines_before, error)])
            return
        if not block:
            return


_LINE_READ = (gzip.GzipFile, bz2.BZ2File)


def _read_block(handle: IO[bytes]):
    """(bytes, the error that stopped reading or None). A compressed file is read line by line, so that,
    like the per-record reader, it yields every complete line before the point where it breaks."""
    if not isinstance(handle, _LINE_READ):
        try:
            return handle.read(CSV_BLOCK_BYTES), None
        except Exception as error:
            return b"", error
    lines, size = [], 0
    try:
        while size < CSV_BLOCK_BYTES:
            line = handle.readline()
            if not line:
                break
            lines.append(line)
            size += len(line)
    except Exception as error:
        return b"".join(lines), error
    return b"".join(lines), None


class _LineSource:
    """A readline()-only file over byte lines, for the per-record reader."""

    def __init__(self, lines: Iterator[bytes]):
        self._lines = lines

    def readline(self) -> bytes:
        return next(self._lines, b"")


def _then(records: Iterator[RawRecord], last) -> Iterator[RawRecord]:
    yield from records
    yield last()


def _line_count(data: bytes) -> int:
    return data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)


def _chained(head: bytes, handle: Optional[IO[bytes]]) -> Iterator[bytes]:
    """`head` then the rest of `handle` (if any), split into lines the way readline() splits them."""
    *complete, partial = head.split(b"\n")
    for line in complete:
        yield line + b"\n"
    rest = byte_lines(handle) if handle is not None else iter(())
    if partial:
        yield partial + next(rest, b"")  # the block ended inside this line
    yield from rest


def _csv_block(body: bytes, path: str, input_name: str, header: List[str], lines_before: int):
    text = body.decode("ascii")
    if text.endswith("\n"):
        text = text[:-1]
    lines = pc.list_flatten(pc.split_pattern(pa.array([text]), "\n"))
    line_count = len(lines)
    lines = pc.utf8_rtrim(lines, characters="\r")
    ordinals = np.arange(lines_before + 1, lines_before + 1 + line_count, dtype=np.int64)
    keep = ~pc.match_substring_regex(lines, _BLANK_ROW).to_numpy(zero_copy_only=False)
    lines, ordinals = lines.filter(pa.array(keep)), ordinals[keep]
    cells = pc.split_pattern(lines, ",")
    widths = pc.list_value_length(cells).to_numpy(zero_copy_only=False)
    fits = widths == len(header)
    records = [RawRecord(input_name, f"{path}{LINE}{ordinal}", None, line,
                         f"row has {width} columns, the header has {len(header)}")
               for ordinal, line, width in zip(ordinals[~fits], lines.filter(pa.array(~fits)).to_pylist(),
                                               widths[~fits])]
    cells = cells.filter(pa.array(fits))
    starts = cells.offsets.to_numpy()[:-1]
    flat = cells.values
    columns = [flat.take(pa.array(starts + index)) for index in range(len(header))]
    table = pa.Table.from_arrays(columns, names=header)
    chunk = RawChunk(input_name, path, table, ordinals[fits], LINE, lines.filter(pa.array(fits)), records)
    return chunk, line_count


# ---------------------------------------------------------------- Parquet


def _parquet_chunks(handle: IO[bytes], path: str, input_name: str) -> Iterator[RawChunk]:
    position = 0
    try:
        parquet = pq.ParquetFile(handle if _seekable(handle) else pa.PythonFile(handle, mode="r"))
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            ordinals = np.arange(position + 1, position + 1 + batch.num_rows, dtype=np.int64)
            position += batch.num_rows
            yield RawChunk(input_name, path, pa.Table.from_batches([batch]), ordinals, RECORD)
    except Exception as error:  # the per-record reader's decode error, word for word
        yield RawChunk(input_name, path, records=[unreadable_rest(input_name, path, "Parquet", "row", position,
                                                                  error)])


def _seekable(handle: IO[bytes]) -> bool:
    try:
        return handle.seekable()
    except AttributeError:
        return False
