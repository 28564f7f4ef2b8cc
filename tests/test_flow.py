"""ReconcileRecords (the flow both pipelines run) on RawRecords, with its counts."""
from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from schemas.records import PAYMENTS, SETTLEMENTS, RawRecord
from schemas.timestamps import format_timestamp
from tests.beam_helpers import at
from tests.card_numbers import card_number
from transforms.flow import ReconcileConfig, ReconcileRecords


def _payment_fields(event_id, reference, amount="1000", currency="USD"):
    return {"event_id": event_id, "payment_id": f"p_{event_id}", "event_type": "CAPTURED", "processor": "stripe",
            "processor_reference": reference, "merchant_id": "m_1", "amount_minor": amount, "currency": currency,
            "event_time": format_timestamp(at())}


def _line_fields(settlement_id, reference, gross="1000"):
    return {"settlement_id": settlement_id, "processor": "stripe", "processor_reference": reference,
            "merchant_id": "m_1", "record_type": "CAPTURE", "gross_minor": gross, "fee_minor": "0",
            "net_minor": gross, "currency": "USD", "settlement_date": "2026-01-05",
            "booked_time": format_timestamp(at())}


PAN = card_number()
MASKED = f"{PAN[:6]}******{PAN[-4:]}"


def test_flow_outputs_and_counts_add_up():
    payments = [
        RawRecord(PAYMENTS, "p.csv:2", _payment_fields("e1", "r1"), "raw e1"),
        RawRecord(PAYMENTS, "p.csv:3", _payment_fields("e1", "r1"), "raw e1 again"),  # re-delivery
        RawRecord(PAYMENTS, "p.csv:4", _payment_fields("e2", "r2", currency="XXX"), "raw e2"),  # rejected
        RawRecord(PAYMENTS, "p.csv:5", None, "{broken", "invalid JSON"),  # undecodable
        # A card number in a key field: refused, its payload (two copies of the number) masked.
        RawRecord(PAYMENTS, "p.csv:6", _payment_fields("e3", PAN), f"e3,{PAN},{PAN}"),
    ]
    settlements = [RawRecord(SETTLEMENTS, "s.csv:2", _line_fields("s1", "r1"), "raw s1"),
                   # A re-delivery with another amount: a dead letter, counted as rejected (conflicting).
                   RawRecord(SETTLEMENTS, "s.csv:3", _line_fields("s1", "r1", gross="1200"), "raw s1 changed")]
    with BeamTestPipeline() as pipeline:
        raw = {PAYMENTS: pipeline | "P" >> beam.Create(payments), SETTLEMENTS: pipeline | "S" >> beam.Create(settlements)}
        outputs = raw | ReconcileRecords(ReconcileConfig(), with_counts=True)
        assert_that(outputs["results"] | beam.Map(lambda r: (r.processor_reference, r.status)),
                    equal_to([("r1", "MATCHED")]), label="results")
        assert_that(outputs["dead_letters"] | beam.Map(
                        lambda d: (d.source, d.stage, d.reason if d.stage == "dedup" else d.raw_payload)),
                    equal_to([("p.csv:4", "validate", "raw e2"), ("p.csv:5", "decode", "{broken"),
                              ("p.csv:6", "validate", f"e3,{MASKED},{MASKED}"),
                              ("s.csv:3", "dedup", "conflicting re-delivery of settlement_id s1: gross_minor 1200 "
                                                   "!= 1000, net_minor 1200 != 1000 (kept s.csv:2)")]),
                    label="dead_letters")
        assert_that(outputs["counts"], equal_to([
            ("payments.read", 5), ("payments.accepted", 2), ("payments.rejected", 3), ("payments.unique", 1),
            ("payments.truncated_files", 0), ("payments.pan_rejections", 1), ("payments.pans_masked", 2),
            ("payments.conflicting", 0),
            ("settlements.read", 2), ("settlements.accepted", 2), ("settlements.rejected", 0),
            ("settlements.unique", 1), ("settlements.conflicting", 1), ("settlements.truncated_files", 0),
            ("settlements.pan_rejections", 0),
            ("settlements.pans_masked", 0), ("settlements.unknown_vendor_categories", 0), ("results.rows", 1), ("daily_totals.rows", 1),
            ("status.MATCHED", 1), ("as_of_millis", at()),
        ]), label="counts")
