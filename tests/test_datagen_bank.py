"""Generated bank statements (datagen/bank_statements.py, datagen/bank_files.py; docs/DESIGN.md 3.9).

The generator writes its truth from intent; here it is held against what the readers of schemas/bank read
back and against the rules of transforms/bank (which datagen may not import): every payout's and every
credit's expected status is what those rules decide, at as_of's date and the day either side.
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter, defaultdict
from datetime import date, timedelta
from pathlib import Path
from typing import Dict, List

import pytest

from datagen import GeneratorConfig, generate
from datagen.bank_statements import BANK_FORMATS, BANK_TRUTH_FIELDS, INJECTED_KINDS, business_days_after
from schemas.bank import read_bank_statement
from schemas.pan import find_pan_spans
from schemas.records import SettlementLine
from schemas.rules import (
    BANK_MATCH_STATUSES,
    LINES_WITHOUT_PAYOUT,
    PAYOUT_BALANCED,
    PAYOUT_LINES_DIFFER,
    PAYOUT_WITHOUT_LINES,
)
from schemas.timestamps import parse_timestamp_millis
from transforms.bank.matching import match_bank_credits
from transforms.bank.payouts import balance_payout
from transforms.bank.references import (
    MIN_TOKEN_LENGTH,
    SEARCHED_FIELDS,
    credit_references,
    reference_key,
    references_in,
)

# Small enough to generate in about a second, large enough for every kind (and every status) at least once.
SMALL = dict(payments=1500, seed=21, days=14)


def _hashes(root: Path) -> Dict[str, str]:
    return {path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


class Dataset:
    def __init__(self, out: Path, fmt: str):
        self.out, self.fmt = out, fmt
        self.result = generate(GeneratorConfig(**SMALL, bank_statements=fmt), str(out))
        self.expected = json.loads((out / "expected.json").read_text())
        self.bank = self.expected["bank"]
        with open(out / "bank_ground_truth.csv", newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            assert tuple(reader.fieldnames) == BANK_TRUTH_FIELDS
            self.truth = list(reader)
        self.records = [record for path in self.result.bank_statement_files
                        for record in read_bank_statement(Path(path).read_bytes(), path)]
        self.entries = {record.fields["entry_ref"]: record.fields for record in self.records if record.fields}
        self.payouts = [row for row in self.truth if row["record"] == "payout"]


@pytest.fixture(scope="module", params=BANK_FORMATS)
def dataset(request, tmp_path_factory) -> Dataset:
    return Dataset(tmp_path_factory.mktemp(f"bank-{request.param}"), request.param)


def test_the_same_seed_writes_the_same_bytes(dataset, tmp_path):
    again = generate(GeneratorConfig(**SMALL, bank_statements=dataset.fmt), str(tmp_path / "again"))
    assert _hashes(tmp_path / "again") == _hashes(dataset.out)
    assert len(again.bank_statement_files) == dataset.bank["files"] > 1
    other = generate(GeneratorConfig(**{**SMALL, "seed": 22}, bank_statements=dataset.fmt), str(tmp_path / "other"))
    first = Path(again.bank_statement_files[0]).name
    assert Path(other.bank_statement_files[0]).name != first or \
        Path(other.bank_statement_files[0]).read_bytes() != Path(again.bank_statement_files[0]).read_bytes()


def test_every_entry_reads_back_with_no_problem(dataset):
    problems = [(record.source, record.decode_error) for record in dataset.records if record.fields is None]
    assert problems == []
    entries = list(dataset.entries.values())
    assert len(dataset.records) == len(entries) == dataset.bank["entries"]  # entry_refs are unique, none lost
    directions = Counter(entry["credit_debit"] for entry in entries)
    assert directions == {"CRDT": dataset.bank["credits"], "DBIT": dataset.bank["debits"]}
    assert dataset.bank["debits"] >= 1  # bank fees
    assert {entry["statement_format"] for entry in entries} == {dataset.fmt}
    assert all(entry["status"] == "BOOK" and not entry["reversal"] for entry in entries)
    assert len({entry["account"] for entry in entries}) == dataset.bank["accounts"]
    for entry in entries:
        assert entry["currency"] == entry["account_currency"]
        assert date.fromisoformat(entry["booking_date"]).weekday() < 5
        assert date.fromisoformat(entry["booking_date"]) <= date.fromisoformat(dataset.bank["as_of_date"])


def test_every_credit_of_the_truth_is_on_a_statement(dataset):
    named = [row for row in dataset.truth if row["entry_ref"]]
    assert len(named) > len(dataset.payouts) // 2
    for row in named:
        entry = dataset.entries[row["entry_ref"]]
        assert entry["credit_debit"] == "CRDT"
        assert (entry["currency"], entry["amount_minor"]) == (row["currency"], int(row["credit_minor"]))
    assert len({row["entry_ref"] for row in named}) == len(named)  # no credit in two rows
    credits = sum(entry["credit_debit"] == "CRDT" for entry in dataset.entries.values())
    assert len(named) == credits  # and every credit has its row (a payout's or its own)


def test_every_injected_kind_and_status_occurs(dataset):
    assert all(dataset.bank["injected"][kind] >= 1 for kind in INJECTED_KINDS), dataset.bank["injected"]
    assert all(dataset.bank["bank_match_statuses"][status] >= 1 for status in BANK_MATCH_STATUSES)
    payout_statuses = dataset.bank["payout_statuses"]
    assert payout_statuses[PAYOUT_BALANCED] > 0 and payout_statuses[PAYOUT_LINES_DIFFER] > 0
    assert payout_statuses[LINES_WITHOUT_PAYOUT] > 0 and payout_statuses[PAYOUT_WITHOUT_LINES] > 0
    # A relabelled payout is one injection with two rows: counted on its lines' id.
    injected = Counter(kind for row in dataset.payouts for kind in row["injected"].split("+")
                       if kind and not (kind == "payout_relabelled" and row["payout_status"] == PAYOUT_WITHOUT_LINES))
    injected.update(row["injected"] for row in dataset.truth if row["record"] == "credit" and not row["payout_id"])
    assert injected == {kind: count for kind, count in dataset.bank["injected"].items() if count}
    fields = Counter(row["reference_field"] for row in dataset.payouts if row["entry_ref"])
    assert fields["remittance_unstructured"] > 0 and fields[""] > 0  # references only in text; none at all
    expected_fields = {"camt053": {"end_to_end_id", "bank_reference", "customer_reference", "remittance_structured"},
                       "bai2": {"bank_reference", "customer_reference"}}[dataset.fmt]
    assert expected_fields <= set(fields)
    refs = list(dataset.entries)
    if dataset.fmt == "camt053":
        assert any(ref.count("/") == 2 for ref in refs)  # a batch entry's transaction details


def test_a_relabelled_payout_has_two_ids(dataset):
    """payout_relabelled: the lines keep their id (LINES_WITHOUT_PAYOUT, no credit expected), the PAYOUT line
    carries a new id of the processor's own form that no line carries (PAYOUT_WITHOUT_LINES, credited)."""
    relabelled = [row for row in dataset.payouts if "payout_relabelled" in row["injected"].split("+")]
    old = [row for row in relabelled if row["payout_status"] == LINES_WITHOUT_PAYOUT]
    new = [row for row in relabelled if row["payout_status"] == PAYOUT_WITHOUT_LINES]
    assert len(old) == len(new) == dataset.bank["injected"]["payout_relabelled"] >= 1
    assert len(old) + len(new) == len(relabelled)
    assert [row for row in dataset.payouts if row["payout_status"] == PAYOUT_WITHOUT_LINES] == new
    assert Counter((row["processor"], row["currency"]) for row in old) == \
        Counter((row["processor"], row["currency"]) for row in new)
    assert all(row["bank_status"] == row["entry_ref"] == row["payout_minor"] == "" for row in old)
    assert all(row["bank_status"] and int(row["payout_minor"]) > 0 for row in new)
    assert len({row["payout_id"] for row in dataset.payouts}) == len(dataset.payouts)
    forms = {"stripe": r"po_[0-9a-z]{16}", "adyen": r"batch-[1-9][0-9]*", "checkout": r"pyt_[0-9a-z]{16}",
             "worldpay": r"wpo_[0-9a-z]{16}"}
    assert all(re.fullmatch(forms[row["processor"]], row["payout_id"]) for row in new)
    assert all(len(row["payout_id"]) >= MIN_TOKEN_LENGTH for row in new)
    by_payout = _settlement_lines(dataset.out)
    for row in old:
        lines = by_payout[(row["processor"], row["payout_id"])]
        assert lines and all(line.record_type != "PAYOUT" for line in lines)
    for row in new:
        lines = by_payout[(row["processor"], row["payout_id"])]
        assert [line.record_type for line in lines] == ["PAYOUT"]
        assert lines[0].processor_reference == row["payout_id"] and lines[0].gross_minor == int(row["payout_minor"])


def test_ambiguous_credits_are_the_payouts_amount(dataset):
    payouts = {row["payout_id"]: row for row in dataset.payouts}
    credits = defaultdict(list)
    for row in dataset.truth:
        if row["record"] == "credit" and row["injected"].startswith("ambiguous"):
            credits[row["payout_id"]].append(row)
    assert credits
    for payout_id, rows in credits.items():
        assert len(rows) == 2 and payouts[payout_id]["bank_status"] == "AMBIGUOUS_BANK_MATCH"
        assert {(row["currency"], row["credit_minor"]) for row in rows} == {
            (payouts[payout_id]["currency"], payouts[payout_id]["payout_minor"])}


def test_references_sit_where_the_truth_says(dataset):
    run_keys = {reference_key(row["payout_id"]) for row in dataset.payouts}
    for row in dataset.truth:
        if not row["entry_ref"]:
            continue
        entry = dataset.entries[row["entry_ref"]]
        holding = {name for name in SEARCHED_FIELDS
                   if run_keys & references_in(entry[name] if isinstance(entry[name], str) else None)}
        if row["reference_field"]:
            assert holding == {row["reference_field"]}, (row, entry)
            assert credit_references(entry) & run_keys == {reference_key(row["payout_id"])}
        else:
            assert holding == set(), (row, entry)
    # A reference in BAI2 text continues in an 88 record at times, in camt.053 in a second Ustrd.
    texts = [entry["remittance_unstructured"] or "" for entry in dataset.entries.values()]
    assert any(len(text.split()) >= 3 for text in texts)


def _settlement_lines(out: Path) -> Dict[tuple, List[SettlementLine]]:
    lines = {}
    with open(out / "settlements" / "settlements.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["payout_id"]:  # malformed rows never carry one
                lines[row["settlement_id"]] = SettlementLine(
                    row["settlement_id"], row["processor"], row["processor_reference"], row["merchant_id"],
                    row["record_type"], int(row["gross_minor"]), int(row["fee_minor"]), int(row["net_minor"]),
                    row["currency"], row["settlement_date"], parse_timestamp_millis(row["booked_time"], "booked_time"),
                    row["payout_id"])
    by_payout = defaultdict(list)
    for line in lines.values():  # re-delivered copies share their id: counted once
        by_payout[(line.processor, line.payout_id)].append(line)
    return by_payout


@pytest.mark.parametrize("shift", [0, -1, 1])
def test_the_truth_is_what_the_rules_decide(dataset, shift):
    """Truth from intent, held against transforms/bank: the payout balances, and the bank matches at as_of's
    date, the day before and the day after (the injections keep margins so that reading as_of either way
    changes nothing)."""
    as_of = parse_timestamp_millis(dataset.expected["as_of"], "as_of")
    balances = [balance_payout(processor, payout_id, lines, as_of)
                for (processor, payout_id), lines in sorted(_settlement_lines(dataset.out).items())]
    assert {(b.processor, b.payout_id): b.status for b in balances} == {
        (row["processor"], row["payout_id"]): row["payout_status"] for row in dataset.payouts}
    as_of_date = date.fromisoformat(dataset.bank["as_of_date"]) + timedelta(days=shift)
    rows = match_bank_credits(balances, list(dataset.entries.values()), as_of_date)
    got = Counter(("payout", row.processor, row.payout_id, row.entry_ref or "", row.status) if row.payout_id
                  else ("credit", row.entry_ref, row.status) for row in rows)
    want = Counter(("payout", row["processor"], row["payout_id"], row["entry_ref"], row["bank_status"])
                   if row["record"] == "payout" else ("credit", row["entry_ref"], row["bank_status"])
                   for row in dataset.truth if row["bank_status"])
    assert got == want
    assert sum(dataset.bank["bank_match_statuses"].values()) == len(rows)


def test_no_card_numbers_in_the_bank_files(dataset):
    for path in [*dataset.result.bank_statement_files, dataset.result.bank_ground_truth_path]:
        text = Path(path).read_text(encoding="utf-8")
        assert find_pan_spans(text) == [], path
    assert all(len(entry["account"]) >= 10 for entry in dataset.entries.values())


def test_without_the_option_nothing_changes_and_with_it_only_payout_lines(tmp_path):
    plain = generate(GeneratorConfig(**SMALL), str(tmp_path / "plain"))
    assert plain.bank_statement_files == [] and plain.bank_ground_truth_path is None
    assert "bank" not in plain.expected
    assert not (tmp_path / "plain" / "bank_statements").exists()
    bank = generate(GeneratorConfig(**SMALL, bank_statements="bai2"), str(tmp_path / "bank"))
    before, after = _hashes(tmp_path / "plain"), _hashes(tmp_path / "bank")
    for name in ("payments/payments.csv", "ground_truth.csv"):
        assert before[name] == after[name]
    # The settlement files differ in PAYOUT lines only (amounts off, lines left out, under another payout id).
    rows = {}
    for name in ("plain", "bank"):
        with open(tmp_path / name / "settlements" / "settlements.csv", newline="", encoding="utf-8") as handle:
            rows[name] = [row for row in csv.DictReader(handle)]
    assert [row for row in rows["plain"] if row["record_type"] != "PAYOUT"] == \
        [row for row in rows["bank"] if row["record_type"] != "PAYOUT"]
    injected = bank.expected["bank"]["injected"]
    dropped = len(rows["plain"]) - len(rows["bank"])
    assert dropped >= injected["payout_withheld"] > 0
    assert bank.expected["bank"]["payout_statuses"][LINES_WITHOUT_PAYOUT] == \
        injected["payout_withheld"] + injected["payout_relabelled"]
    plain_payouts = {(row["settlement_id"], row["booked_time"]): row for row in rows["plain"]
                     if row["record_type"] == "PAYOUT" and row["payout_id"]}
    changes = Counter()
    for row in rows["bank"]:
        if row["record_type"] == "PAYOUT" and row["payout_id"]:
            plain_row = plain_payouts[(row["settlement_id"], row["booked_time"])]
            changed = frozenset(name for name in row if row[name] != plain_row[name])
            assert changed in ({"gross_minor", "net_minor"}, {"payout_id", "processor_reference"}, set()), changed
            if changed:
                assert row["processor_reference"] == row["payout_id"]
                changes[changed] += 1
    assert changes[frozenset({"payout_id", "processor_reference"})] >= injected["payout_relabelled"] > 0
    assert bank.expected["counts"]["settlements"]["read"] == plain.expected["counts"]["settlements"]["read"] - dropped
    assert {k: v for k, v in bank.expected.items() if k not in ("bank", "counts")} == \
        {k: v for k, v in plain.expected.items() if k != "counts"}
    # Generating again without the option into the same directory leaves no bank file behind.
    generate(GeneratorConfig(**SMALL), str(tmp_path / "bank"))
    assert _hashes(tmp_path / "bank") == before


def test_credits_arrive_one_or_two_business_days_after_the_payout(dataset):
    payout_days = {}
    with open(dataset.out / "settlements" / "settlements.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["record_type"] == "PAYOUT":
                payout_days[row["payout_id"]] = date.fromisoformat(row["settlement_date"])
    for row in dataset.payouts:
        if row["entry_ref"]:
            day = date.fromisoformat(dataset.entries[row["entry_ref"]]["value_date"])
            start = payout_days[row["payout_id"]]
            assert day in (business_days_after(start, 1), business_days_after(start, 2))


def test_the_config_and_the_cli_take_the_format(tmp_path, capsys):
    from pipelines.cli import main

    with pytest.raises(ValueError, match="bank statement format"):
        GeneratorConfig(payments=10, bank_statements="mt940")
    assert main(["generate", "--payments", "200", "--out", str(tmp_path), "--bank-statements", "camt053",
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "bank_ground_truth.csv" in printed and "camt053_" in printed
    assert json.loads((tmp_path / "expected.json").read_text())["bank"]["format"] == "camt053"


def test_vendor_reports_carry_the_same_payouts(tmp_path):
    """With --vendor-reports, Stripe's and Adyen's PAYOUT lines read back (schemas.vendors) with the payout ids
    and amounts the truth names, and a withheld one is in no report."""
    from schemas.vendors import settlement_fields_from_vendor_row

    result = generate(GeneratorConfig(**SMALL, vendor_reports=True, bank_statements="camt053"), str(tmp_path))
    paid = {}
    for path in result.settlement_files:
        vendor = next((name for name in ("stripe", "adyen") if Path(path).name.startswith(name)), None)
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                fields = settlement_fields_from_vendor_row(vendor, row) if vendor else row
                if fields["record_type"] == "PAYOUT":
                    paid[(fields["processor"], fields["payout_id"])] = int(fields["gross_minor"])
    with open(tmp_path / "bank_ground_truth.csv", newline="", encoding="utf-8") as handle:
        payouts = [row for row in csv.DictReader(handle) if row["record"] == "payout"]
    assert {"stripe", "adyen"} <= {row["processor"] for row in payouts}
    assert {row["processor"] for row in payouts if row["payout_status"] == PAYOUT_WITHOUT_LINES} & {"stripe", "adyen"}
    assert paid == {(row["processor"], row["payout_id"]): int(row["payout_minor"]) for row in payouts
                    if row["payout_status"] != LINES_WITHOUT_PAYOUT}
