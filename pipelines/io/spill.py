"""Spilled shuffles: the columnar engine's shard tables written to local files, only their paths shuffled.

`SpillToFiles` is the spilling transport of transforms/columnar/shuffle.py.
Each bundle of a stage appends its tables to one Arrow IPC stream file per
shard (`<label>-<shard>-<uuid>.arrows`) and emits (shard, path) when it
finishes, so a GroupByKey groups a few paths per shard instead of the rows,
and the consumer reads its shard's files back. A retried bundle writes new
files; the paths of the failed attempt are never emitted.

`SpillDirectory` gives a run its own directory (`paybeam-spill-<pid>-*`
under the root) and removes it when the run ends, whatever the outcome; a
run also removes the directories that runs of dead processes left behind.
Only for workers that share the launcher's disk (the DirectRunner, LOOPBACK
workers: `runners.options.workers_share_this_disk`; a cluster only with a
shared mount): docs/DESIGN.md 9.4.
"""
from __future__ import annotations

import glob
import os
import shutil
import tempfile
import uuid
from typing import Dict, Iterable, Optional, Tuple

import apache_beam as beam
import pyarrow as pa
from apache_beam.transforms.window import GlobalWindows

from pipelines.io.run_output import pid_alive
from schemas.errors import UserError

_PREFIX = "paybeam-spill-"


class SpillRefused(UserError):
    """The spill directory does not exist or cannot be written (exit 2)."""


class SpillWriter(beam.DoFn):
    """(shard, table) -> one IPC stream file per shard and bundle; (shard, path) when the bundle ends."""

    def __init__(self, directory: str, label: str, schema: pa.Schema):
        self._directory, self._label, self._schema = directory, label, schema
        self._writers: Dict[int, tuple] = {}

    def start_bundle(self):
        self._writers = {}

    def process(self, shard_table):
        shard, table = shard_table
        entry = self._writers.get(shard)
        if entry is None:
            path = os.path.join(self._directory, f"{self._label}-{shard:05d}-{uuid.uuid4().hex}.arrows")
            sink = pa.OSFile(path, "wb")
            entry = self._writers[shard] = (path, sink, pa.ipc.new_stream(sink, self._schema))
        entry[2].write_table(table.cast(self._schema))

    def finish_bundle(self):
        writers, self._writers = self._writers, {}
        for shard, (path, sink, writer) in sorted(writers.items()):
            writer.close()
            sink.close()
            yield GlobalWindows.windowed_value((shard, path))


class SpillToFiles:
    """The spilling transport: (shard, table) -> (shard, path of an Arrow IPC stream file)."""

    spills = True

    def __init__(self, directory: str):
        self.directory = directory

    def stored(self, shard_tables: beam.PCollection, label: str, schema: pa.Schema) -> beam.PCollection:
        return shard_tables | f"Spill[{label}]" >> beam.ParDo(
            SpillWriter(self.directory, label.replace("/", "_"), schema)).with_output_types(Tuple[int, str])

    def loaded(self, values: Iterable) -> Iterable[pa.Table]:
        for path in values:
            with pa.OSFile(path, "rb") as source:
                yield pa.ipc.open_stream(source).read_all()


class SpillDirectory:
    """A run's spill directory under `root` (default: the system's temp directory), removed on exit."""

    def __init__(self, root: Optional[str] = None):
        self.root = root or tempfile.gettempdir()
        self.path: Optional[str] = None
        self.removed: list = []

    def __enter__(self) -> str:
        if not os.path.isdir(self.root):
            raise SpillRefused(f"--spill-dir {self.root!r} is not a directory")
        self.removed = _remove_dead_runs(self.root)
        try:
            self.path = tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=self.root)
        except OSError as error:
            raise SpillRefused(f"--spill-dir {self.root!r}: cannot write there ({error.strerror or error})") from None
        return self.path

    def __exit__(self, *exc) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None


def _remove_dead_runs(root: str) -> list:
    removed = []
    for path in sorted(glob.glob(os.path.join(glob.escape(root), f"{_PREFIX}*-*"))):
        pid = os.path.basename(path)[len(_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)) and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
