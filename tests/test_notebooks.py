"""Every notebook in notebooks/ runs top to bottom in a real Jupyter kernel of this venv.

The kernel is `python3` from a kernel spec written for the test (first on
JUPYTER_PATH), whose argv is this interpreter, so it cannot pick up another
Python; the first executed cell checks that. A cell that raises fails the test
(nbclient raises CellExecutionError). Cells tagged `chart-*` must each show one
PNG figure, and the cells listed in EXPECTED_TEXT must print those tables.
New notebooks (e.g. backfill_report.ipynb) are picked up automatically.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))

# cell tag -> strings its text output must contain
EXPECTED_TEXT = {
    "explore_reconciliation.ipynb": {
        "collect-shapes": ["'payments'", "'results'", "'dead_letters'"],
        "dead-letters": ["payments", "settlements", "validate"],
        "status-counts": ["MATCHED", "AMOUNT_MISMATCH", "MISSING_SETTLEMENT", "DUPLICATE_SETTLEMENT", "PENDING"],
        "breaks-by-processor": ["processor", "total", "stripe", "adyen"],
        "breaks-by-merchant": ["merchant_id", "total"],
        "amount-at-risk": ["AMOUNT_MISMATCH", "MISSING_SETTLEMENT", "at_risk_minor", "abs(difference_minor)"],
        "drill-amount-mismatch": ["AMOUNT_MISMATCH", "CAPTURED", "is_this_row"],
        "drill-duplicate-settlement": ["DUPLICATE_SETTLEMENT", "MATCHED", "is_this_row"],
        "totals-per-day": ["settlement_day", "captured_minor", "2026-01-05"],
        "breaks-per-day": ["2026-01-"],
    },
    "streaming_panes.ipynb": {
        "steps": ["processing time +", "watermark ->", "beyond allowed lateness"],
        "pane-table": ["EARLY", "ON_TIME", "LATE"],
        "captured-check": ["8200", "300", "dropped"],
        "revisions-ref-c": ["PENDING", "MISSING_SETTLEMENT", "MATCHED"],
        "revisions-ref-e": ["MISSING_SETTLEMENT"],
    },
    "backfill_report.ipynb": {
        "partitions": ["'2026-01-05'", "'2026-01-10'"],
        "backfill-run": ["3 ran, 0 skipped, 0 failed", "2026-01-07  ran"],
        "per-date": ["results_rows", "breaks", "MATCHED", "MISSING_SETTLEMENT", "payments_read",
                     "settlements_rejected", "2026-01-09T00:00:00.000Z"],
        "break-rows": ["MISSING_SETTLEMENT", "ledger_amount_minor"],
        "checks-ok": ["outputs", "inputs", "versions", "OK", "True"],
        "checks-changed": ["inputs changed: re-run", "settlements/2026-01-10/part.csv", "False"],
        "rerun": ["2026-01-05: skipped (unchanged)", "2026-01-06: skipped (unchanged)", "2026-01-07: ran",
                  "1 ran, 2 skipped, 0 failed"],
        "checks-after": ["OK", "True"],
        "per-date-after": ["settlements_deduplicated"],
    },
    "cash_position.ipynb": {
        "run": ["bank_statements", "payouts status", "bank_matches status"],
        "statuses": ["PAYOUT_BALANCED", "PAYOUT_WITHOUT_LINES", "PAYOUT_AMOUNT_DIFFERS", "UNEXPECTED_BANK_CREDIT"],
        "cash-position": ["ledger_captured_minor", "processor_paid_out_minor", "bank_received_minor",
                          "payout_bank_breaks", "2026-01-12"],
        "cash-received": ["merchant_id", "received_minor", "credits"],
        "drill-summary": ["payout vs lines", "payout vs bank", "PAYOUT_BALANCED", "PAYOUT_AMOUNT_DIFFERS"],
        "drill-lines": ["short by:", "movement_minor", "paid_out_minor", "PAYOUT"],
    },
    "risk_backtest.ipynb": {
        "setup": ["attempts;", "of them attacks"],
        "actions-by-attack": ["card_testing", "(ordinary)", "block", "review", "allow"],
        "sweep-table": ["threshold", "precision_pct", "recall_pct", "false_positive_pct", "fired_minor_USD"],
        "explain": ["block", "card-testing", "seconds_before", "DECLINED"],
    },
}
MIN_FIGURES = {"explore_reconciliation.ipynb": 2, "streaming_panes.ipynb": 1, "backfill_report.ipynb": 2,
               "risk_backtest.ipynb": 1, "cash_position.ipynb": 1}

CHECK_KERNEL = "import sys, json; print(json.dumps({'prefix': sys.prefix, 'executable': sys.executable}))"


@pytest.fixture
def venv_kernel(tmp_path, monkeypatch):
    """A `python3` kernel spec running this very interpreter, found before any other."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "paybeam (test)",
        "language": "python",
        # The kernel imports paybeam as installed (`make venv`), like a user's notebook does.
        "env": {"MPLBACKEND": "module://matplotlib_inline.backend_inline"},
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "python3"


def _text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif "data" in output:
            parts.append(output["data"].get("text/plain", ""))
            parts.append(output["data"].get("text/html", ""))
    return "\n".join(parts)


def _pngs(cell) -> int:
    return sum(1 for output in cell.get("outputs", []) if "image/png" in output.get("data", {}))


def test_notebooks_are_found():
    names = {path.name for path in NOTEBOOKS}
    assert {"explore_reconciliation.ipynb", "streaming_panes.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear outputs before saving"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, venv_kernel, tmp_path):
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(CHECK_KERNEL))
    workdir = tmp_path / "work"
    workdir.mkdir()
    client = NotebookClient(notebook, timeout=180, kernel_name=venv_kernel,
                            resources={"metadata": {"path": str(workdir)}})
    client.execute()  # raises CellExecutionError for a failing cell; the per-cell timeout only guards hangs

    kernel = json.loads(_text(notebook.cells[0]).strip().splitlines()[-1])
    assert os.path.realpath(kernel["prefix"]) == os.path.realpath(sys.prefix), "the kernel is not this venv's Python"

    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error", f"{path.name}: {output}"

    by_tag = {}
    for cell in notebook.cells:
        for tag in cell.get("metadata", {}).get("tags", []):
            by_tag[tag] = cell
    for tag, strings in EXPECTED_TEXT.get(path.name, {}).items():
        assert tag in by_tag, f"{path.name}: no cell tagged {tag!r}"
        text = _text(by_tag[tag])
        for expected in strings:
            assert expected in text, f"{path.name} [{tag}]: {expected!r} not in output:\n{text[:2000]}"
    charts = {tag: cell for tag, cell in by_tag.items() if tag.startswith("chart-")}
    for tag, cell in charts.items():
        assert _pngs(cell) == 1, f"{path.name} [{tag}]: expected one PNG figure, got {_pngs(cell)}"
    total_pngs = sum(_pngs(cell) for cell in notebook.cells)
    assert total_pngs >= MIN_FIGURES.get(path.name, 0), f"{path.name}: {total_pngs} figures"
