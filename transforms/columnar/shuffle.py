"""How the columnar engine's shard tables travel to a GroupByKey: as elements, or spilled to files.

The flow (transforms/columnar/flow.py) calls `stored()` on each (shard, table)
PCollection before it groups or re-reads it and `loaded()` on what arrives,
so the rules never know which transport carried the rows. `InShuffle`, the
default, hands the tables to the runner's shuffle (the flow dictionary-encodes
them first: `shards.compact`). A spilling transport (pipelines/io/spill.py) writes them to
files on a disk every worker sees and shuffles only the paths: the
DirectRunner otherwise holds every shuffled table in memory, decoded, several
copies at once (docs/DESIGN.md 9.4).
"""
from __future__ import annotations

from typing import Iterable

import apache_beam as beam
import pyarrow as pa


class InShuffle:
    """Shard tables are the shuffled elements themselves (any runner)."""

    spills = False

    def stored(self, shard_tables: beam.PCollection, label: str, schema: pa.Schema) -> beam.PCollection:
        return shard_tables

    def loaded(self, values: Iterable) -> Iterable[pa.Table]:
        return values
