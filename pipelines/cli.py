"""The `paybeam` command: reconcile files, generate sample data.

Every user mistake (bad option, missing input, unreadable file) ends in a
one-line `error: ...` and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from pipelines.reconcile_batch import UsageError, add_reconcile_arguments, format_summary, job_from_arguments, run_job
from pipelines.version import paybeam_version


def _reconcile(args: argparse.Namespace, extra: Sequence[str]) -> int:
    summary = run_job(job_from_arguments(args, extra))
    print(format_summary(summary))
    print(f"\noutputs in {args.output} (run.json, results/, daily_totals/, dead_letters/)")
    return 0


def _generate(args: argparse.Namespace, extra: Sequence[str]) -> int:
    if extra:
        raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
    from datagen.generator import GeneratorConfig, generate

    if args.payments <= 0:
        raise UsageError("--payments must be positive")
    dataset = generate(
        GeneratorConfig(payments=args.payments, seed=args.seed, fmt=args.format,
                        vendor_reports=args.vendor_reports, days=args.days),
        args.out,
        progress=not args.quiet,
    )
    files = [*dataset.payment_files, *dataset.settlement_files, dataset.ground_truth_path]
    print(f"wrote {len(files)} files to {dataset.out_dir} (as_of {dataset.expected['as_of']})")
    for path in files:
        print(f"  {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paybeam", description="Settlement reconciliation on Apache Beam.")
    parser.add_argument("--version", action="version", version=f"paybeam {paybeam_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    reconcile = commands.add_parser(
        "reconcile", help="reconcile payment files against settlement files (batch)",
        description="Reconcile payment files against settlement files. Unrecognised --flags are passed "
                    "to Beam (e.g. --direct_num_workers=2) and rejected if Beam does not know them.")
    add_reconcile_arguments(reconcile)
    reconcile.set_defaults(handler=_reconcile)

    generate = commands.add_parser("generate", help="write a realistic sample with ground truth")
    generate.add_argument("--payments", type=int, required=True, metavar="N")
    generate.add_argument("--out", required=True, metavar="DIR")
    generate.add_argument("--seed", type=int, default=7)
    generate.add_argument("--format", choices=("csv", "jsonl", "avro", "parquet"), default="csv")
    generate.add_argument("--vendor-reports", action="store_true",
                          help="write Stripe and Adyen lines as those vendors' report CSVs")
    generate.add_argument("--days", type=int, default=14, help="days the payments span (default 14)")
    generate.add_argument("--quiet", action="store_true", help="no progress bar")
    generate.set_defaults(handler=_generate)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        return args.handler(args, extra)
    except UsageError as error:
        print(f"paybeam {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
