"""`paybeam backfill`, running: a group of dates as one Beam job, or one job per date.

A range is cut into groups of contiguous dates. A group runs as ONE job
(`build_range_pipeline`): every file of the group's windows is read and
validated once (columnar engine), and each date reconciles the validated
tables of its own window at its own as_of into its scratch directory. When
that job fails, its dates run again one job each, so a bad date fails
alone. The elementwise engine runs one job per date.

With bank statements each date also runs the third leg (docs/DESIGN.md 3.8)
on the unique settlement lines of its window and the statements of its bank
window, and writes `payout_days/`: per payout id, the latest settlement date
of its lines, which places a payout without a PAYOUT line on a date.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import shutil
import time
import traceback
from dataclasses import replace
from datetime import datetime, timezone
from typing import Dict, List, Sequence

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc

from pipelines import reconcile_batch
from pipelines.arguments import (
    bank_policies,
    match_policy,
    settlement_day,
    trigger_policy,
    vendor_options,
)
from pipelines.backfill_plan import COLUMNAR, FAILED, DateOutcome, DateTask
from pipelines.backfill_publish import PAYOUT_DAYS, SCRATCH, publish_date
from pipelines.brokers.process_ties import tie_worker_to
from pipelines.io.arrow_files import ReadRawChunks
from pipelines.io.atomic_publish import tmp_dir
from pipelines.io.bank_files import ReadBankStatements
from pipelines.reconcile_batch import BatchJob, write_columnar_outputs
from pipelines.run_errors import wait_cancelling_on_interrupt
from pipelines.summary import counts_from_metrics
from runners.direct_threads import workers_of
from runners.flink_job_server import new_pipeline
from runners.options import build_pipeline_options
from schemas.bank.entry import BANK_STATEMENTS
from schemas.errors import one_line
from schemas.raw_chunks import source_path
from schemas.records import PAYMENTS, SETTLEMENTS
from transforms.columnar.flow import (
    COUNTS,
    ReconcileValidated,
    SumCounts,
    ValidateChunks,
)
from transforms.flow import ReconcileConfig
from transforms.reconcile import AsOf
from transforms.validate import DEAD_LETTERS

_BANK_RECORDS = (BANK_STATEMENTS, "records")


def _build_job(task: DateTask, scratch: str) -> BatchJob:
    args = argparse.Namespace(**task.policy_args)
    bank = {} if task.bank_statements is None else {
        "bank_statements": [item["path"] for item in task.bank_statements], "bank_policies": bank_policies(args)}
    return BatchJob(
        payments=[item["path"] for item in task.payments],
        settlements=[item["path"] for item in task.settlements],
        output=scratch,
        config=ReconcileConfig(policy=match_policy(args), as_of=AsOf.fixed(task.as_of_millis),
                               settlement_day=settlement_day(args), trigger_policy=trigger_policy(args)),
        runner=task.runner,
        beam_args=list(task.beam_args),
        payments_format=task.fmt,
        settlements_format=task.fmt,
        engine=task.engine,
        vendor_options=vendor_options(args),
        **bank,
    )


def _fresh_tmp(task: DateTask) -> str:
    tmp = tmp_dir(task.output, task.day, os.getpid())
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(os.path.join(tmp, SCRATCH))
    return tmp


def _failed(task: DateTask, started: float, error: BaseException) -> DateOutcome:
    return DateOutcome(task.day, FAILED, seconds=time.monotonic() - started, reason=one_line(error),
                       details=traceback.format_exc())


def run_date(task: DateTask) -> DateOutcome:
    """Runs one date as its own job into a temporary sibling directory and publishes it; never raises."""
    started = time.monotonic()
    started_at = datetime.now(timezone.utc)
    tmp = tmp_dir(task.output, task.day, os.getpid())
    try:
        tmp = _fresh_tmp(task)
        job = _build_job(task, os.path.join(tmp, SCRATCH))
        with reconcile_batch.spill_directory(job) as spill_path:
            summary = reconcile_batch.execute(replace(job, spill_path=spill_path), _inputs_of(task),
                                              build_pipeline_options(job.runner, job.beam_args),
                                              extend=_write_payout_days if job.bank_statements else None)
        return publish_date(task, tmp, summary, started, started_at)
    except BaseException as error:  # noqa: BLE001 — a failed date must not stop the others
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(error, KeyboardInterrupt):
            raise
        return _failed(task, started, error)


def run_group(tasks: List[DateTask]) -> List[DateOutcome]:
    """Runs contiguous dates as one job and publishes each; if the job fails, one job per date. Never raises."""
    if len(tasks) == 1 or tasks[0].engine != COLUMNAR:
        return [run_date(task) for task in tasks]
    started = time.monotonic()
    started_at = datetime.now(timezone.utc)
    tmps: Dict[str, str] = {}
    try:
        for task in tasks:
            tmps[task.day] = _fresh_tmp(task)
        summaries = run_range_job(tasks, {day: os.path.join(tmp, SCRATCH) for day, tmp in tmps.items()})
    except BaseException as error:  # noqa: BLE001
        for tmp in tmps.values():
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(error, KeyboardInterrupt):
            raise
        return [run_date(task) for task in tasks]  # find the date that fails, and run the others
    outcomes = []
    for task in tasks:
        try:
            outcomes.append(publish_date(task, tmps[task.day], summaries[task.day], started, started_at))
        except BaseException as error:  # noqa: BLE001
            shutil.rmtree(tmps[task.day], ignore_errors=True)
            if isinstance(error, KeyboardInterrupt):
                raise
            outcomes.append(_failed(task, started, error))
    return outcomes


def run_range_job(tasks: Sequence[DateTask], scratch_of: Dict[str, str]) -> Dict[str, dict]:
    """One Beam job for `tasks`; returns each date's run summary (run.json content) by date."""

    jobs = [_build_job(task, scratch_of[task.day]) for task in tasks]
    inputs = {task.day: _inputs_of(task) for task in tasks}
    shards = {task.day: reconcile_batch.auto_shards(inputs[task.day]) for task in tasks}
    begun = time.monotonic()
    options = build_pipeline_options(tasks[0].runner, tasks[0].beam_args)
    with reconcile_batch.spill_directory(jobs[0]) as spill_path:
        jobs = [replace(job, spill_path=spill_path) for job in jobs]
        pipeline = new_pipeline(options)
        build_range_pipeline(pipeline, jobs, [shards[task.day] for task in tasks],
                             [_metrics_prefix(task.day) for task in tasks])
        result = pipeline.run()
        wait_cancelling_on_interrupt(result)
    seconds = time.monotonic() - begun
    return {task.day: reconcile_batch.run_summary(job, inputs[task.day],
                                                  counts_from_metrics(result, _metrics_prefix(task.day)), seconds,
                                                  workers_of(options))
            for task, job in zip(tasks, jobs)}


def _inputs_of(task: DateTask) -> dict:
    named = ((PAYMENTS, task.payments), (SETTLEMENTS, task.settlements),
             *(((BANK_STATEMENTS, task.bank_statements),) if task.bank_statements is not None else ()))
    return {name: [{"path": item["path"], "bytes": item["size"]} for item in items] for name, items in named}


def _metrics_prefix(day: str) -> str:
    return f"{day}/"


def build_range_pipeline(pipeline: beam.Pipeline, jobs: Sequence, shards: Sequence[int],
                         metrics_prefixes: Sequence[str]) -> None:
    """Reads and validates every file of the jobs once; each job reconciles the files of its own window and
    reports its counts as Beam metrics under its own prefix."""
    validated = {}
    for name in (PAYMENTS, SETTLEMENTS):
        files = sorted({path for job in jobs for path in _files_of(job, name)})
        parts = (pipeline | f"Read[{name}]" >> ReadRawChunks(name, files, jobs[0].payments_format,
                                                             jobs[0].vendor_options)
                 | f"Validate[{name}]" >> ValidateChunks())
        for part in ("accepted", DEAD_LETTERS, COUNTS):
            validated[(name, part)] = parts[part]
    bank_files = sorted({path for job in jobs for path in job.bank_statements})
    if bank_files:  # statements are read once too; each window judges (and deduplicates) its own
        validated[_BANK_RECORDS] = pipeline | "Read[bank_statements]" >> ReadBankStatements(bank_files)
    for index, (job, job_shards, prefix) in enumerate(zip(jobs, shards, metrics_prefixes)):
        validated | f"Window[{index}]" >> ReconcileWindow(job, job_shards, prefix)


def _files_of(job, input_name: str) -> List[str]:
    return job.payments if input_name == PAYMENTS else job.settlements


class ReconcileWindow(beam.PTransform):
    """Every validated file of the group -> one date's run, from the files of its own window only."""

    def __init__(self, job, shards: int, metrics_prefix: str):
        super().__init__()
        self._job, self._shards, self._metrics_prefix = job, shards, metrics_prefix

    def expand(self, validated):
        job = self._job
        accepted, letters, counts = {}, [], []
        for name in (PAYMENTS, SETTLEMENTS):
            files = frozenset(_files_of(job, name))
            accepted[name] = validated[(name, "accepted")] | f"Window[{name}]" >> beam.Filter(
                lambda file_table, files: file_table[0] in files, files)
            letters.append(validated[(name, DEAD_LETTERS)] | f"WindowLetters[{name}]" >> beam.Filter(
                lambda letter, files: source_path(letter.source) in files, files))
            counts.append(validated[(name, COUNTS)] | f"WindowCounts[{name}]" >> beam.Filter(
                lambda file_count, files: file_count[0] in files, files) | f"Counts[{name}]" >> beam.Values())
        outputs = accepted | "ReconcileValidated" >> ReconcileValidated(
            job.config, self._shards, reconcile_batch.shuffle_of(job))
        outputs["dead_letters"] = [*letters, outputs["dead_letters"]] | "DeadLetters" >> beam.Flatten()
        outputs["counts"] = [*counts, outputs["counts"]] | "AllCounts" >> beam.Flatten() | "SumCounts" >> SumCounts()
        if job.bank_statements:
            outputs = self._bank_leg(validated, outputs)
        write_columnar_outputs(job, outputs, self._shards, self._metrics_prefix)
        return outputs["results"]

    def _bank_leg(self, validated, outputs):
        """The third leg of the date, as `paybeam reconcile --bank-statements` wires it (reconcile_batch)."""
        job = self._job
        files = frozenset(job.bank_statements)
        records = validated[_BANK_RECORDS] | "Window[bank_statements]" >> beam.Filter(
            lambda record, files: source_path(record.source) in files, files)
        outputs = reconcile_batch.columnar_bank_leg(job, outputs, records, self._shards)
        _write_payout_days(job, outputs)
        return outputs


def _payout_days_of_lines(shard_table):
    """A shard of unique settlement lines (columnar) -> ((processor, payout id), latest settlement date)."""
    columns = ["processor", "payout_id", "settlement_date"]
    table = shard_table[1].select(columns)  # plain strings again, whatever encoding the flow gave them
    table = table.cast(pa.schema([(name, pa.string()) for name in columns]))
    table = table.filter(pc.fill_null(pc.not_equal(table.column("payout_id"), ""), False))
    for row in table.group_by(["processor", "payout_id"]).aggregate([("settlement_date", "max")]).to_pylist():
        yield (row["processor"], row["payout_id"]), row["settlement_date_max"]


def _payout_day_of_line(line):
    """A unique SettlementLine (per element) -> ((processor, payout id), its settlement date), if it has one."""
    if line.payout_id:
        yield (line.processor, line.payout_id), line.settlement_date


def _write_payout_days(job: BatchJob, outputs: dict) -> None:
    """`payout_days/`: one JSON line per payout id of the window, with the latest settlement date of its lines
    (publish_date places a payout without a PAYOUT line on that date)."""
    per_line = _payout_days_of_lines if job.engine == COLUMNAR else _payout_day_of_line
    (outputs[SETTLEMENTS]
     | "PayoutLineDays" >> beam.FlatMap(per_line)
     | "LatestLineDay" >> beam.CombinePerKey(max)
     | "PayoutDayJson" >> beam.Map(lambda key_day: json.dumps(
         {"processor": key_day[0][0], "payout_id": key_day[0][1], "last_line_date": key_day[1]}, sort_keys=True))
     | "WritePayoutDays" >> beam.io.WriteToText(f"{job.output.rstrip('/')}/{PAYOUT_DAYS}/{PAYOUT_DAYS}",
                                                 file_name_suffix=".jsonl"))


def date_groups(tasks: List[DateTask], parallel: int, dates_per_job: int) -> List[List[DateTask]]:
    """Contiguous groups of at most `dates_per_job` dates, at least `parallel` groups when there are enough dates."""
    if not tasks:
        return []
    size = max(1, min(dates_per_job, -(-len(tasks) // max(1, parallel))))
    return [tasks[start:start + size] for start in range(0, len(tasks), size)]


def _run_group_in_worker(tasks: List[DateTask]) -> List[DateOutcome]:
    """The process-pool entry point (module level, so `spawn` workers can import it)."""
    return run_group(tasks)


def execute_date_groups(tasks: List[DateTask], parallel: int, dates_per_job: int):
    groups = date_groups(tasks, parallel, dates_per_job)
    if parallel <= 1 or len(groups) <= 1:
        for group in groups:
            yield from run_group(group)
        return
    # spawn, not fork: the parent may already hold Beam/gRPC threads, which do not survive a fork.
    context = multiprocessing.get_context("spawn")
    # Workers die with this process: a killed backfill must not leave workers that go on to publish dates.
    with concurrent.futures.ProcessPoolExecutor(max_workers=min(parallel, len(groups)), mp_context=context,
                                                initializer=tie_worker_to, initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(_run_group_in_worker, group): group for group in groups}
        for future in concurrent.futures.as_completed(futures):
            group = futures[future]
            try:
                yield from future.result()
            except Exception as error:  # noqa: BLE001 — e.g. a worker killed by the OOM killer
                for task in group:
                    yield DateOutcome(task.day, FAILED, reason=f"worker process failed: {one_line(error)}")
