"""Bank statements -> canonical bank entries (issue 21, docs/DESIGN.md 3.7): the third leg of reconciliation.

`read_camt053` (ISO 20022 camt.053, any .001.NN version, streaming and with XML attacks refused) and
`read_bai2` (BAI2 with its control totals checked) yield one `RawRecord` of input `bank_statements` per
entry, its fields a `BankEntry` as a dict, or a problem record with the reason; `detect_bank_format` tells
the two apart and `read_bank_statement` reads either. Pure Python: the pipeline wiring lives above.
"""
from schemas.bank.bai2 import read_bai2
from schemas.bank.camt053 import read_camt053
from schemas.bank.entry import BAI2, BANK_ENTRY_FIELDS, BANK_STATEMENTS, CAMT053, BankEntry
from schemas.bank.formats import BANK_FORMATS, BankFormatError, detect_bank_format, read_bank_statement

__all__ = [
    "BAI2",
    "BANK_ENTRY_FIELDS",
    "BANK_FORMATS",
    "BANK_STATEMENTS",
    "CAMT053",
    "BankEntry",
    "BankFormatError",
    "detect_bank_format",
    "read_bai2",
    "read_bank_statement",
    "read_camt053",
]
