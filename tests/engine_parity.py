"""The equality of two runs' outputs, whatever engine, shard count or runner wrote them."""
from __future__ import annotations

import glob
import json
import os
from typing import List

from tests.cli_helpers import daily_totals, dead_letters, output_rows, results, run_summary

_RUN_SPECIFIC = ("engine", "wall_seconds", "runner", "options", "shuffles", "workers")


def _canonical(rows: List[dict]) -> List[str]:
    return sorted(json.dumps(row, sort_keys=True, default=str) for row in rows)


def _csv_rows(output: str, name: str) -> tuple:
    header, rows = None, []
    for path in sorted(glob.glob(os.path.join(output, "csv", f"{name}*.csv"))):
        with open(path, encoding="utf-8") as handle:
            header, *lines = handle.read().splitlines()
            rows += lines
    return header, sorted(rows)


def assert_same_outputs(left: str, right: str) -> None:
    """Results, daily totals, payouts and bank matches (if any), dead letters, CSV copies (if any) and run.json
    counts are identical."""
    for read in (results, daily_totals, dead_letters):
        assert _canonical(read(left)) == _canonical(read(right)), f"{read.__name__} differ"
    for name in ("payouts", "bank_matches"):  # a run with bank statements (docs/DESIGN.md 3.8)
        assert _canonical(output_rows(left, name)) == _canonical(output_rows(right, name)), f"{name} differ"
    for name in ("results", "daily_totals", "payouts", "bank_matches"):
        assert _csv_rows(left, name) == _csv_rows(right, name), f"csv/{name} differ"
    summaries = [{key: value for key, value in run_summary(output).items() if key not in _RUN_SPECIFIC}
                 for output in (left, right)]
    assert summaries[0] == summaries[1]
