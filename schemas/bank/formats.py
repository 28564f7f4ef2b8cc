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
from typing import BinaryIO, Iterator, Union

from schemas.bank.bai2 import read_bai2
from schemas.bank.camt053 import read_camt053
from schemas.bank.entry import BAI2, CAMT053
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
