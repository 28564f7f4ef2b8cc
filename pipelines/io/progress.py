"""Progress of reading inputs, on stderr when it is a terminal (like `paybeam generate`).

A reading DoFn owns one bar per worker instance: in a local run that is the
user's terminal; on a cluster the workers' stderr is no terminal and nothing
is drawn. Runs shorter than `delay` seconds never show a bar.
"""
from __future__ import annotations

import sys
from typing import IO, Optional

import apache_beam as beam
from tqdm import tqdm

DELAY_SECONDS = 3.0


def is_terminal(stream: IO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def byte_progress(label: str, total_bytes: int, stream: Optional[IO] = None, delay: Optional[float] = None) -> tqdm:
    stream = stream if stream is not None else sys.stderr
    delay = DELAY_SECONDS if delay is None else delay
    return tqdm(total=total_bytes, desc=label, unit="B", unit_scale=True, unit_divisor=1024, file=stream,
                disable=not is_terminal(stream), delay=delay, mininterval=1.0, leave=False)


def record_progress(label: str, stream: Optional[IO] = None, delay: Optional[float] = None) -> tqdm:
    """Records read where no total is known (a Kafka catch-up run)."""
    stream = stream if stream is not None else sys.stderr
    delay = DELAY_SECONDS if delay is None else delay
    return tqdm(desc=label, unit=" records", unit_scale=True, file=stream, disable=not is_terminal(stream),
                delay=delay, mininterval=1.0, leave=False)


class CountRecords(beam.DoFn):
    """Passes RawChunks through, drawing how many records have been read (pipelines/reconcile_stream.py)."""

    def __init__(self, label: str, stream: Optional[IO] = None):
        self._label, self._stream = label, stream  # stream: tests only (a worker draws on its stderr)
        self._progress = None

    def setup(self):
        self._progress = record_progress(self._label, self._stream, delay=0 if self._stream else None)

    def process(self, chunk):
        self._progress.update(chunk.read_count)
        yield chunk

    def teardown(self):
        if self._progress is not None:
            self._progress.close()
