"""Batch reconciliation of historical payment and settlement files.

    python -m pipelines.reconcile_batch --payments 'data/payments/*.csv' \
        --settlements 'data/settlements/*' --output out/ [--as-of T] [--runner R] [beam flags]

Wires file IO around `transforms.flow.ReconcileRecords`; `as_of` is the end
of the data unless `--as-of` says otherwise (docs/DESIGN.md 4.2).
"""
from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipelines.arguments import (
    COLUMNAR,
    ENGINES,
    UsageError,
    add_alert_arguments,
    add_bank_arguments,
    add_policy_arguments,
    add_vendor_arguments,
    alert_policy,
    as_of_millis_argument,
    bank_policies,
    match_policy,
    settlement_day,
    trigger_policy,
    vendor_options,
)
from pipelines.command import run_entry_point, run_module
from pipelines.io.arrow_files import ReadRawChunks, WriteShardFiles
from pipelines.io.bank_files import ReadBankStatements, expand_bank_patterns
from pipelines.io.files import (
    ReadRawRecords,
    WriteCsv,
    WriteJsonLines,
    WriteParquet,
    expand_patterns,
)
from pipelines.io.run_output import RunOutput
from pipelines.io.spill import SpillDirectory, SpillToFiles
from pipelines.run_errors import wait_cancelling_on_interrupt
from pipelines.summary import (
    as_of_text,
    bank_summary,
    counts_from_metrics,
    format_summary,
    input_counts,
    status_counts,
    truncated_files,
)
from pipelines.version import paybeam_version
from runners.direct_threads import default_direct_threads, usable_cores, workers_of
from runners.flink_job_server import new_pipeline
from runners.options import build_pipeline_options, workers_share_this_disk
from schemas import arrow
from schemas.bank.entry import BANK_STATEMENTS
from schemas.codecs import FORMATS
from schemas.record_tables import result_records, results_for_output
from schemas.records import DAILY_TOTAL_FIELDS, PAYMENTS, RESULT_FIELDS, SETTLEMENTS, ReconciliationResult
from schemas.rules import BANK_MATCHES, DAILY_TOTAL_ROWS, PAYOUTS, RESULT_ROWS
from schemas.vendors import DEFAULT_VENDOR_OPTIONS, VendorOptions
from transforms.alerts import AlertPolicy, BreakRateAlerts
from transforms.bank.flow import ReconcileBank
from transforms.bank.matching import DEFAULT_BANK_POLICY, BankPolicy
from transforms.bank.payouts import DEFAULT_PAYOUT_POLICY, PayoutPolicy
from transforms.columnar.bank_flow import ColumnarReconcileBank
from transforms.columnar.flow import ColumnarReconcile
from transforms.counting import ReportCounts
from transforms.flow import ReconcileConfig, ReconcileRecords
from transforms.reconcile import AsOf

BYTES_PER_SHARD = 32 << 20
MAX_AUTO_SHARDS = 256


@dataclass
class BatchJob:
    payments: List[str]
    settlements: List[str]
    output: str
    config: ReconcileConfig
    runner: str = "DirectRunner"
    beam_args: List[str] = field(default_factory=list)
    payments_format: Optional[str] = None
    settlements_format: Optional[str] = None
    write_csv: bool = False
    alert_policy: Optional[AlertPolicy] = None
    engine: str = COLUMNAR
    shards: Optional[int] = None  # columnar engine: None picks from the input size
    vendor_options: VendorOptions = DEFAULT_VENDOR_OPTIONS  # how Stripe/Adyen reports relate to the ledger
    spill: Optional[bool] = None  # columnar engine: spill shuffles to files (None: on the DirectRunner)
    spill_dir: Optional[str] = None  # where spill directories go (None: the system's temp directory)
    spill_path: Optional[str] = None  # this run's spill directory, while it runs
    bank_statements: List[str] = field(default_factory=list)  # camt.053 / BAI2 globs: the third leg (3.8)
    bank_policies: Tuple[PayoutPolicy, BankPolicy] = (DEFAULT_PAYOUT_POLICY, DEFAULT_BANK_POLICY)


def add_reconcile_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--payments", action="append", required=True, metavar="GLOB",
                        help="payment event files (repeatable; csv, jsonl, avro, parquet)")
    parser.add_argument("--settlements", action="append", required=True, metavar="GLOB",
                        help="settlement files (repeatable; canonical formats or Stripe/Adyen report CSVs)")
    parser.add_argument("--output", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--format", choices=FORMATS, help="format of every input (default: by extension)")
    parser.add_argument("--payments-format", choices=FORMATS)
    parser.add_argument("--settlements-format", choices=FORMATS)
    parser.add_argument("--csv", action="store_true", help="also write CSV copies of results and daily totals")
    parser.add_argument("--allow-truncated", action="store_true",
                        help="exit 0 even when an input file is truncated (its dead letter says so either way)")
    parser.add_argument("--break-alerts", action="store_true",
                        help="also compute break-rate alerts per processor into alerts/ (sliding windows)")
    parser.add_argument("--engine", choices=ENGINES, default=COLUMNAR,
                        help="columnar: Arrow batches as elements (default, fast); elementwise: one element per "
                             "record, the streaming engine, kept as the reference implementation")
    parser.add_argument("--shards", type=int, metavar="N",
                        help=f"columnar engine: shards for deduplication and matching "
                             f"(default: one per {BYTES_PER_SHARD >> 20} MiB of input, at most {MAX_AUTO_SHARDS})")
    spill = parser.add_mutually_exclusive_group()
    spill.add_argument("--spill-dir", metavar="DIR",
                       help="columnar engine: spill shuffled tables to files under DIR, which every worker must "
                            "see (default where every worker runs on this machine: the DirectRunner, LOOPBACK "
                            "workers on Prism and the embedded Flink; there, the system's temp directory)")
    spill.add_argument("--no-spill", action="store_true",
                       help="columnar engine: keep shuffled tables in the runner's memory (the default on other "
                            "runners and environments)")
    add_policy_arguments(parser)
    add_alert_arguments(parser)
    add_vendor_arguments(parser)
    add_bank_arguments(parser)


def job_from_arguments(args: argparse.Namespace, beam_args: Sequence[str]) -> BatchJob:
    """Checks the arguments and turns them into a BatchJob; raises UsageError."""
    as_of_millis = as_of_millis_argument(args)
    triggers = trigger_policy(args)
    if args.shards is not None and args.shards < 1:
        raise UsageError("--shards must be at least 1")
    return BatchJob(
        payments=args.payments,
        settlements=args.settlements,
        output=args.output,
        config=ReconcileConfig(
            policy=match_policy(args),
            as_of=AsOf.fixed(as_of_millis) if as_of_millis is not None else AsOf.latest_in_input(),
            settlement_day=settlement_day(args),
            trigger_policy=triggers,
        ),
        runner=args.runner,
        beam_args=list(beam_args),
        payments_format=args.payments_format or args.format,
        settlements_format=args.settlements_format or args.format,
        write_csv=args.csv,
        alert_policy=alert_policy(args, triggers) if args.break_alerts else None,
        engine=args.engine,
        shards=args.shards,
        vendor_options=vendor_options(args),
        spill=False if args.no_spill else True if args.spill_dir else None,
        spill_dir=args.spill_dir,
        bank_statements=list(args.bank_statements),
        bank_policies=bank_policies(args),
    )


def build_pipeline(pipeline: beam.Pipeline, job: BatchJob, metrics_prefix: str = "") -> dict:
    """Adds the batch reconciliation to `pipeline`: read, reconcile, write (with the job's engine);
    counts go to Beam metrics named `metrics_prefix` + name. Returns the flow's outputs (unique settlement
    lines under `settlements`, for a caller that adds steps of its own)."""
    if job.engine == COLUMNAR:
        return _build_columnar(pipeline, job, job.shards or 1, metrics_prefix)
    return _build_elementwise(pipeline, job, metrics_prefix)


def _build_elementwise(pipeline: beam.Pipeline, job: BatchJob, metrics_prefix: str) -> dict:
    out = job.output.rstrip("/")
    raw = {
        PAYMENTS: pipeline | "ReadPayments" >> ReadRawRecords(PAYMENTS, job.payments, job.payments_format),
        SETTLEMENTS: pipeline | "ReadSettlements" >> ReadRawRecords(
            SETTLEMENTS, job.settlements, job.settlements_format, job.vendor_options),
    }
    outputs = raw | "Reconcile" >> ReconcileRecords(job.config, with_counts=True)
    if job.bank_statements:
        bank = ({SETTLEMENTS: outputs[SETTLEMENTS], "as_of": outputs["as_of"],
                 BANK_STATEMENTS: pipeline | "ReadBankStatements" >> ReadBankStatements(job.bank_statements)}
                | "ReconcileBank" >> ReconcileBank(*job.bank_policies))
        for name, schema in ((PAYOUTS, arrow.PAYOUT_BALANCE), (BANK_MATCHES, arrow.BANK_MATCH)):
            bank[name] | f"Write[{name}]" >> WriteParquet(f"{out}/{name}/{name}", schema)
            if job.write_csv:
                bank[name] | f"WriteCsv[{name}]" >> WriteCsv(f"{out}/csv/{name}", schema.names)
        outputs = with_bank_letters_and_counts(outputs, bank)
    outputs["results"] | "WriteResults" >> WriteParquet(f"{out}/results/results", arrow.RECONCILIATION_RESULT)
    outputs["daily_totals"] | "WriteDailyTotals" >> WriteParquet(
        f"{out}/daily_totals/daily_totals", arrow.DAILY_TOTAL)
    _write_common(job, outputs, lambda: outputs["results"], metrics_prefix)
    if job.write_csv:
        outputs["results"] | "WriteResultsCsv" >> WriteCsv(f"{out}/csv/results", RESULT_FIELDS)
        outputs["daily_totals"] | "WriteDailyTotalsCsv" >> WriteCsv(f"{out}/csv/daily_totals", DAILY_TOTAL_FIELDS)
    return outputs


def _build_columnar(pipeline: beam.Pipeline, job: BatchJob, shards: int, metrics_prefix: str) -> dict:
    chunks = {
        PAYMENTS: pipeline | "ReadPayments" >> ReadRawChunks(PAYMENTS, job.payments, job.payments_format),
        SETTLEMENTS: pipeline | "ReadSettlements" >> ReadRawChunks(
            SETTLEMENTS, job.settlements, job.settlements_format, job.vendor_options),
    }
    outputs = chunks | "Reconcile" >> ColumnarReconcile(job.config, shards, shuffle_of(job))
    if job.bank_statements:
        records = pipeline | "ReadBankStatements" >> ReadBankStatements(job.bank_statements)
        outputs = columnar_bank_leg(job, outputs, records, shards)
    write_columnar_outputs(job, outputs, shards, metrics_prefix)
    return outputs


def columnar_bank_leg(job: BatchJob, outputs: dict, records: beam.PCollection, shards: int) -> dict:
    """The third leg on the columnar flow's outputs and these bank statement records: payouts/ and
    bank_matches/ written under job.output; returns the outputs with its dead letters and counts beside."""
    out = job.output.rstrip("/")
    bank = ({SETTLEMENTS: outputs[SETTLEMENTS], "as_of": outputs["as_of"], BANK_STATEMENTS: records}
            | "ReconcileBank" >> ColumnarReconcileBank(shards, shuffle_of(job), *job.bank_policies))
    one_shard = bank[BANK_MATCHES] | "BankMatchesInOneShard" >> beam.Map(lambda table: (0, table))
    for name, schema, shard_tables, count in ((PAYOUTS, arrow.PAYOUT_BALANCE, bank[PAYOUTS], shards),
                                              (BANK_MATCHES, arrow.BANK_MATCH, one_shard, 1)):
        shard_tables | f"Write[{name}]" >> WriteShardFiles(f"{out}/{name}/{name}", count, schema)
        if job.write_csv:
            shard_tables | f"WriteCsv[{name}]" >> WriteShardFiles(f"{out}/csv/{name}", count, schema, csv=True)
    return with_bank_letters_and_counts(outputs, bank)


def with_bank_letters_and_counts(outputs: dict, bank: dict) -> dict:
    """The flow's outputs with the third leg's dead letters and counts beside its own."""
    return {**outputs,
            "dead_letters": (outputs["dead_letters"], bank["dead_letters"]) | "WithBankLetters" >> beam.Flatten(),
            "counts": (outputs["counts"], bank["counts"]) | "WithBankCounts" >> beam.Flatten()}


def write_columnar_outputs(job: BatchJob, outputs: dict, shards: int, metrics_prefix: str = "") -> None:
    """The columnar engine's outputs -> the files of a reconcile run under job.output."""
    out = job.output.rstrip("/")
    daily_totals = outputs["daily_totals"] | "OneShard" >> beam.Map(lambda table: (0, table))
    outputs["results"] | "WriteResults" >> WriteShardFiles(
        f"{out}/results/results", shards, arrow.RECONCILIATION_RESULT, results_for_output)
    daily_totals | "WriteDailyTotals" >> WriteShardFiles(f"{out}/daily_totals/daily_totals", 1, arrow.DAILY_TOTAL)
    _write_common(job, outputs, lambda: outputs["results"] | "ResultRecords" >> beam.FlatMap(
        result_records).with_output_types(ReconciliationResult), metrics_prefix)
    if job.write_csv:
        outputs["results"] | "WriteResultsCsv" >> WriteShardFiles(
            f"{out}/csv/results", shards, arrow.RECONCILIATION_RESULT, results_for_output, csv=True)
        daily_totals | "WriteDailyTotalsCsv" >> WriteShardFiles(
            f"{out}/csv/daily_totals", 1, arrow.DAILY_TOTAL, csv=True)


def _write_common(job: BatchJob, outputs: dict, result_records: Callable[[], beam.PCollection],
                  metrics_prefix: str) -> None:
    out = job.output.rstrip("/")
    outputs["dead_letters"] | "WriteDeadLetters" >> WriteJsonLines(f"{out}/dead_letters/dead_letters")
    outputs["counts"] | "ReportCounts" >> ReportCounts(metrics_prefix)
    if job.alert_policy is not None:
        (result_records() | "BreakRateAlerts" >> BreakRateAlerts(job.alert_policy)
         | "WriteAlerts" >> WriteParquet(f"{out}/alerts/alerts", arrow.BREAK_RATE_ALERT))


def check_output_location(output: str, patterns: Sequence[str], input_paths: Sequence[str]) -> None:
    """Refuses an output that is a file, holds input files, or lies where an input glob would find its files."""
    if "://" in output:
        return
    root = os.path.abspath(output)
    if os.path.exists(root) and not os.path.isdir(root):
        raise UsageError(f"--output {output!r} is a file, not a directory")
    inside = [path for path in input_paths if os.path.abspath(path).startswith(root + os.sep)]
    if inside:
        raise UsageError(f"--output {output!r} holds input files ({inside[0]}): a run would read its own outputs")
    # fnmatch's * also crosses "/": conservative, as it should be here.
    probes = [os.path.join(root, "run.json"), os.path.join(root, "results", "results-00000-of-00001.parquet"),
              os.path.join(root, "dead_letters", "dead_letters-00000-of-00001.jsonl")]
    for pattern in patterns:
        if "://" not in pattern and any(fnmatch.fnmatch(probe, os.path.abspath(pattern)) for probe in probes):
            raise UsageError(f"--output {output!r} lies inside the input glob {pattern!r}: "
                             f"a later run would read this run's outputs as input")


def auto_shards(inputs: dict) -> int:
    total = sum(entry["bytes"] or 0 for files in inputs.values() for entry in files)
    return max(1, min(MAX_AUTO_SHARDS, -(-total // BYTES_PER_SHARD)))


def _input_files(patterns: Sequence[str], fmt: Optional[str]) -> List[dict]:
    return _file_sizes(expand_patterns(patterns, fmt))


def _file_sizes(paths: Sequence[str]) -> List[dict]:
    return [{"path": path, "bytes": os.path.getsize(path) if os.path.exists(path) else None} for path in paths]


def run_job(job: BatchJob) -> dict:
    """Runs the job to completion and publishes its outputs with `run.json` (pipelines/io/run_output.py);
    returns run.json's content. Nothing of a failed or interrupted run becomes visible."""
    inputs = {PAYMENTS: _input_files(job.payments, job.payments_format),
              SETTLEMENTS: _input_files(job.settlements, job.settlements_format)}
    if job.bank_statements:
        inputs[BANK_STATEMENTS] = _file_sizes(expand_bank_patterns(job.bank_statements))
    job = replace(job, shards=job.shards or auto_shards(inputs))
    options = build_pipeline_options(job.runner, job.beam_args, direct_threads=default_direct_threads(
        job.engine, job.shards, usable_cores()))
    check_output_location(job.output, [*job.payments, *job.settlements, *job.bank_statements],
                          [entry["path"] for files in inputs.values() for entry in files])
    FileSystems.set_options(options)  # the launcher's own file operations see --s3_endpoint_url & co.
    output = RunOutput(job.output)
    output.prepare()
    try:
        with spill_directory(job) as spill_path:
            summary = execute(replace(job, output=output.staging, spill_path=spill_path), inputs, options)
        output.publish(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    except BaseException:
        output.discard()
        raise
    return summary


def spills(job: BatchJob) -> bool:
    """Whether the job's columnar shuffles go through files: asked for, or by default when every worker
    shares this machine's disk (the DirectRunner; LOOPBACK workers on Prism and the embedded Flink).
    In memory the DirectRunner holds every shuffled table several times over, and Prism and Flink
    move each table through their data channels (docs/DESIGN.md 9.4)."""
    if job.engine != COLUMNAR:
        return False
    return job.spill if job.spill is not None else workers_share_this_disk(job.runner, job.beam_args)


def shuffle_of(job: BatchJob) -> Optional[SpillToFiles]:
    """The columnar engine's shuffle transport for the job: spilled under its spill directory, else the runner's."""
    return SpillToFiles(job.spill_path) if job.spill_path else None


@contextlib.contextmanager
def spill_directory(job: BatchJob) -> Iterator[Optional[str]]:
    """This run's spill directory (removed when it ends), or None when the job does not spill."""
    if not spills(job):
        yield None
        return
    with SpillDirectory(job.spill_dir) as path:
        yield path


def execute(job: BatchJob, inputs: dict, options, metrics_prefix: str = "",
            extend: Optional[Callable[[BatchJob, dict], None]] = None) -> dict:
    """Runs the pipeline, writing straight into job.output; returns the run summary (run.json's content).
    `extend(job, outputs)` may add steps to the flow's outputs (`paybeam backfill` does)."""
    started = time.monotonic()
    job = replace(job, shards=job.shards or auto_shards(inputs))
    pipeline = new_pipeline(options)
    outputs = build_pipeline(pipeline, job, metrics_prefix)
    if extend is not None:
        extend(job, outputs)
    result = pipeline.run()
    wait_cancelling_on_interrupt(result)
    return run_summary(job, inputs, counts_from_metrics(result, metrics_prefix), time.monotonic() - started,
                       workers_of(options))


def run_summary(job: BatchJob, inputs: dict, counts: Dict[str, int], wall_seconds: float, workers: str) -> dict:
    per_input = {name: {"files": inputs[name], **per_name}
                 for name, per_name in input_counts(counts, with_bank=BANK_STATEMENTS in inputs).items()}
    policy = job.config.policy
    return {
        **(bank_summary(counts) if BANK_STATEMENTS in inputs else {}),
        "paybeam_version": paybeam_version(),
        "beam_version": beam.__version__,
        "runner": job.runner,
        "engine": job.engine,
        "shuffles": "spilled" if job.spill_path else "in memory",
        "workers": workers,
        "inputs": per_input,
        "statuses": status_counts(counts),
        "results_rows": counts.get(RESULT_ROWS, 0),
        "daily_totals_rows": counts.get(DAILY_TOTAL_ROWS, 0),
        "as_of": as_of_text(counts),
        "options": {
            "amount_tolerance_minor": policy.amount_tolerance_minor,
            "settlement_sla_seconds": int(policy.settlement_sla.total_seconds()),
            "ledger_grace_seconds": int(policy.ledger_grace.total_seconds()),
            "as_of_given": job.config.as_of.mode == "fixed",
            "time_zone": job.config.settlement_day.time_zone,
            "cutoff_hour": job.config.settlement_day.cutoff_hour,
            "allowed_lateness_seconds": int(job.config.trigger_policy.allowed_lateness.total_seconds()),
            **(bank_options(*job.bank_policies) if job.bank_statements else {}),
            "beam_args": job.beam_args,
        },
        "wall_seconds": round(wall_seconds, 3),
    }


def bank_options(payout_policy: PayoutPolicy, bank_policy: BankPolicy) -> dict:
    return {"bank_sla_business_days": bank_policy.bank_sla_business_days,
            "credit_grace_days": bank_policy.credit_grace.days,
            "payout_grace_seconds": int(payout_policy.payout_grace.total_seconds())}


def reconcile_command(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """`paybeam reconcile`: runs the job, prints its summary; 1 when an input was truncated (not allowed)."""
    summary = run_job(job_from_arguments(args, extra))
    print(format_summary(summary))
    written = ["run.json", "results/", "daily_totals/", "dead_letters/", *(["alerts/"] if args.break_alerts else []),
               *(["payouts/", "bank_matches/"] if args.bank_statements else []),
               *(["csv/"] if args.csv else [])]
    print(f"\noutputs in {args.output} ({', '.join(written)})")
    return truncation_exit_code(summary, args.allow_truncated)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m pipelines.reconcile_batch ...`: `paybeam reconcile` the Beam way, with the same exits."""
    return run_module("python -m pipelines.reconcile_batch", __doc__.splitlines()[0], add_reconcile_arguments,
                      "reconcile", reconcile_command, argv)


def truncation_exit_code(summary: dict, allow_truncated: bool) -> int:
    """0, or 1 with one `error:` line when an input file was truncated and that is not allowed."""
    truncated = truncated_files(summary)
    if truncated and not allow_truncated:
        print(f"error: {truncated} input file(s) truncated (see the dead letters): the answer is incomplete; "
              f"--allow-truncated accepts it", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_entry_point(main)
