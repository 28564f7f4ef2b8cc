"""How every input enters a flow: validated, stamped at its event time, deduplicated (docs/DESIGN.md 3, 4.1).

    RawRecords ──► ParseAndValidate ──► AssignEventTime ──► Deduplicate ──► unique
                        │ rejected                              │ conflicting copies
                        └───────────────► dead letters ◄────────┘

Payments and settlement lines (transforms/flow.py), attempts in a backtest and
on a stream (transforms/risk/flow.py) all enter this way, so a record is
accepted, rejected or recognised as a copy by one rule whatever reads it.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Dict

import apache_beam as beam

from schemas.rules import ACCEPTED, CONFLICTING, PANS_MASKED, REJECTED
from transforms.dedup import DEFAULT_HORIZON, UNIQUE, Deduplicate
from transforms.event_time import AssignEventTime
from transforms.validate import DEAD_LETTERS, ParseAndValidate


class Intake(beam.PTransform):
    """RawRecords of one input -> {accepted (valid (source, record) pairs), rejected (dead letters of validation), unique, conflicting (dead
    letters of deduplication), dead_letters (both), pans_masked (card numbers masked, per dead letter)}.

    `bounded`: the first copy read is kept (all copies are known); otherwise the first to arrive within
    `horizon` of event time."""

    def __init__(self, input_name: str, bounded: bool, horizon: timedelta = DEFAULT_HORIZON):
        super().__init__()
        self._input_name, self._bounded, self._horizon = input_name, bounded, horizon

    def expand(self, raw: beam.PCollection) -> Dict[str, beam.PCollection]:
        name = self._input_name
        parsed = raw | "ParseAndValidate" >> ParseAndValidate(name, with_sources=True)
        deduplicated = (parsed.valid
                        | "AssignEventTime" >> AssignEventTime(delivered=True)
                        | "Deduplicate" >> Deduplicate(name, self._horizon, self._bounded))
        return {
            ACCEPTED: parsed.valid,
            REJECTED: parsed[DEAD_LETTERS],
            UNIQUE: deduplicated[UNIQUE],
            CONFLICTING: deduplicated[DEAD_LETTERS],
            DEAD_LETTERS: (parsed[DEAD_LETTERS], deduplicated[DEAD_LETTERS]) | "DeadLetters" >> beam.Flatten(),
            PANS_MASKED: (parsed[PANS_MASKED], deduplicated[PANS_MASKED]) | "AllMasked" >> beam.Flatten(),
        }
