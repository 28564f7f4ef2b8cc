"""Conflicting re-deliveries (docs/DESIGN.md 3.3): the copy read first is kept, a later copy that differs in a
payload field is a dead letter, an identical one a plain duplicate; both engines alike.

Pure rules, a hypothesis differential test of the columnar deduplication
against the per-element rule, and `paybeam reconcile` end to end with both
engines. Every id below is made up.
"""
from __future__ import annotations

import json
from collections import defaultdict

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.reconcile_batch import ENGINES
from schemas.raw_chunks import RawChunk, kafka_position, source_path, source_prefix
from schemas.record_tables import RECONCILED_COLUMNS, RECONCILED_SCHEMA_OF_INPUT, records_to_table
from schemas.records import PAYMENTS, SETTLEMENTS, PaymentEvent, SettlementLine
from tests.cli_helpers import daily_totals, dead_letters, reconcile, results, run_summary
from tests.engine_parity import assert_same_outputs
from transforms.columnar.dedup import delivered_schema, first_deliveries
from transforms.columnar.validate import ORIGIN_COLUMN, SOURCE_PREFIX_COLUMN
from transforms.redelivery import conflict_letter, delivery_order, settle_deliveries

T0 = 1_767_607_200_000  # 2026-01-05T10:00:00Z


def payment(event_id="e_1", amount=1000, currency="USD", **changes) -> PaymentEvent:
    base = PaymentEvent(event_id, "p_1", "CAPTURED", "stripe", "ch_1", "m_1", amount, currency, T0)
    return base._replace(**changes)


def settlement(settlement_id="s_1", gross=1000, fee=30, **changes) -> SettlementLine:
    base = SettlementLine(settlement_id, "stripe", "ch_1", "m_1", "CAPTURE", gross, fee, gross - fee, "USD",
                          "2026-01-06", T0 + 86_400_000, None)
    return base._replace(**changes)


# ---------------------------------------------------------------- pure


def test_reason_names_the_differing_fields_and_the_kept_copy():
    letter, masked = conflict_letter(PAYMENTS, ("b.csv:3", payment(amount=1200, currency="EUR")),
                                     ("a.csv:2", payment()))
    assert letter.reason == ("conflicting re-delivery of event_id e_1: amount_minor 1200 != 1000, "
                             "currency EUR != USD (kept a.csv:2)")
    assert (letter.input, letter.source, letter.stage, masked) == (PAYMENTS, "b.csv:3", "dedup", 0)
    assert json.loads(letter.raw_payload) == {
        "event_id": "e_1", "event_type": "CAPTURED", "processor": "stripe", "processor_reference": "ch_1",
        "merchant_id": "m_1", "amount_minor": 1200, "currency": "EUR", "event_time": "2026-01-05T10:00:00.000Z"}


def test_times_are_shown_as_instants():
    letter, _ = conflict_letter(SETTLEMENTS, ("t/0@9", settlement(booked_time=T0)), ("t/0@1", settlement()))
    assert letter.reason == ("conflicting re-delivery of settlement_id s_1: booked_time 2026-01-05T10:00:00.000Z"
                             " != 2026-01-06T10:00:00.000Z (kept t/0@1)")


def test_identical_copies_and_fields_no_output_reads_are_plain_duplicates():
    assert conflict_letter(PAYMENTS, ("a.csv:3", payment()), ("a.csv:2", payment())) is None
    # payment_id changes no result and no total (PAYLOAD_FIELDS).
    assert conflict_letter(PAYMENTS, ("a.csv:3", payment(payment_id="p_2")), ("a.csv:2", payment())) is None


def test_a_copy_in_another_payout_conflicts():
    # A settlement line's payout decides its payout's balance (3.8): a copy naming another payout or day
    # is not the same line.
    letter, _ = conflict_letter(SETTLEMENTS, ("a.csv:3", settlement(payout_id="po_9", settlement_date="2026-01-07")),
                                ("a.csv:2", settlement()))
    assert "payout_id po_9 != " in letter.reason and "settlement_date 2026-01-07 != " in letter.reason


def test_a_card_number_in_a_conflicting_value_is_masked_and_counted():
    # 4222222222222 is a Luhn-valid 13-digit number: as an amount it is a PAN-shaped value in the reason.
    letter, masked = conflict_letter(PAYMENTS, ("a.csv:3", payment(amount=4222222222222)), ("a.csv:2", payment()))
    assert "4222222222222" not in letter.reason + letter.raw_payload
    assert masked == 2


def test_the_first_read_is_kept_by_file_then_line_and_by_partition_then_offset():
    kept, letters = settle_deliveries(PAYMENTS, [("b.csv:2", payment(amount=5)), ("a.csv:10", payment(amount=7)),
                                                 ("a.csv:9", payment())])
    assert kept == ("a.csv:9", payment())
    assert [letter.source for letter, _ in letters] == ["a.csv:10", "b.csv:2"]
    kept, _ = settle_deliveries(PAYMENTS, [("t/1@0", payment(amount=5)), ("t/0@11", payment()),
                                           ("t/0@9", payment(amount=3))])
    assert kept == ("t/0@9", payment(amount=3))


def test_delivery_order_is_the_columnar_origin_order():
    sources = ["a.csv:10", "a.csv:9", "b.avro#0", "a.csv:100", "c/d.jsonl:1"]
    ranks = {path: rank for rank, path in enumerate(sorted({source_path(source) for source in sources}))}
    origin = {source: RawChunk(PAYMENTS, source_path(source), file_rank=ranks[source_path(source)])
              .record_origin(source) for source in sources}
    assert sorted(sources, key=delivery_order) == sorted(sources, key=origin.get)
    kafka = ["t/1@0", "t/0@11", "t/0@9", "t/10@2"]
    assert sorted(kafka, key=delivery_order) == sorted(kafka, key=lambda s: RawChunk(PAYMENTS, "t").record_origin(s))


# ---------------------------------------------------------------- differential: columnar == per-element


def _variant(draw, input_name, record_id):
    if input_name == PAYMENTS:
        return payment(record_id, amount=draw(st.sampled_from([1000, 1200, 4222222222222])),
                       currency=draw(st.sampled_from(["USD", "EUR"])),
                       merchant_id=draw(st.sampled_from(["m_1", "m_2"])),
                       event_type=draw(st.sampled_from(["CAPTURED", "REFUNDED"])),
                       event_time=T0 + draw(st.sampled_from([0, 1])),
                       payment_id=draw(st.sampled_from(["p_1", "p_2"])))
    gross = draw(st.sampled_from([1000, 1001]))
    fee = draw(st.sampled_from([0, 30]))
    return settlement(record_id, gross=gross, fee=fee, processor=draw(st.sampled_from(["stripe", "adyen"])),
                      processor_reference=draw(st.sampled_from(["ch_1", "1234567890123452"])),
                      record_type=draw(st.sampled_from(["CAPTURE", "FEE"])),
                      payout_id=draw(st.sampled_from([None, "po_1"])),
                      # optional fields: a null on one side only must count as a difference (null-safe)
                      matched_minor=draw(st.sampled_from([None, 1000, 1100])),
                      matched_currency=draw(st.sampled_from([None, "EUR"])))


@st.composite
def deliveries(draw):
    input_name = draw(st.sampled_from([PAYMENTS, SETTLEMENTS]))
    kafka = draw(st.booleans())
    records = []
    for number in range(draw(st.integers(1, 6))):
        record_id = f"id_{number}"
        for _ in range(draw(st.integers(1, 4))):
            records.append(_variant(draw, input_name, record_id))
    places = draw(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 40)), min_size=len(records),
                           max_size=len(records), unique=True))
    sources = [f"topic/{part}@{ordinal}" if kafka else f"in/f{part}.csv:{ordinal}" for part, ordinal in places]
    return input_name, list(zip(sources, records))


def _columnar(input_name, delivered):
    paths = sorted({source_path(source) for source, _ in delivered if kafka_position(source) is None})
    ranks = {path: rank for rank, path in enumerate(paths)}
    origins = [RawChunk(input_name, source_path(source), file_rank=ranks.get(source_path(source), 0))
               .record_origin(source) for source, _ in delivered]
    columns = RECONCILED_COLUMNS[input_name]
    table = records_to_table([tuple(getattr(record, name) for name in columns) for _, record in delivered],
                             RECONCILED_SCHEMA_OF_INPUT[input_name])
    table = table.append_column(ORIGIN_COLUMN, pa.array(origins, "int64"))
    table = table.append_column(SOURCE_PREFIX_COLUMN, pa.array(
        [source_prefix(source) for source, _ in delivered], "string"))
    unique, judged = first_deliveries(table, input_name)
    return sorted(tuple(row.values()) for row in unique.to_pylist()), sorted(judged)


def _per_element(input_name, delivered):
    by_id = defaultdict(list)
    for source, record in delivered:
        by_id[record[0]].append((source, record))
    unique, judged = [], []
    for copies in by_id.values():
        (_, kept), letters = settle_deliveries(input_name, copies)
        unique.append(tuple(getattr(kept, name) for name in RECONCILED_COLUMNS[input_name]))
        judged += letters
    return sorted(unique), sorted(judged)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=deliveries())
def test_columnar_dedup_equals_the_per_element_rule(case):
    """Every column of every kept row, every dead letter (reason, source, payload) and masked count."""
    input_name, delivered = case
    assert _columnar(input_name, delivered) == _per_element(input_name, delivered)


# ---------------------------------------------------------------- end to end, both engines

HEADER = "event_id,payment_id,event_type,processor,processor_reference,merchant_id,amount_minor,currency,event_time"
SETTLEMENT_HEADER = ("settlement_id,processor,processor_reference,merchant_id,record_type,gross_minor,fee_minor,"
                     "net_minor,currency,settlement_date,booked_time,payout_id")
LEDGER = ["e_1,p_1,CAPTURED,stripe,ch_1,m_1,1000,USD,2026-01-05T10:00:00Z",
          "e_2,p_2,CAPTURED,stripe,ch_2,m_1,500,USD,2026-01-05T11:00:00Z"]
LINES = ["s_1,stripe,ch_1,m_1,CAPTURE,1000,30,970,USD,2026-01-06,2026-01-06T01:00:00Z,po_1",
         "s_2,stripe,ch_2,m_1,CAPTURE,500,10,490,USD,2026-01-06,2026-01-06T02:00:00Z,po_1"]


def _inputs(base, extra_ledger, extra_lines):
    for name in ("payments", "settlements"):
        (base / name).mkdir(parents=True)
    (base / "payments" / "a.csv").write_text("\n".join([HEADER, *LEDGER]) + "\n")
    (base / "settlements" / "a.csv").write_text("\n".join([SETTLEMENT_HEADER, *LINES]) + "\n")
    if extra_ledger:
        (base / "payments" / "b.csv").write_text("\n".join([HEADER, *extra_ledger]) + "\n")
    if extra_lines:
        (base / "settlements" / "b.csv").write_text("\n".join([SETTLEMENT_HEADER, *extra_lines]) + "\n")
    return str(base / "payments" / "*"), str(base / "settlements" / "*")


def test_reconcile_dead_letters_conflicting_copies_identically_in_both_engines(tmp_path):
    conflicting_ledger = ["e_1,p_1,CAPTURED,stripe,ch_1,m_1,1200,EUR,2026-01-05T10:00:00Z", LEDGER[1]]
    conflicting_lines = ["s_1,stripe,ch_1,m_1,CAPTURE,1000,40,960,USD,2026-01-06,2026-01-06T01:00:00Z,po_1"]
    inputs = _inputs(tmp_path / "with", conflicting_ledger, conflicting_lines)
    clean = _inputs(tmp_path / "clean", [], [])
    outputs = {}
    for engine in ENGINES:
        outputs[engine] = str(tmp_path / f"out-{engine}")
        assert reconcile(*inputs, outputs[engine], "--engine", engine) == 0
    assert_same_outputs(*outputs.values())
    out = outputs[ENGINES[0]]
    letters = sorted((row["source"], row["stage"], row["reason"]) for row in dead_letters(out))
    paths = {name: str(tmp_path / "with" / name / "{}.csv") for name in ("payments", "settlements")}
    assert letters == sorted([
        (paths["payments"].format("b") + ":2", "dedup", "conflicting re-delivery of event_id e_1: amount_minor "
         f"1200 != 1000, currency EUR != USD (kept {paths['payments'].format('a')}:2)"),
        (paths["settlements"].format("b") + ":2", "dedup", "conflicting re-delivery of settlement_id s_1: "
         f"fee_minor 40 != 30, net_minor 960 != 970 (kept {paths['settlements'].format('a')}:2)"),
    ])
    counts = run_summary(out)["inputs"]
    assert {key: counts["payments"][key] for key in ("read", "accepted", "rejected", "deduplicated", "conflicting")} \
        == {"read": 4, "accepted": 3, "rejected": 1, "deduplicated": 1, "conflicting": 1}
    assert {key: counts["settlements"][key] for key in ("read", "accepted", "rejected", "deduplicated",
                                                          "conflicting")} \
        == {"read": 3, "accepted": 2, "rejected": 1, "deduplicated": 0, "conflicting": 1}
    # The conflicting copies change nothing else: results and daily totals are those of the clean input.
    reference = str(tmp_path / "out-clean")
    assert reconcile(*clean, reference) == 0
    for read in (results, daily_totals):
        assert sorted(map(str, read(out))) == sorted(map(str, read(reference)))


def test_a_copy_in_another_payout_reads_alike_in_both_engines():
    """The columnar deduplication compares (and shows) the payout fields as the per-record rule does."""
    kept, copy = settlement(payout_id="po_1"), settlement(payout_id="po_9", settlement_date="2026-01-07")
    rows = []
    for origin, line in ((2, kept), (3, copy)):
        row = {name: getattr(line, name) for name in RECONCILED_SCHEMA_OF_INPUT[SETTLEMENTS].names}
        rows.append({**row, ORIGIN_COLUMN: origin, SOURCE_PREFIX_COLUMN: "a.csv:"})
    table = pa.Table.from_pylist(rows, schema=delivered_schema(SETTLEMENTS))
    unique, letters = first_deliveries(table, SETTLEMENTS)
    assert unique.num_rows == 1 and unique.column("payout_id").to_pylist() == ["po_1"]
    expected, _ = conflict_letter(SETTLEMENTS, ("a.csv:3", copy), ("a.csv:2", kept))
    assert [letter for letter, _ in letters] == [expected]
