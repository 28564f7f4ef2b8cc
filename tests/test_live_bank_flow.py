"""The stream form of three-way reconciliation (transforms/bank/live_flow.py) in Beam, against batch.

Under TestStream, a generated dataset's payments and settlement lines arrive out of order (some re-delivered),
its bank statements arrive as whole documents the morning after their day (one re-sent, one re-sent with an
entry changed, one message that is no statement), and the watermark finally passes every deadline and
lifetime. In both engines every payout and bank-match key ends with a final revision, its revisions count
1, 2, 3..., and the last non-WITHDRAWN rows equal the batch answer (ReconcileBank at a far-future as_of) on
every column. Generated ids only: no card numbers, no personal data.
"""
from __future__ import annotations

import functools
import glob
import os
import random
from collections import Counter, defaultdict

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that
from apache_beam.transforms.window import TimestampedValue

from datagen.generator import GeneratorConfig, generate
from schemas.arrow_readers import tabulate_records
from schemas.bank.entry import BANK_STATEMENTS
from schemas.bank.formats import bank_records_of_message
from schemas.kafka_values import raw_record_from_message
from schemas.records import PAYMENTS, SETTLEMENTS
from schemas.rules import BANK_MATCHES, PAYOUTS, WITHDRAWN
from tests.beam_helpers import DAY, batches_half_a_day_behind
from tests.test_stream_equivalence import FAR_FUTURE, _valid_records
from transforms.bank.flow import ReconcileBank
from transforms.bank.live import bank_match_key
from transforms.bank.live_flow import LiveReconcileBank, lines_by_payout
from transforms.columnar.bank_flow import payout_lines_by_payout
from transforms.columnar.live_flow import ColumnarStreamReconcile
from transforms.daily_totals import TriggerPolicy
from transforms.event_time import millis_to_beam_timestamp
from transforms.flow import ReconcileConfig, ReconcileRecords
from transforms.reconcile import AsOf

STREAM_CONFIG = ReconcileConfig(as_of=AsOf.watermark(), trigger_policy=TriggerPolicy(None))
BATCH_CONFIG = ReconcileConfig(as_of=AsOf.fixed(FAR_FUTURE), trigger_policy=TriggerPolicy.batch())
_CAPTURED = defaultdict(list)


def _capture(name, values):
    _CAPTURED[name] = list(values)


def _statement_messages(data_dir):
    """Each statement file as a topic's message (its whole document), stamped the morning after its day."""
    messages = []
    for offset, path in enumerate(sorted(glob.glob(os.path.join(data_dir, "bank_statements", "*")))):
        day = os.path.basename(path).split("_")[-1].split(".")[0]
        with open(path, "rb") as handle:
            document = handle.read()
        stamped = _day_millis(day) + DAY + 6 * 3_600_000
        messages.append((raw_record_from_message(BANK_STATEMENTS, f"statements/0@{offset}", document, "json"), stamped))
    return messages


def _day_millis(day: str) -> int:
    from datetime import date

    return (date.fromisoformat(day) - date(1970, 1, 1)).days * DAY


def _hostile(messages):
    """A re-sent statement, a re-sent statement with one amount changed, and a message that is no statement."""
    resent_raw, resent_time = messages[0]
    changed_raw, changed_time = messages[1]
    document = changed_raw.fields["document"]
    # The first amount of the document, one digit changed: a conflicting re-delivery of that entry.
    text = document.decode("utf-8")
    at = text.index("<Amt Ccy=", text.index("<Ntry>")) + len("<Amt Ccy=") + 6
    digit = next(index for index in range(at, len(text)) if text[index].isdigit() and text[index] != "0")
    changed = text[:digit] + ("1" if text[digit] != "1" else "2") + text[digit + 1:]
    offset = len(messages)
    return [
        (raw_record_from_message(BANK_STATEMENTS, f"statements/0@{offset}", resent_raw.fields["document"], "json"),
         resent_time + 3_600_000),
        (raw_record_from_message(BANK_STATEMENTS, f"statements/0@{offset + 1}", changed.encode("utf-8"), "json"),
         changed_time + 3_600_000),
        (raw_record_from_message(BANK_STATEMENTS, f"statements/0@{offset + 2}", b"not a statement", "json"),
         changed_time + 7_200_000),
    ]


def _arrivals(records, seed: int, after=()):
    """Shuffled arrivals in batches, then `after` in a batch of its own (copies come after their originals);
    the watermark trails the latest time by half a day, then passes every lifetime (30 days after the latest
    record)."""
    rng = random.Random(seed)
    ordered = sorted(records, key=lambda item: item[1] + rng.randint(0, 2 * DAY))
    batches, latest = batches_half_a_day_behind(ordered, rng)
    batches.append((list(after), None))
    batches += [([], latest + step * DAY) for step in range(1, 31)]
    return batches


def _stream(batches, columnar: bool):
    stream = TestStream()
    for batch, watermark in batches:
        elements = []
        for raw, time in batch:
            if raw.input == BANK_STATEMENTS or not columnar:
                elements.append(TimestampedValue(raw, millis_to_beam_timestamp(time)))
        if columnar:
            for name in (PAYMENTS, SETTLEMENTS):
                of_input = [(raw, time) for raw, time in batch if raw.input == name]
                if of_input:
                    chunk = tabulate_records([raw for raw, _ in of_input], f"{name}-topic", name)
                    elements.append(TimestampedValue(chunk, millis_to_beam_timestamp(min(t for _, t in of_input))))
        if elements:
            stream = stream.add_elements(elements)
        if watermark is not None:
            stream = stream.advance_watermark_to(millis_to_beam_timestamp(watermark))
    return stream


def _input(name):
    return lambda element: getattr(element, "input", None) == name


def _run_stream(batches, engine: str):
    _CAPTURED.clear()
    with BeamTestPipeline() as pipeline:
        arriving = pipeline | _stream(batches, engine == "columnar")
        inputs = {name: arriving | f"Only[{name}]" >> beam.Filter(_input(name))
                  for name in (PAYMENTS, SETTLEMENTS, BANK_STATEMENTS)}
        if engine == "columnar":
            outputs = ({name: inputs[name] for name in (PAYMENTS, SETTLEMENTS)}
                       | ColumnarStreamReconcile(STREAM_CONFIG, shards=3))
            lines = outputs["settlement_tables"] | beam.FlatMap(payout_lines_by_payout)
        else:
            outputs = {name: inputs[name] for name in (PAYMENTS, SETTLEMENTS)} | ReconcileRecords(STREAM_CONFIG)
            lines = outputs["settlements"] | beam.FlatMap(lines_by_payout)
        bank = {"payout_lines": lines, BANK_STATEMENTS: inputs[BANK_STATEMENTS]} | LiveReconcileBank()
        for name in (PAYOUTS, BANK_MATCHES, "dead_letters"):
            assert_that(bank[name], functools.partial(_capture, name), label=name)
    return dict(_CAPTURED)


def _run_batch(records, messages):
    _CAPTURED.clear()
    with BeamTestPipeline() as pipeline:
        raw = {name: pipeline | f"Create[{name}]" >> beam.Create([r for r, _ in records if r.input == name])
               for name in (PAYMENTS, SETTLEMENTS)}
        outputs = raw | ReconcileRecords(BATCH_CONFIG)
        statements = pipeline | "Statements" >> beam.Create(
            [entry for message, _ in messages for entry in bank_records_of_message(message)])
        bank = {"settlements": outputs["settlements"], BANK_STATEMENTS: statements,
                "as_of": outputs["as_of"]} | ReconcileBank()
        for name in (PAYOUTS, BANK_MATCHES, "dead_letters"):
            assert_that(bank[name], functools.partial(_capture, name), label=name)
    return dict(_CAPTURED)


def _payout_key(row):
    return row.processor, row.payout_id


def _last_revisions(rows, key):
    """Per key, its revisions in order: checks they count 1, 2, 3... and only the last is final."""
    by_key = defaultdict(list)
    for row in rows:
        by_key[key(row)].append(row)
    last = {}
    for name, revisions in by_key.items():
        revisions.sort(key=lambda row: row.revision)
        assert [row.revision for row in revisions] == list(range(1, len(revisions) + 1)), name
        assert [row.is_final for row in revisions] == [False] * (len(revisions) - 1) + [True], name
        last[name] = revisions[-1]
    return last


def _answer(last_rows):
    return Counter(row[:-2] for row in last_rows if row.status != WITHDRAWN)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("live-bank")
    generate(GeneratorConfig(payments=300, seed=41, days=8, bank_statements="camt053"), str(out))
    records = _valid_records(out)
    messages = _statement_messages(out)
    return records, messages


@pytest.fixture(scope="module")
def batch(dataset):
    records, messages = dataset
    return _run_batch(records, messages)


@pytest.mark.parametrize("engine", ["elementwise", "columnar"])
def test_every_key_ends_final_with_the_batch_answer(dataset, batch, engine):
    records, messages = dataset
    stream = _run_stream(_arrivals(records + messages, seed=5, after=_hostile(messages)), engine)
    payouts = _last_revisions(stream[PAYOUTS], _payout_key)
    matches = _last_revisions(stream[BANK_MATCHES], bank_match_key)
    assert _answer(payouts.values()) == _answer(batch[PAYOUTS]) and payouts
    assert _answer(matches.values()) == _answer(batch[BANK_MATCHES]) and matches
    assert {row.status for row in batch[BANK_MATCHES]} >= {"PAYOUT_RECEIVED", "PAYOUT_NOT_RECEIVED"}
    letters = Counter((letter.stage, letter.input) for letter in stream["dead_letters"])
    # The changed entry (a conflicting re-delivery) and the message that is no statement; the identical
    # re-sent statement is no letter.
    assert letters[("dedup", BANK_STATEMENTS)] == 1
    assert letters[("decode", BANK_STATEMENTS)] == 1


def test_revisions_show_what_was_open_before_it_was_decided(dataset):
    """The stream says PENDING while a deadline is ahead and revises when the watermark passes it."""
    records, messages = dataset
    stream = _run_stream(_arrivals(records + messages, seed=9), "elementwise")
    payout_statuses = Counter((row.status, row.is_final) for row in stream[PAYOUTS])
    match_statuses = Counter((row.status, row.is_final) for row in stream[BANK_MATCHES])
    assert payout_statuses[("PENDING", False)] and payout_statuses[("PAYOUT_BALANCED", True)]
    assert match_statuses[("PENDING", False)] and match_statuses[("PAYOUT_NOT_RECEIVED", True)]
    assert not any(row.status == "PENDING" and row.is_final for row in stream[PAYOUTS] + stream[BANK_MATCHES])


def test_the_bank_key_uses_its_cached_state_only_while_the_state_holds_its_token():
    from tests.beam_helpers import StateTimer, StateValue  # a ReadModifyWriteState's read/write in memory
    from transforms.bank.live import LiveBankMatches
    from transforms.bank.live_flow import LiveBankMatchesFn
    from transforms.bank.matching import DEFAULT_BANK_POLICY

    fn, state, timer = LiveBankMatchesFn(DEFAULT_BANK_POLICY, 15), StateValue(), StateTimer()
    fn.setup()
    first = LiveBankMatches(DEFAULT_BANK_POLICY, 15)
    fn._save("bank", state, timer, None, first, 1000)
    written = state.value
    assert fn._load("bank", state)[1] is first  # the instance's own last write: no unpickling
    second = LiveBankMatches(DEFAULT_BANK_POLICY, 15)
    fn._save("bank", state, timer, 5, second, 2000)
    state.value = written  # the bundle that wrote `second` failed: its write is discarded, a retry reads the older
    reloaded = fn._load("bank", state)
    assert reloaded[1] is not first and reloaded[1] is not second and reloaded[0] is None and reloaded[2] == 1000
    assert fn._load("bank", state)[1] is not reloaded[1]  # handed out by removing: only a save puts it back
