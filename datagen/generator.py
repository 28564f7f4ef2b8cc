"""Deterministic sample data with ground truth: `generate(GeneratorConfig(...), out_dir)`.

Writes, under `out_dir`:

* `payments/payments.<ext>` and `settlements/settlements.<ext>` in the
  canonical format (csv, jsonl, avro or parquet), each ordered by event /
  booked time, with re-delivered rows (identical copy, same id, a little
  later in the file) and malformed rows (fresh ids and keys, so they cannot
  change any status) mixed in;
* with `vendor_reports=True`, Stripe's lines as a Stripe itemized payout
  reconciliation report and Adyen's as an Adyen settlement details report
  (`schemas.vendors`), the canonical file keeping the other processors;
* `ground_truth.csv`: the expected result rows (docs/DESIGN.md 3.3), computed
  here from the generated records alone (nothing from `transforms/`);
* `expected.json`: as_of, record counts and status counts.

Same config and seed give byte-identical files (one `random.Random(seed)`,
no wall clock, no set-order dependence; the Avro sync marker comes from the
seed too).
"""
from __future__ import annotations

import csv
import gc
import io
import json
import math
import os
import sys
from dataclasses import dataclass, field
from datetime import date
from random import Random
from typing import Dict, Iterable, Iterator, List, Sequence, Tuple

from datagen.scenarios import (
    DAY_MS,
    PROCESSORS,
    BreakRates,
    World,
    date_text,
    sorted_rows,
    timestamp_text,
)
from schemas.records import PAYMENT_FIELDS, SETTLEMENT_FIELDS, SettlementLine
from schemas.rules import STATUSES
from schemas.timestamps import format_timestamp, parse_timestamp_millis

FORMATS = ("csv", "jsonl", "avro", "parquet")
VENDOR_FILES = {"stripe": "stripe_payout_reconciliation.csv", "adyen": "adyen_settlement_details.csv"}
GROUND_TRUTH_FIELDS = ("processor", "processor_reference", "kind", "status", "ledger_event_id", "settlement_id")

# Malformed-row kinds, cycled in this order. Avro and Parquet files only get
# the kinds whose values still have the column's type.
PAYMENT_DEFECTS = ("amount_text", "unknown_currency", "bad_timestamp", "unknown_type", "negative_amount", "no_id")
SETTLEMENT_DEFECTS = ("net_mismatch", "unknown_currency", "bad_timestamp", "unknown_type", "gross_text")
TYPED_PAYMENT_DEFECTS = ("unknown_currency", "unknown_type", "negative_amount", "no_id")
TYPED_SETTLEMENT_DEFECTS = ("net_mismatch", "unknown_currency", "unknown_type", "negative_amount", "no_id")

_EVENT_TIME, _BOOKED_TIME, _PAYOUT_ID = 8, 10, 11

__all__ = ["BreakRates", "GeneratorConfig", "GeneratedDataset", "generate", "ground_truth_rows"]


@dataclass(frozen=True)
class GeneratorConfig:
    payments: int  # number of payments (each gets an AUTHORIZED and usually a CAPTURED event, ...)
    seed: int = 7
    fmt: str = "csv"  # csv | jsonl | avro | parquet
    vendor_reports: bool = False
    start: str = "2026-01-05T00:00:00Z"  # first payment time; payments spread uniformly over `days`
    days: int = 14
    rates: BreakRates = field(default_factory=BreakRates)
    settlement_sla_days: int = 3
    ledger_grace_days: int = 1
    malformed_rate: float = 0.002  # extra malformed rows per file, as a fraction of its valid rows
    redelivery_rate: float = 0.01  # fraction of valid rows written twice (identical row, same id)

    def __post_init__(self) -> None:
        if self.payments < 0:
            raise ValueError("payments must not be negative")
        if self.fmt not in FORMATS:
            raise ValueError(f"unknown format {self.fmt!r}; choose one of {', '.join(FORMATS)}")
        if self.days < 1:
            raise ValueError("days must be at least 1")
        if self.settlement_sla_days < 0 or self.ledger_grace_days < 0:
            raise ValueError("settlement_sla_days and ledger_grace_days must not be negative")
        for name in ("malformed_rate", "redelivery_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        parse_timestamp_millis(self.start, "start")


@dataclass(frozen=True)
class GeneratedDataset:
    out_dir: str
    payment_files: List[str]
    settlement_files: List[str]  # canonical settlement files, plus vendor reports when enabled
    ground_truth_path: str
    expected: dict  # the summary also written to <out>/expected.json


# ------------------------------------------------------------------ ground truth


def ground_truth_rows(keys: Iterable[tuple], as_of: int, sla_millis: int,
                      grace_millis: int) -> List[Tuple[str, str, str, str, str, str]]:
    """The expected result rows of every key (docs/DESIGN.md 3.3, tolerance 0), sorted.

    `keys` holds (processor, processor_reference, kind, ledger event rows,
    settlement line rows), rows in canonical field order. One primary row per
    key plus one row per further distinct ledger event / settlement line.
    """
    rows = []
    for processor, reference, kind, ledger, lines in keys:
        if len(ledger) > 1:
            ledger = sorted(ledger, key=lambda event: (event[_EVENT_TIME], event[0]))
        if len(lines) > 1:
            lines = sorted(lines, key=lambda line: (line[_BOOKED_TIME], line[0]))
        event = ledger[0] if ledger else None
        line = lines[0] if lines else None
        if event is not None and line is not None:
            if event[7] != line[8]:
                status = "CURRENCY_MISMATCH"
            else:
                status = "MATCHED" if event[6] == line[5] else "AMOUNT_MISMATCH"
        elif event is not None:
            status = "MISSING_SETTLEMENT" if as_of >= event[_EVENT_TIME] + sla_millis else "PENDING"
        elif line is not None:
            status = "UNEXPECTED_SETTLEMENT" if as_of >= line[_BOOKED_TIME] + grace_millis else "PENDING"
        else:
            continue
        rows.append((processor, reference, kind, status, event[0] if event else "", line[0] if line else ""))
        for extra in ledger[1:]:
            rows.append((processor, reference, kind, "DUPLICATE_LEDGER_EVENT", extra[0], ""))
        for extra in lines[1:]:
            rows.append((processor, reference, kind, "DUPLICATE_SETTLEMENT", "", extra[0]))
    rows.sort()
    return rows


# ------------------------------------------------------------------ noise


def _malformed_payments(world: World, rng: Random, count: int, typed: bool) -> List[Tuple[tuple, int]]:
    """`count` rejectable payment rows with fresh ids and keys, at times of existing rows."""
    kinds = TYPED_PAYMENT_DEFECTS if typed else PAYMENT_DEFECTS
    out = []
    for index in range(count):
        kind = kinds[index % len(kinds)]
        t = world.payments[rng.randrange(len(world.payments))][_EVENT_TIME]
        processor = PROCESSORS[rng.randrange(4)]
        merchant = world.merchants[rng.randrange(len(world.merchants))]
        currency = merchant.home_currency
        row = [world.ids.event(), world.ids.payment(), "CAPTURED", processor, world.references.new(processor),
               merchant.merchant_id, world._amount(currency), currency, t]
        if kind == "amount_text":
            row[6] = ("12.5x", "abc")[index // len(kinds) % 2]
        elif kind == "unknown_currency":
            row[7] = "XXX"
        elif kind == "bad_timestamp":
            row[8] = ("yesterday", timestamp_text(t)[:19].replace("T", " "))[index // len(kinds) % 2]
        elif kind == "unknown_type":
            row[2] = "SETTLED"
        elif kind == "negative_amount":
            row[6] = -row[6]
        elif kind == "no_id":
            row[0] = ""
        out.append((tuple(row), t))
    return out


def _malformed_settlements(world: World, rng: Random, count: int, typed: bool,
                           processors: Sequence[str]) -> List[Tuple[list, int]]:
    kinds = TYPED_SETTLEMENT_DEFECTS if typed else SETTLEMENT_DEFECTS
    out = []
    for index in range(count):
        kind = kinds[index % len(kinds)]
        t = world.lines[rng.randrange(len(world.lines))][_BOOKED_TIME]
        processor = processors[rng.randrange(len(processors))]
        merchant = world.merchants[rng.randrange(len(world.merchants))]
        currency = merchant.home_currency
        gross = world._amount(currency)
        fee = gross // 50
        row = [world.ids.settlement(processor), processor, world.references.new(processor), merchant.merchant_id,
               "CAPTURE", gross, fee, gross - fee, currency, date_text(t), t, None]
        if kind == "net_mismatch":
            row[7] += 1 + rng.randrange(100)
        elif kind == "unknown_currency":
            row[8] = "XXX"
        elif kind == "bad_timestamp":
            row[10] = ("yesterday", timestamp_text(t)[:19].replace("T", " "))[index // len(kinds) % 2]
        elif kind == "unknown_type":
            row[4] = "TRANSFER"
        elif kind == "gross_text":
            row[5] = ("abc", "12.5x")[index // len(kinds) % 2]
        elif kind == "negative_amount":
            row[5], row[6], row[7] = -gross, 0, -gross
        elif kind == "no_id":
            row[0] = ""
        out.append((row, t))
    return out


def _pick(rng: Random, population: int, rate: float) -> List[int]:
    """A sorted sample of round(rate * population) distinct indices."""
    count = round(rate * population)
    return sorted(rng.sample(range(population), count)) if count else []


def _redeliveries(rng: Random, rows: Sequence, time_index: int, rate: float) -> List[Tuple[object, int]]:
    """Identical copies of a sample of rows, each placed 1 s to 2 h after its original."""
    return [(rows[i], rows[i][time_index] + (1 + rng.randrange(7200)) * 1000)
            for i in _pick(rng, len(rows), rate)]


# ------------------------------------------------------------------ writers


def _payment_text(row: tuple) -> tuple:
    t = row[_EVENT_TIME]
    return row[:_EVENT_TIME] + (timestamp_text(t),) if type(t) is int else row


def _settlement_text(row: list) -> list:
    t = row[_BOOKED_TIME]
    return row[:_BOOKED_TIME] + [timestamp_text(t) if type(t) is int else t, row[_PAYOUT_ID]]


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


def _settlement_csv_lines(rows: Iterable[list]) -> Iterator[str]:
    for r in rows:
        t = r[_BOOKED_TIME]
        line = (f"{r[0]},{r[1]},{r[2]},{r[3]},{r[4]},{r[5]},{r[6]},{r[7]},{r[8]},{r[9]},"
                f"{timestamp_text(t) if type(t) is int else t},{r[11] or ''}\r\n")
        yield line if line.count(",") == 11 and '"' not in line and line.count("\n") == 1 else _csv_line(
            _settlement_text(r))


def _write_csv(path: str, fields: Sequence[str], rows: Sequence, to_text) -> None:
    # The same bytes as schemas.codecs.write_records(..., "csv", ...) (csv module,
    # excel dialect, None as ""), about twice as fast as csv.writer on these rows.
    lines = _payment_csv_lines if to_text is _payment_text else _settlement_csv_lines
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(_csv_line(fields))
        handle.writelines(lines(rows))


def _write_jsonl(path: str, fields: Sequence[str], rows: Sequence, to_text) -> None:
    # The same bytes as schemas.codecs.write_records(..., "jsonl", ...).
    dumps = json.dumps
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(dumps(dict(zip(fields, to_text(row)))) + "\n" for row in rows)


def _write_avro(path: str, input_name: str, fields: Sequence[str], rows: Sequence, sync_marker: bytes) -> None:
    import fastavro

    from schemas.avro import avro_schema

    schema = avro_schema("payment_event" if input_name == "payments" else "settlement_line")
    dates: Dict[str, date] = {}

    def records():
        for row in rows:
            record = dict(zip(fields, row))
            if "settlement_date" in record:
                text = record["settlement_date"]
                record["settlement_date"] = dates.get(text) or dates.setdefault(text, date.fromisoformat(text))
            yield record

    with open(path, "wb") as handle:
        # A fixed sync marker (fastavro draws a random one) keeps the file byte-identical per seed.
        fastavro.writer(handle, schema, records(), codec="deflate", sync_marker=sync_marker)


def _write_canonical(path: str, fmt: str, input_name: str, rows: Sequence, sync_marker: bytes) -> None:
    fields = PAYMENT_FIELDS if input_name == "payments" else SETTLEMENT_FIELDS
    to_text = _payment_text if input_name == "payments" else _settlement_text
    if fmt == "csv":
        _write_csv(path, fields, rows, to_text)
    elif fmt == "jsonl":
        _write_jsonl(path, fields, rows, to_text)
    elif fmt == "avro":
        _write_avro(path, input_name, fields, rows, sync_marker)
    else:
        from schemas.codecs import write_records

        write_records(path, fmt, input_name, (dict(zip(fields, row)) for row in rows), fields)


def _write_vendor(path: str, vendor: str, rows: Sequence[dict]) -> None:
    from schemas.vendors import vendor_columns

    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(vendor_columns(vendor)))
        writer.writeheader()
        writer.writerows(rows)


def _to_vendor_rows(lines: Sequence[list], vendor: str) -> List[dict]:
    """Each line as a vendor report row; the line then takes the values the report reads back as.

    (Adyen's reader gives settlement ids the form 'adyen:<id>:<Type>:<digest>'; the
    ground truth must name what the pipeline will see.)
    """
    from schemas.vendors import settlement_fields_from_vendor_row, vendor_row_from_settlement

    out = []
    for line in lines:
        row = vendor_row_from_settlement(vendor, SettlementLine(*line))
        fields = settlement_fields_from_vendor_row(vendor, row)
        fields["booked_time"] = parse_timestamp_millis(fields["booked_time"], "booked_time")
        read_back = [fields[name] for name in SETTLEMENT_FIELDS]
        if read_back[1:5] != line[1:5] or read_back[5:11] != line[5:11]:
            raise AssertionError(f"{vendor} report row does not read back as its line: {line} -> {read_back}")
        line[0], line[_PAYOUT_ID] = read_back[0], read_back[_PAYOUT_ID]
        out.append(row)
    return out


def _remove_stale(directory: str, names: Iterable[str], keep: Sequence[str]) -> None:
    """Removes files an earlier run with other options left (only names this generator writes)."""
    for name in names:
        path = os.path.join(directory, name)
        if path not in keep and os.path.isfile(path):
            os.remove(path)


# ------------------------------------------------------------------ generate


def generate(config: GeneratorConfig, out_dir: str, progress: bool = False) -> GeneratedDataset:
    """Writes a dataset for `config` under `out_dir` and returns where and what it is."""
    # Millions of small tuples and lists, none of them in a reference cycle: the
    # cyclic collector would only walk them again and again (it more than
    # doubles the run time at 1M payments).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _generate(config, out_dir, progress)
    finally:
        if collecting:
            gc.enable()


def _generate(config: GeneratorConfig, out_dir: str, progress: bool) -> GeneratedDataset:
    rng = Random(config.seed)
    start = parse_timestamp_millis(config.start, "start")
    world = World(rng, start, config.days, config.rates)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.payments, desc="payments", unit="payment", file=sys.stderr,
                   mininterval=0.5, leave=True)
    world.simulate(config.payments, tick=bar.update if bar is not None else None)
    world.add_account_lines()
    if bar is not None:
        bar.close()

    typed = config.fmt in ("avro", "parquet")
    ext = config.fmt
    payments_dir = os.path.join(out_dir, "payments")
    settlements_dir = os.path.join(out_dir, "settlements")
    os.makedirs(payments_dir, exist_ok=True)
    os.makedirs(settlements_dir, exist_ok=True)
    payments_path = os.path.join(payments_dir, f"payments.{ext}")
    settlements_path = os.path.join(settlements_dir, f"settlements.{ext}")

    # Split the settlement lines between the canonical file and the vendor reports.
    vendors = tuple(VENDOR_FILES) if config.vendor_reports else ()
    canonical_lines = [line for line in world.lines if line[1] not in vendors]
    vendor_lines = {vendor: [line for line in world.lines if line[1] == vendor] for vendor in vendors}
    vendor_rows = {vendor: _to_vendor_rows(lines, vendor) for vendor, lines in vendor_lines.items()}

    # as_of and the ground truth come from the valid, distinct records only.
    times = [row[_EVENT_TIME] for row in world.payments] + [line[_BOOKED_TIME] for line in world.lines]
    as_of = max(times) if times else start
    del times
    truth = ground_truth_rows(world.keys, as_of, config.settlement_sla_days * DAY_MS,
                              config.ledger_grace_days * DAY_MS)

    # Noise: re-deliveries of valid rows, malformed rows (fresh ids and keys).
    payment_copies = _redeliveries(rng, world.payments, _EVENT_TIME, config.redelivery_rate)
    malformed_payment_count = math.ceil(config.malformed_rate * len(world.payments)) if world.payments else 0
    bad_payments = _malformed_payments(world, rng, malformed_payment_count, typed)
    canonical_copies = _redeliveries(rng, canonical_lines, _BOOKED_TIME, config.redelivery_rate)
    malformed_settlement_count = math.ceil(config.malformed_rate * len(canonical_lines)) if world.lines else 0
    bad_processors = tuple(p for p in PROCESSORS if p not in vendors)
    bad_settlements = _malformed_settlements(world, rng, malformed_settlement_count, typed, bad_processors)

    payment_rows = world.payments + [row for row, _ in payment_copies] + [row for row, _ in bad_payments]
    payment_sort = ([row[_EVENT_TIME] for row in world.payments] + [t for _, t in payment_copies]
                    + [t for _, t in bad_payments])
    settlement_rows = canonical_lines + [row for row, _ in canonical_copies] + [row for row, _ in bad_settlements]
    settlement_sort = ([line[_BOOKED_TIME] for line in canonical_lines] + [t for _, t in canonical_copies]
                       + [t for _, t in bad_settlements])
    vendor_outputs = {}
    vendor_copy_count = 0
    for vendor in vendors:
        lines, rows = vendor_lines[vendor], vendor_rows[vendor]
        picked = _pick(rng, len(lines), config.redelivery_rate)
        all_rows = rows + [rows[i] for i in picked]
        all_sort = ([line[_BOOKED_TIME] for line in lines]
                    + [lines[i][_BOOKED_TIME] + (1 + rng.randrange(7200)) * 1000 for i in picked])
        vendor_outputs[vendor] = sorted_rows(all_rows, all_sort)
        vendor_copy_count += len(picked)

    sync_marker = rng.randbytes(16)
    total_rows = len(payment_rows) + len(settlement_rows) + sum(len(rows) for rows in vendor_outputs.values())
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total_rows, desc="writing", unit="row", file=sys.stderr, mininterval=0.5)
    _write_canonical(payments_path, config.fmt, "payments", sorted_rows(payment_rows, payment_sort), sync_marker)
    if bar is not None:
        bar.update(len(payment_rows))
    _write_canonical(settlements_path, config.fmt, "settlements", sorted_rows(settlement_rows, settlement_sort),
                     sync_marker)
    if bar is not None:
        bar.update(len(settlement_rows))
    settlement_files = [settlements_path]
    for vendor, rows in vendor_outputs.items():
        path = os.path.join(settlements_dir, VENDOR_FILES[vendor])
        _write_vendor(path, vendor, rows)
        settlement_files.append(path)
        if bar is not None:
            bar.update(len(rows))
    if bar is not None:
        bar.close()
    _remove_stale(payments_dir, [f"payments.{f}" for f in FORMATS], [payments_path])
    _remove_stale(settlements_dir, [f"settlements.{f}" for f in FORMATS] + list(VENDOR_FILES.values()),
                  settlement_files)

    ground_truth_path = os.path.join(out_dir, "ground_truth.csv")
    with open(ground_truth_path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(GROUND_TRUTH_FIELDS)
        writer.writerows(truth)

    statuses = dict.fromkeys(STATUSES, 0)
    for row in truth:
        statuses[row[3]] += 1
    settlement_read = len(settlement_rows) + sum(len(rows) for rows in vendor_outputs.values())
    expected = {
        "as_of": format_timestamp(as_of),
        "seed": config.seed,
        "payments": config.payments,
        "format": config.fmt,
        "vendor_reports": config.vendor_reports,
        "settlement_sla_days": config.settlement_sla_days,
        "ledger_grace_days": config.ledger_grace_days,
        "counts": {
            "payments": _counts(len(payment_rows), len(bad_payments), len(payment_copies)),
            "settlements": _counts(settlement_read, len(bad_settlements), len(canonical_copies) + vendor_copy_count),
        },
        "statuses": statuses,
        "keys": sum(1 for row in truth if not row[3].startswith("DUPLICATE_")),
    }
    with open(os.path.join(out_dir, "expected.json"), "w", encoding="utf-8") as handle:
        json.dump(expected, handle, indent=2)
        handle.write("\n")
    return GeneratedDataset(
        out_dir=out_dir,
        payment_files=[payments_path],
        settlement_files=settlement_files,
        ground_truth_path=ground_truth_path,
        expected=expected,
    )


def _counts(read: int, rejected: int, deduplicated: int) -> dict:
    return {"read": read, "rejected": rejected, "accepted": read - rejected, "deduplicated": deduplicated}
