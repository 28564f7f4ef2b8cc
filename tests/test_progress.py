"""Progress of reading: drawn on a terminal after a short delay, never anywhere else."""
from __future__ import annotations

import io
import os

from datagen.generator import GeneratorConfig, generate
from pipelines.io import arrow_files
from pipelines.io.progress import byte_progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_a_bar_and_anything_else_gets_nothing():
    terminal, pipe = _Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        bar = byte_progress("reading payments", 2048, stream=stream, delay=0)
        bar.update(1024)
        bar.refresh()
        bar.close()
    assert "reading payments" in terminal.getvalue() and "50%" in terminal.getvalue()
    assert pipe.getvalue() == ""


def test_short_runs_show_no_bar():
    terminal = _Terminal()
    bar = byte_progress("reading payments", 2048, stream=terminal, delay=3600)
    bar.update(2048)
    bar.close()
    assert "reading payments" not in terminal.getvalue()


def test_the_reader_reports_every_byte_of_every_file(tmp_path, monkeypatch):
    """_DecodeFiles advances its bar to each file's size, whatever the chunks reported on the way."""
    from apache_beam.io import fileio
    from apache_beam.io.filesystems import FileSystems

    dataset = generate(GeneratorConfig(payments=300, seed=5), str(tmp_path / "data"))
    updates = []

    class _Bar:
        def update(self, n):
            updates.append(n)

        def close(self):
            pass

    monkeypatch.setattr(arrow_files, "byte_progress", lambda label, total: _Bar())
    (path,) = dataset.payment_files
    size = os.path.getsize(path)
    decode = arrow_files._DecodeFiles("payments", None, {path: 0}, size)
    decode.setup()
    (metadata,) = FileSystems.match([path])[0].metadata_list
    chunks = list(decode.process(fileio.ReadableFile(metadata)))
    decode.teardown()
    assert chunks and sum(updates) == size and all(n > 0 for n in updates)


def test_a_catch_up_run_counts_records_on_a_terminal():
    from pipelines.io.progress import CountRecords
    from schemas.raw_chunks import RawChunk
    from schemas.records import RawRecord

    terminal = _Terminal()
    counter = CountRecords("reading payments", stream=terminal)
    counter.setup()
    chunk = RawChunk("payments", "payments-topic", records=[RawRecord("payments", "p/0@1", None, "x", "bad")] * 3)
    assert list(counter.process(chunk)) == [chunk]
    counter._progress.refresh()
    counter.teardown()
    assert "reading payments" in terminal.getvalue() and "3" in terminal.getvalue()
