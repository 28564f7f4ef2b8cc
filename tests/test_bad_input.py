"""Bad input never crashes a run and never vanishes: dead letters or a clear one-line error."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from collections import Counter

import fastavro
import pytest

from pipelines.reconcile_batch import ENGINES
from schemas.avro import avro_schema
from tests.beam_helpers import at
from tests.cli_helpers import dead_letters, reconcile, results, run_summary

PAYMENT_HEADER = "event_id,payment_id,event_type,processor,processor_reference,merchant_id,amount_minor,currency,event_time"
SETTLEMENT_HEADER = ("settlement_id,processor,processor_reference,merchant_id,record_type,gross_minor,fee_minor,"
                     "net_minor,currency,settlement_date,booked_time,payout_id")


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module", params=ENGINES)
def bad_run(request, tmp_path_factory):
    base = tmp_path_factory.mktemp(f"bad-{request.param}")
    (base / "payments").mkdir()
    (base / "settlements").mkdir()
    _write(base / "payments" / "empty.csv", "")
    _write(base / "payments" / "wrong_header.csv", "id,amount,when\nx1,100,2026-01-05T00:00:00Z\nx2,200,2026-01-05T00:00:00Z\n")
    _write(base / "payments" / "bad_values.csv", "\n".join([
        PAYMENT_HEADER,
        "e_ok,p1,CAPTURED,stripe,ch_ok,m_1,1000,USD,2026-01-05T10:00:00Z",
        "e_amount,p2,CAPTURED,stripe,ch_a,m_1,12.5x,USD,2026-01-05T10:00:00Z",
        "e_ccy,p3,CAPTURED,stripe,ch_c,m_1,1000,XXX,2026-01-05T10:00:00Z",
        "e_time,p4,CAPTURED,stripe,ch_t,m_1,1000,USD,yesterday",
        "e_naive,p5,CAPTURED,stripe,ch_n,m_1,1000,USD,2026-01-05 10:00:00",
        "e_short,p6,CAPTURED",
    ]) + "\n")
    _write(base / "payments" / "bad.jsonl", '{"event_id": "j1"\n[1, 2]\n')
    # A truncated Avro file: two good records, then the file is cut inside the next block.
    buffer = io.BytesIO()
    records = [{"event_id": f"av{i}", "payment_id": f"p{i}", "event_type": "AUTHORIZED", "processor": "stripe",
                "processor_reference": f"ch_av{i}", "merchant_id": "m_1", "amount_minor": 100, "currency": "USD",
                "event_time": at()} for i in range(50)]
    fastavro.writer(buffer, avro_schema("payment_event"), records[:2], sync_interval=1)
    complete = len(buffer.getvalue())
    fastavro.writer(buffer, avro_schema("payment_event"), records[2:], sync_interval=1)
    (base / "payments" / "truncated.avro").write_bytes(buffer.getvalue()[: complete + 40])
    (base / "payments" / "corrupt.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    _write(base / "settlements" / "bad_lines.csv", "\n".join([
        SETTLEMENT_HEADER,
        "s_ok,stripe,ch_ok,m_1,CAPTURE,1000,30,970,USD,2026-01-06,2026-01-06T01:00:00Z,po_1",
        "s_net,stripe,ch_x,m_1,CAPTURE,1000,30,960,USD,2026-01-06,2026-01-06T01:00:00Z,po_1",
        "s_type,stripe,ch_y,m_1,BONUS,1000,0,1000,USD,2026-01-06,2026-01-06T01:00:00Z,",
    ]) + "\n")
    output = str(base / "out")
    exit_code = reconcile(str(base / "payments" / "*"), str(base / "settlements" / "*"), output,
                          "--engine", request.param)
    return exit_code, output


def test_the_run_completes(bad_run):
    exit_code, output = bad_run
    assert exit_code == 1  # it completes, and says its answer is incomplete: two files were cut short
    assert sum(counts["truncated_files"] for counts in run_summary(output)["inputs"].values()) == 2
    assert [(r["processor_reference"], r["status"]) for r in results(output)] == [("ch_ok", "MATCHED")]


def test_every_rejected_record_is_a_dead_letter_and_counts_add_up(bad_run):
    _, output = bad_run
    summary = run_summary(output)
    letters = dead_letters(output)
    for name in ("payments", "settlements"):
        counts = summary["inputs"][name]
        assert counts["read"] == counts["accepted"] + counts["rejected"]
        assert counts["rejected"] == sum(1 for letter in letters if letter["input"] == name)
    # 2 wrong-header rows + 5 bad values + 2 bad JSON lines + 1 truncated Avro tail + 1 corrupt Parquet
    assert summary["inputs"]["payments"]["rejected"] == 11
    # ok row + 2 Avro records read before the truncation
    assert summary["inputs"]["payments"]["accepted"] == 3
    assert summary["inputs"]["settlements"] == {**summary["inputs"]["settlements"], "read": 3, "rejected": 2}


def test_dead_letters_say_why_and_keep_the_raw_payload(bad_run):
    _, output = bad_run
    by_source = {os.path.basename(letter["source"]): letter for letter in dead_letters(output)}
    reasons = Counter()
    for source, letter in by_source.items():
        assert letter["raw_payload"]
        reasons[letter["stage"]] += 1
    def reason(suffix):
        return by_source[suffix]["reason"]
    assert "missing field(s)" in reason("wrong_header.csv:2")
    assert "not an integer" in reason("bad_values.csv:3")
    assert "unknown currency" in reason("bad_values.csv:4")
    assert "RFC 3339" in reason("bad_values.csv:5")
    assert "no UTC offset" in reason("bad_values.csv:6")
    assert "columns" in reason("bad_values.csv:7")
    assert "invalid JSON" in reason("bad.jsonl:1")
    assert "must be an object" in reason("bad.jsonl:2")
    assert "truncated" in reason("truncated.avro#3")
    assert "Parquet" in reason("corrupt.parquet#1")
    assert "net_minor 960 != gross_minor 1000 - fee_minor 30" == reason("bad_lines.csv:3")
    assert "record_type" in reason("bad_lines.csv:4")
    assert by_source["bad_values.csv:3"]["raw_payload"] == "e_amount,p2,CAPTURED,stripe,ch_a,m_1,12.5x,USD,2026-01-05T10:00:00Z"
    assert reasons["decode"] >= 4 and reasons["validate"] >= 6


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("extra, message", [
    (["--flink_mster=localhost:8081"], "unknown option(s): --flink_mster=localhost:8081"),
    (["--as-of", "yesterday"], "--as-of"),
    (["--settlement-sla", "3 days"], "duration"),
    (["--time-zone", "Mars/Olympus"], "Mars/Olympus"),
    (["--runner", "SparkleRunner"], "unknown runner"),
])
def test_user_mistakes_are_one_line_errors(tmp_path, extra, message):
    payments = _write(tmp_path / "p.csv", PAYMENT_HEADER + "\n")
    settlements = _write(tmp_path / "s.csv", SETTLEMENT_HEADER + "\n")
    completed = _cli("reconcile", "--payments", payments, "--settlements", settlements,
                     "--output", str(tmp_path / "out"), *extra)
    assert completed.returncode == 2
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1


def test_missing_input_and_unknown_extension_are_one_line_errors(tmp_path):
    settlements = _write(tmp_path / "s.csv", SETTLEMENT_HEADER + "\n")
    missing = _cli("reconcile", "--payments", str(tmp_path / "nothing" / "*.csv"), "--settlements", settlements,
                   "--output", str(tmp_path / "out"))
    assert missing.returncode == 2 and "no files match" in missing.stderr and "Traceback" not in missing.stderr
    odd = _write(tmp_path / "payments.xlsx", "not a table")
    unknown = _cli("reconcile", "--payments", odd, "--settlements", settlements, "--output", str(tmp_path / "out"))
    assert unknown.returncode == 2 and "--format" in unknown.stderr and "Traceback" not in unknown.stderr


@pytest.mark.parametrize("output, message", [
    ("data/out", "lies inside the input glob"),  # data/* would read this run's outputs next time
    ("data", "holds input files"),
    ("data/p.csv", "is a file"),
])
def test_an_output_that_would_mix_with_inputs_is_refused(tmp_path, capsys, monkeypatch, output, message):
    from pipelines.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "p.csv").write_text(PAYMENT_HEADER + "\n", encoding="utf-8")
    (tmp_path / "data" / "s.csv").write_text(SETTLEMENT_HEADER + "\n", encoding="utf-8")
    code = main(["reconcile", "--payments", "data/*", "--settlements", "data/s.csv", "--output", output])
    error = capsys.readouterr().err
    assert code == 2 and message in error and error.count("\n") == 1
    assert not os.path.exists(tmp_path / "data" / "out")
