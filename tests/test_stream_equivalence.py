"""docs/DESIGN.md 4.4 on generated data: the final streaming answer equals the batch answer.

Watermark mode under TestStream: the generated records arrive out of order,
some after the watermark has passed them (late), and the watermark finally
passes every deadline. The highest revision of every key must then equal the
batch result judged at the same instant, and the last daily-total pane of
every day must equal the batch pane.
"""
from __future__ import annotations

import functools
import glob
import os
import random
from collections import defaultdict

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that
from apache_beam.transforms.window import TimestampedValue

from datagen.generator import GeneratorConfig, generate
from schemas.codecs import read_records
from schemas.records import PAYMENTS, SETTLEMENTS, DeadLetter
from tests.beam_helpers import DAY
from tests.prism_helpers import on_prism
from transforms.daily_totals import TriggerPolicy
from transforms.event_time import event_time_millis, millis_to_beam_timestamp
from transforms.flow import ReconcileConfig, ReconcileRecords
from transforms.reconcile import AsOf
from transforms.validate import validate_raw_record

FAR_FUTURE = 4_102_444_800_000  # 2100-01-01: every deadline has passed


def _valid_records(dataset_dir):
    records = []
    for name in (PAYMENTS, SETTLEMENTS):
        for path in sorted(glob.glob(os.path.join(dataset_dir, name, "*"))):
            with open(path, "rb") as handle:
                for raw in read_records(handle, path, "csv", name):
                    outcome = validate_raw_record(raw)
                    if not isinstance(outcome, DeadLetter):
                        records.append((raw, event_time_millis(outcome)))
    return records


def _final_answer(rows):
    """Per key, the rows of its highest revision (revision and is_final dropped)."""
    by_key = defaultdict(list)
    for row in rows:
        by_key[(row.processor, row.processor_reference, row.kind)].append(row)
    answer = set()
    for key_rows in by_key.values():
        top = max(row.revision for row in key_rows)
        answer.update(row[:-2] for row in key_rows if row.revision == top)
    return answer


def _last_panes(totals):
    last = {}
    for total in totals:
        key = (total.merchant_id, total.currency, total.settlement_day)
        if key not in last or total.pane_index > last[key].pane_index:
            last[key] = total
    # The money and record-count columns. break_count is left out: a key whose anchor
    # day moves when a late record arrives keeps counting on its old day in streaming
    # (docs/architecture.md, "Daily totals in streaming").
    return {key: total[5:15] for key, total in last.items()}


# Filled by _capture inside the pipeline: a module-level function is pickled by reference,
# so on the in-process runners it appends to this very dict.
_CAPTURED = defaultdict(list)


def _capture(name, values):
    _CAPTURED[name] = list(values)


def _run(records, streaming, events=None, options=None):
    _CAPTURED.clear()
    config = (ReconcileConfig(as_of=AsOf.watermark(), trigger_policy=TriggerPolicy(None))
              if streaming else ReconcileConfig(as_of=AsOf.fixed(FAR_FUTURE)))
    with BeamTestPipeline(options=options) as pipeline:
        if streaming:
            arriving = pipeline | events
            raw = {name: arriving | f"Only[{name}]" >> beam.Filter(lambda r, n=name: r.input == n)
                   for name in (PAYMENTS, SETTLEMENTS)}
        else:
            raw = {name: pipeline | f"Create[{name}]" >> beam.Create([r for r, _ in records if r.input == name])
                   for name in (PAYMENTS, SETTLEMENTS)}
        outputs = raw | ReconcileRecords(config)
        for name in ("results", "daily_totals"):
            assert_that(outputs[name], functools.partial(_capture, name), label=name)
    return dict(_CAPTURED)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    dataset = generate(GeneratorConfig(payments=150, seed=23, days=6), str(tmp_path_factory.mktemp("eq")))
    return _valid_records(dataset.out_dir)


def _out_of_order_stream(records, seed=5):
    """Records in shuffled order; the watermark trails the latest time seen by 12 hours, so some arrive late."""
    rng = random.Random(seed)
    ordered = sorted(records, key=lambda item: item[1] + rng.randint(0, 2 * DAY))
    stream = TestStream()
    latest, watermark = 0, None
    for start in range(0, len(ordered), 25):
        batch = ordered[start:start + 25]
        stream = stream.add_elements([TimestampedValue(raw, millis_to_beam_timestamp(t)) for raw, t in batch])
        latest = max([latest] + [t for _, t in batch])
        if watermark is None or latest - DAY // 2 > watermark:
            watermark = latest - DAY // 2
            stream = stream.advance_watermark_to(millis_to_beam_timestamp(watermark))
    # Then time passes as it does in production: the watermark moves on in steps,
    # and the matcher's deadline verdicts reach the daily totals within their lateness.
    for step in range(1, 81):
        stream = stream.advance_watermark_to(millis_to_beam_timestamp(latest + step * DAY // 2))
    return stream


def test_final_stream_answer_equals_batch(records, stream_options):
    batch = _run(records, streaming=False)
    stream = _run(records, streaming=True, events=_out_of_order_stream(records), options=stream_options)
    assert len(stream["results"]) > len(batch["results"]), "the stream should have revised some keys"
    assert _final_answer(stream["results"]) == _final_answer(batch["results"])
    totals = stream["daily_totals"]
    assert {t.pane_timing for t in totals} >= {"ON_TIME", "LATE"}
    if on_prism(stream_options):
        # Prism 2.77 closes a day with a final pane when the watermark passes its end plus the
        # allowed lateness, yet still takes results re-stamped into that day while the stage's
        # output watermark lags, in a fresh accumulation: more panes, also marked final, that hold
        # only those results (no money, no records). The first final pane is the day's answer.
        by_day = defaultdict(list)
        for total in totals:
            by_day[(total.merchant_id, total.currency, total.settlement_day)].append(total)
        answers, after = [], []
        for panes in by_day.values():
            panes.sort(key=lambda t: t.pane_index)
            first = next(index for index, pane in enumerate(panes) if pane.is_final)
            answers.append(panes[first])
            after += panes[first + 1:]
        assert after and all(t.is_final and not any(t[5:15]) for t in after)
        totals = answers
    assert _last_panes(totals) == _last_panes(batch["daily_totals"])

