"""No card numbers, anywhere (issue 9 §6): through `paybeam reconcile`, both engines, with --csv.

A test card number in merchant_id, in processor_reference, in free text of
raw payloads (an extra CSV column, a Stripe descriptor, an Adyen merchant
reference) and in an undecodable line: no output file holds its digits in any
form, identifiers holding it are refused and counted, an Adyen PSP reference
that passes Luhn is kept and matched, personal columns of vendor reports never
reach dead letters, and the two engines write the same.
"""
from __future__ import annotations

import csv
import io
import json
import os

import pyarrow.parquet as pq
import pytest

from pipelines.reconcile_batch import ENGINES
from schemas.records import SettlementLine
from schemas.timestamps import parse_timestamp_millis
from schemas.vendors import vendor_columns, vendor_row_from_settlement
from tests.card_numbers import card_number, digit_forms, grouped
from tests.cli_helpers import dead_letters, reconcile, results, run_summary
from tests.engine_parity import assert_same_outputs

PAN = card_number()
AMEX_LIKE = card_number(15, "37", "8")
PSP_REFERENCE = card_number(16, "88", "3")  # Adyen's documented 16 digits, Luhn-valid
MODIFICATION_REFERENCE = card_number(16, "88", "5")
EMAIL = "someone@example.com"
TIME = "2026-01-05T10:00:00Z"

PAYMENT_HEADER = ["event_id", "payment_id", "event_type", "processor", "processor_reference", "merchant_id",
                  "amount_minor", "currency", "event_time", "memo"]
SETTLEMENT_HEADER = ["settlement_id", "processor", "processor_reference", "merchant_id", "record_type",
                     "gross_minor", "fee_minor", "net_minor", "currency", "settlement_date", "booked_time",
                     "payout_id"]


def _csv(header, rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _payments() -> str:
    return _csv(PAYMENT_HEADER, [
        ["e_ok", "p1", "CAPTURED", "stripe", "ch_ok", "m_1", "1000", "USD", TIME, ""],
        ["e_pan_merchant", "p2", "CAPTURED", "stripe", "ch_2", PAN, "1000", "USD", TIME, ""],
        ["e_pan_reference", "p3", "CAPTURED", "stripe", grouped(PAN, "-"), "m_1", "1000", "USD", TIME, ""],
        ["e_adyen", "p4", "CAPTURED", "adyen", PSP_REFERENCE, "m_1", "1000", "EUR", TIME, ""],
        ["e_memo", "p5", "CAPTURED", "stripe", "ch_5", "m_1", "700", "USD", TIME, f"paid with {grouped(PAN)}"],
        ["e_bad", "p6", "CAPTURED", "stripe", "ch_6", "m_1", "12.5x", "USD", TIME, f"card {AMEX_LIKE}"],
    ])


def _settlements() -> str:
    return _csv(SETTLEMENT_HEADER, [
        ["s_ok", "stripe", "ch_ok", "m_1", "CAPTURE", "1000", "30", "970", "USD", "2026-01-06", TIME, ""],
        ["s_pan", "stripe", PAN, "m_1", "CAPTURE", "1000", "30", "970", "USD", "2026-01-06", TIME, ""],
    ])


def _adyen_report() -> str:
    line = SettlementLine(MODIFICATION_REFERENCE, "adyen", PSP_REFERENCE, "m_1", "CAPTURE", 1000, 30, 970, "EUR",
                          "2026-01-06", parse_timestamp_millis(TIME, "t"), None)
    good = dict(vendor_row_from_settlement("adyen", line), **{"Shopper Email": EMAIL})
    bad = dict(good, **{"Net Credit (NC)": "1.00", "Merchant Reference": f"order {PAN}",
                        "Modification Reference": "mod_bad"})
    return _csv([*vendor_columns("adyen"), "Shopper Email"], [list(good.values()), list(bad.values())])


def _stripe_report() -> str:
    line = SettlementLine("txn_1", "stripe", "ch_5", "m_1", "CAPTURE", 700, 0, 700, "USD", "2026-01-06",
                          parse_timestamp_millis(TIME, "t"), None)
    good = vendor_row_from_settlement("stripe", line)
    bad = dict(good, balance_transaction_id="txn_2", charge_id="ch_7", net="1.00", customer_email=EMAIL,
               description=f"order for {EMAIL}", statement_descriptor=f"card {grouped(PAN, '-')}")
    return _csv(list(vendor_columns("stripe")), [list(good.values()), list(bad.values())])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("card-numbers")
    for folder in ("payments", "settlements"):
        (base / folder).mkdir()
    (base / "payments" / "ledger.csv").write_text(_payments(), encoding="utf-8")
    (base / "payments" / "broken.jsonl").write_text(f'{{"event_id": "j1", "memo": "{PAN}"\n', encoding="utf-8")
    (base / "settlements" / "lines.csv").write_text(_settlements(), encoding="utf-8")
    (base / "settlements" / "adyen.csv").write_text(_adyen_report(), encoding="utf-8")
    (base / "settlements" / "stripe.csv").write_text(_stripe_report(), encoding="utf-8")
    outputs = {}
    for engine in ENGINES:
        outputs[engine] = str(base / f"out-{engine}")
        code = reconcile(str(base / "payments" / "*"), str(base / "settlements" / "*"), outputs[engine], "--csv",
                         "--engine", engine)
        assert code == 0
    return outputs


@pytest.fixture(params=ENGINES)
def output(request, runs):
    return runs[request.param]


def _every_output_as_text(output: str):
    for folder, _, names in os.walk(output):
        for name in names:
            path = os.path.join(folder, name)
            if name.endswith(".parquet"):  # compressed: look at the values, not the bytes
                yield path, json.dumps(pq.read_table(path).to_pylist(), default=str)
            else:
                with open(path, encoding="utf-8", errors="replace") as handle:
                    yield path, handle.read()


def test_no_output_file_holds_the_card_numbers_in_any_form(output):
    seen = 0
    for path, text in _every_output_as_text(output):
        seen += 1
        for number in (PAN, AMEX_LIKE):
            for form in digit_forms(number):
                assert form not in text, f"{path} holds a card number"
        assert EMAIL not in text, f"{path} holds personal data"
    assert seen >= 6  # results, daily totals, their CSV copies, dead letters, run.json


def test_the_adyen_psp_reference_is_kept_and_matched(output):
    by_reference = {row["processor_reference"]: row for row in results(output)}
    assert by_reference[PSP_REFERENCE]["status"] == "MATCHED"
    assert by_reference[PSP_REFERENCE]["settlement_id"].startswith(f"adyen:{MODIFICATION_REFERENCE}:Settled:")
    assert by_reference["ch_ok"]["status"] == "MATCHED" and by_reference["ch_5"]["status"] == "MATCHED"
    adyen_letter, = [letter for letter in dead_letters(output) if letter["source"].endswith("adyen.csv:3")]
    assert PSP_REFERENCE in adyen_letter["raw_payload"] and f"order {PAN[:6]}******{PAN[-4:]}" in \
        adyen_letter["raw_payload"]


def test_identifiers_holding_a_card_number_are_dead_letters_and_counts_add_up(output):
    summary = run_summary(output)
    letters = dead_letters(output)
    refused = sorted(letter["reason"] for letter in letters if "card number" in letter["reason"])
    assert refused == ["merchant_id looks like a card number (PAN); not published",
                       "processor_reference looks like a card number (PAN); not published",
                       "processor_reference looks like a card number (PAN); not published"]
    payments, settlements = summary["inputs"]["payments"], summary["inputs"]["settlements"]
    for counts, name in ((payments, "payments"), (settlements, "settlements")):
        assert counts["read"] == counts["accepted"] + counts["rejected"]
        assert counts["rejected"] == sum(1 for letter in letters if letter["input"] == name)
    assert (payments["read"], payments["rejected"], payments["pan_rejections"]) == (7, 4, 2)
    # refused merchant_id and processor_reference, the bad amount's memo, the broken JSON line
    assert payments["pans_masked"] == 4
    assert (settlements["read"], settlements["rejected"], settlements["pan_rejections"]) == (6, 3, 1)
    # the refused reference, the Adyen merchant reference, the Stripe descriptor
    assert settlements["pans_masked"] == 3


def test_both_engines_write_the_same(runs):
    assert_same_outputs(runs["columnar"], runs["elementwise"])


def test_the_printed_summary_reports_the_card_numbers(output):
    from pipelines.summary import format_summary  # what the CLI prints after a run, from run.json's content

    assert "card numbers: 7 masked in dead letters, 3 record(s) rejected for one in an identifier" in \
        format_summary(run_summary(output))
