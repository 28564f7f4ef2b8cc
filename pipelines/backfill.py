"""`paybeam backfill`: reconcile a range of daily input partitions, each date published on its own.

    python -m pipelines.backfill --from 2026-01-05 --to 2026-01-07 \
        --payments 'data/payments/{date}/*.parquet' --settlements 'data/settlements/{date}/*' \
        --output out/ [--runner R] [--force] [--parallel K] [--dates-per-job N] [policy options] [beam flags]
        [--bank-statements 'data/bank/{date}/*' [bank policy options]]

Plan (pipelines/backfill_plan.py), run (pipelines/backfill_run.py: a group
of dates as one job that reads every file once, or one job per date) and
publish (pipelines/backfill_publish.py). Per date D the inputs are the files
the expanded templates match, plus its neighbouring partitions; D
judges deadlines at `as_of` = end of settlement day D + the settlement SLA,
so MISSING_SETTLEMENT means "not settled within the SLA after the day
closed". Outputs are canonicalised (sorted rows, one row group, fixed
compression) so that a re-run on the same inputs is byte-identical, and
published atomically to `DIR/date=D/`:

    results.parquet  daily_totals.parquet  dead_letters.jsonl
    manifest.json    (deterministic: inputs with sha256, counts, versions, options)
    run.log.json     (wall-clock facts of the run: the only non-deterministic file)
    payouts.parquet  bank_matches.parquet   (with --bank-statements: the day's payouts, their bank
                     matches and the day's unclaimed credits; statements of a wider bank window are read)

A date is skipped when its manifest records the same inputs (path, size,
sha256) and options, unless --force. See docs/operations.md (Nightly backfills) for the crash
windows of the publish step.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

from pipelines.backfill_plan import (  # noqa: F401  (the command's public names live here too)
    FAILED,
    RAN,
    SKIPPED,
    DateOutcome,
    DateTask,
    add_backfill_arguments,
    as_of_millis_for,
    bank_fingerprints,
    context_fingerprints,
    date_range,
    expand_template,
    input_fingerprints,
    is_unchanged,
    plan_backfill,
    read_manifest,
)
from pipelines.backfill_publish import (  # noqa: F401
    BANK_MATCHES_FILE,
    DAILY_TOTALS_FILE,
    DEAD_LETTERS_FILE,
    MANIFEST_FORMAT,
    PAYOUTS_FILE,
    RESULTS_FILE,
    RUN_LOG,
    results_of_day,
)
from pipelines.backfill_run import execute_date_groups
from pipelines.command import run_entry_point, run_module
from pipelines.io.atomic_publish import (  # noqa: F401
    LOCK_FILE,  # (re-exported: where the lock lives is part of this command's contract)
    MANIFEST,
    OutputLock,
    publish,
    recover,
)
from schemas.bank.entry import BANK_STATEMENTS
from schemas.errors import one_line
from schemas.records import PAYMENTS, SETTLEMENTS

__all__ = ["LOCK_FILE", "MANIFEST", "add_backfill_arguments", "run_backfill", "main"]


def run_backfill(args: argparse.Namespace, beam_args: Sequence[str],
                 out: Callable[[str], None] = print) -> int:
    """Runs `paybeam backfill`; 0 when every date ran or was skipped, 1 when any failed.

    Raises UsageError for mistakes on the command line.
    """
    from pipelines.io.files import InputError

    first, last, payments, settlements, options, policy_args, sla = plan_backfill(args, beam_args)
    window = (options["window"]["days_before"], options["window"]["days_after"])
    bank = args.bank_statements if "bank" in options else None  # checked by plan_backfill
    bank_window = (options["bank"]["window"]["days_before"], options["bank"]["window"]["days_after"]) if bank else None
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
                if bank:
                    try:
                        inputs[BANK_STATEMENTS], own = bank_fingerprints(bank, day, bank_window)
                    except InputError as error:
                        raise InputError(f"no usable bank_statements inputs: {error}") from None
                    own_files += own
            except Exception as error:  # noqa: BLE001 — unreadable inputs fail this date only
                outcomes[text] = DateOutcome(text, FAILED, seconds=time.monotonic() - begun,
                                             reason=str(error) if isinstance(error, InputError) else one_line(error))
                out(f"{text}: failed — {outcomes[text].reason}")
                continue
            task = DateTask(
                day=text, output=output, payments=inputs[PAYMENTS], settlements=inputs[SETTLEMENTS],
                as_of_millis=as_of_millis_for(day, options["policy"]["time_zone"],
                                              options["policy"]["cutoff_hour"], sla),
                options=options, runner=args.runner, beam_args=list(beam_args), fmt=args.format,
                policy_args=policy_args, own_files=sorted(own_files),
                parent_pid=os.getpid() if args.parallel > 1 else 0, engine=args.engine,
                allow_truncated=args.allow_truncated, bank_statements=inputs.get(BANK_STATEMENTS))
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
        for outcome in execute_date_groups(tasks, args.parallel, args.dates_per_job):
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
    """`python -m pipelines.backfill ...`: `paybeam backfill` the Beam way, with the same exits."""
    return run_module("python -m pipelines.backfill", __doc__.splitlines()[0], add_backfill_arguments, "backfill",
                      lambda args, extra: run_backfill(args, extra, out=lambda line: print(line, flush=True)), argv)


if __name__ == "__main__":
    run_entry_point(main)
