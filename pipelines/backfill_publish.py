"""`paybeam backfill`, publishing: a date's share of a run, canonical files, manifest, atomic publish.

A run (one date's job, or a range job's branch for the date) leaves its raw
outputs in `<tmp>/_scratch`; `publish_date` keeps the date's own share,
writes the canonical files and the manifest (last) into `<tmp>` and swaps
`<tmp>` in as `DIR/date=D` (pipelines/io/atomic_publish.py).

With bank statements a date also publishes `payouts.parquet` (the payouts of
day D: PAYOUT line's settlement date D, or, without a PAYOUT line, the latest
settlement date of its lines D) and `bank_matches.parquet` (the rows of those
payouts, and the rows of credits no payout took valued on D).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import time
from datetime import datetime, timedelta, timezone
from typing import Dict, List, Optional, Sequence

from pipelines.arguments import settlement_day
from pipelines.backfill_plan import RAN, DateOutcome, DateTask, file_fingerprint, manifest_inputs
from pipelines.io.atomic_publish import MANIFEST, date_dir, fsync_dir, old_dir, publish, publish_barrier
from pipelines.io.canonical_files import canonical_lines, canonical_parquet, sha256_of, write_json
from pipelines.summary import truncated_files
from pipelines.version import paybeam_version
from schemas.bank.entry import BANK_STATEMENTS
from schemas.raw_chunks import source_path
from schemas.records import PAYMENTS, SETTLEMENTS

RUN_LOG = "run.log.json"
RESULTS_FILE = "results.parquet"
DAILY_TOTALS_FILE = "daily_totals.parquet"
DEAD_LETTERS_FILE = "dead_letters.jsonl"
PAYOUTS_FILE = "payouts.parquet"
BANK_MATCHES_FILE = "bank_matches.parquet"
PAYOUT_DAYS = "payout_days"  # scratch only (backfill_run._write_payout_days)
MANIFEST_FORMAT = 1
SCRATCH = "_scratch"


def _millis(value) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, datetime):
        return int((value - datetime(1970, 1, 1, tzinfo=timezone.utc)) / timedelta(milliseconds=1))
    return int(value)


def results_of_day(rows: List[dict], day: str, settlement_day) -> List[dict]:
    """The result rows of the keys that belong to `day`: those whose primary record happened on it.

    A date reads neighbouring partitions as context, so its run also judges
    keys of other dates; those are left to their own date's run.
    """
    anchor: Dict[tuple, Optional[int]] = {}
    for row in rows:
        key = (row["processor"], row["processor_reference"], row["kind"])
        if not row["status"].startswith("DUPLICATE_"):
            time_of_row = row["event_time"] if row["event_time"] is not None else row["booked_time"]
            anchor[key] = _millis(time_of_row)
    def belongs(row) -> bool:
        millis = anchor.get((row["processor"], row["processor_reference"], row["kind"]))
        return millis is not None and settlement_day.bounds(millis)[2] == day
    return [row for row in rows if belongs(row)]


def totals_of_day(rows: List[dict], day: str) -> List[dict]:
    return [row for row in rows if row["settlement_day"] == day]


def payout_day(row: dict, last_line_dates: Dict[tuple, str]) -> str:
    """The date a payout row is published under: its payout date (the PAYOUT line's settlement date), else the
    latest settlement date of its lines (when its PAYOUT line was due: a processor books the payout at the end
    of the day its lines settle in, and payout_grace counts from the last line)."""
    if row["payout_date"] is not None:
        return row["payout_date"]
    day = last_line_dates.get((row["processor"], row["payout_id"]))
    if day is None:  # every payout has a PAYOUT line or lines: never drop one silently
        raise RuntimeError(f"payout {row['processor']}/{row['payout_id']} has neither a payout date nor lines")
    return day


def payouts_of_day(rows: List[dict], day: str, last_line_dates: Dict[tuple, str]) -> List[dict]:
    return [row for row in rows if payout_day(row, last_line_dates) == day]


def bank_matches_of_day(rows: List[dict], day: str) -> List[dict]:
    """A payout's row (every payout row has a payout date) by its payout date; a credit's own row by its value
    date (else booking date)."""
    return [row for row in rows if (row["payout_date"] if row["payout_id"] is not None else row["value_date"]) == day]


def last_line_dates(paths: Sequence[str]) -> Dict[tuple, str]:
    """(processor, payout id) -> the latest settlement date of its lines, from `payout_days/` JSON lines."""
    dates: Dict[tuple, str] = {}
    for path in sorted(paths):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    item = json.loads(line)
                    key = (item["processor"], item["payout_id"])
                    dates[key] = max(dates.get(key, item["last_line_date"]), item["last_line_date"])
    return dates


def _counted(rows: List[dict], statuses: Dict[str, int]) -> List[dict]:
    for row in rows:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    return rows


def dead_letter_of_files(line: str, files: Sequence[str]) -> bool:
    return source_path(json.loads(line)["source"]) in files


def publish_date(task: DateTask, tmp: str, summary: dict, started: float, started_at: datetime) -> DateOutcome:
    """`<tmp>/_scratch` (a run's outputs, `summary` its run.json) -> the published `DIR/date=D`."""
    import apache_beam as beam

    from schemas import arrow
    from schemas.timestamps import format_timestamp

    scratch = os.path.join(tmp, SCRATCH)
    truncated = truncated_files(summary)
    if truncated and not task.allow_truncated:
        raise RuntimeError(f"{truncated} input file(s) truncated (see the dead letters); not publishing an "
                           f"incomplete answer (--allow-truncated publishes it)")
    day_rule = settlement_day(argparse.Namespace(**task.policy_args))
    statuses: Dict[str, int] = {}

    def keep_results(rows):
        kept = results_of_day(rows, task.day, day_rule)
        for row in kept:
            statuses[row["status"]] = statuses.get(row["status"], 0) + 1
        return kept

    rows = canonical_parquet(glob.glob(os.path.join(scratch, "results", "*.parquet")),
                              arrow.RECONCILIATION_RESULT, os.path.join(tmp, RESULTS_FILE), keep=keep_results)
    totals = canonical_parquet(glob.glob(os.path.join(scratch, "daily_totals", "*.parquet")),
                                arrow.DAILY_TOTAL, os.path.join(tmp, DAILY_TOTALS_FILE),
                                keep=lambda table_rows: totals_of_day(table_rows, task.day))
    own_files = set(task.own_files)
    letters = canonical_lines(glob.glob(os.path.join(scratch, "dead_letters", "*.jsonl")),
                               os.path.join(tmp, DEAD_LETTERS_FILE),
                               keep=lambda line: dead_letter_of_files(line, own_files))
    bank_counts, bank_outputs = {}, {}
    if task.bank_statements is not None:
        line_dates = last_line_dates(glob.glob(os.path.join(scratch, PAYOUT_DAYS, "*.jsonl")))
        payout_statuses: Dict[str, int] = {}
        match_statuses: Dict[str, int] = {}
        payouts = canonical_parquet(
            glob.glob(os.path.join(scratch, "payouts", "*.parquet")), arrow.PAYOUT_BALANCE,
            os.path.join(tmp, PAYOUTS_FILE),
            keep=lambda table_rows: _counted(payouts_of_day(table_rows, task.day, line_dates), payout_statuses))
        matches = canonical_parquet(
            glob.glob(os.path.join(scratch, "bank_matches", "*.parquet")), arrow.BANK_MATCH,
            os.path.join(tmp, BANK_MATCHES_FILE),
            keep=lambda table_rows: _counted(bank_matches_of_day(table_rows, task.day), match_statuses))
        bank_counts = {"payouts_rows": payouts, "payouts_statuses": dict(sorted(payout_statuses.items())),
                       "bank_matches_rows": matches, "bank_matches_statuses": dict(sorted(match_statuses.items()))}
        bank_outputs = {name: {"rows": count, "sha256": sha256_of(os.path.join(tmp, name))}
                        for name, count in ((PAYOUTS_FILE, payouts), (BANK_MATCHES_FILE, matches))}
    shutil.rmtree(scratch)

    # The inputs must not have changed under the job: the manifest would lie.
    for name, recorded in manifest_inputs(task).items():
        now = [file_fingerprint(item["path"]) for item in recorded]
        if now != recorded:
            raise RuntimeError(f"{name} inputs changed while the date was running; run it again")

    counts = {name: {key: value for key, value in summary["inputs"][name].items() if key != "files"}
              for name in (PAYMENTS, SETTLEMENTS, BANK_STATEMENTS) if name in summary["inputs"]}
    manifest = {
        "manifest_format": MANIFEST_FORMAT,
        "date": task.day,
        "as_of": format_timestamp(task.as_of_millis),
        "inputs": manifest_inputs(task),
        "counts": {
            "window_inputs": counts,  # everything the run read: the date's partition and its context
            "statuses": dict(sorted(statuses.items())),
            "results_rows": rows,
            "daily_totals_rows": totals,
            "dead_letters_rows": letters,
            **bank_counts,
        },
        "outputs": {
            RESULTS_FILE: {"rows": rows, "sha256": sha256_of(os.path.join(tmp, RESULTS_FILE))},
            DAILY_TOTALS_FILE: {"rows": totals, "sha256": sha256_of(os.path.join(tmp, DAILY_TOTALS_FILE))},
            DEAD_LETTERS_FILE: {"rows": letters, "sha256": sha256_of(os.path.join(tmp, DEAD_LETTERS_FILE))},
            **bank_outputs,
        },
        "paybeam_version": paybeam_version(),
        "beam_version": beam.__version__,
        "options": task.options,
    }
    seconds = time.monotonic() - started
    write_json(os.path.join(tmp, RUN_LOG), {
        "date": task.day,
        "started_at": started_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "wall_seconds": round(seconds, 3),
        "pipeline_wall_seconds": summary.get("wall_seconds"),
        "pid": os.getpid(),
        "host": os.uname().nodename,
    })
    for name in (RESULTS_FILE, DAILY_TOTALS_FILE, DEAD_LETTERS_FILE, *bank_outputs):
        _fsync_file(os.path.join(tmp, name))
    write_json(os.path.join(tmp, MANIFEST), manifest)  # last: a directory with a manifest is complete
    fsync_dir(tmp)

    if task.parent_pid and os.getppid() != task.parent_pid:
        raise RuntimeError("the backfill process that started this date has gone; not publishing")
    publish_barrier()
    publish(tmp, date_dir(task.output, task.day), old_dir(task.output, task.day, os.getpid()))
    return DateOutcome(task.day, RAN, rows=rows, seconds=time.monotonic() - started)


def _fsync_file(path: str) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


