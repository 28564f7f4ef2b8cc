"""AssignEventTime (docs/DESIGN.md 4.1) and Deduplicate (3.3: re-deliveries dropped).

Two small TestPipelines plus pure checks. Every id below is made up.
"""
from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from schemas.records import PaymentEvent, SettlementLine
from transforms.dedup import Deduplicate, record_id
from transforms.event_time import (
    AssignEventTime,
    beam_timestamp_to_millis,
    event_time_millis,
    millis_to_beam_timestamp,
)

T0 = 1_709_288_130_000  # 2024-03-01T10:15:30Z


def payment(event_id: str, event_time: int, amount: int = 1000) -> PaymentEvent:
    return PaymentEvent(event_id, f"pay-{event_id}", "CAPTURED", "stripe", f"ref-{event_id}",
                        "m-001", amount, "EUR", event_time)


def settlement(settlement_id: str, booked_time: int, gross: int = 1000) -> SettlementLine:
    return SettlementLine(settlement_id, "stripe", f"ref-{settlement_id}", "m-001", "CAPTURE",
                          gross, 30, gross - 30, "EUR", "2024-03-02", booked_time, None)


class _IdAndTimestamp(beam.DoFn):
    """(record id, element timestamp in epoch millis) for every element."""

    def process(self, record, timestamp=beam.DoFn.TimestampParam):
        yield record_id(record), beam_timestamp_to_millis(timestamp)


# ---------------------------------------------------------------- pure


def test_event_time_millis_uses_payload_field():
    assert event_time_millis(payment("evt-1", T0)) == T0
    assert event_time_millis(settlement("stl-1", T0 + 5)) == T0 + 5


def test_record_id_per_side():
    assert record_id(payment("evt-1", T0)) == "evt-1"
    assert record_id(settlement("stl-1", T0)) == "stl-1"


def test_beam_timestamp_conversion_round_trip():
    for millis in (0, 1, T0, T0 + 999, -1):
        assert beam_timestamp_to_millis(millis_to_beam_timestamp(millis)) == millis
    assert millis_to_beam_timestamp(T0).micros == T0 * 1000


# ---------------------------------------------------------------- Beam


def test_assign_event_time_stamps_payload_time():
    payments = [payment("evt-1", T0), payment("evt-2", T0 + 3_600_000), payment("evt-3", T0 - 86_400_123)]
    # booked_time deliberately differs from the settlement_date and from any other time field
    settlements = [settlement("stl-1", T0 + 7), settlement("stl-2", T0 + 2 * 86_400_000)]
    with BeamTestPipeline() as pipeline:
        paid = (
            pipeline
            | "CreatePayments" >> beam.Create(payments)
            | "PaymentTime" >> AssignEventTime()
            | "PaymentStamps" >> beam.ParDo(_IdAndTimestamp())
        )
        booked = (
            pipeline
            | "CreateSettlements" >> beam.Create(settlements)
            | "SettlementTime" >> AssignEventTime()
            | "SettlementStamps" >> beam.ParDo(_IdAndTimestamp())
        )
        assert_that(paid, equal_to([(p.event_id, p.event_time) for p in payments]), label="PaymentTimes")
        assert_that(booked, equal_to([(s.settlement_id, s.booked_time) for s in settlements]),
                    label="SettlementTimes")


def test_deduplicate_keeps_one_of_each_redelivery():
    first, second, third = payment("evt-1", T0), payment("evt-2", T0 + 1000), payment("evt-3", T0 + 2000)
    # evt-2 and evt-3 share every field but the id: distinct records, both kept.
    twin = third._replace(event_id="evt-4", payment_id=third.payment_id)
    payments = [first, second, first, third, first, twin, third]
    line_a, line_b = settlement("stl-1", T0 + 10), settlement("stl-2", T0 + 20)
    settlements = [line_a, line_b, line_a, line_a]

    with BeamTestPipeline() as pipeline:
        unique_payments = (
            pipeline
            | "CreatePayments" >> beam.Create(payments)
            | "PaymentTime" >> AssignEventTime()
            | "DedupPayments" >> Deduplicate()
        )
        unique_settlements = (
            pipeline
            | "CreateSettlements" >> beam.Create(settlements)
            | "SettlementTime" >> AssignEventTime()
            | "DedupSettlements" >> Deduplicate()
        )
        assert_that(unique_payments, equal_to([first, second, third, twin]), label="UniquePayments")
        assert_that(unique_settlements, equal_to([line_a, line_b]), label="UniqueSettlements")
        # Deduplication keeps each record's event timestamp.
        assert_that(
            unique_payments | "PaymentStamps" >> beam.ParDo(_IdAndTimestamp()),
            equal_to([("evt-1", T0), ("evt-2", T0 + 1000), ("evt-3", T0 + 2000), ("evt-4", T0 + 2000)]),
            label="TimestampsKept",
        )
