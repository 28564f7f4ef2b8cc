"""Three-way reconciliation end to end (issue 21, docs/DESIGN.md 3.8): `paybeam reconcile --bank-statements`.

Generated statements in both formats, with both engines, give the generator's truth (written from intent,
datagen/bank_statements.py); the engines agree on every output; counts add up; a statement sent twice
counts once; hostile statement files never crash a run; the real published samples read without a
rejection. Every id is generated or from the published samples (no card numbers, no personal data).
"""
from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import pytest

from datagen import GeneratorConfig, generate
from datagen.bank_statements import BANK_FORMATS
from pipelines.cli import main
from pipelines.reconcile_batch import ENGINES
from schemas.bank import read_bank_statement
from schemas.rules import BANK_MATCH_STATUSES, PAYOUT_STATUSES, PENDING
from tests.bank_helpers import SAMPLES
from tests.cli_helpers import dead_letters, output_rows, run_summary
from tests.engine_parity import assert_same_outputs

SMALL = dict(payments=1500, seed=21, days=14)


def _reconcile(data: Path, output: Path, *extra: str, bank: str = "") -> int:
    return main(["reconcile", "--payments", str(data / "payments" / "*"), "--settlements",
                 str(data / "settlements" / "*"), "--bank-statements", bank or str(data / "bank_statements" / "*"),
                 "--output", str(output), *extra])


@pytest.fixture(scope="module", params=BANK_FORMATS)
def generated(request, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp(f"three-way-{request.param}")
    generate(GeneratorConfig(**SMALL, bank_statements=request.param), str(out / "data"))
    return out


@pytest.fixture(scope="module")
def runs(generated):
    outputs = {engine: generated / f"out-{engine}" for engine in ENGINES}
    for engine, output in outputs.items():
        assert _reconcile(generated / "data", output, "--engine", engine, "--csv") == 0
    return outputs


def _truth(data: Path):
    with open(data / "bank_ground_truth.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _match_multiset(rows) -> Counter:
    return Counter(("payout", row["processor"], row["payout_id"], row["entry_ref"] or "", row["status"])
                   if row["payout_id"] else ("credit", row["entry_ref"], row["status"]) for row in rows)


def _truth_multiset(truth) -> Counter:
    return Counter(("payout", row["processor"], row["payout_id"], row["entry_ref"], row["bank_status"])
                   if row["record"] == "payout" else ("credit", row["entry_ref"], row["bank_status"])
                   for row in truth if row["bank_status"])


@pytest.mark.parametrize("engine", ENGINES)
def test_each_engine_gives_the_truth(generated, runs, engine):
    truth = _truth(generated / "data")
    payouts = {(row["processor"], row["payout_id"]): row["status"] for row in output_rows(runs[engine], "payouts")}
    assert payouts == {(row["processor"], row["payout_id"]): row["payout_status"]
                       for row in truth if row["record"] == "payout"}
    assert set(PAYOUT_STATUSES) - set(payouts.values()) <= {PENDING}  # every break injected and found
    matches = output_rows(runs[engine], "bank_matches")
    assert _match_multiset(matches) == _truth_multiset(truth)
    assert {row["status"] for row in matches} == set(BANK_MATCH_STATUSES)
    received = [row for row in matches if row["status"] == "PAYOUT_RECEIVED"]
    assert {row["matched_by"] for row in received} == {"reference", "amount"}
    assert all(row["difference_minor"] == 0 and row["credit_minor"] == row["payout_minor"] for row in received)
    short = [row for row in matches if row["status"] == "PAYOUT_AMOUNT_DIFFERS"]
    assert short and all(row["difference_minor"] == row["credit_minor"] - row["payout_minor"] < 0 for row in short)


def test_the_engines_agree_on_every_output(runs):
    assert_same_outputs(str(runs["elementwise"]), str(runs["columnar"]))


@pytest.mark.parametrize("engine", ENGINES)
def test_counts_add_up(generated, runs, engine):
    summary = run_summary(str(runs[engine]))
    bank = summary["inputs"]["bank_statements"]
    files = sorted((generated / "data" / "bank_statements").iterdir())
    entries = sum(1 for path in files for _ in read_bank_statement(path.read_bytes(), str(path)))
    assert bank["read"] == entries == bank["accepted"] + bank["rejected"] and bank["rejected"] == 0
    assert [entry["path"] for entry in bank["files"]] == [str(path) for path in files]
    for output, statuses in (("payouts", PAYOUT_STATUSES), ("bank_matches", BANK_MATCH_STATUSES)):
        rows = output_rows(runs[engine], output)
        assert summary[output]["rows"] == len(rows) > 0
        assert summary[output]["statuses"] == dict(Counter(row["status"] for row in rows))
        assert set(summary[output]["statuses"]) <= set(statuses)
        assert len(list((runs[engine] / "csv").glob(f"{output}*.csv"))) >= 1


@pytest.mark.parametrize("engine", ENGINES)
def test_a_statement_sent_twice_counts_once(generated, tmp_path, engine):
    again = tmp_path / "again"
    again.mkdir()
    files = sorted((generated / "data" / "bank_statements").iterdir())
    resent = again / f"resent-{files[3].name}"
    shutil.copyfile(files[3], resent)
    output = tmp_path / "out"
    assert _reconcile(generated / "data", output, "--engine", engine, "--bank-statements", str(resent)) == 0
    bank = run_summary(str(output))["inputs"]["bank_statements"]
    copies = sum(1 for _ in read_bank_statement(resent.read_bytes(), str(resent)))
    assert bank["deduplicated"] == copies > 0 and bank["rejected"] == 0
    assert _match_multiset(output_rows(output, "bank_matches")) == _truth_multiset(_truth(generated / "data"))


@pytest.mark.parametrize("engine", ENGINES)
def test_a_resent_entry_that_differs_is_a_dead_letter(generated, tmp_path, engine):
    files = sorted((generated / "data" / "bank_statements").iterdir())
    original = files[3].read_bytes()
    entries = [record.fields for record in read_bank_statement(original, str(files[3]))]
    # The same statement again, one entry's bank reference changed (an edited re-send; its amounts, which
    # BAI2 control totals vouch for, unchanged).
    reference = next(entry["bank_reference"] for entry in entries if entry["bank_reference"]).encode()
    assert original.count(reference) == 1
    edited = tmp_path / f"edited-{files[3].name}"
    edited.write_bytes(original.replace(reference, reference[:-1] + (b"7" if reference[-1:] != b"7" else b"8")))
    output = tmp_path / "out"
    assert _reconcile(generated / "data", output, "--engine", engine, "--bank-statements", str(edited)) == 0
    bank = run_summary(str(output))["inputs"]["bank_statements"]
    assert bank["conflicting"] == 1 and bank["read"] == bank["accepted"] + bank["rejected"]
    assert bank["deduplicated"] == len(entries) - 1
    letters = [letter for letter in dead_letters(str(output)) if letter["input"] == "bank_statements"]
    assert [letter["stage"] for letter in letters] == ["dedup"]
    assert "conflicting re-delivery of entry_ref" in letters[0]["reason"]
    assert "bank_reference differ" in letters[0]["reason"]
    # The copy read first (by file path, then record) is kept: the other is the dead letter.
    assert letters[0]["source"].split("#")[0].split(":")[0] == max(str(edited), str(files[3]))


BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
                  b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
                  b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt><Stmt>'
                  b'<Id>&lol3;</Id></Stmt></BkToCstmrStmt></Document>')


@pytest.mark.parametrize("engine", ENGINES)
def test_hostile_statement_files_never_crash_a_run(generated, tmp_path, engine):
    files = sorted((generated / "data" / "bank_statements").iterdir())
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    good = files[0].read_bytes()
    (hostile / "truncated.xml" if files[0].suffix == ".xml" else hostile / "truncated.bai2").write_bytes(
        good[: len(good) // 2])
    (hostile / "bomb.xml").write_bytes(BILLION_LAUGHS)
    (hostile / "wrong-namespace.xml").write_bytes(
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.052.001.02"><BkToCstmrAcctRpt/></Document>')
    (hostile / "binary.bai2").write_bytes(bytes(range(256)) * 8)
    (hostile / "empty.xml").write_bytes(b"")
    (hostile / "notes.txt").write_text("not a statement\n", encoding="utf-8")
    (hostile / "totals-off.bai2").write_text(
        "01,BANK,CUST,260105,0800,1,,,2/\n02,CUST,BANK,1,260105,,EUR,2/\n03,1234567890,EUR,010,100,,/\n"
        "16,175,5000,Z,REF1,,PAYOUT po_NotInThisRun/\n49,999,3/\n98,999,1,5/\n99,999,1,7/\n", encoding="utf-8")
    bank = str(hostile / "*")
    if engine == "columnar":  # the exit status is read from run.json's counts, whichever engine made them
        assert _reconcile(generated / "data", tmp_path / "out", "--engine", engine, bank=bank) == 1  # truncated
    tolerant = tmp_path / "tolerant"
    assert _reconcile(generated / "data", tolerant, "--engine", engine, "--allow-truncated", bank=bank) == 0
    counts = run_summary(str(tolerant))["inputs"]["bank_statements"]
    letters = [letter for letter in dead_letters(str(tolerant)) if letter["input"] == "bank_statements"]
    assert counts["read"] == counts["accepted"] + counts["rejected"] and counts["rejected"] == len(letters)
    assert counts["truncated_files"] >= 1
    sources = {Path(letter["source"].split("#")[0].split(":")[0]).name for letter in letters}
    assert {"bomb.xml", "wrong-namespace.xml", "binary.bai2", "empty.xml", "notes.txt", "totals-off.bai2"} <= sources
    assert all(letter["reason"] and letter["raw_payload"] is not None for letter in letters)
    # What the truncated statement read before its break is matched as it should be: nothing else is.
    assert {row["status"] for row in output_rows(tolerant, "bank_matches")} <= set(BANK_MATCH_STATUSES)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("three-way-small")
    generate(GeneratorConfig(payments=300, seed=21, days=14), str(out / "data"))
    return out


@pytest.mark.parametrize("engine", ENGINES)
def test_the_published_samples_read_without_a_rejection(small, tmp_path, engine):
    samples = sorted(path for path in SAMPLES.iterdir() if path.suffix in (".xml", ".bai2"))
    assert len(samples) >= 10, SAMPLES
    entries = [record for path in samples for record in read_bank_statement(path.read_bytes(), str(path))]
    output = tmp_path / "out"
    assert _reconcile(small / "data", output, "--engine", engine, *[
        argument for path in samples[1:] for argument in ("--bank-statements", str(path))], bank=str(samples[0])) == 0
    counts = run_summary(str(output))["inputs"]["bank_statements"]
    assert counts["read"] == counts["accepted"] == len(entries) > 0
    assert counts["rejected"] == 0 and counts["deduplicated"] == 0
    credits = {(record.fields["account"], record.fields["entry_ref"]) for record in entries
               if record.fields["credit_debit"] == "CRDT" and record.fields["status"] == "BOOK"
               and not record.fields["reversal"]}
    rows = output_rows(output, "bank_matches")
    sample_rows = [(row["account"], row["entry_ref"]) for row in rows if (row["account"], row["entry_ref"]) in credits]
    assert sorted(sample_rows) == sorted(credits)  # every booked sample credit in exactly one row


def test_the_summary_shows_the_third_leg(generated, runs, capsys):
    output = generated / "printed"
    assert _reconcile(generated / "data", output) == 0
    printed = capsys.readouterr().out
    assert "bank_statements" in printed and "payouts status" in printed and "bank_matches status" in printed
    assert "payouts/, bank_matches/" in printed
    summary = run_summary(str(output))
    for status, count in summary["bank_matches"]["statuses"].items():
        assert any(line.split() == [status, str(count)] for line in printed.splitlines())


def test_the_deadlines_are_options(generated, tmp_path):
    """A longer bank SLA and credit grace turn the overdue payouts and credits back to PENDING; a bad value is
    one usage line (exit 2)."""
    output = tmp_path / "patient"
    assert _reconcile(generated / "data", output, "--bank-sla-days", "30", "--credit-grace-days", "30",
                      "--payout-grace", "30d") == 0
    summary = run_summary(str(output))
    assert "PAYOUT_NOT_RECEIVED" not in summary["bank_matches"]["statuses"]
    assert "UNEXPECTED_BANK_CREDIT" not in summary["bank_matches"]["statuses"]
    assert "LINES_WITHOUT_PAYOUT" not in summary["payouts"]["statuses"]
    assert summary["options"]["bank_sla_business_days"] == 30 and summary["options"]["credit_grace_days"] == 30
    for bad in (["--bank-sla-days", "-1"], ["--credit-grace-days", "-2"], ["--payout-grace", "soon"]):
        assert _reconcile(generated / "data", tmp_path / "bad", *bad) == 2
