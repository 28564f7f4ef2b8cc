"""A run's counts as the summary a person reads: per input read/accepted/rejected/deduplicated (and card
numbers masked or refused), per status.

Counts arrive as {name: count} ("payments.read", "status.MATCHED",
"as_of_millis", ...) from Beam metrics; both engines and
both pipelines (reconcile, stream --bounded) print the same table.
"""
from __future__ import annotations

from typing import Dict, Optional

from schemas.bank.entry import BANK_STATEMENTS
from schemas.records import PAYMENTS, SETTLEMENTS
from schemas.rules import (
    ACCEPTED,
    AS_OF_MILLIS,
    BANK_MATCHES,
    CONFLICTING,
    PAN_REJECTIONS,
    PANS_MASKED,
    PAYOUTS,
    READ,
    REJECTED,
    TRUNCATED_FILES,
    UNIQUE_RECORDS,
    UNKNOWN_VENDOR_CATEGORIES,
    count_name,
    output_statuses,
    rows_count_name,
    status_of_count_name,
)
from schemas.timestamps import format_timestamp
from transforms.counting import METRICS_NAMESPACE


def _count(counts: Dict[str, int], input_name: str, what: str) -> int:
    return counts.get(count_name(input_name, what), 0)


def input_counts(counts: Dict[str, int], with_bank: bool = False) -> dict:
    names = (PAYMENTS, SETTLEMENTS, BANK_STATEMENTS) if with_bank else (PAYMENTS, SETTLEMENTS)
    per_input = {name: counts_of_input(counts, name) for name in names}
    # Vendor rows read as adjustments because their category is newer than this code (a warning).
    per_input[SETTLEMENTS]["unknown_vendor_categories"] = _count(counts, SETTLEMENTS, UNKNOWN_VENDOR_CATEGORIES)
    return per_input


def counts_of_input(counts: Dict[str, int], name: str) -> dict:
    """One input's counts for run.json: read = accepted + rejected, accepted = unique + deduplicated."""
    # A conflicting re-delivery passed validation but is a dead letter (docs/DESIGN.md 3.3): it counts as
    # rejected, not accepted.
    conflicting = _count(counts, name, CONFLICTING)
    accepted = _count(counts, name, ACCEPTED) - conflicting
    return {
        "read": _count(counts, name, READ),
        "accepted": accepted,
        "rejected": _count(counts, name, REJECTED) + conflicting,
        "deduplicated": accepted - _count(counts, name, UNIQUE_RECORDS),
        "conflicting": conflicting,
        "truncated_files": _count(counts, name, TRUNCATED_FILES),
        "pans_masked": _count(counts, name, PANS_MASKED),
        "pan_rejections": _count(counts, name, PAN_REJECTIONS),
    }


def bank_summary(counts: Dict[str, int]) -> dict:
    """run.json's `payouts` and `bank_matches`: rows and rows per status (docs/DESIGN.md 3.8)."""
    return {output: {"rows": counts.get(rows_count_name(output), 0), "statuses": output_statuses(counts, output)}
            for output in (PAYOUTS, BANK_MATCHES)}


def status_counts(counts: Dict[str, int]) -> Dict[str, int]:
    statuses = {name: status_of_count_name(name) for name in counts}
    return {status: counts[name] for name, status in statuses.items() if status is not None}


def as_of_text(counts: Dict[str, Optional[int]]) -> Optional[str]:
    as_of = counts.get(AS_OF_MILLIS)
    return format_timestamp(as_of) if as_of is not None else None


def truncated_files(summary: dict) -> int:
    return sum(counts.get("truncated_files", 0) for counts in summary["inputs"].values())


def counts_from_metrics(result, prefix: str = "") -> Dict[str, int]:
    """The counts a pipeline reported with transforms.counting.ReportCounts(prefix), from its result.

    Committed values where the runner has them (a retried bundle counts once), attempted otherwise.
    """
    from apache_beam.metrics.metric import MetricsFilter

    metrics = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    counts: Dict[str, int] = {}
    for counter in metrics["counters"]:
        name = _unprefixed(counter.key.metric.name, prefix)
        if name is not None:
            value = counter.committed if counter.committed is not None else counter.attempted
            counts[name] = counts.get(name, 0) + (value or 0)
    for distribution in metrics["distributions"]:
        value = distribution.committed if distribution.committed is not None else distribution.attempted
        if _unprefixed(distribution.key.metric.name, prefix) == AS_OF_MILLIS and value is not None and value.count:
            counts[AS_OF_MILLIS] = value.max
    return counts


def _unprefixed(name: str, prefix: str) -> Optional[str]:
    if not name.startswith(prefix):
        return None
    rest = name[len(prefix):]
    # A run without a prefix must not pick up the counts of prefixed runs ("DATE/payments.read").
    return None if not prefix and "/" in rest else rest


def format_summary(summary: dict, command: str = "paybeam reconcile") -> str:
    """The short human table printed at the end of a run."""
    width = max(12, *(len(name) + 1 for name in summary["inputs"]))
    lines = [f"{command} — as_of {summary['as_of']}  ({summary['wall_seconds']:.1f}s on {summary['runner']}, "
             f"{summary.get('engine', 'elementwise')} engine)",
             "", f"{'input':<{width}}{'read':>10}{'accepted':>10}{'rejected':>10}{'dedup':>10}"]
    for name, counts in summary["inputs"].items():
        lines.append(f"{name:<{width}}{counts['read']:>10}{counts['accepted']:>10}"
                     f"{counts['rejected']:>10}{counts['deduplicated']:>10}")
    masked = sum(counts.get("pans_masked", 0) for counts in summary["inputs"].values())
    refused = sum(counts.get("pan_rejections", 0) for counts in summary["inputs"].values())
    if masked or refused:
        lines += ["", f"card numbers: {masked} masked in dead letters, {refused} record(s) rejected for one "
                      f"in an identifier"]
    unknown = summary["inputs"].get(SETTLEMENTS, {}).get("unknown_vendor_categories", 0)
    if unknown:
        lines += ["", f"warning: {unknown} vendor report row(s) of a category paybeam does not know, "
                      f"counted as adjustments"]
    dead_lettered = summary.get("broker_dead_lettered") or {}
    if any(dead_lettered.values()):  # RabbitMQ: read back from the queues the broker dead-lettered them to
        lines += ["", "dead-lettered by the broker and read back: "
                  + ", ".join(f"{count} {name}" for name, count in dead_lettered.items())]
    carried = summary.get("carried") or {}
    if any(carried.values()):  # a bounded stream run's open items from the previous run
        lines += ["", "carried over from the previous run (open items): "
                  + ", ".join(f"{count} {name}" for name, count in carried.items())]
    lines += _status_table("status", summary["statuses"])
    for output in (PAYOUTS, BANK_MATCHES):
        if output in summary:
            lines += _status_table(f"{output} status", summary[output]["statuses"])
    return "\n".join(lines)


def _status_table(title: str, statuses: Dict[str, int]) -> list:
    return ["", f"{title:<26}{'rows':>10}",
            *(f"{status:<26}{count:>10}" for status, count in sorted(statuses.items(), key=lambda item: -item[1]))]
