"""Counts for run summaries: read = accepted + rejected, per input, and per status."""
from __future__ import annotations

from typing import Mapping

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from schemas.rules import AS_OF_MILLIS, status_count_name


class CountEach(beam.PTransform):
    """{name: PCollection} -> one (name, count) per name, zero for an empty collection.

    Bounded inputs only: counting waits for the end of the global window.
    """

    def expand(self, named: Mapping[str, beam.PCollection]):
        counted = [
            collection
            | f"Rewindow[{name}]" >> beam.WindowInto(GlobalWindows())
            | f"Count[{name}]" >> beam.combiners.Count.Globally()
            | f"Name[{name}]" >> beam.Map(lambda count, name=name: (name, count))
            for name, collection in named.items()
        ]
        return counted | "AllCounts" >> beam.Flatten()


class SumEach(beam.PTransform):
    """{name: PCollection of ints} -> one (name, sum) per name, zero for an empty collection (bounded only)."""

    def expand(self, named: Mapping[str, beam.PCollection]):
        summed = [
            collection
            | f"Rewindow[{name}]" >> beam.WindowInto(GlobalWindows())
            | f"Sum[{name}]" >> beam.CombineGlobally(sum)
            | f"Name[{name}]" >> beam.Map(lambda total, name=name: (name, total))
            for name, collection in named.items()
        ]
        return summed | "AllSums" >> beam.Flatten()


class CountStatuses(beam.PTransform):
    """Result rows of the final revisions -> ("status.<STATUS>", count) pairs."""

    def expand(self, results):
        return (
            results
            | "FinalRows" >> beam.Filter(lambda row: row.is_final)
            | "StatusName" >> beam.Map(lambda row: status_count_name(row.status))
            | "CountPerStatus" >> beam.combiners.Count.PerElement()
        )


METRICS_NAMESPACE = "paybeam"


class _ReportCount(beam.DoFn):
    def __init__(self, prefix: str):
        self._prefix = prefix

    def process(self, name_count):
        name, count = name_count
        if name == AS_OF_MILLIS:
            if count is not None:
                beam.metrics.Metrics.distribution(METRICS_NAMESPACE, self._prefix + name).update(count)
        else:
            beam.metrics.Metrics.counter(METRICS_NAMESPACE, self._prefix + name).inc(count)


class ReportCounts(beam.PTransform):
    """(name, count) pairs -> Beam metrics in the "paybeam" namespace, which the launcher reads from the
    pipeline result (`pipelines.summary.counts_from_metrics`): counters, and as_of_millis as a distribution.

    Metrics, not a file the workers write: they reach the launcher from remote
    workers on every runner. `prefix` keeps the runs of one job apart (a
    backfill group job reports each date under "DATE/").
    """

    def __init__(self, prefix: str = ""):
        super().__init__()
        self._prefix = prefix

    def expand(self, counts):
        return counts | "ToMetrics" >> beam.ParDo(_ReportCount(self._prefix))
