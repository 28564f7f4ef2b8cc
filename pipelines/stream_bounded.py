"""The output side of a `paybeam stream --bounded` run on paybeam's own Kafka IO (docs/DESIGN.md 5).

Order of things, each step waiting for the one before (Beam's "wait on", runner-independent):

1. results (new revisions of keys whose rows changed), daily totals and alerts are written;
   a record the broker refuses becomes a dead letter; the dead letters are written, strictly;
2. then the open-items entries (they record which rows were written; an entry the broker
   refuses is a dead letter too);
3. only then are the read offsets committed (`CommitOffsetsWhenWritten`);
4. only then are the entries of expired keys deleted from the store.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Tuple

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from pipelines.io.kafka import (
    AllWritten,
    CommitOffsetsWhenWritten,
    DeleteDecidedAfterCommit,
    KafkaReadConfig,
    KafkaWriteConfig,
    WriteToKafka,
    WriteToKafkaWithDeadLetters,
)
from schemas.internal_records import OpenItem
from schemas.records import PAYMENTS, SETTLEMENTS, RawRecord
from transforms.open_items import TrackOpenItems

WriteConfigFor = Callable[[str], KafkaWriteConfig]


def with_carried_records(pipeline: beam.Pipeline, raw: Dict[str, beam.PCollection],
                         carried: Dict[str, List[RawRecord]]) -> Dict[str, beam.PCollection]:
    """The topics' records plus the open items' records carried over from the previous run."""
    return {name: (raw[name], pipeline | f"Carried[{name}]" >> beam.Create(carried[name]).with_output_types(RawRecord))
            | f"WithCarried[{name}]" >> beam.Flatten() for name in (PAYMENTS, SETTLEMENTS)}


def write_then_commit(outputs: Dict[str, beam.PCollection], raw: Dict[str, beam.PCollection],
                      offsets: beam.PCollection, carried_items: Dict[str, OpenItem],
                      write_config: WriteConfigFor, commit_config: KafkaReadConfig,
                      store_config: KafkaWriteConfig, alerts: Callable[[beam.PCollection], beam.PCollection],
                      horizon_millis: int) -> None:
    """Steps 1-3 of the module docstring. `alerts` turns the (revised) results into alerts;
    `horizon_millis`: how long after its latest record a key is kept in the store."""
    outputs, tracked = judge_open_items(outputs, raw, carried_items, alerts, horizon_millis)
    written = _write_with_dead_letters(outputs, write_config)
    # The store says which rows were written: it is written only once they are (a failed output
    # must not leave entries claiming rows nobody received), and the commit waits for it too.
    outputs_written = {str(index): pcoll for index, pcoll in enumerate(written)} | "OutputsWritten" >> AllWritten()
    items = tracked["items"] | "AfterOutputs" >> beam.Map(lambda item, unused: item,
                                                           beam.pvalue.AsSingleton(outputs_written))
    store = items | "Write[open_items]" >> WriteToKafkaWithDeadLetters(
        store_config, "open_items", key_fn=lambda item: item.key.encode("utf-8"))
    unstored = (store["rejected"] | "UnstoredGlobal" >> beam.WindowInto(GlobalWindows())
                | "Write[dead_letters:open_items]" >> WriteToKafka(write_config("dead_letters")))
    committed = ((offsets, outputs_written, store["delivered"], unstored)
                 | "CommitOffsets" >> CommitOffsetsWhenWritten(commit_config))
    _ = (committed, tracked["decided"]) | "PruneOpenItems" >> DeleteDecidedAfterCommit(store_config)


def judge_open_items(outputs: Dict[str, beam.PCollection], raw: Dict[str, beam.PCollection],
                     carried_items: Dict[str, OpenItem], alerts: Callable[[beam.PCollection], beam.PCollection],
                     horizon_millis: int) -> Tuple[Dict[str, beam.PCollection], Dict[str, beam.PCollection]]:
    """The run's results judged against the carried open items (`TrackOpenItems`: new revisions only) and
    their alerts; returns the outputs to write and the tracking (`items`: every key's entry, `decided`)."""
    records = [raw[PAYMENTS], raw[SETTLEMENTS]] | "AllRecords" >> beam.Flatten()
    as_of = (outputs["counts"] | "AsOfCount" >> beam.Filter(lambda count: count[0] == "as_of_millis")
             | "AsOf" >> beam.Map(lambda count: count[1]))
    tracked = (records, outputs["results"], as_of) | "OpenItems" >> TrackOpenItems(carried_items, horizon_millis)
    outputs = dict(outputs, results=tracked["results"])
    outputs["alerts"] = alerts(outputs["results"])
    return outputs, tracked


def _write_with_dead_letters(outputs: Dict[str, beam.PCollection], write_config: WriteConfigFor
                             ) -> List[beam.PCollection]:
    """Writes the outputs; records a sink refuses join the dead letters. Returns every sink's completion output.

    The dead letters are written last and strictly: one that cannot be produced fails the run.
    """
    written, refused = [], []
    for name in ("results", "daily_totals", "alerts"):
        sink = outputs[name] | f"Write[{name}]" >> WriteToKafkaWithDeadLetters(write_config(name), name)
        written.append(sink["delivered"])
        refused.append(sink["rejected"] | f"Refused[{name}]" >> beam.WindowInto(GlobalWindows()))
    letters = outputs["dead_letters"] | "DeadLettersGlobal" >> beam.WindowInto(GlobalWindows())
    all_letters = [letters, *refused] | "AllDeadLetters" >> beam.Flatten()
    written.append(all_letters | "Write[dead_letters]" >> WriteToKafka(write_config("dead_letters")))
    return written
