"""The reconciliation rules of docs/DESIGN.md 3.3 as pure functions.

`reconcile_key` decides a key's result rows from what is known about it and
the instant `now` at which deadlines are judged: it computes the key's facts,
the rules table (schemas/rules.py) gives the status. The stateful matcher calls
it whenever a key may have changed; tests call it directly.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Iterable, List, Optional, Sequence, Tuple, Union

from schemas import rules
from schemas.internal_records import Candidate
from schemas.records import PaymentEvent, ReconciliationResult, SettlementLine
from schemas.rules import (
    DIFFERENT_CURRENCY,
    DUE,
    DUPLICATE_LEDGER_EVENT,
    DUPLICATE_SETTLEMENT,
    HAS_LEDGER,
    KIND_OF_EVENT_TYPE,
    KIND_OF_RECORD_TYPE,
    PAIRED,
    WITHIN_TOLERANCE,
)

LEDGER = "LEDGER"
SETTLEMENT = "SETTLEMENT"

ReconciliationKey = Tuple[str, str, str]  # (processor, processor_reference, kind)


@dataclass(frozen=True)
class MatchPolicy:
    amount_tolerance_minor: int = 0
    settlement_sla: timedelta = timedelta(days=3)
    ledger_grace: timedelta = timedelta(days=1)

    def __post_init__(self) -> None:
        if self.amount_tolerance_minor < 0:
            raise ValueError("amount_tolerance_minor must not be negative")
        if self.settlement_sla < timedelta(0) or self.ledger_grace < timedelta(0):
            raise ValueError("settlement_sla and ledger_grace must not be negative")

    @property
    def settlement_sla_millis(self) -> int:
        return int(self.settlement_sla.total_seconds() * 1000)

    @property
    def ledger_grace_millis(self) -> int:
        return int(self.ledger_grace.total_seconds() * 1000)


def reconciliation_key(record: Union[PaymentEvent, SettlementLine]) -> Optional[ReconciliationKey]:
    """The key a record is matched under, or None for records that do not settle one by one."""
    if isinstance(record, PaymentEvent):
        kind = KIND_OF_EVENT_TYPE.get(record.event_type)
    else:
        kind = KIND_OF_RECORD_TYPE.get(record.record_type)
    if kind is None:
        return None
    return (record.processor, record.processor_reference, kind)


def candidate_of(record: Union[PaymentEvent, SettlementLine]) -> Candidate:
    if isinstance(record, PaymentEvent):
        return Candidate(LEDGER, record.event_id, record.merchant_id, record.amount_minor,
                         record.currency, record.event_time)
    # The ledger is compared with the line's matched side when it has one (another currency than it settled in).
    if record.matched_minor is not None and record.matched_currency:
        return Candidate(SETTLEMENT, record.settlement_id, record.merchant_id, record.matched_minor,
                         record.matched_currency, record.booked_time)
    return Candidate(SETTLEMENT, record.settlement_id, record.merchant_id, record.gross_minor,
                     record.currency, record.booked_time)


def key_status(ledger: Optional[Candidate], settlement: Optional[Candidate], now_millis: int,
               policy: MatchPolicy) -> str:
    """Status of a key's primary row (its primary ledger event and/or line), judged at `now_millis`.

    The facts are computed here, the decision is the rules table's (schemas/rules.py: STATUS_RULES),
    which the columnar engine applies to the same facts."""
    paired = ledger is not None and settlement is not None
    return rules.primary_status({
        PAIRED: paired,
        DIFFERENT_CURRENCY: paired and ledger.currency != settlement.currency,
        WITHIN_TOLERANCE: paired and abs(settlement.amount_minor - ledger.amount_minor) <= policy.amount_tolerance_minor,
        DUE: now_millis >= one_sided_deadline(ledger or settlement, policy),
        HAS_LEDGER: ledger is not None,
    })


def one_sided_deadline(candidate: Candidate, policy: MatchPolicy) -> int:
    wait = policy.settlement_sla_millis if candidate.side == LEDGER else policy.ledger_grace_millis
    return candidate.time + wait


def _primary_first(candidates: Iterable[Candidate]) -> List[Candidate]:
    # Distinct records only: a re-delivery that slipped past deduplication is not a duplicate.
    distinct = {candidate.record_id: candidate for candidate in candidates}
    return sorted(distinct.values(), key=lambda candidate: (candidate.time, candidate.record_id))


def _row(key: ReconciliationKey, status: str, ledger: Optional[Candidate],
         settlement: Optional[Candidate]) -> ReconciliationResult:
    anchor = ledger or settlement
    difference = None
    if ledger is not None and settlement is not None and ledger.currency == settlement.currency:
        difference = settlement.amount_minor - ledger.amount_minor
    return ReconciliationResult(
        processor=key[0],
        processor_reference=key[1],
        kind=key[2],
        status=status,
        merchant_id=anchor.merchant_id,
        currency=anchor.currency,
        ledger_amount_minor=ledger.amount_minor if ledger else None,
        settled_amount_minor=settlement.amount_minor if settlement else None,
        difference_minor=difference,
        ledger_event_id=ledger.record_id if ledger else None,
        settlement_id=settlement.record_id if settlement else None,
        event_time=ledger.time if ledger else None,
        booked_time=settlement.time if settlement else None,
        revision=0,
        is_final=False,
    )


def reconcile_key(key: ReconciliationKey, candidates: Sequence[Candidate], now_millis: int,
                  policy: MatchPolicy) -> List[ReconciliationResult]:
    """All result rows of one key, judged at `now_millis` (revision and is_final left to the caller).

    The primary row pairs the earliest ledger event with the earliest
    settlement line; every further distinct record is a duplicate row.
    """
    ledger = _primary_first(c for c in candidates if c.side == LEDGER)
    settlements = _primary_first(c for c in candidates if c.side == SETTLEMENT)
    if not ledger and not settlements:
        return []
    primary_ledger = ledger[0] if ledger else None
    primary_settlement = settlements[0] if settlements else None
    status = key_status(primary_ledger, primary_settlement, now_millis, policy)
    rows = [_row(key, status, primary_ledger, primary_settlement)]
    rows += [_row(key, DUPLICATE_LEDGER_EVENT, extra, None) for extra in ledger[1:]]
    rows += [_row(key, DUPLICATE_SETTLEMENT, None, extra) for extra in settlements[1:]]
    return rows


def next_deadline(candidates: Sequence[Candidate], now_millis: int, policy: MatchPolicy) -> Optional[int]:
    """When a PENDING key's verdict falls due, or None if no deadline is ahead of `now_millis`."""
    ledger = _primary_first(c for c in candidates if c.side == LEDGER)
    settlements = _primary_first(c for c in candidates if c.side == SETTLEMENT)
    if bool(ledger) == bool(settlements):
        return None
    deadline = one_sided_deadline((ledger or settlements)[0], policy)
    return deadline if deadline > now_millis else None


def with_revision(rows: Iterable[ReconciliationResult], revision: int,
                  is_final: bool) -> List[ReconciliationResult]:
    return [row._replace(revision=revision, is_final=is_final) for row in rows]


def result_signature(rows: Iterable[ReconciliationResult]) -> Tuple:
    """What must change for a key to get a new revision (everything but revision and is_final)."""
    return tuple(row[:-2] for row in rows)
