"""`paybeam risk`: risk rules on authorization attempts (docs/DESIGN.md 10).

    paybeam risk check --rules FILE                   # validate a rules file, one line per rule
    paybeam risk generate --out DIR                   # attempts with injected attacks, and their truth
    paybeam risk backtest --attempts GLOB --rules FILE --output DIR [--csv] [--labels GLOB] [--compare-rules FILE]

A backtest writes `decisions/` (Parquet; `csv/decisions` with --csv),
`dead_letters/` (JSON lines) and `run.json` into DIR, published atomically
like a reconcile run. This module wires IO to transforms/risk; the rules
live there.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import time
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipelines.arguments import COLUMNAR, ENGINES, UsageError
from pipelines.io.arrow_files import ReadRawChunks, TableFile, shard_file_name
from pipelines.io.files import ReadRawRecords, WriteCsv, WriteJsonLines, WriteParquet, expand_patterns
from pipelines.io.run_output import RunOutput
from pipelines.io.spill import SpillDirectory, SpillToFiles
from pipelines.risk_stream import add_risk_stream_commands
from pipelines.risk_tools import add_risk_tool_commands
from pipelines.run_errors import wait_cancelling_on_interrupt
from pipelines.summary import counts_from_metrics, counts_of_input
from pipelines.version import paybeam_version
from runners.flink_job_server import new_pipeline
from runners.options import build_pipeline_options, workers_share_this_disk
from schemas import arrow
from schemas.attempts import ATTEMPT_FIELDS, ATTEMPTS, LABELS
from schemas.codecs import FORMATS, write_records
from schemas.decisions import RiskDecision, fired_text
from schemas.timestamps import format_timestamp
from transforms.columnar.risk_flow import ColumnarBacktest
from transforms.counting import ReportCounts
from transforms.risk.flow import (
    CHANGE_COUNT,
    CHANGES,
    DECISION_COUNT,
    DECISIONS,
    LABELS_UNMATCHED,
    BacktestAttempts,
    action_count_name,
    rule_count_name,
)
from transforms.risk.rules import ACTIONS, SHADOW, RuleSet, describe, load_rules_file
from transforms.validate import DEAD_LETTERS

DECISION_CSV_FIELDS = ("attempt_id", "event_time", "merchant_id", "amount_minor", "currency", "action", "score",
                       "fired", "shadow_fired", "rule_versions", "ruleset")


@dataclass
class BacktestJob:
    attempts: List[str]
    rules_path: str
    rule_set: RuleSet
    output: str
    runner: str = "DirectRunner"
    beam_args: List[str] = field(default_factory=list)
    attempts_format: Optional[str] = None
    write_csv: bool = False
    labels: List[str] = field(default_factory=list)
    compare_path: Optional[str] = None
    compare_with: Optional[RuleSet] = None
    engine: str = COLUMNAR
    spill_path: Optional[str] = None  # columnar: where the accepted tables wait for the decision (None: in the shuffle)


def decision_row(decision: RiskDecision) -> dict:
    """A decision as Parquet writes it: the fired rules as a list of structs."""
    row = decision._asdict()
    row["fired"] = [rule._asdict() for rule in decision.fired]
    row["shadow_fired"] = [rule._asdict() for rule in decision.shadow_fired]
    return row


def decision_csv_row(decision: RiskDecision) -> tuple:
    return (decision.attempt_id, format_timestamp(decision.event_time), decision.merchant_id, decision.amount_minor,
            decision.currency, decision.action, decision.score, fired_text(decision.fired),
            fired_text(decision.shadow_fired), decision.rule_versions, decision.ruleset)


def build_backtest(pipeline: beam.Pipeline, job: BacktestJob) -> None:
    out = job.output.rstrip("/")
    inputs = {}
    if job.labels:
        inputs[LABELS] = pipeline | "ReadLabels" >> ReadRawRecords(LABELS, job.labels, "csv")
    if job.engine == COLUMNAR:
        inputs[ATTEMPTS] = pipeline | "ReadAttempts" >> ReadRawChunks(ATTEMPTS, job.attempts, job.attempts_format)
        sink = TableFile(shard_file_name(f"{out}/decisions/decisions", 0, 1, ".parquet"), arrow.RISK_DECISION)
        shuffle = SpillToFiles(job.spill_path) if job.spill_path else None
        outputs = inputs | "Backtest" >> ColumnarBacktest(job.rule_set, sink, job.compare_with, shuffle,
                                                          as_records=job.write_csv)
        decisions = outputs.get(DECISIONS)
    else:
        inputs[ATTEMPTS] = pipeline | "ReadAttempts" >> ReadRawRecords(ATTEMPTS, job.attempts, job.attempts_format)
        outputs = inputs | "Backtest" >> BacktestAttempts(job.rule_set, job.compare_with)
        decisions = outputs[DECISIONS]
        (decisions | "DecisionRows" >> beam.Map(decision_row)
         | "WriteDecisions" >> beam.io.WriteToParquet(f"{out}/decisions/decisions", arrow.RISK_DECISION,
                                                      file_name_suffix=".parquet", codec="snappy"))
    if CHANGES in outputs:
        outputs[CHANGES] | "WriteChanges" >> WriteParquet(f"{out}/changes/changes", arrow.RULE_CHANGE)
    outputs[DEAD_LETTERS] | "WriteDeadLetters" >> WriteJsonLines(f"{out}/dead_letters/dead_letters")
    outputs["counts"] | "ReportCounts" >> ReportCounts()
    if job.write_csv:
        (decisions | "DecisionCsvRows" >> beam.Map(decision_csv_row)
         | "WriteDecisionsCsv" >> WriteCsv(f"{out}/csv/decisions", DECISION_CSV_FIELDS))


def _per_currency(counts: Dict[str, int], prefix: str) -> Dict[str, int]:
    start = f"{prefix}.minor."
    return {name[len(start):]: value for name, value in sorted(counts.items()) if name.startswith(start)}


def _bps(part: int, whole: int) -> Optional[int]:
    return part * 10_000 // whole if whole else None


def _rule_summary(counts: Dict[str, int], rule, labelled: bool) -> dict:
    fired_name = rule_count_name(rule.id, rule.state == SHADOW)
    summary = {"version": rule.version, "state": rule.state, "reason": rule.reason,
               "fired": counts.get(rule_count_name(rule.id, False), 0),
               "shadow_fired": counts.get(rule_count_name(rule.id, True), 0),
               "fired_minor": _per_currency(counts, rule_count_name(rule.id, False))}
    if labelled:
        fraud, legit = counts.get(f"{fired_name}.fraud", 0), counts.get(f"{fired_name}.legit", 0)
        summary.update({"fired_fraud": fraud, "fired_legit": legit, "precision_bps": _bps(fraud, fraud + legit),
                        "recall_bps": _bps(fraud, counts.get("labels.fraud", 0)),
                        "false_positive_rate_bps": _bps(legit, counts.get("labels.legit", 0))})
    return summary


def backtest_summary(job: BacktestJob, counts: Dict[str, int], files: List[dict], wall_seconds: float) -> dict:
    rule_set = job.rule_set
    actions = [action for action in ACTIONS if action != "score"]
    summary = {
        "paybeam_version": paybeam_version(),
        "beam_version": beam.__version__,
        "runner": job.runner,
        "engine": job.engine,
        "inputs": {ATTEMPTS: {"files": files, **counts_of_input(counts, ATTEMPTS)}},
        "decisions": counts.get(DECISION_COUNT, 0),
        "actions": {action: counts.get(action_count_name(action), 0) for action in actions},
        "actions_minor": {action: _per_currency(counts, action_count_name(action)) for action in actions},
        "rules": {rule.id: _rule_summary(counts, rule, bool(job.labels)) for rule in rule_set.rules},
        "ruleset": {"path": job.rules_path, "version": rule_set.version, "fingerprint": rule_set.fingerprint,
                    "rule_versions": rule_set.rule_versions},
        "options": {"beam_args": job.beam_args},
        "wall_seconds": round(wall_seconds, 3),
    }
    if job.labels:
        label_counts = counts_of_input(counts, LABELS)
        summary["inputs"][LABELS] = {"read": label_counts["read"], "accepted": label_counts["accepted"],
                                     "rejected": label_counts["rejected"]}
        summary["labels"] = {"fraud": counts.get("labels.fraud", 0), "legit": counts.get("labels.legit", 0),
                             "unmatched": counts.get(LABELS_UNMATCHED, 0),
                             "per_action": {action: {"fraud": counts.get(f"{action_count_name(action)}.fraud", 0),
                                                     "legit": counts.get(f"{action_count_name(action)}.legit", 0)}
                                            for action in actions}}
    if job.compare_with is not None:
        summary["compared_with"] = {"path": job.compare_path, "fingerprint": job.compare_with.fingerprint,
                                    "rule_versions": job.compare_with.rule_versions,
                                    "changed_attempts": counts.get(CHANGE_COUNT, 0),
                                    "changes": {name[len("change."):].replace(".", "->"): value
                                                for name, value in sorted(counts.items())
                                                if name.startswith("change.")}}
    return summary


@contextlib.contextmanager
def _spill_directory(job: BacktestJob) -> Iterator[Optional[str]]:
    """A columnar backtest whose workers share this disk spills the accepted tables to a directory of its own
    (removed when it ends): the DirectRunner would otherwise hold them all in memory, several times."""
    if job.engine != COLUMNAR or not workers_share_this_disk(job.runner, job.beam_args):
        yield None
        return
    with SpillDirectory() as path:
        yield path


def run_backtest(job: BacktestJob) -> dict:
    """Runs the backtest and publishes its outputs with run.json; returns run.json's content."""
    files = [{"path": path, "bytes": os.path.getsize(path) if os.path.exists(path) else None}
             for path in expand_patterns(job.attempts, job.attempts_format)]
    options = build_pipeline_options(job.runner, job.beam_args)
    FileSystems.set_options(options)
    output = RunOutput(job.output)
    output.prepare()
    try:
        started = time.monotonic()
        with _spill_directory(job) as spill_path:
            pipeline = new_pipeline(options)
            build_backtest(pipeline, BacktestJob(**{**job.__dict__, "output": output.staging, "spill_path": spill_path}))
            result = pipeline.run()
            wait_cancelling_on_interrupt(result)
        summary = backtest_summary(job, counts_from_metrics(result), files, time.monotonic() - started)
        output.publish(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    except BaseException:
        output.discard()
        raise
    return summary


def format_backtest(summary: dict) -> str:
    counts = summary["inputs"][ATTEMPTS]
    lines = [f"paybeam risk backtest — {summary['decisions']} decisions ({summary['wall_seconds']:.1f}s on "
             f"{summary['runner']}), rules {summary['ruleset']['fingerprint']}",
             "", f"attempts read {counts['read']}, accepted {counts['accepted']}, rejected {counts['rejected']}, "
                 f"deduplicated {counts['deduplicated']}",
             "actions: " + ", ".join(f"{action} {count}" for action, count in summary["actions"].items()),
             "", f"{'rule':<32}{'state':<8}{'fired':>8}{'shadow':>8}"]
    labelled = "labels" in summary
    if labelled:
        lines[-1] += f"{'precision':>11}{'recall':>8}{'FPR':>8}"
    for rule_id, rule in summary["rules"].items():
        line = f"{rule_id + '@' + str(rule['version']):<32}{rule['state']:<8}{rule['fired']:>8}{rule['shadow_fired']:>8}"
        if labelled:
            line += "".join(f"{_percent(rule[name]):>{width}}" for name, width in (
                ("precision_bps", 11), ("recall_bps", 8), ("false_positive_rate_bps", 8)))
        lines.append(line)
    if labelled:
        labels = summary["labels"]
        lines += ["", f"labels: {labels['fraud']} fraud, {labels['legit']} legit, {labels['unmatched']} of no attempt"]
    if "compared_with" in summary:
        compared = summary["compared_with"]
        changes = ", ".join(f"{name} {count}" for name, count in compared["changes"].items()) or "none"
        lines += ["", f"{compared['path']} ({compared['fingerprint']}) changes {compared['changed_attempts']} "
                      f"attempt(s): {changes} (changes/)"]
    return "\n".join(lines)


def _percent(bps: Optional[int]) -> str:
    return "-" if bps is None else f"{bps / 100:.1f}%"


def _rules(path: str) -> RuleSet:
    return load_rules_file(path)  # RulesError: a UserError, every problem on its own line (exit 2)


def backtest_command(args: argparse.Namespace, extra: Sequence[str]) -> int:
    job = BacktestJob(attempts=args.attempts, rules_path=args.rules, rule_set=_rules(args.rules), output=args.output,
                      runner=args.runner, beam_args=list(extra), attempts_format=args.format, write_csv=args.csv,
                      labels=args.labels or [], compare_path=args.compare_rules,
                      compare_with=_rules(args.compare_rules) if args.compare_rules else None, engine=args.engine)
    summary = run_backtest(job)
    print(format_backtest(summary))
    written = ["run.json", "decisions/", "dead_letters/", *(["changes/"] if args.compare_rules else []),
               *(["csv/"] if args.csv else [])]
    print(f"\noutputs in {args.output} ({', '.join(written)})")
    return 0


def check_command(args: argparse.Namespace, extra: Sequence[str]) -> int:
    if extra:
        raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
    rule_set = _rules(args.rules)
    print(f"{args.rules}: {len(rule_set.rules)} rules, version {rule_set.version or '-'}, "
          f"fingerprint {rule_set.fingerprint}")
    for line in describe(rule_set):
        print(f"  {line}")
    return 0


def generate_command(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from datagen.attempts import AttemptsConfig, generate_attempts

    if extra:
        raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
    if args.customers < 1:
        raise UsageError("--customers must be at least 1")
    attempts, truth = generate_attempts(AttemptsConfig(customers=args.customers, days=args.days, seed=args.seed))
    os.makedirs(os.path.join(args.out, "attempts"), exist_ok=True)
    path = os.path.join(args.out, "attempts", f"attempts.{args.format}")
    write_records(path, args.format, ATTEMPTS, (attempt._asdict() for attempt in attempts), ATTEMPT_FIELDS)
    with open(os.path.join(args.out, "attack_truth.csv"), "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("attempt_id", "attack"))
        writer.writerows((attempt.attempt_id, truth[attempt.attempt_id]) for attempt in attempts)
    attacks = sorted({label for label in truth.values() if label})
    print(f"wrote {len(attempts)} attempts to {path} ({', '.join(attacks)} injected) and attack_truth.csv")
    return 0


def add_risk_commands(commands) -> None:
    risk = commands.add_parser("risk", help="risk rules on authorization attempts: check, generate, backtest")
    tools = risk.add_subparsers(dest="risk_command", required=True, metavar="RISK_COMMAND")
    backtest = tools.add_parser(
        "backtest", help="decide historical attempts with a rules file (batch)",
        description="Decide every attempt of the files with the rules file, as the stream would in event-time "
                    "order. Unrecognised --flags are passed to Beam.")
    backtest.add_argument("--attempts", action="append", required=True, metavar="GLOB",
                          help="authorization attempt files (repeatable; csv, jsonl, avro, parquet)")
    backtest.add_argument("--rules", required=True, metavar="FILE", help="rules file (YAML or JSON)")
    backtest.add_argument("--output", required=True, metavar="DIR", help="output directory")
    backtest.add_argument("--format", choices=FORMATS, help="format of every input (default: by extension)")
    backtest.add_argument("--csv", action="store_true", help="also write a CSV copy of the decisions")
    backtest.add_argument("--labels", action="append", metavar="GLOB",
                          help="CSV of attempt_id and label (fraud / legit) or attack (attack_truth.csv): per-rule "
                               "precision, recall and false-positive rate in run.json (repeatable)")
    backtest.add_argument("--compare-rules", metavar="FILE",
                          help="a second rules file: changes/ lists the attempts whose action it changes")
    backtest.add_argument("--engine", choices=ENGINES, default=COLUMNAR,
                          help="columnar (default: the attempts decided as one Arrow table) or elementwise (one "
                               "history per key in Python: the reference); the same decisions")
    backtest.add_argument("--runner", default="DirectRunner", help="Beam runner (default: DirectRunner)")
    backtest.set_defaults(handler=backtest_command)
    check = tools.add_parser("check", help="validate a rules file: every mistake on its own line")
    check.add_argument("--rules", required=True, metavar="FILE")
    check.set_defaults(handler=check_command)
    generate = tools.add_parser("generate", help="write attempts with injected attacks and their truth")
    generate.add_argument("--out", required=True, metavar="DIR")
    generate.add_argument("--customers", type=int, default=1500, help="ordinary customers (default 1500)")
    generate.add_argument("--days", type=int, default=3, help="days of traffic (default 3; attacks on the last)")
    generate.add_argument("--seed", type=int, default=7)
    generate.add_argument("--format", choices=FORMATS, default="csv")
    generate.set_defaults(handler=generate_command)
    add_risk_stream_commands(tools)
    add_risk_tool_commands(tools)
