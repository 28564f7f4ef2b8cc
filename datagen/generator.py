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
* `expected.json`: as_of, record counts and status counts;
* with `bank_statements="camt053"` or `"bai2"`, the bank statements of the
  payouts with every bank-matching break injected, `bank_ground_truth.csv`
  and a `bank` section in `expected.json` (`datagen.bank_statements`, drawn
  from a generator of its own: without the option every file is unchanged).

Same config and seed give byte-identical files (one `random.Random(seed)`,
no wall clock, no set-order dependence; the Avro sync marker comes from the
seed too). Every value is drawn before anything is written; the world is
kept in integer columns (`datagen.scenarios.World`) and every file, the
ground truth too, is written in chunks (`datagen.writers`), so memory grows
by tens of bytes per payment, not by Python objects per value.
"""
from __future__ import annotations

import csv
import json
import math
import os
import sys
from dataclasses import dataclass, field, replace
from random import Random
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa

from datagen import writers
from datagen.bank_statements import (
    BANK_FORMATS,
    plan_bank_statements,
    remove_bank_outputs,
    without_rows,
    write_bank_statements,
)
from datagen.scenarios import (
    DAY_MS,
    PROCESSOR_CODE,
    PROCESSORS,
    BreakRates,
    World,
    date_text,
    timestamp_text,
)
from datagen.writers import CHUNK_ROWS, BadRow, FileRows, ReadBackIds
from schemas.rules import EVENT_TYPES, KIND_OF_EVENT_TYPE, KINDS, RECORD_TYPES, STATUSES
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

_EVENT_TIME, _BOOKED_TIME = 8, 10  # in the canonical field order of a row

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
    bank_statements: Optional[str] = None  # camt053 | bai2: also write bank statements (datagen.bank_statements)

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
        if self.bank_statements is not None and self.bank_statements not in BANK_FORMATS:
            raise ValueError(f"unknown bank statement format {self.bank_statements!r}; "
                             f"choose one of {', '.join(BANK_FORMATS)}")


@dataclass(frozen=True)
class GeneratedDataset:
    out_dir: str
    payment_files: List[str]
    settlement_files: List[str]  # canonical settlement files, plus vendor reports when enabled
    ground_truth_path: str
    expected: dict  # the summary also written to <out>/expected.json
    bank_statement_files: List[str] = field(default_factory=list)  # with bank_statements
    bank_ground_truth_path: Optional[str] = None


# ------------------------------------------------------------------ ground truth


def ground_truth_rows(keys: Iterable[tuple], as_of: int, sla_millis: int,
                      grace_millis: int) -> List[Tuple[str, str, str, str, str, str]]:
    """The expected result rows of every key (docs/DESIGN.md 3.3, tolerance 0), sorted.

    `keys` holds (processor, processor_reference, kind, ledger event rows,
    settlement line rows), rows in canonical field order. One primary row per
    key plus one row per further distinct ledger event / settlement line.
    The rules on rows, one key at a time; `truth_of` gives the same rows for a
    whole world without a Python object per row (what `generate` uses).
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


# Ground-truth rows sort as strings (processor, reference, kind, status, ...); these ranks sort them as integers.
_PROCESSOR_NAMES = tuple(sorted(PROCESSORS))
_PROCESSOR_RANK = np.array([_PROCESSOR_NAMES.index(name) for name in PROCESSORS], np.int64)
_KIND_NAMES = tuple(sorted(KINDS))
_KIND_RANK = np.array([_KIND_NAMES.index(name) for name in KINDS], np.int64)
_STATUS_NAMES = tuple(sorted(STATUSES))
_STATUS = {name: code for code, name in enumerate(_STATUS_NAMES)}
# event type / record type code -> kind code (position in KINDS), -1 for none
_KIND_OF_EVENT = np.array([KINDS.index(KIND_OF_EVENT_TYPE[name]) if name in KIND_OF_EVENT_TYPE else -1
                           for name in EVENT_TYPES], np.int64)
_KIND_OF_RECORD = np.array([KINDS.index(name) if name in KINDS else -1 for name in RECORD_TYPES], np.int64)


@dataclass(frozen=True)
class Truth:
    """The ground-truth rows in file order: each row's sort code (`_truth_code`) and rows (-1: none)."""

    codes: np.ndarray
    events: np.ndarray  # ledger event row of each row
    lines: np.ndarray  # settlement line row of each row
    reference_order: np.ndarray  # the references (positions in `references.issued`) by rank
    statuses: Dict[str, int]
    keys: int


def _truth_code(processor: np.ndarray, reference_rank: np.ndarray, kind: np.ndarray, references: int) -> np.ndarray:
    """Processor, reference, kind of each key as one integer that sorts as the strings do; status goes below."""
    return ((_PROCESSOR_RANK[processor] * references + reference_rank) * len(KINDS) + _KIND_RANK[kind]) * len(
        _STATUS_NAMES)


def _key_codes(world: World, reference_rank: np.ndarray) -> np.ndarray:
    """`_truth_code` of every key, from its first ledger event, else its first settlement line."""
    events, payments, lines = world.events, world.payments, world.lines
    event, line = world.keys["event"], world.keys["line"]
    payment = events.at("payment", event)
    from_event = _truth_code(payments.at("processor", payment), reference_rank[payments.at("reference", payment)],
                             _KIND_OF_EVENT[events.at("event_type", event)], len(reference_rank))
    from_line = _truth_code(lines.at("processor", line), reference_rank[lines.at("reference", line)],
                            _KIND_OF_RECORD[lines.at("record_type", line)], len(reference_rank))
    return np.where(event >= 0, from_event, from_line)


def _key_statuses(world: World, as_of: int, sla_millis: int, grace_millis: int) -> np.ndarray:
    """The status code of every key's primary row (docs/DESIGN.md 3.3, tolerance 0), -1 for a key of nothing."""
    events, payments, lines = world.events, world.payments, world.lines
    event, line = world.keys["event"], world.keys["line"]
    has_event, has_line = event >= 0, line >= 0
    both = has_event & has_line
    same_currency = payments.at("currency", events.at("payment", event)) == lines.at("currency", line)
    same_amount = events.at("amount", event) == lines.at("gross", line)
    conditions = [both & ~same_currency, both & same_amount, both,
                  has_event & (as_of >= events.at("time", event) + sla_millis), has_event,
                  has_line & (as_of >= lines.at("booked", line) + grace_millis), has_line]
    choices = [_STATUS[name] for name in ("CURRENCY_MISMATCH", "MATCHED", "AMOUNT_MISMATCH", "MISSING_SETTLEMENT",
                                          "PENDING", "UNEXPECTED_SETTLEMENT", "PENDING")]
    return np.select(conditions, choices, default=-1)


def truth_of(world: World, references: pa.Array, as_of: int, sla_millis: int, grace_millis: int) -> Truth:
    """The rows `ground_truth_rows` gives for the world's keys, sorted, without a Python object per row.

    One primary row per key plus one per further ledger event / settlement
    line. A key has at most two of each, the second one later (by
    construction, checked here), so the rules' (time, id) order picks the
    first one, and (processor, reference, kind, status) alone orders the rows.
    """
    import pyarrow.compute as pc

    keys, extra_events, extra_lines = world.keys, world.duplicate_events, world.duplicate_lines
    first_event, first_line = keys["event"][extra_events["key"]], keys["line"][extra_lines["key"]]
    if (np.any(world.events["time"][extra_events["event"]] <= world.events["time"][first_event])
            or np.any(world.lines["booked"][extra_lines["line"]] <= world.lines["booked"][first_line])):
        raise AssertionError("a key's second ledger event or settlement line is not later than its first")
    reference_order = pc.array_sort_indices(references).to_numpy().view(np.int64)
    reference_rank = np.empty(len(reference_order), np.int64)
    reference_rank[reference_order] = np.arange(len(reference_order))
    key_codes = _key_codes(world, reference_rank)
    del reference_rank
    status = _key_statuses(world, as_of, sla_millis, grace_millis)
    primary = np.flatnonzero(status >= 0)
    codes = np.concatenate([key_codes[primary] + status[primary],
                            key_codes[extra_events["key"]] + _STATUS["DUPLICATE_LEDGER_EVENT"],
                            key_codes[extra_lines["key"]] + _STATUS["DUPLICATE_SETTLEMENT"]])
    del key_codes
    order = np.argsort(codes)
    codes = codes[order]
    if np.any(codes[1:] == codes[:-1]):
        raise AssertionError("two ground-truth rows share processor, reference, kind and status")
    none_events, none_lines = np.full(len(extra_lines["line"]), -1), np.full(len(extra_events["event"]), -1)
    events = np.concatenate([keys["event"][primary], extra_events["event"], none_events])[order]
    lines = np.concatenate([keys["line"][primary], none_lines, extra_lines["line"]])[order]
    counts = np.bincount(codes % len(_STATUS_NAMES), minlength=len(_STATUS_NAMES))
    return Truth(codes, events, lines, reference_order, {name: int(counts[_STATUS[name]]) for name in STATUSES},
                 len(primary))


def _truth_chunks(world: World, references: pa.Array, truth: Truth, read_back: ReadBackIds) -> Iterator[Iterator]:
    """The ground-truth rows as text, `CHUNK_ROWS` at a time."""
    statuses, kinds, total = len(_STATUS_NAMES), len(KINDS), len(truth.reference_order)
    names = {"processor": np.array(_PROCESSOR_NAMES, object), "kind": np.array(_KIND_NAMES, object),
             "status": np.array(_STATUS_NAMES, object)}
    for start in range(0, len(truth.codes), CHUNK_ROWS):
        codes = truth.codes[start:start + CHUNK_ROWS]
        status, rest = codes % statuses, codes // statuses
        kind, rest = rest % kinds, rest // kinds
        processor, rank = rest // total, rest % total
        event, line = truth.events[start:start + CHUNK_ROWS], truth.lines[start:start + CHUNK_ROWS]
        event_ids = world.ids.event.texts(np.maximum(event, 0))
        line_ids = read_back.apply(line, world.ids.settlement_texts(np.maximum(line, 0),
                                                                    world.lines.at("processor", line)))
        yield zip(names["processor"][processor].tolist(),
                  references.take(truth.reference_order[rank]).to_pylist(),
                  names["kind"][kind].tolist(), names["status"][status].tolist(),
                  np.where(event >= 0, np.array(event_ids, object), "").tolist(),
                  np.where(line >= 0, np.array(line_ids, object), "").tolist())


# ------------------------------------------------------------------ noise


def _malformed_payments(world: World, rng: Random, count: int, typed: bool) -> List[BadRow]:
    """`count` rejectable payment rows with fresh ids and keys, at times of existing rows."""
    kinds = TYPED_PAYMENT_DEFECTS if typed else PAYMENT_DEFECTS
    times = world.events["time"]
    out = []
    for index in range(count):
        kind = kinds[index % len(kinds)]
        t = int(times[rng.randrange(len(times))])
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
                           processors: Sequence[str]) -> List[BadRow]:
    kinds = TYPED_SETTLEMENT_DEFECTS if typed else SETTLEMENT_DEFECTS
    booked = world.lines["booked"]
    out = []
    for index in range(count):
        kind = kinds[index % len(kinds)]
        t = int(booked[rng.randrange(len(booked))])
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
        out.append((tuple(row), t))
    return out


def _pick(rng: Random, population: int, rate: float) -> List[int]:
    """A sorted sample of round(rate * population) distinct indices."""
    count = round(rate * population)
    return sorted(rng.sample(range(population), count)) if count else []


def _redeliveries(rng: Random, times: np.ndarray, rate: float) -> Tuple[np.ndarray, np.ndarray]:
    """A sample of rows (positions in `times`) to write twice, and each copy's time: 1 s to 2 h after its original."""
    picked = np.array(_pick(rng, len(times), rate), np.int64)
    delays = np.array([(1 + rng.randrange(7200)) * 1000 for _ in range(len(picked))], np.int64)
    return picked, times[picked] + delays


# ------------------------------------------------------------------ generate


@dataclass(frozen=True)
class _Drawn:
    """Everything `random.Random(seed)` decides, drawn in the order the files have always been made in."""

    world: World
    references: pa.Array  # every issued reference (`World.references.issued`)
    payments: FileRows
    settlements: FileRows  # the canonical settlement file
    vendors: Dict[str, FileRows]
    sync_marker: bytes


def _draw(config: GeneratorConfig, progress: bool) -> _Drawn:
    drawn = _draw_once(config, progress, exact=False)
    if drawn.world.references.collide(drawn.references):
        del drawn  # before the second world is drawn
        drawn = _draw_once(config, progress, exact=True)
    return drawn


def _draw_once(config: GeneratorConfig, progress: bool, exact: bool) -> _Drawn:
    rng = Random(config.seed)
    world = World(rng, parse_timestamp_millis(config.start, "start"), config.days, config.rates, exact)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.payments, desc="payments", unit="payment", file=sys.stderr,
                   mininterval=0.5, leave=True)
    world.simulate(config.payments, tick=bar.update if bar is not None else None)
    world.add_account_lines()
    if bar is not None:
        bar.close()

    # Noise: re-deliveries of valid rows, malformed rows (fresh ids and keys).
    typed = config.fmt in ("avro", "parquet")
    vendors = tuple(VENDOR_FILES) if config.vendor_reports else ()
    event_times, booked, line_processor = world.events["time"], world.lines["booked"], world.lines["processor"]
    canonical = np.flatnonzero(~np.isin(line_processor, [PROCESSOR_CODE[vendor] for vendor in vendors]))
    payment_copies, payment_copy_times = _redeliveries(rng, event_times, config.redelivery_rate)
    malformed_payment_count = math.ceil(config.malformed_rate * len(event_times)) if len(event_times) else 0
    bad_payments = _malformed_payments(world, rng, malformed_payment_count, typed)
    canonical_copies, canonical_copy_times = _redeliveries(rng, booked[canonical], config.redelivery_rate)
    malformed_settlement_count = math.ceil(config.malformed_rate * len(canonical)) if len(booked) else 0
    bad_processors = tuple(p for p in PROCESSORS if p not in vendors)
    bad_settlements = _malformed_settlements(world, rng, malformed_settlement_count, typed, bad_processors)
    vendor_rows = {}
    for vendor in vendors:
        rows = np.flatnonzero(line_processor == PROCESSOR_CODE[vendor])
        copies, copy_times = _redeliveries(rng, booked[rows], config.redelivery_rate)
        vendor_rows[vendor] = FileRows(rows, booked, rows[copies], copy_times, [])
    sync_marker = rng.randbytes(16)

    return _Drawn(
        world=world,
        references=world.references.issued.arrow(),
        payments=FileRows(None, event_times, payment_copies, payment_copy_times, bad_payments),
        settlements=FileRows(canonical, booked, canonical[canonical_copies], canonical_copy_times, bad_settlements),
        vendors=vendor_rows,
        sync_marker=sync_marker,
    )


def _remove_stale(directory: str, names: Iterable[str], keep: Sequence[str]) -> None:
    """Removes files an earlier run with other options left (only names this generator writes)."""
    for name in names:
        path = os.path.join(directory, name)
        if path not in keep and os.path.isfile(path):
            os.remove(path)


def _chunks(drawn: _Drawn, rows: FileRows, payments: bool, bar) -> Iterator[Tuple[np.ndarray, writers.Columns]]:
    """(world rows, columns) of each chunk of a file; `bar` counts them once written."""
    make = writers.payment_columns if payments else writers.settlement_columns
    for world_rows, bad in rows.chunks():
        yield world_rows, make(drawn.world, drawn.references, world_rows, bad)
        if bar is not None:
            bar.update(len(world_rows))


def generate(config: GeneratorConfig, out_dir: str, progress: bool = False) -> GeneratedDataset:
    """Writes a dataset for `config` under `out_dir` and returns where and what it is."""
    drawn = _draw(config, progress)
    world = drawn.world
    # as_of and the ground truth come from the valid, distinct records only.
    latest = [int(times.max()) for times in (world.events["time"], world.lines["booked"]) if len(times)]
    as_of = max(latest) if latest else world.start
    bank = None
    if config.bank_statements is not None:
        # Before any file is written: the payout-side breaks change PAYOUT lines (amounts, left out).
        bank = plan_bank_statements(world, config.seed, as_of, config.bank_statements)
        withheld = bank.withheld_rows
        drawn = replace(drawn, settlements=without_rows(drawn.settlements, withheld),
                        vendors={vendor: without_rows(rows, withheld) for vendor, rows in drawn.vendors.items()})
    ext = config.fmt
    payments_dir = os.path.join(out_dir, "payments")
    settlements_dir = os.path.join(out_dir, "settlements")
    os.makedirs(payments_dir, exist_ok=True)
    os.makedirs(settlements_dir, exist_ok=True)
    payments_path = os.path.join(payments_dir, f"payments.{ext}")
    settlements_path = os.path.join(settlements_dir, f"settlements.{ext}")

    bar = None
    if progress:
        from tqdm import tqdm

        total_rows = len(drawn.payments) + len(drawn.settlements) + sum(map(len, drawn.vendors.values()))
        bar = tqdm(total=total_rows, desc="writing", unit="row", file=sys.stderr, mininterval=0.5)
    writers.write_canonical(payments_path, config.fmt, "payments",
                            (columns for _, columns in _chunks(drawn, drawn.payments, True, bar)), drawn.sync_marker)
    writers.write_canonical(settlements_path, config.fmt, "settlements",
                            (columns for _, columns in _chunks(drawn, drawn.settlements, False, bar)),
                            drawn.sync_marker)
    settlement_files = [settlements_path]
    read_back = ReadBackIds()
    for vendor, rows in drawn.vendors.items():
        path = os.path.join(settlements_dir, VENDOR_FILES[vendor])
        writers.write_vendor(path, vendor, _chunks(drawn, rows, False, bar), read_back)
        settlement_files.append(path)
    if bar is not None:
        bar.close()
    _remove_stale(payments_dir, [f"payments.{f}" for f in FORMATS], [payments_path])
    _remove_stale(settlements_dir, [f"settlements.{f}" for f in FORMATS] + list(VENDOR_FILES.values()),
                  settlement_files)

    truth = truth_of(world, drawn.references, as_of, config.settlement_sla_days * DAY_MS,
                     config.ledger_grace_days * DAY_MS)
    ground_truth_path = os.path.join(out_dir, "ground_truth.csv")
    with open(ground_truth_path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(GROUND_TRUTH_FIELDS)
        for rows in _truth_chunks(world, drawn.references, truth, read_back):
            writer.writerows(rows)

    settlement_read = len(drawn.settlements) + sum(map(len, drawn.vendors.values()))
    settlement_copies = len(drawn.settlements.copies) + sum(len(rows.copies) for rows in drawn.vendors.values())
    expected = {
        "as_of": format_timestamp(as_of),
        "seed": config.seed,
        "payments": config.payments,
        "format": config.fmt,
        "vendor_reports": config.vendor_reports,
        "settlement_sla_days": config.settlement_sla_days,
        "ledger_grace_days": config.ledger_grace_days,
        "counts": {
            "payments": _counts(len(drawn.payments), len(drawn.payments.bad), len(drawn.payments.copies)),
            "settlements": _counts(settlement_read, len(drawn.settlements.bad), settlement_copies),
        },
        "statuses": truth.statuses,
        "keys": truth.keys,
    }
    bank_output = None
    if bank is not None:
        bank_output = write_bank_statements(bank, out_dir)
        expected["bank"] = bank_output.expected
    else:
        remove_bank_outputs(out_dir)
    with open(os.path.join(out_dir, "expected.json"), "w", encoding="utf-8") as handle:
        json.dump(expected, handle, indent=2)
        handle.write("\n")
    return GeneratedDataset(
        out_dir=out_dir,
        payment_files=[payments_path],
        settlement_files=settlement_files,
        ground_truth_path=ground_truth_path,
        expected=expected,
        bank_statement_files=bank_output.files if bank_output else [],
        bank_ground_truth_path=bank_output.truth_path if bank_output else None,
    )


def _counts(read: int, rejected: int, deduplicated: int) -> dict:
    return {"read": read, "rejected": rejected, "accepted": read - rejected, "deduplicated": deduplicated}
