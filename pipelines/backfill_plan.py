"""`paybeam backfill`, planning: arguments, date ranges, input fingerprints, DateTasks, skip-unchanged.

Pure planning: nothing here runs a pipeline or writes outputs
(pipelines/backfill_run.py runs, pipelines/backfill_publish.py publishes).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import List, Optional, Sequence
from zoneinfo import ZoneInfo

from pipelines.arguments import (
    COLUMNAR,
    ELEMENTWISE,
    UsageError,
    add_policy_arguments,
    add_vendor_arguments,
    match_policy,
    settlement_day,
    trigger_policy,
    vendor_options,
)
from pipelines.io.atomic_publish import MANIFEST, date_dir
from schemas.codecs import FORMATS
from schemas.records import PAYMENTS, SETTLEMENTS
from schemas.vendors import DEFAULT_VENDOR_OPTIONS

_PLACEHOLDERS = ("date", "yyyy", "mm", "dd")
_DATE_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}")

RAN, SKIPPED, FAILED = "ran", "skipped", "failed"
DATES_PER_JOB = 7


class _WithoutAsOf:
    """Forwards add_argument to a parser, except `--as-of` (backfill sets as_of per date)."""

    def __init__(self, parser: argparse.ArgumentParser):
        self._parser = parser

    def add_argument(self, *names, **kwargs):
        if "--as-of" in names:
            return None
        return self._parser.add_argument(*names, **kwargs)


def add_backfill_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="date_from", required=True, metavar="DATE",
                        help="first date of the range (YYYY-MM-DD, inclusive)")
    parser.add_argument("--to", dest="date_to", required=True, metavar="DATE",
                        help="last date of the range (YYYY-MM-DD, inclusive)")
    parser.add_argument("--payments", required=True, metavar="TEMPLATE",
                        help="payment files of one date: a glob with {date} (YYYY-MM-DD) or {yyyy}/{mm}/{dd}, "
                             "e.g. 'data/payments/{date}/*.parquet'")
    parser.add_argument("--settlements", required=True, metavar="TEMPLATE",
                        help="settlement files of one date, same placeholders")
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="local directory; each date is published to DIR/date=YYYY-MM-DD/")
    parser.add_argument("--format", choices=FORMATS, help="format of every input (default: by extension)")
    parser.add_argument("--force", action="store_true", help="re-run dates whose inputs and options are unchanged")
    parser.add_argument("--parallel", type=int, default=1, metavar="K",
                        help="run up to K dates at once, each in its own process (default 1)")
    parser.add_argument("--allow-truncated", action="store_true",
                        help="publish a date even when one of its input files is truncated (default: the date fails)")
    parser.add_argument("--engine", choices=(COLUMNAR, ELEMENTWISE), default=COLUMNAR,
                        help="columnar (default): each group of dates is one job that reads every file once; "
                             "elementwise: the per-record engine, one job per date")
    parser.add_argument("--dates-per-job", type=int, default=DATES_PER_JOB, metavar="N",
                        help=f"columnar engine: dates reconciled by one Beam job (default {DATES_PER_JOB}; "
                             f"1 = one job per date)")
    parser.add_argument("--days-before", type=int, default=4, metavar="N",
                        help="also read the N daily partitions before each date, where the ledger events of its "
                             "settlements are (default 4)")
    parser.add_argument("--days-after", type=int, metavar="N",
                        help="also read the N partitions after each date, where its payments settle "
                             "(default: the settlement SLA in whole days)")
    add_policy_arguments(_WithoutAsOf(parser))  # type: ignore[arg-type]
    add_vendor_arguments(parser)


def parse_date_argument(text: str, flag: str) -> date:
    if not isinstance(text, str) or not _DATE_TEXT.fullmatch(text.strip()):
        raise UsageError(f"{flag} {text!r} is not a date like 2026-01-05")
    try:
        return date.fromisoformat(text.strip())
    except ValueError as error:
        raise UsageError(f"{flag} {text!r}: {error}") from None


def check_template(template: str, flag: str) -> str:
    names = set(re.findall(r"\{([^{}]*)\}", template))
    unknown = sorted(names - set(_PLACEHOLDERS))
    if unknown:
        raise UsageError(f"{flag} {template!r}: unknown placeholder {{{unknown[0]}}} "
                         f"(use {{date}}, {{yyyy}}, {{mm}}, {{dd}})")
    if "date" not in names and not {"yyyy", "mm", "dd"} <= names:
        raise UsageError(f"{flag} {template!r} has no date placeholder: use {{date}} or {{yyyy}}, {{mm}} and {{dd}}")
    if ".." in template.replace("\\", "/").split("/"):
        raise UsageError(f"{flag} {template!r} has a '..' segment: a date's files must be where its placeholders "
                         f"say, not in another date's partition")
    if "://" not in template:
        template = os.path.abspath(os.path.expanduser(template))
    return template


def expand_template(template: str, day: date) -> str:
    values = {"date": day.isoformat(), "yyyy": f"{day.year:04d}", "mm": f"{day.month:02d}", "dd": f"{day.day:02d}"}
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template


def date_range(first: date, last: date) -> List[date]:
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


def as_of_millis_for(day: date, time_zone: str, cutoff_hour: int, sla: timedelta) -> int:
    """End of settlement day `day` (the next day's cut-off, local time) plus the settlement SLA."""
    following = day + timedelta(days=1)
    end = datetime(following.year, following.month, following.day, cutoff_hour, tzinfo=ZoneInfo(time_zone))
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    return int((end - epoch) / timedelta(milliseconds=1)) + int(sla / timedelta(milliseconds=1))


@dataclass
class DateTask:
    """Everything one date's job needs; plain data, so it pickles into worker processes."""

    day: str
    output: str
    payments: List[dict]      # [{path, size, sha256}]
    settlements: List[dict]
    as_of_millis: int
    options: dict             # the manifest's "options": what decides a re-run besides the inputs
    runner: str
    beam_args: List[str]
    fmt: Optional[str]
    policy_args: dict         # the argparse values the policy converters need
    own_files: List[str] = field(default_factory=list)  # the date's own partition (the rest is context)
    parent_pid: int = 0
    engine: str = COLUMNAR
    allow_truncated: bool = False


@dataclass
class DateOutcome:
    day: str
    status: str
    rows: Optional[int] = None
    seconds: float = 0.0
    reason: str = ""
    details: str = field(default="", repr=False)


def file_fingerprint(path: str) -> dict:
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    digest = hashlib.sha256()
    size = 0
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        while True:
            chunk = handle.read(1 << 20)
            if not chunk:
                break
            size += len(chunk)
            digest.update(chunk)
    return {"path": path, "size": size, "sha256": digest.hexdigest()}


def input_fingerprints(pattern: str, fmt: Optional[str]) -> List[dict]:
    """[{path, size, sha256}] of the files `pattern` matches; raises InputError when it matches none."""
    from pipelines.io.files import expand_patterns

    return [file_fingerprint(path) for path in expand_patterns([pattern], fmt)]


def context_fingerprints(template: str, day: date, window: tuple, fmt: Optional[str]) -> List[dict]:
    """Files of the neighbouring partitions (a missing neighbour is fine: the range's edge, a quiet day)."""
    from pipelines.io.files import InputError

    days_before, days_after = window
    found: List[dict] = []
    for offset in [*range(-days_before, 0), *range(1, days_after + 1)]:
        try:
            found += input_fingerprints(expand_template(template, day + timedelta(days=offset)), fmt)
        except InputError:
            continue
    return found


def _policy_options(args: argparse.Namespace) -> dict:
    policy = match_policy(args)
    day = settlement_day(args)
    triggers = trigger_policy(args)
    return {
        "amount_tolerance_minor": policy.amount_tolerance_minor,
        "settlement_sla_seconds": int(policy.settlement_sla.total_seconds()),
        "ledger_grace_seconds": int(policy.ledger_grace.total_seconds()),
        "time_zone": day.time_zone,
        "cutoff_hour": day.cutoff_hour,
        "allowed_lateness_seconds": int(triggers.allowed_lateness.total_seconds()),
    }


def read_manifest(output: str, day: str) -> Optional[dict]:
    try:
        with open(os.path.join(date_dir(output, day), MANIFEST), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def manifest_inputs(task: DateTask) -> dict:
    return {PAYMENTS: task.payments, SETTLEMENTS: task.settlements}


def is_unchanged(manifest: Optional[dict], task: DateTask) -> bool:
    return (manifest is not None and manifest.get("inputs") == manifest_inputs(task)
            and manifest.get("options") == task.options)


def plan_backfill(args: argparse.Namespace, beam_args: Sequence[str]):
    from runners.options import build_pipeline_options

    first = parse_date_argument(args.date_from, "--from")
    last = parse_date_argument(args.date_to, "--to")
    if first > last:
        raise UsageError(f"--from {first.isoformat()} is after --to {last.isoformat()}")
    payments = check_template(args.payments, "--payments")
    settlements = check_template(args.settlements, "--settlements")
    if args.parallel is None or args.parallel < 1:
        raise UsageError(f"--parallel must be at least 1 (got {args.parallel})")
    if args.dates_per_job is None or args.dates_per_job < 1:
        raise UsageError(f"--dates-per-job must be at least 1 (got {args.dates_per_job})")
    if "://" in args.output:
        raise UsageError(f"--output {args.output!r} must be a local directory (publishing renames directories)")
    policy = _policy_options(args)
    build_pipeline_options(args.runner, beam_args)  # raises OptionsError, a usage error (exit 2)
    days_after = args.days_after
    if days_after is None:
        days_after = -(-policy["settlement_sla_seconds"] // 86_400)  # whole days, rounded up
    if args.days_before < 0 or days_after < 0:
        raise UsageError("--days-before and --days-after must not be negative")
    options = {
        "policy": policy,
        "window": {"days_before": args.days_before, "days_after": days_after},
        "runner": args.runner,
        "beam_args": list(beam_args),
        "format": args.format,
    }
    vendor = vendor_options(args)
    if vendor != DEFAULT_VENDOR_OPTIONS:
        # Only when set, so dates published before these options existed are not re-run for nothing.
        options["vendor"] = vendor._asdict()
    policy_args = {name: getattr(args, name) for name in (
        "amount_tolerance_minor", "settlement_sla", "ledger_grace", "time_zone", "cutoff_hour", "allowed_lateness",
        "stripe_ledger_reference", "stripe_merchant_metadata_key")}
    sla = timedelta(seconds=policy["settlement_sla_seconds"])
    return first, last, payments, settlements, options, policy_args, sla


