"""`paybeam risk` end to end (pipelines/risk.py): generate, check, backtest, and hostile input."""
from __future__ import annotations

import csv
import glob
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.cli import main
from schemas.attempts import ATTEMPTS
from schemas.codecs import read_records
from tests.test_risk_attempts import GOOD, TEST_PAN
from transforms.risk.rules import load_rules_file
from transforms.risk.windows import decide_in_order
from transforms.validate import judge_raw_record

EXAMPLES = str(Path(__file__).resolve().parents[1] / "transforms" / "risk" / "example_rules.yaml")


def _decisions(output: str) -> dict:
    rows = [row for path in sorted(glob.glob(os.path.join(output, "decisions", "*.parquet")))
            for row in pq.read_table(path).to_pylist()]
    return {row["attempt_id"]: row for row in rows}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    base = tmp_path_factory.mktemp("risk")
    assert main(["risk", "generate", "--out", str(base), "--customers", "200", "--format", "jsonl"]) == 0
    output = str(base / "out")
    assert main(["risk", "backtest", "--attempts", str(base / "attempts" / "*"), "--rules", EXAMPLES,
                 "--output", output, "--csv"]) == 0
    return base, output


def test_both_engines_write_the_same_decisions_and_counts(generated, tmp_path):
    base, columnar = generated  # the default engine
    elementwise = str(tmp_path / "elementwise")
    assert main(["risk", "backtest", "--attempts", str(base / "attempts" / "*"), "--rules", EXAMPLES,
                 "--output", elementwise, "--labels", str(base / "attack_truth.csv"), "--engine", "elementwise"]) == 0
    labelled = str(tmp_path / "columnar")
    assert main(["risk", "backtest", "--attempts", str(base / "attempts" / "*"), "--rules", EXAMPLES,
                 "--output", labelled, "--labels", str(base / "attack_truth.csv")]) == 0
    assert _decisions(elementwise) == _decisions(labelled) == _decisions(columnar)
    summaries = [json.loads(Path(output, "run.json").read_text()) for output in (elementwise, labelled)]
    assert [summary.pop("engine") for summary in summaries] == ["elementwise", "columnar"]
    for summary in summaries:
        del summary["wall_seconds"]
        summary["options"] = {}
    assert summaries[0] == summaries[1]


def test_a_backtest_writes_the_engine_s_decisions_and_counts_that_add_up(generated):
    base, output = generated
    path = str(base / "attempts" / "attempts.jsonl")
    with open(path, "rb") as handle:
        attempts = [judge_raw_record(raw).outcome for raw in read_records(handle, path, "jsonl", ATTEMPTS)]
    rules = load_rules_file(EXAMPLES)
    expected = {d.attempt_id: d for d in decide_in_order(attempts, rules)}
    written = _decisions(output)
    assert written.keys() == expected.keys()
    for attempt_id, row in written.items():
        decision = expected[attempt_id]
        assert (row["action"], row["score"], row["merchant_id"], row["rule_versions"], row["ruleset"]) == (
            decision.action, decision.score, decision.merchant_id, decision.rule_versions, decision.ruleset)
        assert int(row["event_time"].timestamp() * 1000) == decision.event_time
        assert row["fired"] == [fired._asdict() for fired in decision.fired]
        assert row["shadow_fired"] == [fired._asdict() for fired in decision.shadow_fired]
    summary = json.loads(Path(output, "run.json").read_text())
    counts = summary["inputs"]["attempts"]
    assert counts["read"] == counts["accepted"] + counts["rejected"] == len(attempts)
    assert summary["decisions"] == len(written) == sum(summary["actions"].values())
    assert summary["actions"]["block"] >= 1 and summary["actions"]["review"] >= 1
    assert summary["rules"]["card-testing-ip"]["fired"] == sum(
        1 for d in expected.values() for fired in d.fired if fired.rule_id == "card-testing-ip") > 0
    assert summary["ruleset"]["fingerprint"] == rules.fingerprint
    with open(glob.glob(os.path.join(output, "csv", "decisions-*.csv"))[0], encoding="utf-8") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert len(csv_rows) == len(written)
    blocked = next(row for row in csv_rows if row["action"] == "block")
    assert "@1=" in blocked["fired"] and blocked["event_time"].endswith("Z")
    truth = dict(csv.reader(open(base / "attack_truth.csv", encoding="utf-8")))
    assert {label for label in truth.values()} >= {"", "card_testing", "refund_abuse"}


def _write_attempts(path: Path, rows) -> None:
    names = list(GOOD)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)


@pytest.mark.parametrize("engine", ["columnar", "elementwise"])
def test_hostile_attempts_are_dead_letters_and_counts_still_add_up(tmp_path, capsys, engine):
    good = [{**GOOD, "attempt_id": f"att_{n}", "event_time": f"2026-12-05T10:0{n}:00Z"} for n in range(4)]
    rows = good + [
        {**GOOD, "attempt_id": "att_pan", "card_fingerprint": TEST_PAN},
        {**GOOD, "attempt_id": "att_bad", "amount_minor": "-5"},
        {**good[0]},  # an identical re-delivery: deduplicated
        {**good[1], "amount_minor": "999"},  # a conflicting one: a dead letter at stage dedup
    ]
    _write_attempts(tmp_path / "a.csv", rows)
    with open(tmp_path / "a.csv", "a", encoding="utf-8") as handle:
        handle.write("att_short,AUTHORIZATION\n")
    with open(tmp_path / "b.csv", "wb") as handle:
        handle.write(b"\x00\xff\xfe binary \x00")
    output = str(tmp_path / "out")
    assert main(["risk", "backtest", "--attempts", str(tmp_path / "*.csv"), "--rules", EXAMPLES,
                 "--output", output, "--engine", engine]) == 0
    summary = json.loads(Path(output, "run.json").read_text())
    counts = summary["inputs"]["attempts"]
    assert counts["read"] == counts["accepted"] + counts["rejected"]
    assert (counts["deduplicated"], counts["conflicting"], counts["pan_rejections"]) == (1, 1, 1)
    assert set(_decisions(output)) == {f"att_{n}" for n in range(4)}
    letters = [json.loads(line) for path in glob.glob(os.path.join(output, "dead_letters", "*"))
               for line in open(path, encoding="utf-8")]
    assert len(letters) == counts["rejected"] >= 5
    everything = Path(output, "run.json").read_text() + json.dumps(letters) + capsys.readouterr().out
    assert TEST_PAN not in everything
    reasons = sorted((letter["stage"], letter["reason"].split(" ")[0]) for letter in letters)
    assert reasons == [("decode", "not"), ("decode", "row"), ("dedup", "conflicting"), ("validate", "amount_minor"),
                       ("validate", "card_fingerprint")]


def test_a_bad_rules_file_stops_the_run_with_one_line_per_mistake_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "rules.yaml").write_text("rules:\n  - {id: x, version: 0, key: pan, aggregate: count, window: 5x, "
                                         "threshold: 1, action: block, reason: r}\n")
    _write_attempts(tmp_path / "a.csv", [GOOD])
    output = tmp_path / "out"
    assert main(["risk", "backtest", "--attempts", str(tmp_path / "a.csv"), "--rules",
                 str(tmp_path / "rules.yaml"), "--output", str(output)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all("rule 'x': field" in line for line in err)
    assert {"'version'", "'key'", "'window'"} == {line.split("field ")[1].split(":")[0] for line in err}
    assert not output.exists()


def test_check_describes_each_rule(capsys):
    assert main(["risk", "check", "--rules", EXAMPLES]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(EXAMPLES) and "7 rules" in out[0] and len(out) == 8


@pytest.mark.parametrize("engine", ["columnar", "elementwise"])
def test_labels_give_per_rule_precision_recall_and_a_second_rule_set_its_changes(generated, tmp_path, engine):
    base, _ = generated
    rules = load_rules_file(EXAMPLES)
    stricter = tmp_path / "v2.yaml"
    stricter.write_text(Path(EXAMPLES).read_text().replace("    threshold: 3000", "    threshold: 5000")
                        .replace("      - {at_least: 6, action: review}", "      - {at_least: 4, action: review}"))
    labels = tmp_path / "labels.csv"
    truth = list(csv.reader(open(base / "attack_truth.csv", encoding="utf-8")))[1:]
    labels.write_text("attempt_id,label\n" + "".join(f"{attempt_id},{'fraud' if attack else 'legit'}\n"
                                                     for attempt_id, attack in truth)
                      + f"att_unknown,fraud\natt_x,\n{TEST_PAN},fraud\n")
    output = str(tmp_path / "out")
    assert main(["risk", "backtest", "--attempts", str(base / "attempts" / "*"), "--rules", EXAMPLES,
                 "--labels", str(labels), "--compare-rules", str(stricter), "--output", output,
                 "--engine", engine]) == 0
    summary = json.loads(Path(output, "run.json").read_text())

    path = str(base / "attempts" / "attempts.jsonl")
    with open(path, "rb") as handle:
        attempts = [judge_raw_record(raw).outcome for raw in read_records(handle, path, "jsonl", ATTEMPTS)]
    fraud = {attempt_id for attempt_id, attack in truth if attack}
    before = {d.attempt_id: d for d in decide_in_order(attempts, rules)}
    after = {d.attempt_id: d for d in decide_in_order(attempts, load_rules_file(str(stricter)))}
    assert summary["labels"] == {**summary["labels"], "fraud": len(fraud), "legit": len(truth) - len(fraud),
                                 "unmatched": 1}
    assert summary["inputs"]["labels"] == {"read": len(truth) + 3, "accepted": len(truth) + 1, "rejected": 2}
    for rule in rules.rules:
        fired = {a for a, d in before.items() if any(f.rule_id == rule.id for f in d.fired)}
        got = summary["rules"][rule.id]
        assert (got["fired_fraud"], got["fired_legit"]) == (len(fired & fraud), len(fired - fraud))
        assert got["precision_bps"] == (len(fired & fraud) * 10_000 // len(fired) if fired else None)
        assert got["recall_bps"] == len(fired & fraud) * 10_000 // len(fraud)
        amounts = {}
        for attempt_id in fired:
            amounts[before[attempt_id].currency] = amounts.get(before[attempt_id].currency, 0) + \
                before[attempt_id].amount_minor
        assert got["fired_minor"] == amounts
    changed = {a for a in before if before[a].action != after[a].action}
    rows = {row["attempt_id"]: row for path in glob.glob(os.path.join(output, "changes", "*.parquet"))
            for row in pq.read_table(path).to_pylist()}
    assert rows.keys() == changed and changed
    assert all((row["action_before"], row["action_after"]) == (before[a].action, after[a].action)
               for a, row in rows.items())
    assert summary["compared_with"]["changed_attempts"] == len(changed)
    letters = [json.loads(line) for path in glob.glob(os.path.join(output, "dead_letters", "*"))
               for line in open(path, encoding="utf-8")]
    assert sorted(letter["input"] for letter in letters) == ["labels", "labels"]
    assert TEST_PAN not in json.dumps(letters) + Path(output, "run.json").read_text()
