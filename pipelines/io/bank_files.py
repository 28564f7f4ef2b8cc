"""Bank statement files in (issue 21): camt.053 and BAI2, told apart per file by content, then extension.

Both engines read statements alike, through Beam's `fileio` (any Beam filesystem; .gz and .bz2 strictly,
as every input: pipelines/io/files.py `open_input`) and the streaming readers of `schemas/bank`. A file
that is no statement, cannot be opened or breaks off is a dead letter of its own (a stray file in a
folder of statements must not fail the night's run); a glob that matches nothing fails the launch.
"""
from __future__ import annotations

from typing import Iterator, List, Sequence

import apache_beam as beam
from apache_beam.io import fileio

from pipelines.io.files import matched_files, records_of_opened
from schemas.bank.entry import BANK_STATEMENTS
from schemas.bank.formats import statement_records
from schemas.records import RawRecord


def expand_bank_patterns(patterns: Sequence[str]) -> List[str]:
    """The files the patterns match, sorted; raises InputError for a pattern matching nothing (a statement's
    format is judged per file, as it is read)."""
    return sorted({path for pattern in patterns for path in matched_files(pattern)})


def bank_records_of_file(readable: fileio.ReadableFile) -> Iterator[RawRecord]:
    """A statement file's RawRecords: one per entry, problem records as decode errors."""
    return records_of_opened(readable, BANK_STATEMENTS, statement_records)


class ReadBankStatements(beam.PTransform):
    """File patterns -> the RawRecords of every bank statement they match (input `bank_statements`)."""

    def __init__(self, patterns: Sequence[str]):
        super().__init__()
        self._patterns = list(patterns)

    def expand(self, pbegin):
        return (
            pbegin
            | "Patterns" >> beam.Create(self._patterns)
            | "MatchFiles" >> fileio.MatchAll()
            | "ReadMatches" >> fileio.ReadMatches()
            | "DecodeFiles" >> beam.FlatMap(bank_records_of_file)
        )
