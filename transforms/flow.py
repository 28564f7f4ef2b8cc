"""The one reconciliation flow that batch and streaming pipelines both run.

    raw payments ──► ParseAndValidate ─► AssignEventTime ─► Deduplicate ─┐
    raw settlements ► ParseAndValidate ─► AssignEventTime ─► Deduplicate ─┤
                         │ dead letters                                  ├─► ReconcileSettlements ─► results
                         ▼                                               │       └─► attributions ─┐
                                                                         └─► DailyTotals (+ results, lines counted
                                                                               under their ledger's merchant) ─► daily totals

Pipelines wire IO around it and choose where `as_of` comes from and which
trigger daily totals use; nothing here knows whether it runs in batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Dict

import apache_beam as beam

from schemas.codecs import is_truncation
from schemas.records import PAYMENTS, SETTLEMENTS
from schemas.rules import (
    ACCEPTED,
    AS_OF_MILLIS,
    CONFLICTING,
    DAILY_TOTAL_ROWS,
    PAN_REJECTIONS,
    READ,
    REJECTED,
    RESULT_ROWS,
    TRUNCATED_FILES,
    UNIQUE_RECORDS,
    UNKNOWN_VENDOR_CATEGORIES,
    count_name,
)
from schemas.vendors import has_unknown_category
from transforms.attribution import ATTRIBUTIONS, CountLinesUnderTheirMerchant, needs_attribution
from transforms.counting import CountEach, CountStatuses, SumEach
from transforms.daily_totals import DailyTotals, SettlementDay, TriggerPolicy
from transforms.dedup import DEFAULT_HORIZON, UNIQUE, Deduplicate
from transforms.event_time import AssignEventTime
from transforms.reconcile import DEFAULT_RETENTION, AsOf, MatchPolicy, ReconcileSettlements, as_of_millis
from transforms.validate import DEAD_LETTERS, PANS_MASKED, ParseAndValidate, is_pan_rejection


@dataclass(frozen=True)
class ReconcileConfig:
    policy: MatchPolicy = field(default_factory=MatchPolicy)
    as_of: AsOf = field(default_factory=AsOf.latest_in_input)
    settlement_day: SettlementDay = field(default_factory=SettlementDay)
    trigger_policy: TriggerPolicy = field(default_factory=TriggerPolicy.batch)
    dedup_horizon: timedelta = DEFAULT_HORIZON


class ReconcileRecords(beam.PTransform):
    """{payments, settlements}: RawRecords -> {results, daily_totals, dead_letters, payments, settlements}, and
    `as_of` (the as_of millis as one value) unless as_of is the watermark.

    With `with_counts` (bounded inputs only) also `counts`: (name, count)
    pairs such as payments.read, payments.accepted (validated), payments.rejected
    (by validation), payments.unique, payments.conflicting (conflicting
    re-deliveries, dead letters too), payments.pans_masked and status.MATCHED.
    """

    def __init__(self, config: ReconcileConfig = ReconcileConfig(), with_counts: bool = False):
        super().__init__()
        self._config = config
        self._with_counts = with_counts

    def expand(self, raw: Dict[str, beam.PCollection]) -> Dict[str, beam.PCollection]:
        config = self._config
        valid, rejected, unique, masked, conflicting = {}, {}, {}, {}, {}
        # Bounded input (as-of mode) keeps the first copy read, as the columnar engine does (transforms/dedup.py).
        bounded = config.as_of.mode != "watermark"
        for name in (PAYMENTS, SETTLEMENTS):
            parsed = raw[name] | f"ParseAndValidate[{name}]" >> ParseAndValidate(name, with_sources=True)
            valid[name], rejected[name] = parsed.valid, parsed[DEAD_LETTERS]
            deduplicated = (
                parsed.valid
                | f"AssignEventTime[{name}]" >> AssignEventTime(delivered=True)
                | f"Deduplicate[{name}]" >> Deduplicate(name, config.dedup_horizon, bounded)
            )
            unique[name], conflicting[name] = deduplicated[UNIQUE], deduplicated[DEAD_LETTERS]
            masked[count_name(name, PANS_MASKED)] = ((parsed[PANS_MASKED], deduplicated[PANS_MASKED])
                                               | f"AllMasked[{name}]" >> beam.Flatten())
        sides = (unique[PAYMENTS], unique[SETTLEMENTS])
        matcher_inputs = sides
        as_of = None
        if config.as_of.mode != "watermark":
            as_of = as_of_millis(sides | "AllRecords" >> beam.Flatten(), config.as_of)
            matcher_inputs = (*sides, as_of)
        matched = matcher_inputs | "ReconcileSettlements" >> ReconcileSettlements(
            config.policy, config.as_of, with_attributions=True)
        results = matched["results"]
        lines = unique[SETTLEMENTS] | "NeedAttribution" >> beam.Partition(
            lambda line, _: int(needs_attribution(line)), 2)
        attributed = ((lines[1], matched[ATTRIBUTIONS]) | "CountLinesUnderTheirMerchant" >> CountLinesUnderTheirMerchant(
            retention=None if bounded else DEFAULT_RETENTION))
        counted_lines = (lines[0], attributed["counted"]) | "CountedLines" >> beam.Flatten()
        outputs = {
            "payments": unique[PAYMENTS],
            "settlements": unique[SETTLEMENTS],
            "results": results,
            "daily_totals": (unique[PAYMENTS], counted_lines, results, attributed["withdrawn"]) | "DailyTotals" >> DailyTotals(
                config.settlement_day, config.trigger_policy),
            "dead_letters": ((rejected[PAYMENTS], rejected[SETTLEMENTS], conflicting[PAYMENTS], conflicting[SETTLEMENTS])
                             | "DeadLetters" >> beam.Flatten()),
        }
        if as_of is not None:
            outputs["as_of"] = as_of
        if self._with_counts:
            named = {}
            for name in (PAYMENTS, SETTLEMENTS):
                named.update({count_name(name, READ): raw[name], count_name(name, ACCEPTED): valid[name],
                              count_name(name, REJECTED): rejected[name], count_name(name, UNIQUE_RECORDS): unique[name],
                              count_name(name, CONFLICTING): conflicting[name],
                              count_name(name, TRUNCATED_FILES): rejected[name] | f"Truncations[{name}]" >> beam.Filter(
                                  lambda letter: is_truncation(letter.reason)),
                              count_name(name, PAN_REJECTIONS): rejected[name] | f"PanRejections[{name}]" >> beam.Filter(
                                  lambda letter: is_pan_rejection(letter.reason))})
            named[count_name(SETTLEMENTS, UNKNOWN_VENDOR_CATEGORIES)] = raw[SETTLEMENTS] | "UnknownCategories" >> beam.Filter(
                lambda record: has_unknown_category(record.fields))
            named[RESULT_ROWS] = results
            named[DAILY_TOTAL_ROWS] = outputs["daily_totals"]
            counted = [named | "CountEach" >> CountEach(), masked | "SumEach" >> SumEach(),
                       results | "CountStatuses" >> CountStatuses()]
            if as_of is not None:
                counted.append(as_of | "NameAsOf" >> beam.Map(lambda millis: (AS_OF_MILLIS, millis)))
            outputs["counts"] = (
                counted
                | "AllCounts" >> beam.Flatten()
            )
        return outputs
