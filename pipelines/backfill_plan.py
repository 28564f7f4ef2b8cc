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
from typing import List, Optional, Sequence, Tuple
from zoneinfo import ZoneInfo

from pipelines.arguments import (
    COLUMNAR,
    ELEMENTWISE,
    UsageError,
    add_bank_policy_arguments,
    add_policy_arguments,
    add_vendor_arguments,
    bank_policies,
    match_policy,
    settlement_day,
    trigger_policy,
    vendor_options,
)
from pipelines.io.atomic_publish import MANIFEST, date_dir
from schemas.bank.entry import BANK_STATEMENTS
from schemas.codecs import FORMATS
from schemas.records import PAYMENTS, SETTLEMENTS
from schemas.vendors import DEFAULT_VENDOR_OPTIONS

_PLACEHOLDERS = ("date", "yyyy", "mm", "dd")
_DATE_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}")

RAN, SKIPPED, FAILED = "ran", "skipped", "failed"
DATES_PER_JOB = 7
DAYS_BEFORE = 4


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
    parser.add_argument("--days-before", type=int, metavar="N",
                        help=f"also read the N daily partitions before each date, where the ledger events of its "
                             f"settlements are (default {DAYS_BEFORE}; with --bank-statements at least the bank "
                             f"SLA's longest span in calendar days, 5 for 3 business days)")
    parser.add_argument("--days-after", type=int, metavar="N",
                        help="also read the N partitions after each date, where its payments settle "
                             "(default: the settlement SLA in whole days)")
    parser.add_argument("--bank-statements", metavar="TEMPLATE",
                        help="bank statements (camt.053 or BAI2) of one booking day, same placeholders, e.g. "
                             "'data/bank/{date}/*': adds payouts.parquet and bank_matches.parquet to each date; "
                             "a date reads the bank partitions around it (see docs/operations.md)")
    add_policy_arguments(_WithoutAsOf(parser))  # type: ignore[arg-type]
    add_vendor_arguments(parser)
    add_bank_policy_arguments(parser)


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
    bank_statements: Optional[List[dict]] = None  # the bank window's files; None: no third leg


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


def bank_fingerprints(template: str, day: date, window: tuple) -> Tuple[List[dict], List[str]]:
    """([{path, size, sha256}] of the bank partitions of `day`'s bank window (`bank_window`), the paths of D's own
    partition). Any partition may be missing (no statement is booked on a weekend); raises InputError when the
    whole window has none, or a partition cannot be listed."""
    from pipelines.io.bank_files import expand_bank_patterns
    from pipelines.io.files import InputError

    days_before, days_after = window
    found: List[dict] = []
    own: List[str] = []
    for offset in range(-days_before, days_after + 1):
        try:
            paths = expand_bank_patterns([expand_template(template, day + timedelta(days=offset))])
        except InputError as error:
            if str(error).startswith("no files match"):
                continue
            raise
        found += [file_fingerprint(path) for path in paths]
        own += paths if offset == 0 else []
    if not found:
        first, last = day - timedelta(days=days_before), day + timedelta(days=days_after)
        raise InputError(f"no files match {template!r} from {first.isoformat()} to {last.isoformat()} "
                         f"(the date's bank window)")
    return found, own


def longest_sla_span(business_days: int) -> int:
    """The most calendar days `business_days` business days after a payout day can be (5 for 3: a Wednesday's
    payout is due the next Monday, a Friday's on Wednesday)."""
    from transforms.bank.matching import add_business_days

    monday = date(2024, 1, 1)
    return max((add_business_days(monday + timedelta(days=n), business_days) - (monday + timedelta(days=n))).days
               for n in range(7))


def bank_window(days_before: int, days_after: int, bank_sla_days: int) -> tuple:
    """(days before, days after) of the bank partitions a date reads: from the day before its settlement window
    (credits valued the day before the payout day) to the day after the later of its settlement window's end and
    D + the SLA's longest span (a credit may be booked the day after its value date)."""
    return days_before + 1, max(days_after, longest_sla_span(bank_sla_days)) + 1


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
    inputs = {PAYMENTS: task.payments, SETTLEMENTS: task.settlements}
    if task.bank_statements is not None:
        inputs[BANK_STATEMENTS] = task.bank_statements
    return inputs


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
    bank = getattr(args, "bank_statements", None)
    if bank is not None:
        args.bank_statements = check_template(bank, "--bank-statements")
        payout_policy, bank_policy = bank_policies(args)
    build_pipeline_options(args.runner, beam_args)  # raises OptionsError, a usage error (exit 2)
    days_after = args.days_after
    if days_after is None:
        days_after = -(-policy["settlement_sla_seconds"] // 86_400)  # whole days, rounded up
    days_before = args.days_before
    if days_before is None:
        # With bank statements, a credit valued on D must see every payout it may pay within the SLA.
        days_before = max(DAYS_BEFORE, longest_sla_span(bank_policy.bank_sla_business_days)) if bank is not None \
            else DAYS_BEFORE
    if days_before < 0 or days_after < 0:
        raise UsageError("--days-before and --days-after must not be negative")
    options = {
        "policy": policy,
        "window": {"days_before": days_before, "days_after": days_after},
        "runner": args.runner,
        "beam_args": list(beam_args),
        "format": args.format,
    }
    if bank is not None:
        # Only with --bank-statements, so dates published without the third leg keep their options.
        bank_before, bank_after = bank_window(days_before, days_after, bank_policy.bank_sla_business_days)
        options["bank"] = {
            "bank_sla_business_days": bank_policy.bank_sla_business_days,
            "credit_grace_days": bank_policy.credit_grace.days,
            "payout_grace_seconds": int(payout_policy.payout_grace.total_seconds()),
            "window": {"days_before": bank_before, "days_after": bank_after},
        }
    vendor = vendor_options(args)
    if vendor != DEFAULT_VENDOR_OPTIONS:
        # Only when set, so dates published before these options existed are not re-run for nothing.
        options["vendor"] = vendor._asdict()
    policy_args = {name: getattr(args, name) for name in (
        "amount_tolerance_minor", "settlement_sla", "ledger_grace", "time_zone", "cutoff_hour", "allowed_lateness",
        "stripe_ledger_reference", "stripe_merchant_metadata_key",
        *(("bank_sla_days", "credit_grace_days", "payout_grace") if bank is not None else ()))}
    sla = timedelta(seconds=policy["settlement_sla_seconds"])
    return first, last, payments, settlements, options, policy_args, sla


