"""Which bank-statement format a file is in (by its content first, its extension second), and reading it.

Content: a file whose first characters (after a byte-order mark and white space) open XML is camt.053 (the
camt.053 reader refuses, as one problem record, an XML document of another kind, so one stray file in a
folder of statements is a dead letter, not a failed run); one whose first record starts with "01," is BAI2.
Extension, for a head that says neither: .xml is camt.053, .bai2 and .bai are BAI2 (a .gz or .bz2 suffix
is looked through: the caller hands over the decompressed head). Anything else is a `BankFormatError`.
"""
from __future__ import annotations

import codecs
import io
import os
from typing import IO, BinaryIO, Iterator, Union

from schemas.bank.bai2 import read_bai2
from schemas.bank.camt053 import read_camt053
from schemas.bank.entry import BAI2, BANK_STATEMENTS, CAMT053, STATEMENT_DOCUMENT
from schemas.codecs import stream_error
from schemas.errors import UserError
from schemas.records import RawRecord

BANK_FORMATS = (CAMT053, BAI2)
EXTENSIONS = {".xml": CAMT053, ".bai2": BAI2, ".bai": BAI2}
COMPRESSION_SUFFIXES = (".gz", ".bz2")
HEAD_BYTES = 4096  # enough for a BOM, an XML declaration and comments, or a 01 record


class BankFormatError(UserError):
    """A file that is neither a camt.053 nor a BAI2 statement, by content or by extension."""


def _head_text(head: bytes) -> str:
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
                          (codecs.BOM_UTF16_BE, "utf-16-be")):
        if head.startswith(bom):
            return head[len(bom):].decode(encoding, errors="ignore").lstrip()
    return head.decode("latin-1").lstrip()


def _extension(path: str) -> str:
    name = os.path.basename(path).lower()
    for suffix in COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            name = name[:-len(suffix)]
    return os.path.splitext(name)[1]


def detect_bank_format(path: str, head: bytes) -> str:
    """"camt053" or "bai2" for a file whose first bytes are `head`; BankFormatError for anything else."""
    text = _head_text(head)
    if text.startswith("<"):
        return CAMT053
    if text.startswith("01,"):
        return BAI2
    extension = _extension(path)
    if extension in EXTENSIONS:
        return EXTENSIONS[extension]
    raise BankFormatError(f"{path} is not a bank statement paybeam reads: its content is neither XML (camt.053) "
                          f"nor BAI2 (a first record '01,'), and its extension ({extension or 'none'}) names "
                          f"neither ({', '.join(sorted(EXTENSIONS))})")


def read_bank_statement(source: Union[bytes, BinaryIO], path: str) -> Iterator[RawRecord]:
    """The entries of a statement in either format: bytes, or a binary file object (camt.053 is then read in
    chunks; BAI2 is read whole, since its trailers decide on every entry)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if detect_bank_format(path, data[:HEAD_BYTES]) == CAMT053:
            return read_camt053(data, path)
        return read_bai2(data, path)
    head = source.read(HEAD_BYTES)
    if detect_bank_format(path, head) == BAI2:
        return read_bai2(head + source.read(), path)
    return read_camt053(_Rewound(head, source), path)


class _Rewound(io.RawIOBase):
    """A stream whose first bytes were read already (to tell its format): they come first again."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            size = min(len(buffer), len(self._head))
            buffer[:size], self._head = self._head[:size], self._head[size:]
            return size
        data = self._rest.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def bank_records_of_message(message: RawRecord) -> Iterator[RawRecord]:
    """A bank-statements topic's message (one whole statement document: schemas/kafka_values.py) -> the
    RawRecords of its entries, sourced `<topic>/<partition>@<offset>#<n>` (camt.053) or `...:<line>` (BAI2);
    a message that is no statement is one problem record, as a stray file is."""
    return statement_records(io.BytesIO(message.fields[STATEMENT_DOCUMENT]), message.source)


def statement_records(handle: IO[bytes], path: str) -> Iterator[RawRecord]:
    """An open statement's RawRecords: one per entry; a file or message that is no statement, or whose bytes
    stop making sense, is one problem record after the entries read before it."""
    read = 0
    try:
        for record in read_bank_statement(handle, path):
            read += 1
            yield record
    except BankFormatError as error:
        yield RawRecord(BANK_STATEMENTS, path, None, f"<file {path}>", str(error))
    except Exception as error:  # zlib/gzip/bz2/OS errors: the file's bytes, not an entry
        yield stream_error(BANK_STATEMENTS, path, read, error)
