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
import json
import os
import re
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
