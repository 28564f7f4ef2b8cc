"""Format readers on compressed files, as Beam's fileio hands them over."""
from __future__ import annotations

import gzip

import pytest
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from schemas.codecs import detect_format, read_records
from schemas.records import PAYMENTS

HEADER = "event_id,payment_id,event_type,processor,processor_reference,merchant_id,amount_minor,currency,event_time\n"
ROWS = ['e1,p1,CAPTURED,stripe,ch_1,m_1,1000,USD,2026-01-05T10:00:00Z\n',
        'e2,p2,CAPTURED,stripe,"ch_2, quoted",m_1,2000,EUR,2026-01-05T11:00:00Z\n']
JSONL = ['{"event_id": "e1", "amount_minor": 1000}\n', '{"event_id": "e2", "amount_minor": 2000}\n']


@pytest.mark.parametrize("name, lines", [("payments.csv.gz", [HEADER, *ROWS]), ("payments.jsonl.gz", JSONL)])
def test_gzip_inputs_decode_like_plain_ones(tmp_path, name, lines):
    path = str(tmp_path / name)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(lines)
    with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as handle:
        records = list(read_records(handle, path, detect_format(path), PAYMENTS))
    assert [r.decode_error for r in records] == [None, None]
    assert [r.fields["event_id"] for r in records] == ["e1", "e2"]
    if name.endswith(".csv.gz"):
        assert records[1].fields["processor_reference"] == "ch_2, quoted"
        assert records[1].source.endswith(":3")
