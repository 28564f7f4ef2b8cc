"""File IO for the columnar engine: files -> RawChunks, (shard, table) pairs -> Parquet and CSV files.

Files are matched and opened through Beam's `fileio` and `FileSystems` (any
Beam filesystem, compression by extension), like `pipelines.io.files`; each
file decodes into Arrow chunks (`schemas.arrow_readers`). Outputs are
written by pyarrow, one file per shard with a deterministic name, so a
retried bundle rewrites the same file with the same content.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Dict, Iterator, Optional, Tuple

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems

import schemas.arrow_coder  # noqa: F401  (registers the RawChunk and Arrow table coders)
from pipelines.io.files import FileInput, csv_line, expand_patterns, open_input, unreadable_file
from pipelines.io.progress import byte_progress
from schemas.arrow_readers import read_chunks
from schemas.codecs import detect_format
from schemas.raw_chunks import RawChunk
from schemas.vendors import DEFAULT_VENDOR_OPTIONS, VendorOptions

PARQUET_COMPRESSION = "snappy"


def chunks_of_file(readable: fileio.ReadableFile, input_name: str, fmt: Optional[str],
                    file_ranks: Dict[str, int], on_position: Callable[[int], None] = lambda _: None,
                    vendor_options: VendorOptions = DEFAULT_VENDOR_OPTIONS) -> Iterator[RawChunk]:
    path = readable.metadata.path
    file_format = detect_format(path, fmt)
    rank = file_ranks.get(path, len(file_ranks))  # a file that appeared after planning comes last
    with contextlib.ExitStack() as stack:
        try:
            handle = stack.enter_context(open_input(readable))
        except Exception as error:
            yield RawChunk(input_name, path, records=[unreadable_file(input_name, path, error)], file_rank=rank)
            return
        for chunk in read_chunks(handle, path, file_format, input_name, vendor_options):
            chunk.file_rank = rank
            yield chunk
            on_position(_position(handle))


def _position(handle) -> int:
    try:
        return handle.tell()  # of a compressed file: the position in the decompressed bytes
    except (AttributeError, OSError, ValueError):
        return 0


class _DecodeFiles(beam.DoFn):
    """chunks_of_file, with a progress bar of the bytes read (pipelines/io/progress.py)."""

    def __init__(self, input_name: str, fmt: Optional[str], file_ranks: Dict[str, int], total_bytes: int,
                 vendor_options: VendorOptions = DEFAULT_VENDOR_OPTIONS):
        self._input_name, self._fmt, self._file_ranks = input_name, fmt, file_ranks
        self._vendor_options = vendor_options
        self._total_bytes = total_bytes
        self._progress = None

    def setup(self):
        self._progress = byte_progress(f"reading {self._input_name}", self._total_bytes)

    def process(self, readable: fileio.ReadableFile) -> Iterator[RawChunk]:
        size, shown = readable.metadata.size_in_bytes, [0]

        def advance(position: int) -> None:
            position = min(position, size)
            if position > shown[0]:
                self._progress.update(position - shown[0])
                shown[0] = position

        yield from chunks_of_file(readable, self._input_name, self._fmt, self._file_ranks, advance,
                                   self._vendor_options)
        advance(size)

    def teardown(self):
        if self._progress is not None:
            self._progress.close()


class ReadRawChunks(FileInput):
    """File patterns -> RawChunks of one input (payments or settlements)."""

    def expand(self, pbegin):
        # Ranked when the pipeline is built, so every worker orders the files the same way.
        files = expand_patterns(self._patterns, self._fmt)
        file_ranks = {path: rank for rank, path in enumerate(files)}
        total_bytes = sum(metadata.size_in_bytes for metadata in FileSystems.match(files)
                          for metadata in metadata.metadata_list)
        return (
            pbegin
            | "Patterns" >> beam.Create(self._patterns)
            | "MatchFiles" >> fileio.MatchAll()
            | "ReadMatches" >> fileio.ReadMatches()
            # Files are spread over workers; a file's chunks stay with the worker that reads it.
            | "Rebalance" >> beam.Reshuffle()
            | "DecodeFiles" >> beam.ParDo(_DecodeFiles(self._input_name, self._fmt, file_ranks, total_bytes,
                                                       self._vendor_options)).with_output_types(RawChunk)
        )


def shard_file_name(prefix: str, shard: int, shards: int, suffix: str) -> str:
    return f"{prefix}-{shard:05d}-of-{shards:05d}{suffix}"


class _WriteShardFiles(beam.DoFn):
    def __init__(self, prefix: str, shards: int, schema: pa.Schema, to_output, csv: bool):
        self._prefix, self._shards, self._schema = prefix, shards, schema
        self._to_output, self._csv = to_output, csv

    def process(self, shard_table: Tuple[int, pa.Table]):
        shard, table = shard_table
        path = shard_file_name(self._prefix, shard, self._shards, ".csv" if self._csv else ".parquet")
        with FileSystems.create(path) as handle:
            if self._csv:
                write_csv(table, handle)
            else:
                pq.write_table(self._to_output(table).cast(self._schema), handle, compression=PARQUET_COMPRESSION)
        yield path


def write_csv(table: pa.Table, handle) -> None:
    """CSV exactly as pipelines.io.files.WriteCsv writes it (same csv_line), times as epoch millis."""
    columns = [column.cast(pa.int64()) if pa.types.is_timestamp(column.type) else column for column in table.columns]
    handle.write((",".join(table.column_names) + "\n").encode("utf-8"))
    values = [column.to_pylist() for column in columns]
    for start in range(0, table.num_rows, 65_536):
        lines = [csv_line(row) for row in zip(*(column[start:start + 65_536] for column in values))]
        handle.write(("\n".join(lines) + "\n").encode("utf-8"))


class WriteShardFiles(beam.PTransform):
    """(shard, table) pairs -> one `<prefix>-SSSSS-of-NNNNN.parquet` (or .csv) file per shard."""

    def __init__(self, prefix: str, shards: int, schema: pa.Schema, to_output=lambda table: table,
                 csv: bool = False):
        super().__init__()
        self._fn = _WriteShardFiles(prefix, shards, schema, to_output, csv)

    def expand(self, shard_tables):
        return shard_tables | "WriteShard" >> beam.ParDo(self._fn)


class TableFile:
    """One Parquet file written whole by the worker that holds the table (`write`): for a table too large to
    travel as one element (a columnar backtest's decisions)."""

    def __init__(self, path: str, schema: pa.Schema):
        self._path, self._schema = path, schema

    def write(self, table: pa.Table) -> None:
        with FileSystems.create(self._path) as handle:
            pq.write_table(table.cast(self._schema), handle, compression=PARQUET_COMPRESSION)
