"""Deduplication of re-deliveries: the same `event_id` / `settlement_id` seen again.

At-least-once sources (Kafka, re-sent report files) deliver some records
twice; docs/DESIGN.md 3.3 drops them here and counts them, never reporting them
as duplicates. A copy that disagrees with the one kept becomes a dead letter
(transforms/redelivery.py, the rule the columnar engine applies too).

Which copy is kept depends on what can be known:
- bounded input (as-of mode): every delivery is there before the end, so all
  copies of an id are grouped and the first read is kept (lowest file and
  line, or partition and offset), the columnar engine's survivor;
- unbounded streams: the first delivery to arrive passes at once; its copy is
  remembered for `horizon` of event time (a watermark timer forgets it), so
  state stays bounded, and a later copy is dropped or dead-lettered.

Beam's own DeduplicatePerKey would do for streams, but it always declares a
processing-time timer, which makes the DirectRunner fall back from the fast
Fn API runner to the legacy bundle-based one.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Iterable, Iterator, List, Tuple, Union

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.coders import FastPrimitivesCoder, StrUtf8Coder, TupleCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.utils.timestamp import Duration

from schemas.attempts import ATTEMPTS, AuthorizationAttempt
from schemas.internal_records import Judged
from schemas.records import PAYMENTS, SETTLEMENTS, DeadLetter, PaymentEvent, SettlementLine
from transforms.event_time import AssignEventTime
from transforms.redelivery import (
    ID_FIELD_OF_INPUT,
    PAYLOAD_FIELDS,
    Delivery,
    conflict_letter,
    settle_deliveries,
)
from transforms.state_cache import use_fast_state_cache_sizing
from transforms.validate import DEAD_LETTERS, PANS_MASKED

DEFAULT_HORIZON = timedelta(days=7)
UNIQUE = "unique"


RECORD_TYPE_OF_INPUT = {PAYMENTS: PaymentEvent, SETTLEMENTS: SettlementLine, ATTEMPTS: AuthorizationAttempt}


def record_id(record: Union[PaymentEvent, SettlementLine, AuthorizationAttempt]) -> str:
    return getattr(record, ID_FIELD_OF_INPUT[_INPUT_OF_TYPE[type(record)]])


_INPUT_OF_TYPE = {record_type: name for name, record_type in RECORD_TYPE_OF_INPUT.items()}


def _keyed_by_id(delivery: Delivery) -> Tuple[str, Delivery]:
    return record_id(delivery[1]), delivery


def _letters(letters: List[Judged]) -> Iterator[pvalue.TaggedOutput]:
    for letter, pans_masked in letters:
        yield pvalue.TaggedOutput(DEAD_LETTERS, letter)
        if pans_masked:
            yield pvalue.TaggedOutput(PANS_MASKED, pans_masked)


def _first_read(id_deliveries: Tuple[str, Iterable[Delivery]], input_name: str) -> Iterator[Any]:
    """Bounded input: all copies of one id -> the first read, and dead letters of the conflicting ones."""
    (_, kept_record), letters = settle_deliveries(input_name, id_deliveries[1])
    yield kept_record
    yield from _letters(letters)


class _FirstArrivalFn(beam.DoFn):
    """Unbounded input: the first copy to arrive passes; its source and payload fields are remembered until
    the horizon, so a later copy can be told apart from a plain duplicate."""

    KEPT = ReadModifyWriteStateSpec("kept", TupleCoder([StrUtf8Coder(), FastPrimitivesCoder()]))
    FORGET = TimerSpec("forget", TimeDomain.WATERMARK)

    def __init__(self, input_name: str, horizon: Duration):
        self._input_name = input_name
        self._horizon = horizon

    def setup(self):
        use_fast_state_cache_sizing()

    def process(self, element, timestamp=beam.DoFn.TimestampParam,
                kept=beam.DoFn.StateParam(KEPT), forget=beam.DoFn.TimerParam(FORGET)):
        source, record = element[1]
        names = PAYLOAD_FIELDS[self._input_name]
        first = kept.read()
        if first is None:
            kept.write((source, tuple(getattr(record, name) for name in names)))
            forget.set(timestamp + self._horizon)
            yield record
            return
        first_source, first_values = first
        letter = conflict_letter(self._input_name, (source, record), (first_source, dict(zip(names, first_values))))
        if letter is not None:
            yield from _letters([letter])

    @on_timer(FORGET)
    def on_forget(self, kept=beam.DoFn.StateParam(KEPT)):
        kept.clear()


class Deduplicate(beam.PTransform):
    """(source, record) deliveries of one input -> {unique: records, dead_letters: conflicting copies,
    pans_masked: card numbers masked in them}.

    `bounded`: all copies are grouped and the first read is kept (as-of mode);
    otherwise the first to arrive within `horizon` of event time.
    """

    def __init__(self, input_name: str, horizon: timedelta = DEFAULT_HORIZON, bounded: bool = False):
        super().__init__()
        self._input_name = input_name
        self._horizon = Duration(micros=int(horizon.total_seconds() * 1_000_000))
        self._bounded = bounded

    def expand(self, deliveries):
        record_type = RECORD_TYPE_OF_INPUT[self._input_name]
        keyed = deliveries | "KeyById" >> beam.Map(_keyed_by_id).with_output_types(
            Tuple[str, Tuple[str, record_type]])
        if self._bounded:
            outputs = (keyed
                       | "AllCopies" >> beam.GroupByKey()
                       | "FirstRead" >> beam.FlatMap(_first_read, self._input_name).with_outputs(
                           DEAD_LETTERS, PANS_MASKED, main=UNIQUE))
            outputs[UNIQUE].element_type = record_type
            # GroupByKey stamps its output at the end of the window: back to each record's own time.
            unique = outputs[UNIQUE] | "AtEventTime" >> AssignEventTime()
        else:
            outputs = keyed | "FirstArrival" >> beam.ParDo(
                _FirstArrivalFn(self._input_name, self._horizon)).with_outputs(DEAD_LETTERS, PANS_MASKED, main=UNIQUE)
            unique = outputs[UNIQUE]
        unique.element_type = record_type
        outputs[DEAD_LETTERS].element_type = DeadLetter
        outputs[PANS_MASKED].element_type = int
        return {UNIQUE: unique, DEAD_LETTERS: outputs[DEAD_LETTERS], PANS_MASKED: outputs[PANS_MASKED]}
