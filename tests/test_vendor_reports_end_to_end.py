"""Vendor reports as the vendors write them, end to end through both engines (issue 10).

Hand-made Adyen settlement details reports (a US account: PST/PDT, cross-
currency rows, account-level lines that reuse their Modification Reference in
every batch, a DepositCorrection with both a debit and a credit, a dispute
reversed and lost again) and a Stripe itemized report with a user-chosen
column subset (only automatic_payout_effective_at_utc as settlement time),
signed fees, adjustments and payouts. Every expected status and total below
is worked out by hand from the vendors' documented semantics (credit +,
debit -; Stripe amounts signed from the balance's point of view), not by the
code under test. Every id is made up.
"""
from __future__ import annotations

import pytest

from pipelines.reconcile_batch import ENGINES
from tests.cli_helpers import daily_totals, dead_letters, reconcile, results, run_summary
from tests.engine_parity import assert_same_outputs

ADYEN_HEADER = (
    "Company Account,Merchant Account,Psp Reference,Merchant Reference,Payment Method,Creation Date,TimeZone,"
    "Type,Modification Reference,Gross Currency,Gross Debit (GC),Gross Credit (GC),Exchange Rate,Net Currency,"
    "Net Debit (NC),Net Credit (NC),Commission (NC),Markup (NC),Scheme Fees (NC),Interchange (NC),"
    "Payment Method Variant,Modification Merchant Reference,Batch Number,Reserved4,Reserved5,Reserved6,"
    "Reserved7,Reserved8,Reserved9,Reserved10"
)
_TAIL = ",,,,,,,"  # Reserved4..Reserved10


def _adyen(psp, ref, when, zone, journal, mod, gc, gd, gcr, rate, nc, nd, ncr, commission, batch):
    return (f"TestCompany,TestMerchantUS,{psp},{ref},visa,{when},{zone},{journal},{mod},{gc},{gd},{gcr},{rate},"
            f"{nc},{nd},{ncr},{commission},,,,visaclassic,,{batch}{_TAIL}")


# Batch 7, 2024-01-15 Pacific standard time (16:00-20:00 UTC, one UTC day).
ADYEN_BATCH_7 = [
    # a. iDEAL in EUR paid out in USD: matched on EUR 100.00, settled USD 108.50 net + 1.50 costs = 110.00.
    _adyen("TESTPSP000000001", "order-1", "2024-01-15 08:00:00", "PST", "Settled", "TESTMOD000000001",
           "EUR", "", "100.00", "1.10", "USD", "", "108.50", "1.50", "7"),
    # b. USD sale: gross 50.00, costs 1.20, net 48.80.
    _adyen("TESTPSP000000002", "order-2", "2024-01-15 08:10:00", "PST", "Settled", "TESTMOD000000002",
           "USD", "", "50.00", "1", "USD", "", "48.80", "1.20", "7"),
    # c. its partial refund, a debit of 20.00.
    _adyen("TESTPSP000000002", "order-2", "2024-01-15 08:20:00", "PST", "Refunded", "TESTMOD000000003",
           "USD", "20.00", "", "1", "USD", "20.00", "", "", "7"),
    # d. a chargeback of 30.00 with a 15.00 chargeback fee: 45.00 leaves the account.
    _adyen("TESTPSP000000004", "order-4", "2024-01-15 08:30:00", "PST", "Chargeback", "TESTMOD000000004",
           "USD", "30.00", "", "1", "USD", "45.00", "", "15.00", "7"),
    # e. defended: credited back (+30.00) ...
    _adyen("TESTPSP000000004", "order-4", "2024-01-15 08:40:00", "PST", "ChargebackReversed", "TESTMOD000000005",
           "USD", "", "30.00", "1", "USD", "", "30.00", "", "7"),
    # f. ... and lost on the second round (-30.00).
    _adyen("TESTPSP000000004", "order-4", "2024-01-15 08:50:00", "PST", "SecondChargeback", "TESTMOD000000006",
           "USD", "30.00", "", "1", "USD", "30.00", "", "", "7"),
    # g. deposit: 5.00 withheld and 3.00 released on one line = -2.00.
    _adyen("", "", "2024-01-15 09:00:00", "PST", "DepositCorrection", "Deposit Correction",
           "", "", "", "", "USD", "5.00", "3.00", "", "7"),
    # h. the monthly transaction fees, a debit with only a net side.
    _adyen("", "", "2024-01-15 09:10:00", "PST", "Fee", "Transaction Fees January 2024",
           "", "", "", "", "USD", "10.08", "", "", "7"),
    # i. an invoice credited back: a negative fee of 2.50.
    _adyen("", "", "2024-01-15 09:20:00", "PST", "InvoiceDeduction", "Invoice 2023-12",
           "", "", "", "", "USD", "", "2.50", "", "7"),
    # j. a balance transfer into this batch (+12.00).
    _adyen("", "", "2024-01-15 09:30:00", "PST", "Balancetransfer", "Balance transfer",
           "", "", "", "", "USD", "", "12.00", "", "7"),
    # k. the payout of the batch (95.00 leaves the account).
    _adyen("", "", "2024-01-15 09:40:00", "PST", "MerchantPayout", "TX0000000007XT batch 7",
           "", "", "", "", "USD", "95.00", "", "", "7"),
]

# Batch 8, 2024-01-16: the same Modification References again, plus an INR sale paid out in USD.
ADYEN_BATCH_8 = [
    # l. the balance transferred back out (-12.00): NOT a re-delivery of line j.
    _adyen("", "", "2024-01-16 08:00:00", "PST", "Balancetransfer", "Balance transfer",
           "", "", "", "", "USD", "12.00", "", "", "8"),
    # m. deposit released (+5.00): NOT a re-delivery of line g.
    _adyen("", "", "2024-01-16 08:10:00", "PST", "DepositCorrection", "Deposit Correction",
           "", "", "", "", "USD", "", "5.00", "", "8"),
    # n. a payout the bank returned (+100.00): a negative payout.
    _adyen("", "", "2024-01-16 08:20:00", "PST", "BankInstructionReturned", "TX0000000006XT batch 6",
           "", "", "", "", "USD", "", "100.00", "", "8"),
    # o. INR 1000.00 paid out as USD 11.70 after 0.30 costs: matched on INR 1000.00, settled USD 12.00.
    _adyen("TESTPSP000000007", "order-7", "2024-01-16 08:30:00", "PST", "Settled", "TESTMOD000000007",
           "INR", "", "1000.00", "0.012", "USD", "", "11.70", "0.30", "8"),
    # p. a fee booked with a summer-time abbreviation: 09:00 PDT = 16:00 UTC.
    _adyen("", "", "2024-01-16 09:00:00", "PDT", "Fee", "Transaction Fees January 2024",
           "", "", "", "", "USD", "1.00", "", "", "8"),
    # q. a time zone nobody knows: rejected, with a reason.
    _adyen("", "", "2024-01-16 09:10:00", "XYZT", "Fee", "Transaction Fees January 2024",
           "", "", "", "", "USD", "1.00", "", "", "8"),
]

# A Stripe itemized report with the columns a user picked: no available_on*, no
# automatic_payout_effective_at, no created (local), no personal columns.
STRIPE_HEADER = ("balance_transaction_id,created_utc,automatic_payout_effective_at_utc,automatic_payout_id,"
                 "currency,gross,fee,net,reporting_category,charge_id,payment_intent_id,"
                 "payment_metadata[merchant_id],customer_facing_amount,customer_facing_currency")


def _stripe(txn, category, gross, fee, net, charge="", intent="", facing="", facing_currency=""):
    return (f"{txn},2024-02-01 10:00:00,2024-02-03 00:00:00,po_test_1,usd,{gross},{fee},{net},{category},"
            f"{charge},{intent},m-stripe-1,{facing},{facing_currency}")


STRIPE_ROWS = [
    _stripe("txn_test_01", "charge", "100.00", "3.20", "96.80", "ch_test_A", "pi_test_A"),
    _stripe("txn_test_02", "refund", "-40.00", "0.00", "-40.00", "ch_test_A", "pi_test_A"),
    _stripe("txn_test_03", "fee", "-2.00", "0.00", "-2.00"),
    _stripe("txn_test_04", "fee", "0.50", "0.00", "0.50"),  # a fee refund
    _stripe("txn_test_05", "other_adjustment", "50.00", "0.00", "50.00"),
    _stripe("txn_test_06", "other_adjustment", "-16.00", "0.00", "-16.00"),
    _stripe("txn_test_07", "dispute", "-25.00", "15.00", "-40.00", "ch_test_B", "pi_test_B"),
    _stripe("txn_test_08", "dispute_reversal", "25.00", "-15.00", "40.00", "ch_test_B", "pi_test_B"),
    _stripe("txn_test_09", "payout", "-150.00", "0.00", "-150.00"),
    _stripe("txn_test_10", "payout_reversal", "150.00", "0.00", "150.00"),
    _stripe("txn_test_11", "climate_order_purchase", "-1.00", "0.00", "-1.00"),
    _stripe("txn_test_12", "brand_new_category", "-0.25", "0.00", "-0.25"),
    _stripe("txn_test_13", "network_cost", "-0.10", "0.00", "-0.10"),
    _stripe("txn_test_14", "tax", "-0.30", "0.00", "-0.30"),
    # A EUR 100.00 charge settled in USD: matched on the customer-facing EUR side, summed in USD.
    _stripe("txn_test_15", "charge", "108.00", "3.44", "104.56", "ch_test_C", "pi_test_C", "100.00", "eur"),
]

PAYMENTS_CSV = """event_id,payment_id,event_type,processor,processor_reference,merchant_id,amount_minor,currency,event_time
evt-a1,pay-a1,CAPTURED,adyen,TESTPSP000000001,TestMerchantUS,10000,EUR,2024-01-14T10:00:00Z
evt-a2,pay-a2,CAPTURED,adyen,TESTPSP000000002,TestMerchantUS,5000,USD,2024-01-14T10:00:00Z
evt-a3,pay-a2,REFUNDED,adyen,TESTPSP000000002,TestMerchantUS,2000,USD,2024-01-14T11:00:00Z
evt-a4,pay-a4,CHARGEBACK,adyen,TESTPSP000000004,TestMerchantUS,3000,USD,2024-01-14T12:00:00Z
evt-a7,pay-a7,CAPTURED,adyen,TESTPSP000000007,TestMerchantUS,100000,INR,2024-01-15T10:00:00Z
evt-s1,pay-s1,CAPTURED,stripe,ch_test_A,m-stripe-1,10000,USD,2024-01-31T10:00:00Z
evt-s2,pay-s1,REFUNDED,stripe,ch_test_A,m-stripe-1,4000,USD,2024-01-31T11:00:00Z
evt-s3,pay-s3,CHARGEBACK,stripe,ch_test_B,m-stripe-1,2500,USD,2024-01-31T12:00:00Z
evt-s4,pay-s4,CAPTURED,stripe,ch_test_C,m-stripe-1,10000,EUR,2024-01-31T13:00:00Z
"""

SETTLEMENT_COLUMNS = ("settled_gross_minor", "fee_minor", "settled_net_minor", "adjustment_minor", "payout_minor",
                      "settlement_line_count")
# (merchant, currency, day) -> settled gross, fee, net, adjustments, payouts, lines; by hand from the rows above.
EXPECTED_TOTALS = {
    # Everything in the net currency. Gross +110.00 (a) +50 -20 -30 = 110.00; fees 1.50 + 1.20 + 15.00
    # (chargeback) + 10.08 - 2.50 = 25.28; net 110.00 - 25.28 = 84.72; adjustments +30 -30 -2 +12 = 10.00;
    # payout 95.00.
    ("TestMerchantUS", "USD", "2024-01-15"): (11000, 2528, 8472, 1000, 9500, 11),
    # l, m, n, o, p: gross 12.00 (o); fees 0.30 + 1.00 (p) = 1.30; net 10.70; adjustments -12 +5 = -7.00;
    # payout -100.00 (returned).
    ("TestMerchantUS", "USD", "2024-01-16"): (1200, 130, 1070, -700, -10000, 5),
    # gross +100 -40 -25 +108 = 143.00; fees 3.20 + 15.00 + 2.00 - 0.50 + 0.10 + 0.30 - 15.00 (returned
    # with the dispute reversal) + 3.44 = 8.54; net 143.00 - 8.54 = 134.46; adjustments
    # +50 -16 +25 -1 -0.25 = 57.75; payouts +150 -150 = 0.
    ("m-stripe-1", "USD", "2024-02-01"): (14300, 854, 13446, 5775, 0, 15),
}
# The balance change of each vendor's rows, summed by hand from their net columns (Adyen: credit - debit
# in the net currency; Stripe: net).
ADYEN_USD_NET_SUM = (10850 + 4880 - 2000 - 4500 + 3000 - 3000 - 200 - 1008 + 250 + 1200 - 9500
                     - 1200 + 500 + 10000 + 1170 - 100)
STRIPE_NET_SUM = 9680 - 4000 - 200 + 50 + 5000 - 1600 - 4000 + 4000 - 15000 + 15000 - 100 - 25 - 10 - 30 + 10456


def _write(path, lines, crlf=False):
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(("\r\n" if crlf else "\n").join(lines) + ("\r\n" if crlf else "\n"))


@pytest.fixture(scope="module")
def vendor_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("vendor_reports")
    settlements = base / "settlements"
    settlements.mkdir()
    _write(settlements / "settlement_detail_report_batch_7.csv", [ADYEN_HEADER, *ADYEN_BATCH_7], crlf=True)
    # The same batch delivered twice: every line, account-level ones included, is a re-delivery.
    _write(settlements / "settlement_detail_report_batch_7_copy.csv", [ADYEN_HEADER, *ADYEN_BATCH_7], crlf=True)
    _write(settlements / "settlement_detail_report_batch_8.csv", ["\ufeff" + ADYEN_HEADER, *ADYEN_BATCH_8])
    _write(settlements / "stripe_itemized.csv", [STRIPE_HEADER, *STRIPE_ROWS])
    payments = base / "payments.csv"
    payments.write_text(PAYMENTS_CSV, encoding="utf-8")
    outputs = {}
    for engine in ENGINES:
        outputs[engine] = str(base / f"out-{engine}")
        code = reconcile(str(payments), str(settlements / "*.csv"), outputs[engine], "--csv", "--engine", engine)
        assert code == 0
    return outputs


@pytest.fixture(params=ENGINES)
def vendor_output(request, vendor_runs):
    return vendor_runs[request.param]


def test_vendor_reports_both_engines_write_identical_outputs(vendor_runs):
    assert_same_outputs(vendor_runs["columnar"], vendor_runs["elementwise"])


def test_vendor_reports_statuses(vendor_output):
    statuses = {(row["processor"], row["processor_reference"], row["kind"]): row["status"]
                for row in results(vendor_output)}
    assert statuses == {
        ("adyen", "TESTPSP000000001", "CAPTURE"): "MATCHED",  # EUR ledger vs the EUR gross side
        ("adyen", "TESTPSP000000002", "CAPTURE"): "MATCHED",
        ("adyen", "TESTPSP000000002", "REFUND"): "MATCHED",
        ("adyen", "TESTPSP000000004", "CHARGEBACK"): "MATCHED",
        ("adyen", "TESTPSP000000007", "CAPTURE"): "MATCHED",  # INR ledger vs the INR gross side
        ("stripe", "ch_test_A", "CAPTURE"): "MATCHED",
        ("stripe", "ch_test_A", "REFUND"): "MATCHED",
        ("stripe", "ch_test_B", "CHARGEBACK"): "MATCHED",
        ("stripe", "ch_test_C", "CAPTURE"): "MATCHED",  # EUR ledger vs the customer-facing EUR side
    }


def test_vendor_reports_counts_and_the_one_rejected_row(vendor_output):
    settlements = run_summary(vendor_output)["inputs"]["settlements"]
    read = 2 * len(ADYEN_BATCH_7) + len(ADYEN_BATCH_8) + len(STRIPE_ROWS)
    assert (settlements["read"], settlements["accepted"], settlements["rejected"]) == (read, read - 1, 1)
    # The second copy of batch 7 is a re-delivery, line for line (account-level lines too).
    assert settlements["deduplicated"] == len(ADYEN_BATCH_7)
    # brand_new_category: read as an adjustment (it is in the totals), counted as a warning.
    assert settlements["unknown_vendor_categories"] == 1
    (letter,) = dead_letters(vendor_output)
    assert letter["source"].endswith("settlement_detail_report_batch_8.csv:7")
    assert "TimeZone is not a known time zone" in letter["reason"]


def test_vendor_reports_daily_totals_are_the_signed_sums_written_down_by_hand(vendor_output):
    totals = {(row["merchant_id"], row["currency"], row["settlement_day"]): tuple(row[c] for c in SETTLEMENT_COLUMNS)
              for row in daily_totals(vendor_output) if row["settlement_line_count"]}
    assert totals == EXPECTED_TOTALS


def test_vendor_reports_daily_totals_add_up_to_each_vendors_balance_change(vendor_output):
    def balance_change(merchant, currency):
        return sum(row["settled_net_minor"] + row["adjustment_minor"] - row["payout_minor"]
                   for row in daily_totals(vendor_output)
                   if (row["merchant_id"], row["currency"]) == (merchant, currency))

    assert balance_change("TestMerchantUS", "USD") == ADYEN_USD_NET_SUM
    assert balance_change("m-stripe-1", "USD") == STRIPE_NET_SUM
    assert (ADYEN_USD_NET_SUM, STRIPE_NET_SUM) == (10850 - 10878 + 1170 + 9200, 8765 + 10456)


def test_vendor_reports_summary_prints_the_unknown_category_warning(vendor_output):
    from pipelines.summary import format_summary

    assert ("warning: 1 vendor report row(s) of a category paybeam does not know, counted as adjustments"
            in format_summary(run_summary(vendor_output)))
