"""AssignEventTime (docs/DESIGN.md 4.1) and Deduplicate (3.3: re-deliveries dropped).

Two small TestPipelines plus pure checks. Every id below is made up.
"""
from __future__ import annotations

from datetime import timedelta

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from schemas.records import PAYMENTS, SETTLEMENTS, PaymentEvent, SettlementLine
from transforms.dedup import UNIQUE, Deduplicate, record_id
from transforms.event_time import (
    AssignEventTime,
    beam_timestamp_to_millis,
    event_time_millis,
    millis_to_beam_timestamp,
)
from transforms.validate import DEAD_LETTERS

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


def _delivered(records, path="in.csv"):
    """(source, record) pairs as ParseAndValidate(with_sources=True) gives them: line i + 2 of one file."""
    return [(f"{path}:{line}", record) for line, record in enumerate(records, start=2)]


@pytest.mark.parametrize("bounded", [True, False])
def test_deduplicate_keeps_one_of_each_redelivery(bounded):
    first, second, third = payment("evt-1", T0), payment("evt-2", T0 + 1000), payment("evt-3", T0 + 2000)
    # evt-2 and evt-3 share every field but the id: distinct records, both kept.
    twin = third._replace(event_id="evt-4", payment_id=third.payment_id)
    payments = [first, second, first, third, first, twin, third]
    line_a, line_b = settlement("stl-1", T0 + 10), settlement("stl-2", T0 + 20)
    settlements = [line_a, line_b, line_a, line_a]

    with BeamTestPipeline() as pipeline:
        unique_payments = (
            pipeline
            | "CreatePayments" >> beam.Create(_delivered(payments))
            | "PaymentTime" >> AssignEventTime(delivered=True)
            | "DedupPayments" >> Deduplicate(PAYMENTS, bounded=bounded)
        )
        unique_settlements = (
            pipeline
            | "CreateSettlements" >> beam.Create(_delivered(settlements))
            | "SettlementTime" >> AssignEventTime(delivered=True)
            | "DedupSettlements" >> Deduplicate(SETTLEMENTS, bounded=bounded)
        )
        assert_that(unique_payments[UNIQUE], equal_to([first, second, third, twin]), label="UniquePayments")
        assert_that(unique_settlements[UNIQUE], equal_to([line_a, line_b]), label="UniqueSettlements")
        # Identical copies are plain duplicates: no dead letters.
        assert_that(unique_payments[DEAD_LETTERS], equal_to([]), label="NoPaymentLetters")
        assert_that(unique_settlements[DEAD_LETTERS], equal_to([]), label="NoSettlementLetters")
        # Deduplication keeps each record's event timestamp.
        assert_that(
            unique_payments[UNIQUE] | "PaymentStamps" >> beam.ParDo(_IdAndTimestamp()),
            equal_to([("evt-1", T0), ("evt-2", T0 + 1000), ("evt-3", T0 + 2000), ("evt-4", T0 + 2000)]),
            label="TimestampsKept",
        )


def test_bounded_dedup_keeps_the_first_read_whatever_the_arrival_order():
    """As-of mode: the copy with the lowest (file, line) survives, the columnar engine's survivor."""
    kept = payment("e_1", T0, amount=1000)
    later = kept._replace(amount_minor=1200, currency="USD")
    deliveries = [("b.csv:2", later), ("a.csv:9", kept), ("a.csv:10", later)]  # arrival order is irrelevant
    with BeamTestPipeline() as pipeline:
        outputs = (pipeline | beam.Create(deliveries) | AssignEventTime(delivered=True)
                   | Deduplicate(PAYMENTS, bounded=True))
        assert_that(outputs[UNIQUE], equal_to([kept]), label="Kept")
        assert_that(outputs[DEAD_LETTERS] | beam.Map(lambda letter: (letter.source, letter.stage, letter.reason)),
                    equal_to([(source, "dedup", "conflicting re-delivery of event_id e_1: amount_minor 1200 != 1000,"
                                                " currency USD != EUR (kept a.csv:9)")
                              for source in ("a.csv:10", "b.csv:2")]), label="Letters")


def test_streaming_dedup_dead_letters_a_conflicting_copy_arriving_later(stream_options):
    """Unbounded input: the first arrival passes at once; a later copy that differs is a dead letter, an
    identical one is dropped, and after the horizon the id is forgotten."""
    first = settlement("s_1", T0, gross=1000)
    conflicting = first._replace(gross_minor=1200, net_minor=1170)
    stream = (TestStream()
              .add_elements([TimestampedValue(("topic/0@5", first), T0 // 1000)])
              .advance_watermark_to(T0 // 1000 + 60)
              .add_elements([TimestampedValue(("topic/1@2", conflicting), T0 // 1000 + 61),
                             TimestampedValue(("topic/0@6", first), T0 // 1000 + 62)])
              .advance_watermark_to(T0 // 1000 + 8 * 86_400)
              .add_elements([TimestampedValue(("topic/1@3", conflicting), T0 // 1000 + 8 * 86_400 + 1)])
              .advance_watermark_to_infinity())
    options = stream_options
    with BeamTestPipeline(options=options) as pipeline:
        outputs = pipeline | stream | Deduplicate(SETTLEMENTS, timedelta(days=7), bounded=False)
        assert_that(outputs[UNIQUE], equal_to([first, conflicting]), label="Passed")
        assert_that(outputs[DEAD_LETTERS] | beam.Map(lambda letter: (letter.source, letter.reason)),
                    equal_to([("topic/1@2", "conflicting re-delivery of settlement_id s_1: gross_minor 1200 != 1000,"
                                            " net_minor 1170 != 970 (kept topic/0@5)")]), label="Letters")
