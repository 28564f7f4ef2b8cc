"""What the bank-statement reader tests share (tests/test_bank_camt053.py, tests/test_bank_bai2.py): the
real samples (../shared/samples/bank/, read from there, never copied) and views of the records read."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Tuple

from schemas.records import RawRecord

REPO = Path(__file__).resolve().parent.parent
# Read-only, never copied (SOURCES.md there): ../shared/samples next to the repository, or $PAYBEAM_SAMPLES
# for a checkout elsewhere. Missing samples fail the tests that read them, never skip them.
SAMPLES = Path(os.environ.get("PAYBEAM_SAMPLES") or REPO.parent / "shared" / "samples") / "bank"


def sample(name: str) -> bytes:
    path = SAMPLES / name
    assert path.is_file(), f"{path} is missing: the bank samples are read from ../shared/samples/bank next to " \
                           "the repository (or $PAYBEAM_SAMPLES/bank)"
    return path.read_bytes()


def good(records: List[RawRecord]) -> List[dict]:
    return [record.fields for record in records if record.fields is not None]


def problems(records: List[RawRecord]) -> List[RawRecord]:
    return [record for record in records if record.fields is None]


def totals(entries: List[dict]) -> Dict[Tuple[str, str], Tuple[int, int]]:
    """(currency, CRDT|DBIT) -> (number of entries, sum of amount_minor)."""
    sums: Dict[Tuple[str, str], Tuple[int, int]] = {}
    for entry in entries:
        count, total = sums.get((entry["currency"], entry["credit_debit"]), (0, 0))
        sums[(entry["currency"], entry["credit_debit"])] = (count + 1, total + entry["amount_minor"])
    return sums
