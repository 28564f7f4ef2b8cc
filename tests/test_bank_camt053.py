"""schemas/bank/camt053.py: camt.053 statements -> canonical bank entries (issue 21, docs/DESIGN.md 3.7).

The real published samples in ../shared/samples/bank/ (read from there, never copied; SOURCES.md says
where each comes from) are read without loss: every entry, debits included, exact amounts. The
expectations below were written by reading the XML by hand (and SOURCES.md's golden amounts for the OCA
files), not taken from the reader. Then hostile input: cuts, bombs, external entities, wrong namespaces,
amounts with too many decimals, oversized and deeply nested entries, fuzzed bytes.
"""
from __future__ import annotations

import io
import itertools
import re
import time
import tracemalloc
from typing import List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.bank import BANK_ENTRY_FIELDS, BANK_STATEMENTS, read_camt053
from schemas.bank.camt053 import MAX_DEPTH, MAX_ENTRY_ELEMENTS
from schemas.codecs import is_truncation
from schemas.records import RawRecord
from tests.bank_helpers import SAMPLES, good, problems, sample, totals

# Names, addresses and the bank's free text in the samples: none may reach fields or raw payloads.
PERSONAL_DATA = ("Example company", "INSURANCE COMPANY TESTX", "TEST STREET 20", "Test Customer", "3rd party Media",
                 "SOMESTREET", "MKB Insurance", "#RD PARTY MEDIA", "Bedrijf BV", "Batelier", "32 rue Gallieni",
                 "EPFL", "Générale des Etudiants", "Banque Cantonale Vaudoise", "Saint-François", "Open Net",
                 "Robert Schneider", "Hans Kaufmann", "Rutschmann", "RUTSCHMANN", "Marktgasse", "Jon Doe",
                 "Hofstrasse", "Finanz AG", "DHL Express", "ACME GmbH", "CH4409000000495962779",
                 "NL46ABNA0499998748", "NL69ABNA0522123643")


def read(name: str) -> List[RawRecord]:
    return list(read_camt053(sample(name), name))


def entry(**fields) -> dict:
    """A full expected entry: the fields every camt.053 sample entry here shares, then the given ones."""
    base = {"statement_format": "camt053", "status": "BOOK", "reversal": False, "bank_reference": None,
            "end_to_end_id": None, "customer_reference": None, "remittance_unstructured": None,
            "remittance_structured": None, "original_amount_minor": None, "original_currency": None}
    return {**base, **fields}


# ------------------------------------------------------------------------------------- the real samples

# file -> (records, {(currency, direction): (entries, sum of minor units)}), counted by hand
SAMPLE_TOTALS = {
    # SOURCES.md golden: -754.25, -564.05, -100.00, +1405.31 (the reversal entry is a batch of two)
    "camt053_v02_oca_reversal_batch.xml": (4, {("EUR", "DBIT"): (3, 141830), ("EUR", "CRDT"): (1, 140531)}),
    # TxsSummry says 35 entries: the fixture keeps 3 of them; the first is a batch without TxDtls
    "camt053_v02_viafintech_ing_batch.xml": (3, {("EUR", "DBIT"): (1, 475374), ("EUR", "CRDT"): (2, 768800)}),
    # golden: -579.21 CHF (amount_currency -522.39 EUR), +134.00
    "camt053_v04_oca_multi_currency.xml": (2, {("CHF", "DBIT"): (1, 57921), ("CHF", "CRDT"): (1, 13400)}),
    "camt053_v04_oca_no_entries.xml": (0, {}),
    # golden: +2187.00, +1296.00 (one entry of 3483.00, two TxDtls with the same AcctSvcrRef)
    "camt053_v04_oca_txdtls_same_ref.xml": (2, {("CHF", "CRDT"): (2, 348300)}),
    # 13 entries: six charges, batches of 10, 8, 3 and 2 transaction details, three single ones
    "camt053_v04_viafintech_postfinance.xml": (32, {("CHF", "DBIT"): (8, 127295), ("CHF", "CRDT"): (24, 181056)}),
    # the third entry is booked in EUR on a CHF account, instructed as 19.69 CHF
    "camt053_v08_viafintech_ubs.xml": (3, {("CHF", "CRDT"): (2, 56325), ("EUR", "DBIT"): (1, 2097)}),
}


def test_every_sample_is_listed():
    assert sorted(path.name for path in SAMPLES.glob("*.xml")) == sorted(SAMPLE_TOTALS)


@pytest.mark.parametrize("name", sorted(SAMPLE_TOTALS))
def test_sample_reads_every_entry_without_rejection(name):
    records = read(name)
    count, sums = SAMPLE_TOTALS[name]
    assert problems(records) == []
    assert len(records) == count
    assert totals(good(records)) == sums
    assert [record.source for record in records] == [f"{name}#{number}" for number in range(1, count + 1)]
    for record in records:
        assert record.input == BANK_STATEMENTS and record.decode_error is None
        assert tuple(record.fields) == BANK_ENTRY_FIELDS
        assert type(record.fields["amount_minor"]) is int and record.fields["amount_minor"] > 0
        assert record.raw_payload.startswith("<Ntry>")
    assert len({record.fields["entry_ref"] for record in records}) == count


def test_postfinance_entries_explain_its_balances():
    # OPBD 322152.16 + credits - debits = CLBD 322689.77: no entry lost, none read twice
    sums = totals(good(read("camt053_v04_viafintech_postfinance.xml")))
    assert 32215216 + sums[("CHF", "CRDT")][1] - sums[("CHF", "DBIT")][1] == 32268977


def test_oca_reversal_batch_fields():
    entries = good(read("camt053_v02_oca_reversal_batch.xml"))
    common = {"statement_id": "1234Test/1", "account": "NL77ABNA0574908765", "account_currency": "EUR",
              "currency": "EUR", "booking_date": "2014-01-05", "value_date": "2014-01-05"}
    assert entries[0] == entry(**common, entry_ref="1234Test/1/1", credit_debit="DBIT", amount_minor=75425,
                               end_to_end_id="435005714488-ABNO33052620",
                               customer_reference="INNDNL2U20141231000142300002844",
                               remittance_unstructured="Insurance policy 857239PERIOD 01.01.2014 - 31.12.2014",
                               bank_transaction_code="PMNT/RDDT/ESDD")
    assert entries[1] == entry(**common, entry_ref="1234Test/1/2/1", credit_debit="DBIT", amount_minor=56405,
                               reversal=True, end_to_end_id="TESTBANK/NL/20141229/01206408",
                               customer_reference="TESTBANK/NL/20141229/01206408",
                               remittance_unstructured="Direct Debit S14 0410", bank_transaction_code="PMNT/IDDT/UPDD")
    assert entries[2]["entry_ref"] == "1234Test/1/2/2" and entries[2]["amount_minor"] == 10000
    assert entries[2]["reversal"] is True and entries[2]["end_to_end_id"] == "TESTBANK/NL/20141229/01206407"
    assert entries[3] == entry(**common, entry_ref="1234Test/1/3", credit_debit="CRDT", amount_minor=140531,
                               end_to_end_id="115", customer_reference="INNDNL2U20140105000217200000708",
                               bank_transaction_code="PMNT/RCDT/ESCT")


def test_ing_batch_fields():
    entries = good(read("camt053_v02_viafintech_ing_batch.xml"))
    common = {"statement_id": "2019062434566666666666666", "account": "NL18INGB00012345678",
              "account_currency": "EUR", "currency": "EUR", "bank_transaction_code": "PMNT/ICDT/ESCT"}
    # a batch of 3 without transaction details is one entry, of the booked amount; a bank reference
    # with a Luhn-valid window (5555555502010) is no card number: it is kept as the bank wrote it
    assert entries[0] == entry(**common, entry_ref="2019062434566666666666666/1", credit_debit="DBIT",
                               amount_minor=475374, booking_date="2019-05-21", value_date="2019-05-21",
                               bank_reference="68047a4871ab34285b5555555502010c")
    # one TxDtls without an amount: the entry's amount
    assert entries[1] == entry(**{**common, "bank_transaction_code": "PMNT/RCDT/ESCT"},
                               entry_ref="2019062434566666666666666/2", credit_debit="CRDT", amount_minor=268800,
                               booking_date="2019-06-13", value_date="2019-06-13",
                               bank_reference="s8ecaaf0f96f492f603167c748a0b1c6",
                               end_to_end_id="GBSXX21170607391766562", remittance_unstructured="TERUGGAAF")
    assert (entries[2]["amount_minor"], entries[2]["booking_date"], entries[2]["end_to_end_id"]) == \
        (500000, "2019-06-18", None)


def test_oca_multi_currency_keeps_the_booked_side_and_the_original():
    entries = good(read("camt053_v04_oca_multi_currency.xml"))
    common = {"statement_id": "47608f88362e485da1eaaa654ab4f84b", "account": "CH1904835028789771000",
              "account_currency": "CHF", "currency": "CHF", "booking_date": "2021-09-14", "value_date": "2021-09-14"}
    assert entries[0] == entry(**common, entry_ref="47608f88362e485da1eaaa654ab4f84b/1", credit_debit="DBIT",
                               amount_minor=57921, original_amount_minor=52239, original_currency="EUR",
                               bank_reference="DNXK-210913-CS-36481", end_to_end_id="SP-98803960-0",
                               customer_reference="DNCS-20210913-IXN0-TXN0", remittance_unstructured="Devis DEV-01387",
                               bank_transaction_code="PMNT/ICDT/ESCT")
    assert entries[1] == entry(**common, entry_ref="47608f88362e485da1eaaa654ab4f84b/2", credit_debit="CRDT",
                               amount_minor=13400, bank_reference="80XM-210914-CS-02210", end_to_end_id="1050079910",
                               customer_reference="13SR-210914-MS-63566",
                               remittance_unstructured="/INV/09.2021/01 7.9.2021", bank_transaction_code="PMNT/RCDT/DMCT")


def test_oca_txdtls_same_reference_is_two_entries():
    entries = good(read("camt053_v04_oca_txdtls_same_ref.xml"))
    common = {"statement_id": "20170323123456789012345", "account": "CH1111000000123456789",
              "account_currency": "CHF", "currency": "CHF", "credit_debit": "CRDT", "booking_date": "2017-03-22",
              "value_date": "2017-03-23", "bank_reference": "123456CHCAFEBABE",
              "customer_reference": "123456CHCAFEBABE", "bank_transaction_code": "PMNT/RCDT/AUTT"}
    assert entries == [
        entry(**common, entry_ref="20170323123456789012345/1/1", amount_minor=218700,
              remittance_structured="302388292000011111111111111 ?REJECT?0"),
        entry(**common, entry_ref="20170323123456789012345/1/2", amount_minor=129600,
              remittance_structured="302388292000022222222222222 ?REJECT?0"),
    ]


def test_postfinance_fields():
    entries = good(read("camt053_v04_viafintech_postfinance.xml"))
    common = {"statement_id": "20160430375204000008574", "account": "CH0309000000250090342",
              "account_currency": "CHF", "currency": "CHF"}
    # the account's IBAN holds a Luhn-valid digit run: an account is never masked
    assert entries[0] == entry(**common, entry_ref="20160430375204000008574/1", credit_debit="DBIT",
                               amount_minor=2400, booking_date="2016-04-30", value_date="2016-04-30",
                               bank_reference="20160401001027080060699001000107", bank_transaction_code="ACMT/ADOP/CHRG")
    assert entries[6] == entry(**common, entry_ref="20160430375204000008574/7/1", credit_debit="CRDT",
                               amount_minor=10000, booking_date="2016-05-27", value_date="2016-05-30",
                               bank_reference="160527CH00T3L0GE", customer_reference="20160526531801000100274",
                               remittance_structured="CreditorReference ?REJECT?0",
                               bank_transaction_code="PMNT/CNTR/CDPT")
    assert [item["amount_minor"] for item in entries[6:16]] == [10000, 5000, 20000, 5000, 10000, 20000, 5000, 10000,
                                                                5000, 10000]
    assert entries[18]["remittance_unstructured"] == \
        "MUSTER MITTEILUNG 1 MUSTER MITTEILUNG 2 MUSTER MITTEILUNG 3 MUSTER MITTEILUNG 4"
    assert [item["entry_ref"] for item in entries[24:27]] == [f"20160430375204000008574/9/{index}" for index in (1, 2, 3)]
    assert (entries[24]["booking_date"], entries[24]["value_date"]) == ("2016-04-06", "2016-03-23")
    # the last: a reversed direct debit; its InstrId holds a Luhn-valid window and is kept as written
    assert entries[31] == entry(**common, entry_ref="20160430375204000008574/13", credit_debit="DBIT",
                                amount_minor=1553, booking_date="2016-04-10", value_date="2016-04-10", reversal=True,
                                bank_reference="TST_205-28529-1", end_to_end_id="E2E-1-1-16030913",
                                customer_reference="IID-1-1-160309134053s4C", remittance_unstructured="Mitteilung 134-",
                                bank_transaction_code="PMNT/RDDT/PRDD")


def test_ubs_v08_fields():
    entries = good(read("camt053_v08_viafintech_ubs.xml"))
    common = {"statement_id": "R30B4SA880HMZ9XA", "account": "CH1111111111111111111", "account_currency": "CHF",
              "booking_date": "2023-06-20", "value_date": "2023-06-20"}
    assert entries[0] == entry(**common, entry_ref="R30B4SA880HMZ9XA/1", credit_debit="CRDT", amount_minor=47440,
                               currency="CHF", bank_reference="9999181ZC0283079", end_to_end_id="80000004540000100095",
                               remittance_unstructured="INVOICE R77561", bank_transaction_code="PMNT/RCDT/AUTT")
    assert entries[1] == entry(**common, entry_ref="R30B4SA880HMZ9XA/2", credit_debit="CRDT", amount_minor=8885,
                               currency="CHF", bank_reference="0123171DO5126811",
                               end_to_end_id="435A9287E088BDB1D97FAABD181C70C8",
                               remittance_structured="RF38000000000000000000552", bank_transaction_code="PMNT/RCDT/VCOM")
    assert entries[2] == entry(**common, entry_ref="R30B4SA880HMZ9XA/3", credit_debit="DBIT", amount_minor=2097,
                               currency="EUR", original_amount_minor=1969, original_currency="CHF",
                               bank_reference="0123171DN6095310", end_to_end_id="1208481",
                               customer_reference="373502949-1208481",
                               remittance_structured="000000270148751802165444888", bank_transaction_code="PMNT/ICDT/AUTT")


@pytest.mark.parametrize("name", sorted(SAMPLE_TOTALS))
def test_no_personal_data_reaches_fields_or_raw_payloads(name):
    for record in read(name):
        shown = repr(record.fields) + record.raw_payload
        assert [text for text in PERSONAL_DATA if text in shown] == []


def test_raw_payloads_are_masked():
    # the samples' raw text holds Luhn-valid windows; raw payloads never do
    records = read("camt053_v04_viafintech_postfinance.xml")
    assert "IID-1-1-1603****4053s4C" in records[31].raw_payload
    assert "IID-1-1-160309134053s4C" not in records[31].raw_payload


def test_a_file_object_is_read_in_chunks_like_bytes():
    name = "camt053_v04_viafintech_postfinance.xml"
    with open(SAMPLES / name, "rb") as stream:
        assert list(read_camt053(stream, name)) == read(name)


@pytest.mark.parametrize("version", ["02", "04", "08", "10", "13"])
def test_any_camt053_namespace_version_is_read(version):
    data = sample("camt053_v08_viafintech_ubs.xml").replace(b"camt.053.001.08", f"camt.053.001.{version}".encode())
    assert good(list(read_camt053(data, "s.xml"))) == good(read("camt053_v08_viafintech_ubs.xml"))


# ---------------------------------------------------------------------------------------- synthetic files

NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"


def statement(*entries: str, namespace: str = NAMESPACE, account: str = "<Acct><Id><IBAN>DE89370400440532013000</IBAN>"
              "</Id><Ccy>EUR</Ccy></Acct>") -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><Document xmlns="{namespace}"><BkToCstmrStmt><GrpHdr><MsgId>M'
            f'</MsgId></GrpHdr><Stmt><Id>S1</Id>{account}{"".join(entries)}</Stmt></BkToCstmrStmt></Document>').encode()


def ntry(amount: str = "10.00", currency: str = "EUR", direction: str = "CRDT", details: str = "",
         status: str = "<Sts><Cd>BOOK</Cd></Sts>", booking: str = "<BookgDt><Dt>2024-01-02</Dt></BookgDt>") -> str:
    return (f'<Ntry><Amt Ccy="{currency}">{amount}</Amt><CdtDbtInd>{direction}</CdtDbtInd>{status}{booking}'
            f'<ValDt><Dt>2024-01-03</Dt></ValDt><AcctSvcrRef>BANKREF</AcctSvcrRef>{details}</Ntry>')


def tx(amount: str = "", currency: str = "EUR", end_to_end: str = "E2E", remittance: str = "") -> str:
    amount_xml = f'<Amt Ccy="{currency}">{amount}</Amt>' if amount else ""
    remittance_xml = f"<RmtInf><Ustrd>{remittance}</Ustrd></RmtInf>" if remittance else ""
    return f"<TxDtls><Refs><EndToEndId>{end_to_end}</EndToEndId></Refs>{amount_xml}{remittance_xml}</TxDtls>"


def batch(*transactions: str) -> str:
    return f"<NtryDtls><Btch><NbOfTxs>{len(transactions)}</NbOfTxs></Btch>{''.join(transactions)}</NtryDtls>"


def read_bytes(data: bytes) -> List[RawRecord]:
    return list(read_camt053(data, "s.xml"))


def test_a_synthetic_statement_reads():
    records = read_bytes(statement(ntry("12.30", details=batch(tx(end_to_end="po_1Abc", remittance="STRIPE PAYOUT"))),
                                   ntry("5", "JPY", "DBIT"), ntry("1.234", "KWD")))
    assert problems(records) == []
    first, second, third = good(records)
    assert (first["amount_minor"], first["currency"], first["end_to_end_id"], first["remittance_unstructured"],
            first["bank_reference"], first["entry_ref"]) == (1230, "EUR", "po_1Abc", "STRIPE PAYOUT", "BANKREF", "S1/1")
    assert (second["amount_minor"], second["currency"], second["credit_debit"]) == (5, "JPY", "DBIT")
    assert (third["amount_minor"], third["currency"]) == (1234, "KWD")


@pytest.mark.parametrize("amount, currency", [("12.345", "EUR"), ("100.5", "JPY"), ("1.0001", "KWD"),
                                              ("0.001", "USD"), ("1.00000000000000000000000000001", "EUR")])
def test_an_amount_with_more_decimals_than_its_currency_is_rejected_never_rounded(amount, currency):
    records = read_bytes(statement(ntry("1.00"), ntry(amount, currency), ntry("2.00")))
    assert [record.fields is None for record in records] == [False, True, False]
    assert f"more decimal places than {currency} allows" in records[1].decode_error
    assert amount not in records[1].decode_error  # a reason never echoes the value


@pytest.mark.parametrize("amount, expected", [("12.340", 1234), ("+7", 700), ("0.5", 50), (".5", 50), ("7.", 700)])
def test_trailing_zeros_and_xs_decimal_forms_are_exact(amount, expected):
    assert good(read_bytes(statement(ntry(amount))))[0]["amount_minor"] == expected


@pytest.mark.parametrize("amount, currency, direction, why", [
    ("-1.00", "EUR", "CRDT", "negative"),
    ("1e3", "EUR", "CRDT", "not a decimal number"),
    ("", "EUR", "CRDT", "missing"),
    ("1.00", "EUX", "CRDT", "ISO 4217"),
    ("1.00", "EUR", "CRED", "CRDT or DBIT"),
    ("10000000000000.01", "EUR", "CRDT", "out of range"),
])
def test_a_bad_entry_is_rejected_alone(amount, currency, direction, why):
    records = read_bytes(statement(ntry(), ntry(amount, currency, direction), ntry()))
    assert [record.fields is None for record in records] == [False, True, False]
    assert why in records[1].decode_error and "\n" not in records[1].decode_error
    assert records[1].raw_payload.startswith("<Ntry>")


def test_a_booked_entry_needs_a_booking_date_a_pending_one_does_not():
    records = read_bytes(statement(ntry(booking=""), ntry(status="<Sts>PDNG</Sts>", booking="")))
    assert "booking date" in records[0].decode_error
    assert (records[1].fields["status"], records[1].fields["booking_date"]) == ("PDNG", None)


def test_booking_date_from_a_date_time_as_written():
    records = read_bytes(statement(ntry(booking="<BookgDt><DtTm>2024-02-29T23:30:00-05:00</DtTm></BookgDt>")))
    assert records[0].fields["booking_date"] == "2024-02-29"


def test_a_batch_entry_gives_one_record_per_transaction_detail_and_rejects_each_bad_one_alone():
    records = read_bytes(statement(ntry("6.00", details=batch(tx("1.00"), tx(), tx("2.00", "USD"), tx("3.00")))))
    assert len(records) == 4
    assert [record.fields and record.fields["amount_minor"] for record in records] == [100, None, None, 300]
    assert "carries no amount" in records[1].decode_error
    assert "no amount in the entry's currency EUR" in records[2].decode_error
    assert records[3].fields["entry_ref"] == "S1/1/4"


def test_a_bad_entry_header_rejects_every_transaction_detail_of_its_batch():
    records = read_bytes(statement(ntry("6.001", details=batch(tx("1.00"), tx("2.00"), tx("3.00"))), ntry()))
    assert [record.fields is None for record in records] == [True, True, True, False]


def test_a_statement_without_an_account_rejects_its_entries():
    records = read_bytes(statement(ntry(), ntry(), account=""))
    assert len(records) == 2 and all("names no account" in record.decode_error for record in records)


def test_not_provided_end_to_end_id_is_none():
    assert good(read_bytes(statement(ntry(details=batch(tx(end_to_end="NOTPROVIDED"))))))[0]["end_to_end_id"] is None


def test_a_card_number_in_remittance_text_is_masked_in_fields_and_raw_payload():
    records = read_bytes(statement(ntry(details=batch(tx(remittance="card 4111 1111 1111 1111 refund")))))
    assert records[0].fields["remittance_unstructured"] == "card 4111 11** **** 1111 refund"
    assert "4111 1111 1111 1111" not in records[0].raw_payload


def test_a_reference_that_is_a_card_number_is_masked():
    records = read_bytes(statement(ntry(details=batch(tx(end_to_end="4111111111111111")))))
    assert records[0].fields["end_to_end_id"] == "411111******1111"


# ------------------------------------------------------------------------------------------- hostile files

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt><Stmt><Id>&lol9;</Id>
</Stmt></BkToCstmrStmt></Document>"""


def test_a_billion_laughs_file_is_one_problem_record_at_once():
    started = time.monotonic()
    records = read_bytes(BILLION_LAUGHS)
    assert time.monotonic() - started < 5  # expanded, it would be 10^9 "lol"s: gigabytes and minutes
    assert len(records) == 1 and records[0].fields is None
    assert "DTD" in records[0].decode_error and "entity" in records[0].decode_error


def test_an_external_entity_is_never_resolved(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    data = (f'<?xml version="1.0"?><!DOCTYPE Document [<!ENTITY xxe SYSTEM "file://{secret}">]>'
            f'<Document xmlns="{NAMESPACE}"><BkToCstmrStmt><Stmt><Id>&xxe;</Id></Stmt></BkToCstmrStmt>'
            '</Document>').encode()
    records = read_bytes(data)
    assert len(records) == 1 and records[0].fields is None
    assert "TOP-SECRET" not in records[0].decode_error + records[0].raw_payload


def test_an_undeclared_entity_is_a_problem_not_a_lookup():
    records = read_bytes(statement(ntry(details=batch(tx(remittance="&xxe;")))))
    assert len(records) == 1 and is_truncation(records[0].decode_error)


@pytest.mark.parametrize("namespace, said", [
    ("urn:iso:std:iso:20022:tech:xsd:camt.054.001.08", "camt.054.001.08"),
    ("urn:iso:std:iso:20022:tech:xsd:camt.052.001.02", "camt.052.001.02"),
    ("urn:iso:std:iso:20022:tech:xsd:pain.001.001.03", "pain.001"),
    ("urn:example:camt.053.001.08", "urn:example"),
])
def test_a_wrong_namespace_is_refused_with_the_reason(namespace, said):
    records = read_bytes(statement(ntry(), namespace=namespace))
    assert len(records) == 1 and records[0].fields is None
    assert "is not a camt.053 statement" in records[0].decode_error and said in records[0].decode_error


def test_a_document_without_namespace_is_refused():
    records = read_bytes(statement(ntry()).replace(f' xmlns="{NAMESPACE}"'.encode(), b""))
    assert len(records) == 1 and "has no namespace" in records[0].decode_error


def test_an_oversized_entry_is_rejected_and_counts_still_conserve():
    huge = batch(tx("1.00", remittance="x"), tx("1.00", remittance="y" + "</Ustrd><Ustrd>y" * MAX_ENTRY_ELEMENTS))
    records = read_bytes(statement(ntry(), ntry("2.00", details=huge), ntry()))
    assert [record.fields is None for record in records] == [False, True, True, False]
    assert all(f"more than {MAX_ENTRY_ELEMENTS:,} XML elements" in record.decode_error for record in records[1:3])


def test_deep_nesting_is_one_problem_after_the_good_entries():
    deep = "<X>" * (MAX_DEPTH + 5) + "</X>" * (MAX_DEPTH + 5)
    records = read_bytes(statement(ntry(), ntry(details=f"<NtryDtls>{deep}</NtryDtls>")))
    assert [record.fields is None for record in records] == [False, True]
    assert f"more than {MAX_DEPTH} deep" in records[1].decode_error


def test_data_after_the_document_is_one_problem_after_every_entry():
    records = read_bytes(statement(ntry(), ntry()) + b"<more/>")
    assert [record.fields is None for record in records] == [False, False, True]
    assert "after the end of its XML document" in records[2].decode_error


class _LazyStatement(io.RawIOBase):
    """A camt.053 statement of `count` entries, made while it is read: never whole in memory."""

    def __init__(self, count: int):
        header, footer = statement("|").split(b"|")
        self._parts = itertools.chain([header], (ntry(f"{index}.01").encode() for index in range(count)), [footer])
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while len(self._buffer) < len(buffer):
            part = next(self._parts, None)
            if part is None:
                break
            self._buffer += part
        size = min(len(buffer), len(self._buffer))
        buffer[:size], self._buffer = self._buffer[:size], self._buffer[size:]
        return size


def test_a_big_statement_streams_in_bounded_memory():
    count = 10_000  # ~2.5 MB of XML, ~25 MB as a tree held whole; streamed, well under 1 MB
    tracemalloc.start()
    try:
        read_count, amount = 0, 0
        for record in read_camt053(_LazyStatement(count), "big.xml"):
            read_count += 1
            amount += record.fields["amount_minor"]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert read_count == count and amount == sum(index * 100 + 1 for index in range(count))
    assert peak < 2_000_000, f"peak {peak:,} bytes: the statement is held, not streamed"


# Every 7th byte of each sample but PostFinance's (66 KB: ~9,500 cuts, a parse each); for it, every 7th byte
# through the first four transaction details of its first batch entry (bytes 7027 on), where a batch's
# records go out one detail behind the one being read.
TRUNCATION_CUTS = {name: [*range(0, len(sample(name)), 7), len(sample(name))] for name in SAMPLE_TOTALS}
TRUNCATION_CUTS["camt053_v04_viafintech_postfinance.xml"] = range(7000, 16000, 7)


@pytest.mark.parametrize("name", sorted(SAMPLE_TOTALS))
def test_a_cut_at_every_7th_byte_never_raises_and_keeps_the_entries_before_the_cut(name):
    data, full = sample(name), read(name)
    for cut in TRUNCATION_CUTS[name]:
        head = data[:cut]
        records = read_bytes(head)
        good_records = [record for record in records if record.fields is not None]
        closed = head.count(b"</Ntry>")
        # records of entries whose </Ntry> lies before the cut are good, in order and equal to the full read's
        before = [record for record in full if _entry_index(record) <= closed]
        assert [record.fields for record in good_records] == [record.fields for record in full[:len(good_records)]]
        assert len(good_records) >= len(before), (name, cut)
        if b"</Document>" in head:
            assert [(record.fields, record.raw_payload) for record in records] == \
                [(record.fields, record.raw_payload) for record in full]
        else:  # one problem record for the cut, after the good ones: every record is one or the other
            assert len(records) == len(good_records) + 1 and records[-1].fields is None, (name, cut)
            assert records[-1].source == f"s.xml#{len(records)}"


def _entry_index(record: RawRecord) -> int:
    """The Ntry index (within its statement) of a record: the entry_ref's part after the statement id."""
    return int(record.fields["entry_ref"][len(record.fields["statement_id"]) + 1:].split("/")[0])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_are_one_problem_record(data):
    records = read_bytes(data)
    assert len(records) == 1 and records[0].fields is None and records[0].decode_error


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(SAMPLE_TOTALS)), st.lists(st.tuples(st.integers(0, 70_000), st.binary(max_size=4),
                                                                   st.integers(0, 4)), max_size=4))
def test_fuzzed_samples_never_raise_and_every_record_is_one_thing(name, edits):
    data = bytearray(sample(name))
    for position, inserted, deleted in edits:
        position %= len(data) + 1
        data[position:position + deleted] = inserted
    records = read_bytes(bytes(data))
    count = SAMPLE_TOTALS[name][0]
    assert len(records) <= max(count, data.count(b"<TxDtls>") + data.count(b"<Ntry>")) + 1
    for number, record in enumerate(records, start=1):
        assert record.source == f"s.xml#{number}"
        assert (record.fields is None) != (record.decode_error is None)
        if record.fields is None:
            assert "\n" not in record.decode_error
        else:
            assert type(record.fields["amount_minor"]) is int and record.fields["amount_minor"] >= 0
            assert record.fields["credit_debit"] in ("CRDT", "DBIT")
            assert re.fullmatch(r"[A-Z]{3}", record.fields["currency"])
