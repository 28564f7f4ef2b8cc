"""`paybeam backfill --bank-statements TEMPLATE`: the third leg per date (docs/operations.md, DESIGN 8).

A generated dataset with camt.053 statements, split into daily partitions (datagen/partitions.py) with each
statement under in/bank/<its booking day>/. Each date publishes the payouts of its day and the bank matches of
those payouts and of the credits valued on it; a date equals `paybeam reconcile --bank-statements` over its
window's files at its as_of, restricted to the date; both engines publish the same bytes; a changed statement
re-runs exactly the dates whose bank window reads it; a hostile statement is a dead letter of its own date.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path
from typing import Dict, List

import pyarrow.parquet as pq
import pytest

from datagen import GeneratorConfig, generate
from datagen.partitions import split_by_date
from pipelines import backfill
from pipelines.arguments import UsageError
from pipelines.backfill_plan import bank_window, longest_sla_span
from pipelines.backfill_publish import bank_matches_of_day, payouts_of_day
from pipelines.cli import main
from schemas import arrow
from schemas.bank import read_bank_statement
from schemas.rules import (
    AMBIGUOUS_BANK_MATCH,
    LINES_WITHOUT_PAYOUT,
    PAYOUT_NOT_RECEIVED,
    PAYOUT_RECEIVED,
    PAYOUT_WITHOUT_LINES,
    PENDING,
    UNEXPECTED_BANK_CREDIT,
)
from tests.cli_helpers import output_rows
from transforms.bank.matching import add_business_days

# Sunday to Tuesday: payouts without a PAYOUT line (withheld, relabelled) on the 11th and 13th, payouts
# without lines on the 13th, ambiguous and unexpected credits on the 12th, short-paid and missing credits.
DATES = ("2026-01-11", "2026-01-12", "2026-01-13")
BANK_DATA_FILES = (backfill.PAYOUTS_FILE, backfill.BANK_MATCHES_FILE)
DATA_FILES = (backfill.RESULTS_FILE, backfill.DAILY_TOTALS_FILE, backfill.DEAD_LETTERS_FILE, *BANK_DATA_FILES)

BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
                  b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt><Stmt>'
                  b'<Id>&lol2;</Id></Stmt></BkToCstmrStmt></Document>')


# --------------------------------------------------------------------------- helpers

class Data:
    """The generated dataset, its partitions and what its truth says per payout and credit."""

    def __init__(self, base: Path):
        generated = base / "generated"
        generate(GeneratorConfig(payments=1500, seed=21, days=14, bank_statements="camt053"), str(generated))
        self.inputs = base / "in"
        split_by_date(str(generated), str(self.inputs))
        for path in sorted((generated / "bank_statements").iterdir()):
            day = re.search(r"\d{4}-\d{2}-\d{2}", path.name).group(0)
            (self.inputs / "bank" / day).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, self.inputs / "bank" / day / path.name)
        with open(generated / "bank_ground_truth.csv", newline="", encoding="utf-8") as handle:
            truth = list(csv.DictReader(handle))
        self.payout_truth = {(row["processor"], row["payout_id"]): row for row in truth if row["record"] == "payout"}
        self.credit_truth = {row["entry_ref"]: row for row in truth if row["record"] == "credit"}
        # Each payout's day: its PAYOUT line's settlement date, else its lines' latest.
        self.payout_dates: Dict[tuple, str] = {}
        self.last_line_dates: Dict[tuple, str] = defaultdict(str)
        with open(generated / "settlements" / "settlements.csv", newline="", encoding="utf-8") as handle:
            for line in csv.DictReader(handle):
                key = (line["processor"], line["payout_id"])
                if line["payout_id"]:
                    self.last_line_dates[key] = max(self.last_line_dates[key], line["settlement_date"])
                    if line["record_type"] == "PAYOUT":
                        self.payout_dates[key] = min(self.payout_dates.get(key, "9999"), line["settlement_date"])
        self.credit_days = {}
        for path in sorted((generated / "bank_statements").iterdir()):
            for record in read_bank_statement(path.read_bytes(), str(path)):
                if record.fields:
                    fields = record.fields
                    self.credit_days[fields["entry_ref"]] = fields["value_date"] or fields["booking_date"]

    def day_of(self, key: tuple) -> str:
        return self.payout_dates.get(key) or self.last_line_dates[key]

    def args(self, output, *extra: str, inputs: Path = None, dates=DATES) -> List[str]:
        inputs = inputs or self.inputs
        return ["backfill", "--from", dates[0], "--to", dates[-1],
                "--payments", str(inputs / "payments" / "{date}" / "*.csv"),
                "--settlements", str(inputs / "settlements" / "{date}" / "*.csv"),
                "--bank-statements", str(inputs / "bank" / "{date}" / "*"),
                "--output", str(output), *extra]


def _rows(output, day: str, name: str) -> List[dict]:
    return pq.read_table(os.path.join(output, f"date={day}", name)).to_pylist()


def _manifest(output, day: str) -> dict:
    with open(os.path.join(output, f"date={day}", backfill.MANIFEST), encoding="utf-8") as handle:
        return json.load(handle)


def _bytes(output, day: str, names=DATA_FILES) -> Dict[str, bytes]:
    return {name: Path(output, f"date={day}", name).read_bytes() for name in names}


def _statuses(text: str) -> Dict[str, str]:
    return {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in text.splitlines()
            if line[:4].isdigit() and ":" in line[:11]}


def _as_of_day(manifest: dict) -> date:
    return date.fromisoformat(manifest["as_of"][:10])


def _key(row: dict) -> tuple:
    return tuple(row[name] for name in sorted(row))


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Data:
    return Data(tmp_path_factory.mktemp("backfill-bank"))


@pytest.fixture(scope="module")
def columnar(data, tmp_path_factory):
    """The range as one columnar job, counting how often each statement file is opened."""
    from pipelines.io import bank_files

    output = tmp_path_factory.mktemp("columnar") / "out"
    log = output.parent / "opened.txt"
    real_reader = bank_files.bank_records_of_file

    def counting_reader(readable):
        with open(log, "a", encoding="utf-8") as handle:  # a file: the DoFn runs from a pickled copy
            handle.write(readable.metadata.path + "\n")
        yield from real_reader(readable)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bank_files, "bank_records_of_file", counting_reader)
        assert main(data.args(output)) == 0
    return str(output), log.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def elementwise(data, tmp_path_factory):
    output = tmp_path_factory.mktemp("elementwise") / "out"
    assert main(data.args(output, "--engine", "elementwise")) == 0
    return str(output)


# --------------------------------------------------------------------------- the rules

def test_the_bank_window_covers_the_sla():
    assert [longest_sla_span(days) for days in (0, 1, 3, 5, 6)] == [2, 3, 5, 9, 10]
    # A date reads its settlement window's days and a day more each side, and at least D + the SLA's span + 1.
    assert bank_window(5, 3, 3) == (6, 6)
    assert bank_window(0, 0, 1) == (1, 4)
    assert bank_window(2, 9, 3) == (3, 10)


def test_each_date_publishes_its_payouts_and_bank_matches(data, columnar):
    output, _ = columnar
    seen = defaultdict(set)
    for day in DATES:
        manifest = _manifest(output, day)
        as_of_day = _as_of_day(manifest)
        payouts = _rows(output, day, backfill.PAYOUTS_FILE)
        assert pq.read_schema(os.path.join(output, f"date={day}", backfill.PAYOUTS_FILE)).remove_metadata().equals(
            arrow.PAYOUT_BALANCE)
        # Exactly the payouts of the day; without a PAYOUT line, by the day of their latest line.
        assert sorted((row["processor"], row["payout_id"]) for row in payouts) == sorted(
            key for key in data.payout_truth if data.day_of(key) == day)
        for row in payouts:
            key = (row["processor"], row["payout_id"])
            # The day's as_of is past every payout grace of its lines: every payout status is the truth's.
            assert row["status"] == data.payout_truth[key]["payout_status"], key
            seen["payouts"].add(row["status"])
        matches = _rows(output, day, backfill.BANK_MATCHES_FILE)
        paid = [row for row in matches if row["payout_id"] is not None]
        assert sorted((row["processor"], row["payout_id"]) for row in paid) == sorted(
            key for key, truth in data.payout_truth.items() if data.day_of(key) == day and truth["bank_status"])
        for row in paid:
            truth = data.payout_truth[(row["processor"], row["payout_id"])]
            assert row["payout_date"] == day
            if truth["bank_status"] == PAYOUT_NOT_RECEIVED:
                # The truth is at the dataset's as_of; the date judges at its own, maybe before the SLA's end.
                due = as_of_day > add_business_days(date.fromisoformat(day), 3)
                assert (row["status"], row["entry_ref"]) == (PAYOUT_NOT_RECEIVED if due else PENDING, None)
            else:
                assert (row["status"], row["entry_ref"] or "") == (truth["bank_status"], truth["entry_ref"])
            seen["bank_matches"].add(row["status"])
        credits = [row for row in matches if row["payout_id"] is None]
        assert sorted(row["entry_ref"] for row in credits) == sorted(
            ref for ref in data.credit_truth if data.credit_days[ref] == day)
        for row in credits:
            assert row["value_date"] == day
            assert row["status"] == data.credit_truth[row["entry_ref"]]["bank_status"]  # valued days before as_of
            seen["bank_matches"].add(row["status"])
        counts = manifest["counts"]
        assert counts["payouts_rows"] == len(payouts) == sum(counts["payouts_statuses"].values())
        assert counts["bank_matches_rows"] == len(matches) == sum(counts["bank_matches_statuses"].values())
        for name, rows in ((backfill.PAYOUTS_FILE, len(payouts)), (backfill.BANK_MATCHES_FILE, len(matches))):
            assert manifest["outputs"][name]["rows"] == rows
        bank = counts["window_inputs"]["bank_statements"]
        assert bank["read"] == bank["accepted"] + bank["rejected"] > 0 and bank["rejected"] == 0
    assert {LINES_WITHOUT_PAYOUT, PAYOUT_WITHOUT_LINES} <= seen["payouts"]
    assert {PAYOUT_RECEIVED, AMBIGUOUS_BANK_MATCH, UNEXPECTED_BANK_CREDIT, PENDING} <= seen["bank_matches"]


def test_the_manifest_fingerprints_the_bank_window(data, columnar):
    output, opened = columnar
    for day in DATES:
        manifest = _manifest(output, day)
        first, last = date.fromisoformat(day).toordinal() - 6, date.fromisoformat(day).toordinal() + 6
        expected = sorted(str(path) for path in (data.inputs / "bank").glob("*/*")
                          if first <= date.fromisoformat(path.parent.name).toordinal() <= last)
        assert [item["path"] for item in manifest["inputs"]["bank_statements"]] == expected
        assert all(len(item["sha256"]) == 64 and item["size"] > 0 for item in manifest["inputs"]["bank_statements"])
        assert manifest["options"]["window"] == {"days_before": 5, "days_after": 3}  # 5: the SLA's longest span
        assert manifest["options"]["bank"] == {"bank_sla_business_days": 3, "credit_grace_days": 3,
                                               "payout_grace_seconds": 86400,
                                               "window": {"days_before": 6, "days_after": 6}}
    # One job for the range: each statement file of the windows opened once.
    union = {item["path"] for day in DATES for item in _manifest(output, day)["inputs"]["bank_statements"]}
    assert sorted(opened) == sorted(union)


def test_a_date_is_a_reconcile_run_of_its_window_at_its_as_of(data, columnar, tmp_path):
    output, _ = columnar
    day = DATES[-1]
    manifest = _manifest(output, day)
    argv = ["reconcile", "--output", str(tmp_path / "reconciled"), "--as-of", manifest["as_of"]]
    for name, flag in (("payments", "--payments"), ("settlements", "--settlements"),
                       ("bank_statements", "--bank-statements")):
        for item in manifest["inputs"][name]:
            argv += [flag, item["path"]]
    assert main(argv) == 0
    reconciled = str(tmp_path / "reconciled")
    payouts = payouts_of_day(output_rows(reconciled, "payouts"), day, data.last_line_dates)
    assert Counter(map(_key, payouts)) == Counter(map(_key, _rows(output, day, backfill.PAYOUTS_FILE)))
    matches = bank_matches_of_day(output_rows(reconciled, "bank_matches"), day)
    assert Counter(map(_key, matches)) == Counter(map(_key, _rows(output, day, backfill.BANK_MATCHES_FILE)))
    assert matches and payouts


def test_both_engines_publish_the_same_bytes(columnar, elementwise):
    output, _ = columnar
    for day in DATES:
        assert _bytes(elementwise, day) == _bytes(output, day), day


def test_a_rerun_skips_and_a_changed_statement_reruns_exactly_its_readers(data, tmp_path, capsys):
    inputs, output = tmp_path / "in", tmp_path / "out"
    shutil.copytree(data.inputs, inputs)
    dates = DATES[:2]
    assert main(data.args(output, inputs=inputs, dates=dates)) == 0
    before = {day: _bytes(output, day) for day in dates}
    capsys.readouterr()
    assert main(data.args(output, inputs=inputs, dates=dates)) == 0
    assert set(_statuses(capsys.readouterr().out).values()) == {"skipped (unchanged)"}
    # The 5th's statement is in the 11th's bank window (6 days back), not the 12th's.
    changed = next((inputs / "bank" / "2026-01-05").iterdir())
    with open(changed, "ab") as handle:
        handle.write(b"\n")  # whitespace after the document: the same entries, other bytes
    readers = [day for day in dates
               if str(changed) in {item["path"] for item in _manifest(output, day)["inputs"]["bank_statements"]}]
    assert readers == [DATES[0]]
    assert main(data.args(output, inputs=inputs, dates=dates)) == 0
    statuses = _statuses(capsys.readouterr().out)
    assert [day for day, text in statuses.items() if text.startswith("ran")] == readers
    assert statuses[DATES[1]] == "skipped (unchanged)"
    # A date run alone (one job of its own) publishes what the range job published.
    assert {day: _bytes(output, day) for day in dates} == before
    recorded = {item["path"]: item for item in _manifest(output, DATES[0])["inputs"]["bank_statements"]}
    assert recorded[str(changed)]["size"] == changed.stat().st_size


def test_a_hostile_statement_is_a_dead_letter_of_its_date(data, tmp_path, capsys):
    inputs, output = tmp_path / "in", tmp_path / "out"
    shutil.copytree(data.inputs, inputs)
    dates = DATES[1:]
    own = inputs / "bank" / dates[0]
    (own / "bomb.xml").write_bytes(BILLION_LAUGHS)
    good = next(path for path in sorted(own.iterdir()) if path.name.startswith("camt053"))
    (own / "truncated.xml").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    # Truncated: both dates read it in their bank windows, neither publishes an incomplete answer.
    assert main(data.args(output, inputs=inputs, dates=dates)) == 1
    statuses = _statuses(capsys.readouterr().out)
    assert all(statuses[day].startswith("failed") and "truncated" in statuses[day] for day in dates)
    assert not any(name.startswith("date=") for name in os.listdir(output))
    assert main(data.args(output, "--allow-truncated", inputs=inputs, dates=dates)) == 0
    for day in dates:
        with open(os.path.join(output, f"date={day}", backfill.DEAD_LETTERS_FILE), encoding="utf-8") as handle:
            letters = [json.loads(line) for line in handle]
        bank_sources = {Path(re.sub(r"[:#][0-9]+$", "", letter["source"])).name
                        for letter in letters if letter["input"] == "bank_statements"}
        # The dead letters are the date's whose partition holds the files; the other date only counts them.
        assert bank_sources == ({"bomb.xml", "truncated.xml"} if day == dates[0] else set()), day
        counts = _manifest(output, day)["counts"]["window_inputs"]["bank_statements"]
        assert counts["rejected"] >= 2 and counts["truncated_files"] == 1
        assert counts["read"] == counts["accepted"] + counts["rejected"]


def test_a_date_without_any_statement_in_its_window_fails(data, tmp_path, capsys):
    inputs = tmp_path / "in"
    shutil.copytree(data.inputs, inputs, ignore=shutil.ignore_patterns("bank"))
    (inputs / "bank").mkdir()
    assert main(data.args(tmp_path / "out", inputs=inputs, dates=DATES[:1])) == 1
    status = _statuses(capsys.readouterr().out)[DATES[0]]
    assert status.startswith("failed") and "bank_statements" in status and "2026-01-05 to 2026-01-17" in status


@pytest.mark.parametrize("template, message", [
    ("bank/*.xml", "no date placeholder"),
    ("bank/{day}/*", "unknown placeholder"),
])
def test_a_bad_bank_template_is_a_usage_error(data, tmp_path, template, message):
    import argparse

    parser = argparse.ArgumentParser()
    backfill.add_backfill_arguments(parser)
    argv = data.args(tmp_path / "out")[1:]
    argv[argv.index("--bank-statements") + 1] = str(tmp_path / template)
    args, beam_args = parser.parse_known_args(argv)
    with pytest.raises(UsageError, match=message):
        backfill.run_backfill(args, beam_args, out=lambda line: None)
