"""`paybeam backfill`: reconcile a range of daily input partitions, one Beam job per date.

    python -m pipelines.backfill --from 2026-01-05 --to 2026-01-07 \
        --payments 'data/payments/{date}/*.parquet' --settlements 'data/settlements/{date}/*' \
        --output out/ [--runner R] [--force] [--parallel K] [policy options] [beam flags]

Per date D the inputs are the files the expanded templates match; the job
judges deadlines at `as_of` = end of settlement day D + the settlement SLA,
so MISSING_SETTLEMENT means "not settled within the SLA after the day
closed". Outputs are canonicalised (sorted rows, one row group, fixed
compression) so that a re-run on the same inputs is byte-identical, and
published atomically to `DIR/date=D/`:

    results.parquet  daily_totals.parquet  dead_letters.jsonl
    manifest.json    (deterministic: inputs with sha256, counts, versions, options)
    run.log.json     (wall-clock facts of the run: the only non-deterministic file)

A date is skipped when its manifest records the same inputs (path, size,
sha256) and options, unless --force. See the README (Nightly backfills) for the crash
windows of the publish step.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import glob
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Callable, Dict, List, Optional, Sequence
from zoneinfo import ZoneInfo

from pipelines.arguments import (
    UsageError,
    add_policy_arguments,
    match_policy,
    settlement_day,
    trigger_policy,
)
from pipelines.io.atomic_publish import (
    LOCK_FILE,  # noqa: F401  (re-exported: where the lock lives is part of this command's contract)
    MANIFEST,
    OutputLock,
    _fsync_dir,
    _old_dir,
    _tmp_dir,
    date_dir,
    publish,
    recover,
)
from pipelines.io.canonical_files import _canonical_lines, _canonical_parquet, _sha256_of, write_json
from pipelines.version import paybeam_version
from schemas.codecs import FORMATS
from schemas.records import PAYMENTS, SETTLEMENTS

RUN_LOG = "run.log.json"
__all__ = ["LOCK_FILE", "MANIFEST", "add_backfill_arguments", "run_backfill", "main"]
RESULTS_FILE = "results.parquet"
DAILY_TOTALS_FILE = "daily_totals.parquet"
DEAD_LETTERS_FILE = "dead_letters.jsonl"
MANIFEST_FORMAT = 1

_PLACEHOLDERS = ("date", "yyyy", "mm", "dd")
_DATE_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}")

RAN, SKIPPED, FAILED = "ran", "skipped", "failed"


# --------------------------------------------------------------------------- arguments

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
    parser.add_argument("--days-before", type=int, default=4, metavar="N",
                        help="also read the N daily partitions before each date, where the ledger events of its "
                             "settlements are (default 4)")
    parser.add_argument("--days-after", type=int, metavar="N",
                        help="also read the N partitions after each date, where its payments settle "
                             "(default: the settlement SLA in whole days)")
    add_policy_arguments(_WithoutAsOf(parser))  # type: ignore[arg-type]


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


# --------------------------------------------------------------------------- plan

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


@dataclass
class DateOutcome:
    day: str
    status: str
    rows: Optional[int] = None
    seconds: float = 0.0
    reason: str = ""
    details: str = field(default="", repr=False)


def _file_fingerprint(path: str) -> dict:
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

    return [_file_fingerprint(path) for path in expand_patterns([pattern], fmt)]


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


# --------------------------------------------------------------------------- the date's own share

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


def _source_file(source: str) -> str:
    return re.sub(r"(:\d+|#\d+)$", "", source)


def dead_letter_of_files(line: str, files: Sequence[str]) -> bool:
    return _source_file(json.loads(line)["source"]) in files


def read_manifest(output: str, day: str) -> Optional[dict]:
    try:
        with open(os.path.join(date_dir(output, day), MANIFEST), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _manifest_inputs(task: DateTask) -> dict:
    return {PAYMENTS: task.payments, SETTLEMENTS: task.settlements}


def is_unchanged(manifest: Optional[dict], task: DateTask) -> bool:
    return (manifest is not None and manifest.get("inputs") == _manifest_inputs(task)
            and manifest.get("options") == task.options)


# --------------------------------------------------------------------------- one date

def _build_job(task: DateTask, scratch: str):
    from pipelines.reconcile_batch import BatchJob
    from transforms.flow import ReconcileConfig
    from transforms.reconcile import AsOf

    args = argparse.Namespace(**task.policy_args)
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
    )


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # Beam wraps a DoFn's exception in a long message whose last line names the error and the step.
    line = lines[-1] if lines else ""
    line = f"{type(error).__name__}: {line}" if line else type(error).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def run_date(task: DateTask) -> DateOutcome:
    """Runs one date into a temporary sibling directory and publishes it; never raises."""
    started = time.monotonic()
    started_at = datetime.now(timezone.utc)
    tmp = _tmp_dir(task.output, task.day, os.getpid())
    try:
        return _run_date(task, tmp, started, started_at)
    except BaseException as error:  # noqa: BLE001 — a failed date must not stop the others
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(error, KeyboardInterrupt):
            raise
        return DateOutcome(task.day, FAILED, seconds=time.monotonic() - started, reason=_one_line(error),
                           details=traceback.format_exc())


def _run_date(task: DateTask, tmp: str, started: float, started_at: datetime) -> DateOutcome:
    import apache_beam as beam

    from pipelines import reconcile_batch
    from schemas import arrow
    from schemas.timestamps import format_timestamp

    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    scratch = os.path.join(tmp, "_scratch")
    summary = reconcile_batch.run_job(_build_job(task, scratch))

    day_rule = settlement_day(argparse.Namespace(**task.policy_args))
    statuses: Dict[str, int] = {}

    def keep_results(rows):
        kept = results_of_day(rows, task.day, day_rule)
        for row in kept:
            statuses[row["status"]] = statuses.get(row["status"], 0) + 1
        return kept

    rows = _canonical_parquet(glob.glob(os.path.join(scratch, "results", "*.parquet")),
                              arrow.RECONCILIATION_RESULT, os.path.join(tmp, RESULTS_FILE), keep=keep_results)
    totals = _canonical_parquet(glob.glob(os.path.join(scratch, "daily_totals", "*.parquet")),
                                arrow.DAILY_TOTAL, os.path.join(tmp, DAILY_TOTALS_FILE),
                                keep=lambda table_rows: totals_of_day(table_rows, task.day))
    own_files = set(task.own_files)
    letters = _canonical_lines(glob.glob(os.path.join(scratch, "dead_letters", "*.jsonl")),
                               os.path.join(tmp, DEAD_LETTERS_FILE),
                               keep=lambda line: dead_letter_of_files(line, own_files))
    shutil.rmtree(scratch)

    # The inputs must not have changed under the job: the manifest would lie.
    for name, recorded in _manifest_inputs(task).items():
        now = [_file_fingerprint(item["path"]) for item in recorded]
        if now != recorded:
            raise RuntimeError(f"{name} inputs changed while the date was running; run it again")

    counts = {name: {key: value for key, value in summary["inputs"][name].items() if key != "files"}
              for name in (PAYMENTS, SETTLEMENTS)}
    manifest = {
        "manifest_format": MANIFEST_FORMAT,
        "date": task.day,
        "as_of": format_timestamp(task.as_of_millis),
        "inputs": _manifest_inputs(task),
        "counts": {
            "window_inputs": counts,  # everything the run read: the date's partition and its context
            "statuses": dict(sorted(statuses.items())),
            "results_rows": rows,
            "daily_totals_rows": totals,
            "dead_letters_rows": letters,
        },
        "outputs": {
            RESULTS_FILE: {"rows": rows, "sha256": _sha256_of(os.path.join(tmp, RESULTS_FILE))},
            DAILY_TOTALS_FILE: {"rows": totals, "sha256": _sha256_of(os.path.join(tmp, DAILY_TOTALS_FILE))},
            DEAD_LETTERS_FILE: {"rows": letters, "sha256": _sha256_of(os.path.join(tmp, DEAD_LETTERS_FILE))},
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
    for name in (RESULTS_FILE, DAILY_TOTALS_FILE, DEAD_LETTERS_FILE):
        _fsync_file(os.path.join(tmp, name))
    write_json(os.path.join(tmp, MANIFEST), manifest)  # last: a directory with a manifest is complete
    _fsync_dir(tmp)

    if task.parent_pid and os.getppid() != task.parent_pid:
        raise RuntimeError("the backfill process that started this date has gone; not publishing")
    publish(tmp, date_dir(task.output, task.day), _old_dir(task.output, task.day, os.getpid()))
    return DateOutcome(task.day, RAN, rows=rows, seconds=time.monotonic() - started)


def _fsync_file(path: str) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _run_date_in_worker(task: DateTask) -> DateOutcome:
    """The process-pool entry point (module level, so `spawn` workers can import it)."""
    return run_date(task)


# --------------------------------------------------------------------------- the range

def _plan(args: argparse.Namespace, beam_args: Sequence[str]):
    from runners.options import OptionsError, build_pipeline_options

    first = parse_date_argument(args.date_from, "--from")
    last = parse_date_argument(args.date_to, "--to")
    if first > last:
        raise UsageError(f"--from {first.isoformat()} is after --to {last.isoformat()}")
    payments = check_template(args.payments, "--payments")
    settlements = check_template(args.settlements, "--settlements")
    if args.parallel is None or args.parallel < 1:
        raise UsageError(f"--parallel must be at least 1 (got {args.parallel})")
    if "://" in args.output:
        raise UsageError(f"--output {args.output!r} must be a local directory (publishing renames directories)")
    policy = _policy_options(args)
    try:
        build_pipeline_options(args.runner, beam_args)
    except OptionsError as error:
        raise UsageError(str(error)) from None
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
    policy_args = {name: getattr(args, name) for name in (
        "amount_tolerance_minor", "settlement_sla", "ledger_grace", "time_zone", "cutoff_hour", "allowed_lateness")}
    sla = timedelta(seconds=policy["settlement_sla_seconds"])
    return first, last, payments, settlements, options, policy_args, sla


def run_backfill(args: argparse.Namespace, beam_args: Sequence[str],
                 out: Callable[[str], None] = print) -> int:
    """Runs `paybeam backfill`; 0 when every date ran or was skipped, 1 when any failed.

    Raises UsageError for mistakes on the command line.
    """
    from pipelines.io.files import InputError

    first, last, payments, settlements, options, policy_args, sla = _plan(args, beam_args)
    window = (options["window"]["days_before"], options["window"]["days_after"])
    output = os.path.abspath(os.path.expanduser(args.output))
    os.makedirs(output, exist_ok=True)
    started = time.monotonic()
    outcomes: Dict[str, DateOutcome] = {}
    with OutputLock(output):
        for action in recover(output):
            out(f"recovery: {action}")
        tasks: List[DateTask] = []
        for day in date_range(first, last):
            text = day.isoformat()
            begun = time.monotonic()
            try:
                inputs, own_files = {}, []
                for name, template in ((PAYMENTS, payments), (SETTLEMENTS, settlements)):
                    pattern = expand_template(template, day)
                    try:
                        own = input_fingerprints(pattern, args.format)
                    except InputError as error:
                        raise InputError(f"no usable {name} inputs: {error}") from None
                    own_files += [item["path"] for item in own]
                    inputs[name] = own + context_fingerprints(template, day, window, args.format)
            except Exception as error:  # noqa: BLE001 — unreadable inputs fail this date only
                outcomes[text] = DateOutcome(text, FAILED, seconds=time.monotonic() - begun,
                                             reason=str(error) if isinstance(error, InputError) else _one_line(error))
                out(f"{text}: failed — {outcomes[text].reason}")
                continue
            task = DateTask(
                day=text, output=output, payments=inputs[PAYMENTS], settlements=inputs[SETTLEMENTS],
                as_of_millis=as_of_millis_for(day, options["policy"]["time_zone"],
                                              options["policy"]["cutoff_hour"], sla),
                options=options, runner=args.runner, beam_args=list(beam_args), fmt=args.format,
                policy_args=policy_args, own_files=sorted(own_files),
                parent_pid=os.getpid() if args.parallel > 1 else 0)
            if task.as_of_millis > time.time() * 1000:
                out(f"{text}: warning: as_of {_iso(task.as_of_millis)} is still in the future; settlements that "
                    f"may yet arrive are judged MISSING_SETTLEMENT now (re-run after as_of, or with --force)")
            manifest = read_manifest(output, text)
            if not args.force and is_unchanged(manifest, task):
                rows = (manifest.get("counts") or {}).get("results_rows")
                outcomes[text] = DateOutcome(text, SKIPPED, rows=rows, reason="unchanged")
                out(f"{text}: skipped (unchanged)")
                continue
            tasks.append(task)
        for outcome in _execute(tasks, args.parallel):
            outcomes[outcome.day] = outcome
            if outcome.status == RAN:
                out(f"{outcome.day}: ran ({outcome.rows} result rows, {outcome.seconds:.1f}s)")
            else:
                out(f"{outcome.day}: failed — {outcome.reason}")
                if outcome.details:
                    print(f"--- {outcome.day} failed:\n{outcome.details}", file=sys.stderr)
    ordered = [outcomes[day.isoformat()] for day in date_range(first, last)]
    out(format_table(ordered, output, time.monotonic() - started))
    return 1 if any(outcome.status == FAILED for outcome in ordered) else 0


def _execute(tasks: List[DateTask], parallel: int):
    if parallel <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield run_date(task)
        return
    # spawn, not fork: the parent may already hold Beam/gRPC threads, which do not survive a fork.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=min(parallel, len(tasks)), mp_context=context) as pool:
        futures = {pool.submit(_run_date_in_worker, task): task for task in tasks}
        for future in concurrent.futures.as_completed(futures):
            task = futures[future]
            try:
                yield future.result()
            except Exception as error:  # noqa: BLE001 — e.g. a worker killed by the OOM killer
                yield DateOutcome(task.day, FAILED, reason=f"worker process failed: {_one_line(error)}")


def _iso(millis: int) -> str:
    from schemas.timestamps import format_timestamp

    return format_timestamp(millis)


def format_table(outcomes: Sequence[DateOutcome], output: str, seconds: float) -> str:
    counts = {status: sum(1 for o in outcomes if o.status == status) for status in (RAN, SKIPPED, FAILED)}
    lines = [
        "",
        f"paybeam backfill — {len(outcomes)} date(s) into {output}: {counts[RAN]} ran, "
        f"{counts[SKIPPED]} skipped, {counts[FAILED]} failed  ({seconds:.1f}s)",
        "",
        f"{'date':<12}{'status':<22}{'rows':>8}{'seconds':>10}  reason",
    ]
    for outcome in outcomes:
        status = f"{outcome.status} ({outcome.reason})" if outcome.status == SKIPPED else outcome.status
        rows = "-" if outcome.rows is None else str(outcome.rows)
        reason = outcome.reason if outcome.status == FAILED else ""
        lines.append(f"{outcome.day:<12}{status:<22}{rows:>8}{outcome.seconds:>10.1f}  {reason}".rstrip())
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.backfill", description=__doc__.splitlines()[0])
    add_backfill_arguments(parser)
    args, beam_args = parser.parse_known_args(argv)
    try:
        return run_backfill(args, beam_args, out=lambda line: print(line, flush=True))
    except UsageError as error:
        print(f"paybeam backfill: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
