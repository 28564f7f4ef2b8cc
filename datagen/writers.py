"""The generator's files, written chunk by chunk from the world's columns (`datagen.scenarios.World`).

A chunk is `CHUNK_ROWS` rows of a file in file order, turned into Python
values only while it is written: one list per canonical field
(`PAYMENT_FIELDS` / `SETTLEMENT_FIELDS` order), malformed rows put in at
their places. The bytes are those of `schemas.codecs.write_records` (CSV,
JSON Lines, Parquet) and of fastavro with the seed's sync marker (Avro).
"""
from __future__ import annotations

import csv
import io
import json
from array import array
from datetime import date
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa

from datagen.scenarios import (
    CURRENCIES,
    PROCESSORS,
    TextColumn,
    World,
    date_text,
    stable_order,
    timestamp_text,
)
from schemas.records import PAYMENT_FIELDS, SETTLEMENT_FIELDS, SettlementLine
from schemas.rules import EVENT_TYPES, RECORD_TYPES
from schemas.timestamps import parse_timestamp_millis

# Rows per chunk; also the Parquet row group: schemas.codecs.write_records writes one per 100,000 rows.
CHUNK_ROWS = 100_000

_EVENT_TIME, _BOOKED_TIME, _PAYOUT_ID = 8, 10, 11

# code -> name, as object arrays so that a chunk's names are one numpy gather.
_EVENT_TYPE_NAMES = np.array(EVENT_TYPES, dtype=object)
_RECORD_TYPE_NAMES = np.array(RECORD_TYPES, dtype=object)
_PROCESSOR_NAMES = np.array(PROCESSORS, dtype=object)
_CURRENCY_NAMES = np.array(CURRENCIES, dtype=object)

Columns = List[list]  # one chunk: a list of values per field
BadRow = Tuple[Sequence, int]  # a malformed row and its sort time


class FileRows:
    """One file's rows: world rows (its valid ones, then re-delivered copies) and malformed rows.

    `valid` are the world rows of the file (None: all of them), `times` the
    world's time per row (event or booked time); each copy is a world row
    with its own later time. Rows are written in the stable order of their
    times, computed only while the file is written.
    """

    def __init__(self, valid: Optional[np.ndarray], times: np.ndarray, copies: np.ndarray, copy_times: np.ndarray,
                 bad: Sequence[BadRow]):
        self.valid, self.times, self.copies, self.copy_times, self.bad = valid, times, copies, copy_times, bad
        self.valid_count = len(times) if valid is None else len(valid)

    def __len__(self) -> int:
        return self.valid_count + len(self.copies) + len(self.bad)

    def chunks(self) -> Iterator[Tuple[np.ndarray, List[Tuple[int, Sequence]]]]:
        """Per chunk: the world row of each position (-1 for a malformed row) and the (position, row) of those."""
        order = stable_order(np.concatenate([self.times if self.valid is None else self.times[self.valid],
                                             self.copy_times, np.array([t for _, t in self.bad], np.int64)]))
        world_count = self.valid_count + len(self.copies)
        for start in range(0, len(order), CHUNK_ROWS):
            positions = order[start:start + CHUNK_ROWS]
            rows = np.full(len(positions), -1, np.int64)
            valid = positions < self.valid_count
            rows[valid] = positions[valid] if self.valid is None else self.valid[positions[valid]]
            copied = ~valid & (positions < world_count)
            rows[copied] = self.copies[positions[copied] - self.valid_count]
            bad = [(int(i), self.bad[int(positions[i]) - world_count][0]) for i in np.flatnonzero(rows < 0)]
            yield rows, bad


def _fill(columns: Columns, bad: List[Tuple[int, Sequence]]) -> Columns:
    for position, row in bad:
        for column, value in zip(columns, row):
            column[position] = value
    return columns


def payment_columns(world: World, references: pa.Array, rows: np.ndarray, bad: List[Tuple[int, Sequence]]) -> Columns:
    """A chunk of payment events (`rows`: event rows, -1 where `bad` has a malformed row)."""
    events, payments = world.events, world.payments
    event = np.maximum(rows, 0)
    payment = events.at("payment", rows)
    return _fill([
        world.ids.event.texts(event),
        world.ids.payment.texts(payment),
        _EVENT_TYPE_NAMES[events.at("event_type", rows)].tolist(),
        _PROCESSOR_NAMES[payments.at("processor", payment)].tolist(),
        references.take(payments.at("reference", payment)).to_pylist(),
        world.merchant_ids[payments.at("merchant", payment)].tolist(),
        events.at("amount", rows).tolist(),
        _CURRENCY_NAMES[payments.at("currency", payment)].tolist(),
        events.at("time", rows).tolist(),
    ], bad)


def settlement_columns(world: World, references: pa.Array, rows: np.ndarray,
                       bad: List[Tuple[int, Sequence]]) -> Columns:
    """A chunk of settlement lines (`rows`: line rows, -1 where `bad` has a malformed row)."""
    lines = world.lines
    line = np.maximum(rows, 0)
    processor, reference = lines.at("processor", rows), lines.at("reference", rows)
    gross, fee, booked = lines.at("gross", rows), lines.at("fee", rows), lines.at("booked", rows).tolist()
    payout_ids = world.payout_ids
    payout = world.line_payout[line] if len(world.line_payout) else np.full(len(rows), -1)
    payouts = [payout_ids[k] if k >= 0 else None for k in payout.tolist()]
    reference_texts = references.take(np.where(reference >= 0, reference, 0)).to_pylist()
    for position in np.flatnonzero(reference < 0).tolist():  # a PAYOUT line: its reference is its payout id
        reference_texts[position] = payouts[position]
    return _fill([
        world.ids.settlement_texts(line, processor),
        _PROCESSOR_NAMES[processor].tolist(),
        reference_texts,
        world.merchant_ids[lines.at("merchant", rows)].tolist(),
        _RECORD_TYPE_NAMES[lines.at("record_type", rows)].tolist(),
        gross.tolist(),
        fee.tolist(),
        (gross - fee).tolist(),
        _CURRENCY_NAMES[lines.at("currency", rows)].tolist(),
        [date_text(t) for t in booked],
        booked,
        payouts,
    ], bad)


def _rows(chunks: Iterable[Columns]) -> Iterator[tuple]:
    for columns in chunks:
        yield from zip(*columns)


# ------------------------------------------------------------------ canonical files


def _payment_text(row: tuple) -> tuple:
    t = row[_EVENT_TIME]
    return row[:_EVENT_TIME] + (timestamp_text(t),) if type(t) is int else row


def _settlement_text(row: tuple) -> tuple:
    t = row[_BOOKED_TIME]
    return (*row[:_BOOKED_TIME], timestamp_text(t) if type(t) is int else t, row[_PAYOUT_ID])


def _csv_line(values: Sequence) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue()


def _payment_csv_lines(rows: Iterable[tuple]) -> Iterator[str]:
    for r in rows:
        t = r[_EVENT_TIME]
        line = (f"{r[0]},{r[1]},{r[2]},{r[3]},{r[4]},{r[5]},{r[6]},{r[7]},"
                f"{timestamp_text(t) if type(t) is int else t}\r\n")
        # Our values never need quoting; anything that would is left to the csv module.
        yield line if line.count(",") == 8 and '"' not in line and line.count("\n") == 1 else _csv_line(
            _payment_text(r))


def _settlement_csv_lines(rows: Iterable[tuple]) -> Iterator[str]:
    for r in rows:
        t = r[_BOOKED_TIME]
        line = (f"{r[0]},{r[1]},{r[2]},{r[3]},{r[4]},{r[5]},{r[6]},{r[7]},{r[8]},{r[9]},"
                f"{timestamp_text(t) if type(t) is int else t},{r[11] or ''}\r\n")
        yield line if line.count(",") == 11 and '"' not in line and line.count("\n") == 1 else _csv_line(
            _settlement_text(r))


def _write_csv(path: str, input_name: str, chunks: Iterable[Columns]) -> None:
    # The same bytes as schemas.codecs.write_records(..., "csv", ...) (csv module,
    # excel dialect, None as ""), about twice as fast as csv.writer on these rows.
    payments = input_name == "payments"
    lines = _payment_csv_lines if payments else _settlement_csv_lines
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(_csv_line(PAYMENT_FIELDS if payments else SETTLEMENT_FIELDS))
        for columns in chunks:
            handle.writelines(lines(zip(*columns)))


def _write_jsonl(path: str, input_name: str, chunks: Iterable[Columns]) -> None:
    # The same bytes as schemas.codecs.write_records(..., "jsonl", ...).
    payments = input_name == "payments"
    fields = PAYMENT_FIELDS if payments else SETTLEMENT_FIELDS
    to_text = _payment_text if payments else _settlement_text
    dumps = json.dumps
    with open(path, "w", encoding="utf-8") as handle:
        for columns in chunks:
            handle.writelines(dumps(dict(zip(fields, to_text(row)))) + "\n" for row in zip(*columns))


def _write_avro(path: str, input_name: str, chunks: Iterable[Columns], sync_marker: bytes) -> None:
    import fastavro

    from schemas.avro import avro_schema

    fields = PAYMENT_FIELDS if input_name == "payments" else SETTLEMENT_FIELDS
    schema = avro_schema("payment_event" if input_name == "payments" else "settlement_line")
    dates: Dict[str, date] = {}

    def records():
        for row in _rows(chunks):
            record = dict(zip(fields, row))
            if "settlement_date" in record:
                text = record["settlement_date"]
                record["settlement_date"] = dates.get(text) or dates.setdefault(text, date.fromisoformat(text))
            yield record

    with open(path, "wb") as handle:
        # A fixed sync marker (fastavro draws a random one) keeps the file byte-identical per seed.
        fastavro.writer(handle, schema, records(), codec="deflate", sync_marker=sync_marker)


def _write_parquet(path: str, input_name: str, chunks: Iterable[Columns]) -> None:
    # What schemas.codecs.write_records writes: one table (row group) per CHUNK_ROWS rows, default writer options.
    import pyarrow.parquet as pq

    from schemas.codecs import ARROW_SCHEMA_OF_INPUT

    schema = ARROW_SCHEMA_OF_INPUT[input_name]
    dates: Dict[str, date] = {}
    with pq.ParquetWriter(path, schema) as writer:
        for columns in chunks:
            data = dict(zip(schema.names, columns))
            if "settlement_date" in data:
                data["settlement_date"] = [dates.get(text) or dates.setdefault(text, date.fromisoformat(text))
                                           for text in data["settlement_date"]]
            writer.write_table(pa.table(data, schema=schema))


def write_canonical(path: str, fmt: str, input_name: str, chunks: Iterable[Columns], sync_marker: bytes) -> None:
    """Writes a canonical payments or settlements file from its chunks (each `CHUNK_ROWS` rows but the last)."""
    if fmt == "csv":
        _write_csv(path, input_name, chunks)
    elif fmt == "jsonl":
        _write_jsonl(path, input_name, chunks)
    elif fmt == "avro":
        _write_avro(path, input_name, chunks, sync_marker)
    else:
        _write_parquet(path, input_name, chunks)


# ------------------------------------------------------------------ vendor reports


class ReadBackIds:
    """The settlement id a vendor report reads back as, for each line where it is not the canonical one.

    (Adyen's reader gives settlement ids the form 'adyen:<id>:<Type>:<digest>'; the
    ground truth must name what the pipeline will see.)
    """

    def __init__(self) -> None:
        self._lines = array("q")
        self._texts = TextColumn()
        self._sorted: Optional[Tuple[np.ndarray, np.ndarray, pa.Array]] = None

    def add(self, line: int, text: str) -> None:
        self._lines.append(line)
        self._texts.append(text)

    def apply(self, lines: np.ndarray, texts: List[str]) -> List[str]:
        """`texts` (canonical ids of `lines`) with the read-back ids put in."""
        if not self._lines:
            return texts
        if self._sorted is None:
            rows = np.frombuffer(self._lines, np.int64)
            order = np.argsort(rows, kind="stable")
            self._sorted = rows[order], order, self._texts.arrow()
        rows, order, read_back = self._sorted
        at = np.minimum(np.searchsorted(rows, lines), len(rows) - 1)
        found = np.flatnonzero((rows[at] == lines) & (lines >= 0))
        for position, text in zip(found.tolist(), read_back.take(order[at[found]]).to_pylist()):
            texts[position] = text
        return texts


def _vendor_rows(vendor: str, rows: np.ndarray, columns: Columns, read_back: ReadBackIds) -> List[dict]:
    """Each line of a chunk as a vendor report row; `read_back` learns the ids the report reads back as."""
    from schemas.vendors import settlement_fields_from_vendor_row, vendor_row_from_settlement

    out = []
    for row_number, line in zip(rows.tolist(), zip(*columns)):
        row = vendor_row_from_settlement(vendor, SettlementLine(*line))
        fields = settlement_fields_from_vendor_row(vendor, row)
        fields["booked_time"] = parse_timestamp_millis(fields["booked_time"], "booked_time")
        again = tuple(fields[name] for name in SETTLEMENT_FIELDS)
        if again[1:5] != line[1:5] or again[5:11] != line[5:11]:
            raise AssertionError(f"{vendor} report row does not read back as its line: {line} -> {again}")
        if again[0] != line[0]:
            read_back.add(row_number, again[0])
        out.append(row)
    return out


def write_vendor(path: str, vendor: str, chunks: Iterable[Tuple[np.ndarray, Columns]],
                 read_back: ReadBackIds) -> None:
    """A vendor report of settlement lines (`chunks`: their line rows and canonical columns)."""
    from schemas.vendors import vendor_columns

    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(vendor_columns(vendor)))
        writer.writeheader()
        for rows, columns in chunks:
            writer.writerows(_vendor_rows(vendor, rows, columns, read_back))
