"""Stripe reports whose ledger keys payments by PaymentIntent and names merchants under another metadata key
(issue 10, Stripe 3 and 5): the options, their flow through every command, and a run through both engines.
Every id is made up; expected values are written down by hand."""
from __future__ import annotations

import argparse

import pytest

from pipelines.arguments import UsageError, vendor_options
from pipelines.cli import build_parser
from pipelines.reconcile_batch import ENGINES, job_from_arguments
from schemas.vendors import DEFAULT_VENDOR_OPTIONS, VendorOptions, settlement_fields_from_vendor_row
from tests.cli_helpers import daily_totals, reconcile_with_each_engine, results
from tests.engine_parity import assert_same_outputs

OPTIONS = ["--stripe-ledger-reference", "payment_intent", "--stripe-merchant-metadata-key", "seller"]
CHOSEN = VendorOptions("payment_intent", "seller")

ROW = {"balance_transaction_id": "txn_opt_1", "created_utc": "2024-02-01 10:00:00",
       "available_on_utc": "2024-02-03 00:00:00", "currency": "usd", "gross": "20.00", "fee": "0.88",
       "net": "19.12", "reporting_category": "charge", "source_id": "ch_opt_1", "charge_id": "ch_opt_1",
       "payment_intent_id": "pi_opt_1", "payment_metadata[merchant_id]": "m-default",
       "payment_metadata[seller]": "m-seller-9"}


def test_stripe_reference_and_merchant_follow_the_options() -> None:
    default = settlement_fields_from_vendor_row("stripe", ROW)
    chosen = settlement_fields_from_vendor_row("stripe", ROW, None, CHOSEN)
    assert (default["processor_reference"], default["merchant_id"]) == ("ch_opt_1", "m-default")
    assert (chosen["processor_reference"], chosen["merchant_id"]) == ("pi_opt_1", "m-seller-9")
    # A row without a PaymentIntent (a charge made without one) falls back to its charge.
    no_intent = settlement_fields_from_vendor_row("stripe", {**ROW, "payment_intent_id": ""}, None, CHOSEN)
    assert no_intent["processor_reference"] == "ch_opt_1"
    # Without the chosen metadata column the merchant is unattributed, never another key's value.
    no_seller = settlement_fields_from_vendor_row("stripe", {**ROW, "payment_metadata[seller]": ""}, None, CHOSEN)
    assert no_seller["merchant_id"] == "UNATTRIBUTED"


@pytest.mark.parametrize("command", [
    ["reconcile", "--payments", "p.csv", "--settlements", "s.csv", "--output", "out"],
    ["backfill", "--from", "2024-02-01", "--to", "2024-02-01", "--payments", "p/{date}.csv",
     "--settlements", "s/{date}.csv", "--output", "out"],
    ["stream", "--bootstrap-servers", "localhost:9092", "--payments-topic", "p", "--settlements-topic", "s"],
    ["kafka", "produce", "--bootstrap-servers", "localhost:9092", "--payments", "p.csv", "--settlements", "s.csv"],
])
def test_every_command_takes_the_vendor_options(command) -> None:
    parser = build_parser()
    assert vendor_options(parser.parse_args(command)) == DEFAULT_VENDOR_OPTIONS
    assert vendor_options(parser.parse_args(command + OPTIONS)) == CHOSEN


def test_reconcile_and_backfill_jobs_carry_the_options() -> None:
    from pipelines.backfill_plan import plan_backfill

    parser = build_parser()
    job = job_from_arguments(parser.parse_args(
        ["reconcile", "--payments", "p.csv", "--settlements", "s.csv", "--output", "out", *OPTIONS]), [])
    assert job.vendor_options == CHOSEN
    backfill = parser.parse_args(["backfill", "--from", "2024-02-01", "--to", "2024-02-01", "--payments",
                                  "p/{date}.csv", "--settlements", "s/{date}.csv", "--output", "out", *OPTIONS])
    *_, options, policy_args, _ = plan_backfill(backfill, [])
    # The date job is rebuilt from policy_args (backfill_run._build_job); the manifest re-runs on a change.
    assert vendor_options(argparse.Namespace(**policy_args)) == CHOSEN
    assert options["vendor"] == {"stripe_ledger_reference": "payment_intent", "stripe_merchant_metadata_key": "seller"}
    default = parser.parse_args(["backfill", "--from", "2024-02-01", "--to", "2024-02-01", "--payments",
                                 "p/{date}.csv", "--settlements", "s/{date}.csv", "--output", "out"])
    assert "vendor" not in plan_backfill(default, [])[4]


@pytest.mark.parametrize("key", ["", "a]b", "x[y"])
def test_a_bad_metadata_key_is_a_usage_error(key) -> None:
    with pytest.raises(UsageError, match="--stripe-merchant-metadata-key"):
        vendor_options(argparse.Namespace(stripe_ledger_reference="charge", stripe_merchant_metadata_key=key))


STRIPE_CSV = """balance_transaction_id,created_utc,available_on_utc,currency,gross,fee,net,reporting_category,charge_id,payment_intent_id,payment_metadata[seller]
txn_opt_1,2024-02-01 10:00:00,2024-02-03 00:00:00,usd,20.00,0.88,19.12,charge,ch_opt_1,pi_opt_1,m-seller-9
txn_opt_2,2024-02-01 11:00:00,2024-02-03 00:00:00,usd,-5.00,0.00,-5.00,refund,ch_opt_1,pi_opt_1,m-seller-9
"""
PAYMENTS_CSV = """event_id,payment_id,event_type,processor,processor_reference,merchant_id,amount_minor,currency,event_time
evt-o1,pay-o1,CAPTURED,stripe,pi_opt_1,m-seller-9,2000,USD,2024-02-01T09:00:00Z
evt-o2,pay-o1,REFUNDED,stripe,pi_opt_1,m-seller-9,500,USD,2024-02-01T09:30:00Z
"""


@pytest.fixture(scope="module")
def option_runs(tmp_path_factory):
    return reconcile_with_each_engine(tmp_path_factory.mktemp("vendor_options"), PAYMENTS_CSV, STRIPE_CSV, *OPTIONS,
                                      settlements_name="stripe.csv")


def test_vendor_options_both_engines_agree(option_runs):
    assert_same_outputs(option_runs["columnar"], option_runs["elementwise"])


@pytest.mark.parametrize("engine", ENGINES)
def test_vendor_options_a_payment_intent_ledger_matches_and_totals_sit_under_its_merchant(option_runs, engine):
    rows = results(option_runs[engine])
    assert sorted((r["processor_reference"], r["kind"], r["status"], r["merchant_id"]) for r in rows) == [
        ("pi_opt_1", "CAPTURE", "MATCHED", "m-seller-9"), ("pi_opt_1", "REFUND", "MATCHED", "m-seller-9")]
    (total,) = daily_totals(option_runs[engine])
    assert (total["merchant_id"], total["currency"], total["captured_minor"], total["refunded_minor"],
            total["settled_gross_minor"], total["fee_minor"], total["settled_net_minor"]) == (
        "m-seller-9", "USD", 2000, 500, 1500, 88, 1412)


def test_kafka_produce_converts_vendor_rows_with_the_options(tmp_path):
    # `paybeam kafka produce` is where vendor files become the stream's canonical messages.
    import json

    from pipelines.kafka_tools import collect_input_messages
    from schemas.records import SETTLEMENTS

    (tmp_path / "stripe.csv").write_text(STRIPE_CSV, encoding="utf-8")
    messages = []
    assert collect_input_messages(SETTLEMENTS, [str(tmp_path / "stripe.csv")], "settlements", "json", True, messages,
                    CHOSEN) == (2, 0)
    values = [json.loads(message.value) for message in messages]
    assert [(v["processor_reference"], v["merchant_id"], v["record_type"]) for v in values] == [
        ("pi_opt_1", "m-seller-9", "CAPTURE"), ("pi_opt_1", "m-seller-9", "REFUND")]
    # Lines without a matched side are the canonical message, key for key.
    assert all("matched_minor" not in value and "matched_currency" not in value for value in values)
    facing = STRIPE_CSV.replace("payment_metadata[seller]\n", "payment_metadata[seller],customer_facing_amount,"
                                "customer_facing_currency\n").replace("m-seller-9\n", "m-seller-9,18.00,eur\n")
    (tmp_path / "facing.csv").write_text(facing, encoding="utf-8")
    messages = []
    collect_input_messages(SETTLEMENTS, [str(tmp_path / "facing.csv")], "settlements", "json", True, messages, CHOSEN)
    assert [(json.loads(m.value)["matched_minor"], json.loads(m.value)["matched_currency"]) for m in messages] == [
        (1800, "EUR"), (1800, "EUR")]


@pytest.mark.parametrize("value_format", ["avro", "confluent-avro"])
def test_avro_values_carry_the_matched_side(value_format) -> None:
    """A settlement line's matched side (DESIGN 3.2) survives an Avro Kafka value, and a line without one reads
    back with nulls (the schema's defaults), so Avro and JSON streams validate alike."""
    from schemas.kafka_values import decode_value, encode_value
    from schemas.records import RawRecord
    from tests.beam_helpers import settlement
    from transforms.validate import validate_raw_record

    cross = settlement("s_x", "ch_x", gross=920, currency="USD")._replace(matched_minor=1000, matched_currency="EUR")
    plain = {name: value for name, value in settlement("s_p", "ch_p")._asdict().items()
             if name not in ("matched_minor", "matched_currency")}
    for fields, expected in ((cross._asdict(), (1000, "EUR")), (plain, (None, None))):
        decoded = decode_value(encode_value(fields, value_format, "settlement_line"), value_format, "settlement_line")
        record = validate_raw_record(RawRecord("settlements", "t/0@0", decoded, "{}"))
        assert (record.matched_minor, record.matched_currency) == expected
