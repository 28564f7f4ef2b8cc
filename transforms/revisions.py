"""Counting result rows when keys have several revisions: only each key's latest one counts.

A streaming matcher re-emits all rows of a key with a higher revision when
its verdict changes; aggregates over results keep, per key, the counts of its
highest revision seen so far. Rows of the same revision add up (a key with
duplicates has several rows per revision).
"""
from __future__ import annotations

from typing import Dict, Tuple

from schemas.records import ReconciliationResult

LatestCounts = Dict[str, Tuple[int, Tuple[int, ...]]]  # key -> (revision, counts)


def result_key_text(row: ReconciliationResult) -> str:
    return "\x1f".join((row.processor, row.processor_reference, row.kind))


def merge_revision(latest: LatestCounts, key: str, revision: int, counts: Tuple[int, ...]) -> None:
    seen_revision, seen_counts = latest.get(key, (-1, ()))
    if revision > seen_revision:
        latest[key] = (revision, counts)
    elif revision == seen_revision:
        latest[key] = (revision, tuple(a + b for a, b in zip(seen_counts, counts)))


def merge_all(into: LatestCounts, other: LatestCounts) -> None:
    for key, (revision, counts) in other.items():
        merge_revision(into, key, revision, counts)


def total(latest: LatestCounts, width: int) -> Tuple[int, ...]:
    sums = [0] * width
    for _, counts in latest.values():
        for index, value in enumerate(counts):
            sums[index] += value
    return tuple(sums)
