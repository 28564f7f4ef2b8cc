"""File IO composites: historical payment files in, result files out.

Reading goes through Beam's `fileio` (MatchFiles/ReadMatches: any Beam
filesystem, compression by extension) and decodes each file with the
`schemas.codecs` readers. Beam's ReadFromAvro/ReadFromParquet would fail the
whole pipeline on one truncated file; these readers turn bad content into
dead letters instead, which the data contract requires.
"""
from __future__ import annotations

import bz2
import contextlib
import csv
import gzip
import io
import json
from typing import IO, Callable, Iterable, Iterator, List, Optional, Sequence

import apache_beam as beam
import pyarrow as pa
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from schemas.codecs import detect_format, payload_json, read_records
from schemas.errors import UserError
from schemas.records import RawRecord
from schemas.vendors import DEFAULT_VENDOR_OPTIONS, VendorOptions


class InputError(UserError):
    """An input the user named that cannot be read (no match, unknown format)."""


def matched_files(pattern: str) -> List[str]:
    """The files one pattern matches, sorted; raises InputError when it matches nothing or cannot be listed."""
    try:
        matches = FileSystems.match([pattern])[0].metadata_list
    except Exception as error:  # Beam raises BeamIOError / IOError flavours per filesystem
        raise InputError(f"cannot list {pattern!r}: {error}") from None
    files = sorted(m.path for m in matches if not m.path.endswith("/"))
    if not files:
        raise InputError(f"no files match {pattern!r}")
    return files


def expand_patterns(patterns: Sequence[str], fmt: Optional[str] = None) -> List[str]:
    """The files the patterns match, sorted; raises InputError for a pattern matching nothing."""
    paths: List[str] = []
    for pattern in patterns:
        files = matched_files(pattern)
        for path in files:
            try:
                detect_format(path, fmt)
            except ValueError as error:
                raise InputError(str(error)) from None
        paths.extend(files)
    return sorted(set(paths))


@contextlib.contextmanager
def open_input(readable: fileio.ReadableFile) -> Iterator[IO[bytes]]:
    """A matched file's bytes, decompressed by extension.

    gzip and bzip2 through Python's own readers, which raise at a truncated
    end (EOFError) where Beam's CompressedFile would just stop; anything else
    through Beam (AUTO).
    """
    path = readable.metadata.path.lower()
    strict = gzip.GzipFile if path.endswith(".gz") else _bz2_file if path.endswith(".bz2") else None
    if strict is None:
        with readable.open(compression_type=CompressionTypes.AUTO) as handle:
            yield handle
        return
    with readable.open(compression_type=CompressionTypes.UNCOMPRESSED) as raw, strict(fileobj=raw, mode="rb") as handle:
        yield handle


def _bz2_file(fileobj, mode: str) -> bz2.BZ2File:
    return bz2.BZ2File(fileobj, mode=mode)


def records_of_file(readable: fileio.ReadableFile, input_name: str, fmt: Optional[str],
                     vendor_options: VendorOptions = DEFAULT_VENDOR_OPTIONS) -> Iterator[RawRecord]:
    file_format = detect_format(readable.metadata.path, fmt)
    yield from records_of_opened(readable, input_name, lambda handle, path: read_records(
        handle, path, file_format, input_name, vendor_options))


def records_of_opened(readable: fileio.ReadableFile, input_name: str,
                      read: Callable[[IO[bytes], str], Iterator[RawRecord]]) -> Iterator[RawRecord]:
    """`read(handle, path)` over a matched file's decompressed bytes, or the dead letter of a file that
    cannot be opened."""
    path = readable.metadata.path
    with contextlib.ExitStack() as stack:
        try:
            handle = stack.enter_context(open_input(readable))
        except Exception as error:
            yield unreadable_file(input_name, path, error)
            return
        yield from read(handle, path)


def unreadable_file(input_name: str, path: str, error: Exception) -> RawRecord:
    """The decode dead letter of a file that cannot be opened (both engines' readers)."""
    return RawRecord(input_name, path, None, f"<unreadable file {path}>", f"cannot open file: {error}")


class FileInput(beam.PTransform):
    """The files of one input (payments or settlements): glob patterns and an optional format."""

    def __init__(self, input_name: str, patterns: Sequence[str], fmt: Optional[str] = None,
                 vendor_options: VendorOptions = DEFAULT_VENDOR_OPTIONS):
        super().__init__()
        self._input_name = input_name
        self._patterns = list(patterns)
        self._fmt = fmt
        self._vendor_options = vendor_options


class ReadRawRecords(FileInput):
    """File patterns -> RawRecords of one input (payments or settlements)."""

    def expand(self, pbegin):
        return (
            pbegin
            | "Patterns" >> beam.Create(self._patterns)
            | "MatchFiles" >> fileio.MatchAll()
            | "ReadMatches" >> fileio.ReadMatches()
            | "DecodeFiles" >> beam.FlatMap(records_of_file, self._input_name, self._fmt, self._vendor_options)
            # One file decodes in one worker; spread its records before the heavy work.
            | "Rebalance" >> beam.Reshuffle()
        )


def record_dict(record) -> dict:
    return record._asdict()


class WriteParquet(beam.PTransform):
    """NamedTuple records -> Parquet files `<prefix>-SSSSS-of-NNNNN.parquet`."""

    def __init__(self, file_path_prefix: str, schema: pa.Schema, num_shards: int = 0):
        super().__init__()
        self._prefix = file_path_prefix
        self._schema = schema
        self._num_shards = num_shards

    def expand(self, records):
        return (
            records
            | "ToDicts" >> beam.Map(record_dict)
            | "WriteToParquet" >> beam.io.WriteToParquet(
                self._prefix, self._schema, file_name_suffix=".parquet", num_shards=self._num_shards,
                codec="snappy")
        )


class WriteJsonLines(beam.PTransform):
    """NamedTuple records -> JSON Lines files."""

    def __init__(self, file_path_prefix: str, num_shards: int = 0):
        super().__init__()
        self._prefix = file_path_prefix
        self._num_shards = num_shards

    def expand(self, records):
        return (
            records
            | "ToJson" >> beam.Map(lambda record: payload_json(record._asdict()))
            | "WriteToText" >> beam.io.WriteToText(self._prefix, file_name_suffix=".jsonl",
                                                    num_shards=self._num_shards)
        )


def csv_line(values: Iterable) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(["" if v is None else v for v in values])
    return buffer.getvalue()


class WriteCsv(beam.PTransform):
    """NamedTuple records -> CSV files with a header (times as epoch millis, like the Parquet columns)."""

    def __init__(self, file_path_prefix: str, fields: Sequence[str], num_shards: int = 0):
        super().__init__()
        self._prefix = file_path_prefix
        self._fields = list(fields)
        self._num_shards = num_shards

    def expand(self, records):
        return (
            records
            | "ToCsv" >> beam.Map(csv_line)
            | "WriteToText" >> beam.io.WriteToText(self._prefix, file_name_suffix=".csv",
                                                    header=",".join(self._fields), num_shards=self._num_shards)
        )


class WriteCounts(beam.PTransform):
    """(name, count) pairs -> one JSON object file, read back by the CLI for run.json."""

    def __init__(self, path_prefix: str):
        super().__init__()
        self._prefix = path_prefix

    def expand(self, counts):
        return (
            counts
            | "AsList" >> beam.combiners.ToList()
            | "ToJson" >> beam.Map(lambda pairs: json.dumps(dict(sorted(pairs))))
            | "Write" >> beam.io.WriteToText(self._prefix, file_name_suffix=".json", num_shards=1,
                                              shard_name_template="")
        )
