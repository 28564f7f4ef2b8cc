"""Which merchant a settlement line counts under in the daily totals (docs/DESIGN.md 4.3).

A line names its merchant, except when its file does not say (a Stripe row
without the merchant metadata or a connected account): then it is
UNATTRIBUTED, while the ledger event it settles sits under the real
merchant. Such a line counts under the merchant of the ledger event its
result row pairs it with (MATCHED, AMOUNT_MISMATCH or CURRENCY_MISMATCH),
else under UNATTRIBUTED. The matcher knows the pairing, so it states the
attribution of each UNATTRIBUTED line with every revision of its key:

    matcher ─► attributions (settlement_id, revision, merchant) ─┐
    UNATTRIBUTED matchable lines ────────────────────────────────┴► CountLinesUnderTheirMerchant
                                                                     ─► counted lines (+), withdrawn lines (−)

Bounded input has one revision per key, so a line is counted once. In a
stream a line follows its key's revisions: counted under UNATTRIBUTED while
PENDING, then withdrawn from there and counted under the ledger's merchant
once paired (accumulating panes show the move). The columnar engine applies
the same attributions to its tables (`transforms/columnar/attribution.py`); the
differential test is tests/test_attribution.py.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.coders import PickleCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.transforms.window import GlobalWindows, TimestampedValue

from schemas.internal_records import Candidate
from schemas.records import UNATTRIBUTED, ReconciliationResult, SettlementLine
from transforms.event_time import millis_to_beam_timestamp
from transforms.matching import SETTLEMENT, reconciliation_key

ATTRIBUTIONS = "attributions"
WITHDRAWN = "withdrawn"
Attribution = Tuple[str, Tuple[int, str]]  # (settlement_id, (revision, merchant))


def attributed_merchant(row: ReconciliationResult) -> str:
    """The merchant an UNATTRIBUTED line of `row` counts under: its paired ledger event's, else none."""
    return row.merchant_id if row.ledger_event_id is not None else UNATTRIBUTED


def key_attributions(rows: Iterable[ReconciliationResult], candidates: Sequence[Candidate],
                     revision: int) -> List[Attribution]:
    """The attribution of every UNATTRIBUTED settlement line among one key's result rows."""
    unattributed = {candidate.record_id for candidate in candidates
                    if candidate.side == SETTLEMENT and candidate.merchant_id == UNATTRIBUTED}
    return [(row.settlement_id, (revision, attributed_merchant(row)))
            for row in rows if row.settlement_id in unattributed]


def needs_attribution(line: SettlementLine) -> bool:
    """A line whose merchant the matcher may supply: UNATTRIBUTED and matchable."""
    return line.merchant_id == UNATTRIBUTED and reconciliation_key(line) is not None


# ------------------------------------------------------------------ per-element engine

_LINE, _ATTRIBUTION = 0, 1


class _CountUnderLatestAttribution(beam.DoFn):
    """Per settlement_id: counts the line under its latest attribution, withdrawing it from an earlier one."""

    LINE = ReadModifyWriteStateSpec("line", PickleCoder())
    LATEST = ReadModifyWriteStateSpec("latest", PickleCoder())  # (revision, merchant)
    COUNTED_UNDER = ReadModifyWriteStateSpec("counted_under", PickleCoder())
    EXPIRE = TimerSpec("expire", TimeDomain.WATERMARK)

    def __init__(self, retention: Optional[timedelta]):
        # Streams only: state is cleared this long after the line's time; the matcher closes the line's
        # key within its own retention, so twice that leaves room for its final revision to arrive.
        self._retention_millis = None if retention is None else 2 * int(retention.total_seconds() * 1000)

    def process(self, element, line_state=beam.DoFn.StateParam(LINE), latest_state=beam.DoFn.StateParam(LATEST),
                counted_state=beam.DoFn.StateParam(COUNTED_UNDER), expire=beam.DoFn.TimerParam(EXPIRE)):
        _, (kind, value) = element
        if kind == _LINE:
            if line_state.read() is not None:
                return  # deduplication already kept one copy; a stray second one changes nothing
            line_state.write(value)
            if self._retention_millis is not None:
                expire.set(millis_to_beam_timestamp(value.booked_time + self._retention_millis))
        else:
            latest = latest_state.read()
            if latest is not None and value[0] < latest[0]:
                return  # an older revision that arrived late
            latest_state.write(value)
        line, latest = line_state.read(), latest_state.read()
        if line is None or latest is None:
            return
        merchant, counted_under = latest[1], counted_state.read()
        if merchant == counted_under:
            return
        if counted_under is not None:
            yield pvalue.TaggedOutput(WITHDRAWN, _at_line_time(line._replace(merchant_id=counted_under)))
        yield _at_line_time(line._replace(merchant_id=merchant))
        counted_state.write(merchant)

    @on_timer(EXPIRE)
    def on_expire(self, line_state=beam.DoFn.StateParam(LINE), latest_state=beam.DoFn.StateParam(LATEST),
                  counted_state=beam.DoFn.StateParam(COUNTED_UNDER)):
        for state in (line_state, latest_state, counted_state):
            state.clear()


def _at_line_time(line: SettlementLine) -> TimestampedValue:
    return TimestampedValue(line, millis_to_beam_timestamp(line.booked_time))


class CountLinesUnderTheirMerchant(beam.PTransform):
    """(settlement lines needing attribution, attributions) -> {"counted": lines, "withdrawn": lines}.

    Both outputs are stamped at the line's booked time, so they land in the line's own settlement day.
    """

    def __init__(self, retention: Optional[timedelta] = None):
        super().__init__()
        self._retention = retention

    def expand(self, inputs):
        lines, attributions = inputs
        tagged = (
            (lines | "KeyLines" >> beam.Map(lambda line: (line.settlement_id, (_LINE, line))),
             attributions | "KeyAttributions" >> beam.Map(lambda pair: (pair[0], (_ATTRIBUTION, pair[1]))))
            | "Both" >> beam.Flatten()
            | "GlobalWindow" >> beam.WindowInto(GlobalWindows())
        )
        counted = tagged | "CountUnderLatest" >> beam.ParDo(
            _CountUnderLatestAttribution(self._retention)).with_outputs(WITHDRAWN, main="counted")
        counted.counted.element_type = SettlementLine
        counted[WITHDRAWN].element_type = SettlementLine
        return {"counted": counted.counted, "withdrawn": counted[WITHDRAWN]}
