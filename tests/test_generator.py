"""The data generator (datagen): determinism, formats, realism and its ground truth.

The ground truth is checked against the written files only: the files are
read back (with the csv module or `schemas.codecs.read_records`), validated
here by the data contract (docs/DESIGN.md 3.1/3.2, re-stated below, nothing from
`transforms/` and no generator internals), and the statuses re-derived by
the rules of docs/DESIGN.md 3.3.
"""
from __future__ import annotations

import csv
import filecmp
import hashlib
import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datagen import BreakRates, GeneratorConfig, generate  # noqa: E402
from schemas.codecs import read_records, write_records  # noqa: E402
from schemas.money import MoneyError, normalize_currency, parse_minor_units  # noqa: E402
from schemas.records import PAYMENT_FIELDS, SETTLEMENT_FIELDS  # noqa: E402
from schemas.rules import EVENT_TYPES, KIND_OF_EVENT_TYPE, KIND_OF_RECORD_TYPE, RECORD_TYPES, STATUSES  # noqa: E402
from schemas.timestamps import TimestampError, format_timestamp, parse_date, parse_timestamp_millis  # noqa: E402
from schemas.vendors import detect_vendor  # noqa: E402

DAY_MS = 86_400_000
FORMATS = ("csv", "jsonl", "avro", "parquet")


# ---------------------------------------------------------------- helpers --


def generated(tmp_path_factory, name: str, **options):
    return generate(GeneratorConfig(**options), str(tmp_path_factory.mktemp(name)))


def read_all(paths, fmt_of, input_name):
    """Every RawRecord of the files (vendor reports are converted by the reader)."""
    records = []
    for path in paths:
        with open(path, "rb") as handle:
            records.extend(read_records(handle, path, fmt_of(path), input_name))
    return records


def _fmt(path: str) -> str:
    return {".csv": "csv", ".jsonl": "jsonl", ".avro": "avro", ".parquet": "parquet"}[Path(path).suffix]


def _text(fields, name):
    value = fields.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} missing")
    return value.strip()


def valid_payment(fields):
    """The contract of 3.1, or None for a row the pipeline must reject."""
    if fields is None:
        return None
    try:
        amount = parse_minor_units(fields.get("amount_minor"), "amount_minor")
        event_type = _text(fields, "event_type").upper()
        if amount <= 0 or event_type not in EVENT_TYPES:
            return None
        return {
            "id": _text(fields, "event_id"),
            "payment_id": _text(fields, "payment_id"),
            "type": event_type,
            "processor": _text(fields, "processor").lower(),
            "reference": _text(fields, "processor_reference"),
            "merchant_id": _text(fields, "merchant_id"),
            "amount": amount,
            "currency": normalize_currency(fields.get("currency")),
            "time": parse_timestamp_millis(fields.get("event_time"), "event_time"),
        }
    except (MoneyError, TimestampError, ValueError):
        return None


def valid_settlement(fields):
    """The contract of 3.2 (incl. net = gross - fee), or None."""
    if fields is None:
        return None
    try:
        gross = parse_minor_units(fields.get("gross_minor"), "gross_minor")
        fee = parse_minor_units(fields.get("fee_minor"), "fee_minor")
        net = parse_minor_units(fields.get("net_minor"), "net_minor")
        record_type = _text(fields, "record_type").upper()
        if gross <= 0 or net != gross - fee or record_type not in RECORD_TYPES:
            return None
        parse_date(fields.get("settlement_date"), "settlement_date")
        return {
            "id": _text(fields, "settlement_id"),
            "type": record_type,
            "processor": _text(fields, "processor").lower(),
            "reference": _text(fields, "processor_reference"),
            "merchant_id": _text(fields, "merchant_id"),
            "amount": gross,
            "fee": fee,
            "currency": normalize_currency(fields.get("currency")),
            "time": parse_timestamp_millis(fields.get("booked_time"), "booked_time"),
            "payout_id": fields.get("payout_id") or None,
        }
    except (MoneyError, TimestampError, ValueError):
        return None


class Side:
    """One input read back: valid distinct records, rejected count, re-delivered count."""

    def __init__(self, raw_fields, validate):
        self.read = len(raw_fields)
        self.raw = raw_fields
        self.records, self.rejected, self.redelivered = {}, [], 0
        for fields in raw_fields:
            record = validate(fields)
            if record is None:
                self.rejected.append(fields)
            elif record["id"] in self.records:
                assert self.records[record["id"]] == record, "a re-delivery must be the identical record"
                self.redelivered += 1
            else:
                self.records[record["id"]] = record


def rederive(payments: Side, settlements: Side, sla_days: int, grace_days: int):
    """(as_of, sorted ground-truth rows) by docs/DESIGN.md 3.3 from the records alone."""
    times = [r["time"] for r in payments.records.values()] + [r["time"] for r in settlements.records.values()]
    as_of = max(times)
    keys = defaultdict(lambda: ([], []))
    for r in payments.records.values():
        if r["type"] in KIND_OF_EVENT_TYPE:
            keys[(r["processor"], r["reference"], KIND_OF_EVENT_TYPE[r["type"]])][0].append(r)
    for r in settlements.records.values():
        if r["type"] in KIND_OF_RECORD_TYPE:
            keys[(r["processor"], r["reference"], KIND_OF_RECORD_TYPE[r["type"]])][1].append(r)
    rows = []
    for key, (ledger, lines) in keys.items():
        ledger.sort(key=lambda r: (r["time"], r["id"]))
        lines.sort(key=lambda r: (r["time"], r["id"]))
        event, line = (ledger or [None])[0], (lines or [None])[0]
        if event and line:
            status = ("CURRENCY_MISMATCH" if event["currency"] != line["currency"]
                      else "MATCHED" if event["amount"] == line["amount"] else "AMOUNT_MISMATCH")
        elif event:
            status = "MISSING_SETTLEMENT" if as_of >= event["time"] + sla_days * DAY_MS else "PENDING"
        else:
            status = "UNEXPECTED_SETTLEMENT" if as_of >= line["time"] + grace_days * DAY_MS else "PENDING"
        rows.append((*key, status, event["id"] if event else "", line["id"] if line else ""))
        rows += [(*key, "DUPLICATE_LEDGER_EVENT", extra["id"], "") for extra in ledger[1:]]
        rows += [(*key, "DUPLICATE_SETTLEMENT", "", extra["id"]) for extra in lines[1:]]
    return as_of, sorted(rows)


def read_ground_truth(dataset):
    with open(dataset.ground_truth_path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        assert next(reader) == ["processor", "processor_reference", "kind", "status", "ledger_event_id",
                                "settlement_id"]
        return [tuple(row) for row in reader]


def read_back(dataset):
    payments = Side([r.fields for r in read_all(dataset.payment_files, _fmt, "payments")], valid_payment)
    settlements = Side([r.fields for r in read_all(dataset.settlement_files, _fmt, "settlements")],
                       valid_settlement)
    return payments, settlements


def csv_dicts(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# ---------------------------------------------------------------- fixtures --


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return generated(tmp_path_factory, "small", payments=2000)


@pytest.fixture(scope="module")
def vendor(tmp_path_factory):
    return generated(tmp_path_factory, "vendor", payments=1500, seed=11, vendor_reports=True)


# ---------------------------------------------------------------- tests --


def test_same_seed_gives_byte_identical_files_and_another_seed_differs(tmp_path):
    names = ("payments/payments.{ext}", "settlements/settlements.{ext}", "ground_truth.csv", "expected.json")
    for fmt in FORMATS:
        runs = [generate(GeneratorConfig(payments=300, seed=seed, fmt=fmt, vendor_reports=fmt == "csv"),
                         str(tmp_path / f"{fmt}-{index}"))
                for index, seed in enumerate((5, 5, 6))]
        for name in names + ("settlements/stripe_payout_reconciliation.csv",
                             "settlements/adyen_settlement_details.csv") * (fmt == "csv"):
            first, again, other = (os.path.join(run.out_dir, name.format(ext=fmt)) for run in runs)
            assert filecmp.cmp(first, again, shallow=False), f"{fmt}: {name} differs between identical runs"
            if name != "expected.json":
                assert not filecmp.cmp(first, other, shallow=False), f"{fmt}: {name} ignores the seed"


def test_every_status_appears_with_default_rates(small):
    counts = Counter(row[3] for row in read_ground_truth(small))
    assert set(counts) == set(STATUSES)
    assert small.expected["statuses"] == {status: counts[status] for status in STATUSES}
    assert small.expected["keys"] == len({row[:3] for row in read_ground_truth(small)})


def test_ground_truth_is_rederived_from_the_files(small):
    payments, settlements = read_back(small)
    as_of, rows = rederive(payments, settlements, 3, 1)
    assert small.expected["as_of"] == format_timestamp(as_of)
    assert read_ground_truth(small) == rows


def test_ground_truth_follows_other_deadlines_and_rates(tmp_path):
    dataset = generate(GeneratorConfig(payments=800, seed=3, settlement_sla_days=1, ledger_grace_days=0,
                                       rates=BreakRates(0.05, 0.05, 0.1, 0.05, 0.05, 0.05)), str(tmp_path))
    as_of, rows = rederive(*read_back(dataset), 1, 0)
    assert read_ground_truth(dataset) == rows
    statuses = dataset.expected["statuses"]
    assert statuses["MISSING_SETTLEMENT"] > 0.05 * statuses["MATCHED"]


def test_structural_invariants_on_the_raw_csv_rows(small):
    """Per ground-truth row, what the raw files (malformed rows included) must show."""
    payment_rows = csv_dicts(small.payment_files[0])
    settlement_rows = csv_dicts(small.settlement_files[0])
    events = {row["event_id"]: row for row in payment_rows}
    lines = {row["settlement_id"]: row for row in settlement_rows}
    ledger_keys = Counter((r["processor"], r["processor_reference"], KIND_OF_EVENT_TYPE.get(r["event_type"]))
                          for r in {r["event_id"]: r for r in payment_rows}.values())
    settled_keys = Counter((r["processor"], r["processor_reference"], KIND_OF_RECORD_TYPE.get(r["record_type"]))
                           for r in {r["settlement_id"]: r for r in settlement_rows}.values())
    as_of = parse_timestamp_millis(small.expected["as_of"])
    sla, grace = 3 * DAY_MS, DAY_MS

    def time_of(row, name):
        return parse_timestamp_millis(row[name])

    truth = read_ground_truth(small)
    primaries = {}  # key -> ((event_time, event_id) | None, (booked_time, settlement_id) | None)
    for processor, reference, kind, status, event_id, settlement_id in truth:
        if not status.startswith("DUPLICATE_"):
            assert (processor, reference, kind) not in primaries, "one primary row per key"
            primaries[(processor, reference, kind)] = (
                (time_of(events[event_id], "event_time"), event_id) if event_id else None,
                (time_of(lines[settlement_id], "booked_time"), settlement_id) if settlement_id else None)
    for processor, reference, kind, status, event_id, settlement_id in truth:
        key = (processor, reference, kind)
        event = events[event_id] if event_id else None
        line = lines[settlement_id] if settlement_id else None
        for row in filter(None, (event, line)):
            assert (row["processor"], row["processor_reference"]) == (processor, reference)
        if event:
            assert KIND_OF_EVENT_TYPE[event["event_type"]] == kind
        if line:
            assert KIND_OF_RECORD_TYPE[line["record_type"]] == kind
        if status in ("MATCHED", "AMOUNT_MISMATCH", "CURRENCY_MISMATCH"):
            assert event and line
            same_currency = event["currency"] == line["currency"]
            same_amount = int(event["amount_minor"]) == int(line["gross_minor"])
            assert {"MATCHED": same_currency and same_amount, "AMOUNT_MISMATCH": same_currency and not same_amount,
                    "CURRENCY_MISMATCH": not same_currency}[status]
        elif status == "MISSING_SETTLEMENT":
            assert event and not settlement_id and settled_keys[key] == 0
            assert time_of(event, "event_time") + sla <= as_of
        elif status == "UNEXPECTED_SETTLEMENT":
            assert line and not event_id and ledger_keys[key] == 0
            assert time_of(line, "booked_time") + grace <= as_of
        elif status == "PENDING":
            assert bool(event) != bool(line)
            if event:
                assert settled_keys[key] == 0 and time_of(event, "event_time") + sla > as_of
            else:
                assert ledger_keys[key] == 0 and time_of(line, "booked_time") + grace > as_of
        elif status == "DUPLICATE_LEDGER_EVENT":
            assert event and not line and ledger_keys[key] >= 2
            assert primaries[key][0] < (time_of(event, "event_time"), event_id)
        else:
            assert status == "DUPLICATE_SETTLEMENT"
            assert line and not event and settled_keys[key] >= 2
            assert primaries[key][1] < (time_of(line, "booked_time"), settlement_id)
    # Every settling record of the files is in the ground truth, exactly once.
    truth_ids = Counter(i for row in truth for i in row[4:] if i)
    valid_payments, valid_settlements = read_back(small)
    settling = [r["id"] for r in valid_payments.records.values() if r["type"] in KIND_OF_EVENT_TYPE]
    settling += [r["id"] for r in valid_settlements.records.values() if r["type"] in KIND_OF_RECORD_TYPE]
    assert sorted(truth_ids.elements()) == sorted(settling)


def test_counts_equal_the_rows_in_the_files(small, vendor):
    for dataset in (small, vendor):
        payments, settlements = read_back(dataset)
        for name, side in (("payments", payments), ("settlements", settlements)):
            assert dataset.expected["counts"][name] == {
                "read": side.read,
                "rejected": len(side.rejected),
                "accepted": side.read - len(side.rejected),
                "deduplicated": side.redelivered,
            }
            assert side.redelivered > 0 and side.rejected
        assert dataset.expected["payments"] == (1500 if dataset is vendor else 2000)


def test_malformed_rows_cycle_through_the_defects_and_collide_with_nothing(small):
    payment_rows = csv_dicts(small.payment_files[0])
    settlement_rows = csv_dicts(small.settlement_files[0])
    payments, settlements = read_back(small)
    bad_payments = payments.rejected
    assert {"12.5x", "abc"} & {r["amount_minor"] for r in bad_payments}
    assert any(r["amount_minor"].startswith("-") for r in bad_payments)
    assert "XXX" in {r["currency"] for r in bad_payments}
    assert "yesterday" in {r["event_time"] for r in bad_payments}
    assert any(r["event_type"] not in EVENT_TYPES for r in bad_payments)
    assert "" in {r["event_id"] for r in bad_payments}
    bad_settlements = settlements.rejected
    assert any(int(r["net_minor"]) != int(r["gross_minor"]) - int(r["fee_minor"])
               for r in bad_settlements if r["gross_minor"].lstrip("-").isdigit())
    assert {"XXX"} <= {r["currency"] for r in bad_settlements}
    assert any(r["record_type"] not in RECORD_TYPES for r in bad_settlements)
    for bad, rows, id_name in ((bad_payments, payment_rows, "event_id"),
                               (bad_settlements, settlement_rows, "settlement_id")):
        ids = Counter(r[id_name] for r in rows)
        references = Counter(r["processor_reference"] for r in payment_rows + settlement_rows)
        for row in bad:
            assert row[id_name] == "" or ids[row[id_name]] == 1
            assert references[row["processor_reference"]] == 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_is_readable_and_reconciles_to_the_same_truth(tmp_path, fmt):
    dataset = generate(GeneratorConfig(payments=400, seed=9, fmt=fmt), str(tmp_path))
    assert [Path(p).name for p in dataset.payment_files + dataset.settlement_files] == [
        f"payments.{fmt}", f"settlements.{fmt}"]
    payments, settlements = read_back(dataset)
    for name, side in (("payments", payments), ("settlements", settlements)):
        assert side.read == dataset.expected["counts"][name]["read"]
        assert len(side.rejected) == dataset.expected["counts"][name]["rejected"] > 0
    assert read_ground_truth(dataset) == rederive(payments, settlements, 3, 1)[1]
    # The break scenarios do not depend on the format.
    if fmt != "csv":
        csv_dataset = generate(GeneratorConfig(payments=400, seed=9), str(tmp_path / "csv"))
        assert csv_dataset.expected["statuses"] == dataset.expected["statuses"]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_text_files_are_what_the_codec_writes(small, tmp_path, fmt):
    dataset = small if fmt == "csv" else generate(GeneratorConfig(payments=300, fmt=fmt), str(tmp_path / "g"))
    for path, name, fields in ((dataset.payment_files[0], "payments", PAYMENT_FIELDS),
                               (dataset.settlement_files[0], "settlements", SETTLEMENT_FIELDS)):
        if fmt == "csv":
            rows = csv_dicts(path)
        else:
            with open(path, encoding="utf-8") as handle:
                rows = [json.loads(line) for line in handle]
        again = str(tmp_path / f"again.{fmt}")
        write_records(again, fmt, name, rows, fields)
        assert filecmp.cmp(path, again, shallow=False), f"{path} is not what schemas.codecs writes"


def test_vendor_reports(vendor):
    names = sorted(Path(p).name for p in vendor.settlement_files)
    assert names == ["adyen_settlement_details.csv", "settlements.csv", "stripe_payout_reconciliation.csv"]
    for path in vendor.settlement_files:
        with open(path, newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle))
        expected = {"stripe_payout_reconciliation.csv": "stripe", "adyen_settlement_details.csv": "adyen"}
        assert detect_vendor(header) == expected.get(Path(path).name)
    canonical = csv_dicts(vendor.settlement_files[0])
    assert {r["processor"] for r in canonical} <= {"checkout", "worldpay"}
    records = read_all(vendor.settlement_files, _fmt, "settlements")
    assert all(r.decode_error is None for r in records), "vendor files hold no malformed rows"
    payments, settlements = read_back(vendor)
    by_processor = Counter(r["processor"] for r in settlements.records.values())
    assert min(by_processor[p] for p in ("stripe", "adyen", "checkout", "worldpay")) > 50
    vendor_types = {r["type"] for r in settlements.records.values() if r["processor"] in ("stripe", "adyen")}
    assert {"CAPTURE", "REFUND", "FEE", "PAYOUT"} <= vendor_types <= set(RECORD_TYPES)
    assert read_ground_truth(vendor) == rederive(payments, settlements, 3, 1)[1]
    statuses = Counter(row[3] for row in read_ground_truth(vendor))
    assert set(statuses) == set(STATUSES)


def test_realistic_values(small):
    payments, settlements = read_back(small)
    references = {"stripe": r"ch_[0-9A-Za-z]{24}", "adyen": r"[0-9A-Z]{16}", "checkout": r"chk_[0-9a-f]+",
                  "worldpay": r"wp_[0-9a-f]+"}
    exponents = {"USD": 2, "EUR": 2, "GBP": 2, "JPY": 0, "KWD": 3}
    events = list(payments.records.values())
    assert {r["currency"] for r in events} == set(exponents)
    assert {r["type"] for r in events} == set(EVENT_TYPES)
    assert 15 <= len({r["merchant_id"] for r in events}) <= 20
    assert all(re.fullmatch(r"m_[0-9a-z]{6}", r["merchant_id"]) for r in events)
    for r in events:
        assert re.fullmatch(references[r["processor"]], r["reference"]), r
    for currency, exponent in exponents.items():
        amounts = sorted(r["amount"] for r in events if r["currency"] == currency and r["type"] == "AUTHORIZED")
        median = amounts[len(amounts) // 2] / 10 ** exponent
        assert (1 if exponent != 0 else 100) <= median <= (1000 if exponent != 0 else 100_000), currency
    captures = [r for r in settlements.records.values() if r["type"] == "CAPTURE"]
    assert all(0 <= r["fee"] < r["amount"] for r in captures)
    assert 0.01 <= sum(r["fee"] for r in captures) / sum(r["amount"] for r in captures) <= 0.04
    # Every line of a day's payout shares its payout id.
    payouts = [r for r in settlements.records.values() if r["type"] == "PAYOUT"]
    assert payouts and all(r["payout_id"] for r in payouts)
    paid = Counter(r["payout_id"] for r in settlements.records.values() if r["payout_id"])
    assert all(paid[r["payout_id"]] >= 2 for r in payouts)
    # Settlement lines book 0-4 days after their ledger event.
    event_time = {(r["processor"], r["reference"], KIND_OF_EVENT_TYPE[r["type"]]): r["time"]
                  for r in events if r["type"] in KIND_OF_EVENT_TYPE}
    for processor, reference, kind, status, _, settlement_id in read_ground_truth(small):
        if status == "MATCHED":
            delay = settlements.records[settlement_id]["time"] - event_time[(processor, reference, kind)]
            assert 0 < delay <= 4 * DAY_MS


def test_nothing_looks_like_personal_data(small, vendor, tmp_path):
    card = re.compile(r"(?<!\d)\d{13,19}(?!\d)")
    email = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
    jsonl = generate(GeneratorConfig(payments=300, fmt="jsonl"), str(tmp_path))
    for dataset in (small, vendor, jsonl):
        for path in dataset.payment_files + dataset.settlement_files + [dataset.ground_truth_path]:
            text = Path(path).read_text(encoding="utf-8")
            assert not card.search(text), f"{path}: {card.search(text).group()}"
            assert not email.search(text), f"{path}: {email.search(text).group()}"


def test_progress_bar_goes_to_stderr(tmp_path, capfd):
    generate(GeneratorConfig(payments=200), str(tmp_path / "quiet"))
    assert capfd.readouterr().err == ""
    generate(GeneratorConfig(payments=200), str(tmp_path / "loud"), progress=True)
    captured = capfd.readouterr()
    assert "payments" in captured.err and "200/200" in captured.err and captured.out == ""


def test_a_rerun_with_other_options_leaves_no_stale_files(tmp_path):
    generate(GeneratorConfig(payments=100, vendor_reports=True), str(tmp_path))
    dataset = generate(GeneratorConfig(payments=100, fmt="jsonl"), str(tmp_path))
    assert sorted(os.listdir(tmp_path / "settlements")) == ["settlements.jsonl"]
    assert sorted(os.listdir(tmp_path / "payments")) == ["payments.jsonl"]
    assert dataset.settlement_files == [str(tmp_path / "settlements" / "settlements.jsonl")]


def test_invalid_configs_are_refused():
    with pytest.raises(ValueError):
        GeneratorConfig(payments=10, fmt="xml")
    with pytest.raises(ValueError):
        BreakRates(amount_mismatch=0.6, missing_settlement=0.6)
    with pytest.raises(ValueError):
        GeneratorConfig(payments=10, start="2026-01-05 00:00:00")


# ---------------------------------------------------------------- pinned output --

# SHA-256 of every file, produced by the previous implementation (commit 4399508,
# which held the whole world as Python tuples). The columnar, chunk-writing
# generator must give the same bytes for the same config: a change of output is a
# deliberate decision, made by updating these hashes. The Parquet and Avro hashes
# also pin the writers' own bytes (pyarrow's "created_by" footer, fastavro's
# header): after an upgrade of those, check the rows are unchanged and re-pin.
# fastavro writes a field's "doc" and "default" in the order of a set of strings,
# so an Avro header depended on the process's string hashing until schemas/avro.py
# put them in one order: the datasets are made in child processes with two
# different PYTHONHASHSEEDs, and both must give these bytes.
PINNED = {
    "csv-vendor": (dict(payments=1000, seed=7, fmt="csv", vendor_reports=True), {
        "expected.json": "6c4a3ea0943d6c22c21698289d835a9ba43cb0b6ad72518ba2aa17719663bef1",
        "ground_truth.csv": "31c807daca9cd500b7dc370e57a5fa64eced88d0a29c53a5ed48299197e993ca",
        "payments/payments.csv": "60de74e7a1457d68031ab5c6efd2ddfe8855f0f4e4c78c089680a965ead72945",
        "settlements/adyen_settlement_details.csv": "7627fa6fadbee9503f633b883b545d74592b5fb6240ea26aec8f2390c7540e78",
        "settlements/settlements.csv": "a99f771b753714eed12f0acbe83220c5cf0d40e93d6a591e83f5adea16ae40f8",
        "settlements/stripe_payout_reconciliation.csv":
            "f7971e5e13b86ce89358b65d71127fbc37e2a312b75537ddbfd1cc9adcd04b61",
    }),
    "jsonl-vendor": (dict(payments=1000, seed=11, fmt="jsonl", vendor_reports=True), {
        "expected.json": "acad12d59eaf862a1fefded3f7d3ee1dd3e3271f2efb558b6d2db2641b7fbf7b",
        "ground_truth.csv": "b84b8861481bc1900112d143b6676544d63ab3fd7ee5f02d7249e29ae6cd0419",
        "payments/payments.jsonl": "d58f6b35464177ff5745a2a4201d43735433374189b478a2c3333b0479cb60d7",
        "settlements/adyen_settlement_details.csv": "bfeef04b190f78fd34ed47a32b778fed4dc400f5f46afbb6b8185dc010c8d884",
        "settlements/settlements.jsonl": "a7a7d4e8d0136900f9af202cf19ee1a15ece38607587401e540ca54edd53a3f6",
        "settlements/stripe_payout_reconciliation.csv":
            "5ebe76920fc163fba373d15dee75c638d200506ffb79f30e147c2ca13b5460a3",
    }),
    "avro": (dict(payments=1000, seed=7, fmt="avro"), {
        "expected.json": "de24c503c77670b42f927237efe2665db89e5dc2d18a3e3787ef288c916f012a",
        "ground_truth.csv": "5a4454202cbe38edc5a1cc6faa9a98807b7882b30d81ea824f9225d51e0a446b",
        "payments/payments.avro": "2608ba3a6586e9ad336a1dbde2964ac361ec83d85121aeca28bff5ff333fe7ac",
        "settlements/settlements.avro": "82f179bfc01dea6f0ed0433aa339be781e3931fb7cc2336f3c8797b97d62af6b",
    }),
    "parquet-vendor": (dict(payments=1000, seed=11, fmt="parquet", vendor_reports=True), {
        "expected.json": "ce9c900243f891829c4bf3010dfccccc149434d858b887cce8475cdcf523cd87",
        "ground_truth.csv": "b84b8861481bc1900112d143b6676544d63ab3fd7ee5f02d7249e29ae6cd0419",
        "payments/payments.parquet": "3444df4b606747839de3c9e6a301a9cb05124307ed493356c138bf721863ee5d",
        "settlements/adyen_settlement_details.csv": "bfeef04b190f78fd34ed47a32b778fed4dc400f5f46afbb6b8185dc010c8d884",
        "settlements/settlements.parquet": "219173d04a2131cd5f95e4e5cf614db756cc043ece09e0d031d9f634b6060413",
        "settlements/stripe_payout_reconciliation.csv":
            "5ebe76920fc163fba373d15dee75c638d200506ffb79f30e147c2ca13b5460a3",
    }),
    "no-payments": (dict(payments=0, seed=5, fmt="csv", vendor_reports=True), {
        "expected.json": "9784b9da28aeb7025c1a4b0cf65803ea1d182b4d4b50beebf63494077c509573",
        "ground_truth.csv": "0ebea7bac666866f2038671619630e617612a67acc01fa71121db214bc531edd",
        "payments/payments.csv": "0d7e10c3d58860344e1b45888e9b26bd69e2c62cc013d70f889c6afdbd20b710",
        "settlements/adyen_settlement_details.csv": "ec8a751a23cef68e0dcb48edb13498015cc1d098e5447759fec9c6029baf1786",
        "settlements/settlements.csv": "533206bcb1abbe4f9a79f9b11bc8e62c09aa85d0381a9b71648e8b3ac23b0196",
        "settlements/stripe_payout_reconciliation.csv":
            "e5084df4033de4fa366ad65ae0ac5db1c6250558cc9647ceeda32162f8e41898",
    }),
    "many-breaks-avro": (dict(payments=3000, seed=4, fmt="avro", vendor_reports=True, days=2,
                              rates=BreakRates(0.2, 0.1, 0.1, 0.2, 0.2, 0.2), malformed_rate=0.05,
                              redelivery_rate=0.3), {
        "expected.json": "18872b8b1403e0f1b5cdb38d690f4f4b804552464118b2bc39efc9a4d291546a",
        "ground_truth.csv": "8123512e95bc654d64d0e8b1f5e0662c8a8e72e88677dbe1cc3d77b55c9f3152",
        "payments/payments.avro": "e19668af14989b1978511bbc44802e598e1f06ec20379e3534f83f953d1133ee",
        "settlements/adyen_settlement_details.csv": "ea22e6f032da26af6de12383a9dc9732123c04b1264fb16c42da03d0c1a618ee",
        "settlements/settlements.avro": "cd5d26b7b991c4cb9b92c9bf4ad915ed2dd675f6903b5ed645b9a126f92e551a",
        "settlements/stripe_payout_reconciliation.csv":
            "3cbdeeecc1319b1c1d201795904604e7739a973e7bca9cb40f7cd59a30329a48",
    }),
    "all-noise-csv": (dict(payments=500, seed=9, fmt="csv", malformed_rate=1.0, redelivery_rate=1.0,
                           vendor_reports=True, days=30), {
        "expected.json": "467fa1c0a727b5afeb62d7aea870ff8cbf98430a445ed369d2190ebb4631f848",
        "ground_truth.csv": "3626dbbef73c2d42ab3eb966e87b674c2cd4889a7f93606465a3044472cc211c",
        "payments/payments.csv": "cca9fedc4894ebf2a6c2813a9c4393122b5147858168333c1ec721964b07b82e",
        "settlements/adyen_settlement_details.csv": "6757641ea24e52924678c4c16bf43b569e43f298b8e812a586a4a935097bde60",
        "settlements/settlements.csv": "ed1ca874b76c5505e75dba014d112765fd4eeaec4970b3619f7c3d5def171ca3",
        "settlements/stripe_payout_reconciliation.csv":
            "1a9b85ee3e49fe7c9b7f90aa0c6f126abc99f4cc3e8fe8394a7bf01f70d8f346",
    }),
    "no-noise-parquet": (dict(payments=2000, seed=8, fmt="parquet", malformed_rate=0.0, redelivery_rate=0.0,
                              start="2026-03-01T12:34:56.789Z", days=1), {
        "expected.json": "20e368c1e4a15e106316d4a36b78bd07987132cb95cb68705c8fec0102594128",
        "ground_truth.csv": "dcf8a99e868bf4d09b2adc0ec1fc7d222a4fc17ee96670e67adebc8496748ac4",
        "payments/payments.parquet": "1572e5353a4e73004a2f99c0f468baaaa9fc966b53f3dabfaf9a2e78bffeaa9c",
        "settlements/settlements.parquet": "84ddbed1577485580a8f8591e6ab7b4403478cafca720d2fb72a21880cc19ccf",
    }),
}


def file_hashes(out_dir) -> dict:
    root = Path(out_dir)
    return {path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


_GENERATE_PINNED = """
import sys
sys.path[:0] = [sys.argv[1]]
from test_generator import PINNED
from datagen import GeneratorConfig, generate
for name, (options, _) in PINNED.items():
    generate(GeneratorConfig(**options), f"{sys.argv[2]}/{name}")
"""


@pytest.fixture(scope="module", params=["0", "1"])
def pinned_runs(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"pinned-hashseed{request.param}")
    tests = Path(__file__).resolve().parent
    subprocess.run([sys.executable, "-c", _GENERATE_PINNED, str(tests), str(out)], check=True, cwd=str(tests.parent),
                   env={**os.environ, "PYTHONHASHSEED": request.param})
    return out


@pytest.mark.parametrize("name", sorted(PINNED))
def test_output_is_the_pinned_bytes(pinned_runs, name):
    assert file_hashes(pinned_runs / name) == PINNED[name][1]


def test_a_reference_collision_draws_everything_again_exactly(tmp_path, monkeypatch):
    """References are checked for uniqueness after the draw; a collision (forced here) redraws with a set."""
    from datagen import scenarios

    made = []
    make = scenarios.References.__init__

    def recording(self, rng, exact=False):
        made.append(exact)
        make(self, rng, exact)

    monkeypatch.setattr(scenarios.References, "__init__", recording)
    monkeypatch.setattr(scenarios.References, "collide", lambda self, issued: not self._exact)
    options, hashes = PINNED["csv-vendor"]
    generate(GeneratorConfig(**options), str(tmp_path))
    assert made == [False, True]
    assert file_hashes(tmp_path) == hashes


def test_collide_finds_equal_references_only():
    from random import Random

    import pyarrow as pa

    from datagen.scenarios import References

    references = References(Random(1))
    assert references.collide(pa.array(["ch_a", "wp_b", "ch_a"], pa.large_string()))
    assert not references.collide(pa.array(["ch_a", "wp_b", "ch_c"], pa.large_string()))
    assert not References(Random(1), exact=True).collide(pa.array(["ch_a", "ch_a"], pa.large_string()))


def test_vectorized_ids_are_the_sequences_ids():
    from random import Random

    import numpy as np

    from datagen.scenarios import PROCESSORS, Ids, IdSequence

    counters = np.arange(3000)
    for prefix, upper in (("evt_", False), ("", True), ("wps_", False)):
        texts = IdSequence(prefix, 12345, upper).texts(counters)
        one_by_one = IdSequence(prefix, 12345, upper)
        assert texts == [one_by_one.render(one_by_one.next_number()) for _ in counters]
    assert any(text[8] in "ghijklmnop" for text in IdSequence("", 12345).texts(counters)), "digit case not covered"
    ids, again = Ids(Random(3)), Ids(Random(3))
    processors = np.array([i * 7 % 4 for i in counters], np.int8)
    assert ids.settlement_texts(counters, processors) == [again.settlement(PROCESSORS[p]) for p in processors]


def test_ground_truth_rows_states_the_rules_the_file_follows(small):
    """`ground_truth_rows` (the rules per key, on rows) gives the generated ground truth from the files' records."""
    from datagen.generator import ground_truth_rows

    payments, settlements = read_back(small)
    keys = defaultdict(lambda: ([], []))
    for r in payments.records.values():
        if r["type"] in KIND_OF_EVENT_TYPE:
            keys[(r["processor"], r["reference"], KIND_OF_EVENT_TYPE[r["type"]])][0].append(
                (r["id"], None, None, None, None, None, r["amount"], r["currency"], r["time"]))
    for r in settlements.records.values():
        if r["type"] in KIND_OF_RECORD_TYPE:
            keys[(r["processor"], r["reference"], KIND_OF_RECORD_TYPE[r["type"]])][1].append(
                (r["id"], None, None, None, None, r["amount"], None, None, r["currency"], None, r["time"], None))
    as_of = parse_timestamp_millis(small.expected["as_of"])
    rows = ground_truth_rows([(*key, ledger, lines) for key, (ledger, lines) in keys.items()], as_of, 3 * DAY_MS,
                             DAY_MS)
    assert read_ground_truth(small) == rows


_PEAK_RSS = """
import resource, sys
from datagen.generator import GeneratorConfig, generate
generate(GeneratorConfig(payments=int(sys.argv[1]), fmt="parquet"), sys.argv[2])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def peak_rss_bytes(payments: int, out_dir) -> int:
    """The peak resident memory of a fresh process that generates `payments` payments as Parquet."""
    result = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(payments), str(out_dir)], check=True,
                            capture_output=True, text=True, cwd=str(Path(__file__).resolve().parents[1]))
    return int(result.stdout.split()[-1])


def test_memory_grows_by_bytes_per_payment_not_by_python_objects(tmp_path):
    """Peak RSS per extra payment between 50k and 400k payments (Parquet; ~0.1M and ~0.84M payment events).

    Measured (2026-12-04, this machine): ~380 bytes per payment with the world in
    integer columns and the files written in chunks; ~1,700 with the previous
    generator, which held every row as Python tuples (15.0 GiB peak at 10M
    payments). 900 sits between, well clear of both, so a return to per-row
    Python objects fails here rather than in a 30M run that runs out of memory.
    """
    small_peak = peak_rss_bytes(50_000, tmp_path / "small")
    large_peak = peak_rss_bytes(400_000, tmp_path / "large")
    per_payment = (large_peak - small_peak) / 350_000
    assert per_payment < 900, f"{per_payment:.0f} bytes of peak memory per extra payment"
