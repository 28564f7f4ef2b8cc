"""The columnar risk stream (transforms/columnar/live_risk_flow.py) under TestStream, on the DirectRunner and Prism.

Attempts arrive as RawChunks, as paybeam's Kafka source hands them over: in-order chunks must get the
backtest's decisions (`decide_in_order`) record for record, re-delivered attempts are decided once, a
re-delivery with other content and a malformed row are dead letters, and the watermark passing every
window expires the kept attempts without changing a decision."""
from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import GlobalWindow, TimestampedValue
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from schemas.arrow_readers import tabulate_records
from schemas.attempts import ATTEMPT_FIELDS, ATTEMPTS
from schemas.records import RawRecord
from schemas.timestamps import format_timestamp, parse_timestamp_millis
from tests.beam_helpers import StateBag, StateTimer, StateValue
from tests.test_risk_backtest import MIXED, _attempts
from tests.test_risk_rules_in_force import (
    RULES_V1,
    RULES_V2,
    UNVERSIONED,
    V2,
    ScriptedSource,
    _one_rejected_update,
    _under_recorded_rules,
)
from transforms.columnar.flow import SHUFFLED_PIECE_ROWS, by_record_id
from transforms.columnar.live_risk_flow import DECISION_TABLES, ColumnarDecideAttemptStream
from transforms.columnar.risk import decisions_of
from transforms.columnar.validate import judge_chunk
from transforms.event_time import millis_to_beam_timestamp
from transforms.risk.windows import decide_in_order
from transforms.validate import DEAD_LETTERS


def _raw(attempt, source: str) -> RawRecord:
    values = {name: ("" if value is None else format_timestamp(value) if name == "event_time" else str(value))
              for name, value in zip(ATTEMPT_FIELDS, attempt)}
    return RawRecord(ATTEMPTS, source, values, ",".join(values.values()))


def _stream(chunks) -> TestStream:
    """[[RawRecord]] -> one RawChunk per list, the watermark following. Each is stamped at its first record,
    strictly after the one before: Prism may hand a stateful step its pending chunks in another order than
    they were added (a chunk stamped earlier, by an old re-delivery in it, was decided first), and this
    test is about chunks arriving in order."""
    stream, stamp = TestStream(), None
    for records in chunks:
        first = parse_timestamp_millis(records[0].fields["event_time"], "event_time")
        stamp = first if stamp is None else max(first, stamp + 1)
        chunk = tabulate_records(records, "attempts-topic", ATTEMPTS)
        stream = stream.add_elements([TimestampedValue(chunk, millis_to_beam_timestamp(stamp))])
        stream = stream.advance_watermark_to(millis_to_beam_timestamp(stamp))
    return stream.advance_watermark_to_infinity()


def test_in_order_chunks_get_the_backtest_s_decisions_and_copies_are_decided_once(stream_options):
    attempts = sorted(_attempts(200, 5), key=lambda a: (a.event_time, a.attempt_id))
    expected = decide_in_order(attempts, MIXED)
    assert {d.action for d in expected} >= {"allow", "block"}
    raws = [_raw(a, f"attempts-topic@0:{n}") for n, a in enumerate(attempts)]
    chunks = [raws[start:start + 25] for start in range(0, len(raws), 25)]
    chunks[3] = chunks[3] + raws[60:63]  # plain re-deliveries: decided once
    conflicting = raws[10]._replace(fields={**raws[10].fields, "amount_minor": "77"}, source="attempts-topic@0:999")
    broken = raws[11]._replace(fields={**raws[11].fields, "currency": "usd?"}, source="attempts-topic@0:1000")
    chunks[5] = chunks[5] + [conflicting, broken]
    with TestPipeline(options=stream_options) as pipeline:
        outputs = pipeline | _stream(chunks) | ColumnarDecideAttemptStream(MIXED)
        assert_that(outputs[DECISION_TABLES] | beam.FlatMap(decisions_of), equal_to(expected), label="Decisions")
        assert_that(outputs[DEAD_LETTERS] | beam.Map(lambda letter: (letter.stage, letter.source)),
                    equal_to([("dedup", "attempts-topic@0:999"), ("validate", "attempts-topic@0:1000")]),
                    label="DeadLetters")


def test_a_chunk_larger_than_a_shuffled_piece_reaches_the_deciding_step_whole():
    """The risk stream's one shard takes a chunk as one element (on Flink an element of the deciding step is a
    bundle, whose cost a chunk cut in two pieces paid twice); the reconciliation flows keep their pieces."""
    attempts = _attempts(SHUFFLED_PIECE_ROWS + 500, 9)
    chunk = tabulate_records([_raw(a, f"attempts-topic@0:{n}") for n, a in enumerate(attempts)], "attempts-topic",
                             ATTEMPTS)
    accepted = judge_chunk(chunk)[0]
    assert accepted.num_rows == len(attempts)
    whole = list(by_record_id(("attempts-topic", accepted), ATTEMPTS, 1, whole=True))
    assert [(shard, table.num_rows) for shard, table in whole] == [(0, len(attempts))]
    in_pieces = list(by_record_id(("attempts-topic", accepted), ATTEMPTS, 1))
    assert [table.num_rows for _, table in in_pieces] == [SHUFFLED_PIECE_ROWS, 500]
    assert whole[0][1].to_pylist() == [row for _, table in in_pieces for row in table.to_pylist()]


def test_state_written_when_a_bundle_ends_is_what_the_next_bundle_finds(stream_options, monkeypatch):
    """DecideChunksFn decides a bundle's chunks in finish_bundle and writes its state there, through the handles
    `process` got: the runner's SDK must commit it. With the process-wide shard cache turned off every bundle
    rebuilds both shards from the state (as a restored run does), so a state write lost would show as an
    attempt decided again or a window missing attempts."""
    from transforms.columnar import live_shards

    rebuilt = []

    def never_cached(self, shard, meta):
        rebuilt.append(meta is not None)
        return None

    monkeypatch.setattr(live_shards._ShardCache, "take", never_cached)
    attempts = sorted(_attempts(150, 11), key=lambda a: (a.event_time, a.attempt_id))
    expected = decide_in_order(attempts, MIXED)
    raws = [_raw(a, f"attempts-topic@0:{n}") for n, a in enumerate(attempts)]
    chunks = [raws[start:start + 30] for start in range(0, len(raws), 30)]
    chunks[2] = chunks[2] + raws[:5]  # copies of attempts decided in an earlier bundle: decided once
    with TestPipeline(options=stream_options) as pipeline:
        outputs = pipeline | _stream(chunks) | ColumnarDecideAttemptStream(MIXED)
        assert_that(outputs[DECISION_TABLES] | beam.FlatMap(decisions_of), equal_to(expected))
    assert rebuilt.count(True) >= 2 * (len(chunks) - 1)  # both shards rebuilt from written state, per bundle


def test_a_rules_update_mid_stream_is_in_force_from_the_next_chunk(stream_options):

    attempts = sorted(_attempts(120, 5), key=lambda a: (a.event_time, a.attempt_id))
    raws = [_raw(a, f"attempts-topic@0:{n}") for n, a in enumerate(attempts)]
    # One poll per chunk (poll interval 0): the 4th chunk, attempts 60.., is the first under the update.
    source = ScriptedSource({4: [("rules@0", UNVERSIONED.encode()), ("rules@1", V2.encode())]})

    def check(decisions):
        decisions = list(decisions)
        assert len(decisions) == len(attempts)
        _under_recorded_rules(attempts, decisions)
        under_v2 = {d.attempt_id for d in decisions if d.ruleset == RULES_V2.fingerprint}
        assert under_v2 == {a.attempt_id for a in attempts[60:]}
        assert sorted(decisions, key=lambda d: (d.event_time, d.attempt_id)) != decide_in_order(attempts, RULES_V1)

    with TestPipeline(options=stream_options) as pipeline:
        outputs = (pipeline | _stream([raws[start:start + 20] for start in range(0, len(raws), 20)])
                   | ColumnarDecideAttemptStream(RULES_V1, source, poll_millis=0))
        assert_that(outputs[DECISION_TABLES] | beam.FlatMap(decisions_of), check)
        assert_that(outputs[DEAD_LETTERS], lambda letters: _one_rejected_update(list(letters)), label="RejectedRules")


def _decide(fn, tables, state):
    """DecideChunksFn on a bundle of validated tables (process each, then finish_bundle, as a runner calls it):
    (decisions, dead letter stages)."""
    fn.start_bundle()
    for table in tables:
        assert list(fn.process((0, table), timestamp=Timestamp(0), window=GlobalWindow(), **state)) == []
    outputs = list(fn.finish_bundle())
    decided = [output for output in outputs if not isinstance(output, beam.pvalue.TaggedOutput)]
    letters = [output.value for output in outputs if isinstance(output, beam.pvalue.TaggedOutput)]
    assert all(isinstance(output, WindowedValue) for output in decided + letters)
    return ([d for t in decided for d in decisions_of(t.value)], [letter.value.stage for letter in letters])


def test_one_step_keeps_first_arrivals_and_attempts_in_state_a_restored_run_rebuilds_both():
    """First arrivals and decisions share one stateful step (one keyed exchange fewer on Flink): each half
    keeps its own state and token. A run that finds tokens it did not write (a restored checkpoint, a
    retried bundle) rebuilds both from the state: a copy decided before stays decided once, and the
    attempts kept before still count in every window."""
    from transforms.columnar.live_risk_flow import DecideChunksFn
    from transforms.columnar.validate import judge_chunk

    attempts = sorted(_attempts(120, 9), key=lambda a: (a.event_time, a.attempt_id))
    expected = decide_in_order(attempts, MIXED)
    raws = [_raw(a, f"attempts-topic@0:{n}") for n, a in enumerate(attempts)]

    def validated(records):
        accepted, letters, _ = judge_chunk(tabulate_records(records, "attempts-topic", ATTEMPTS))
        assert letters == []
        return accepted

    state = dict(arrived=StateBag(), arrived_meta=StateValue(), forget=StateTimer(), kept=StateBag(), meta=StateValue(),
                 expire=StateTimer())
    first = DecideChunksFn(MIXED, None, 60_000, 1_000, 86_400_000)
    first.setup()
    decided, letters = _decide(first, [validated(raws[:30]), validated(raws[30:60])], state)
    assert (decided, letters) == (expected[:60], [])
    assert state["arrived"].items and state["kept"].items  # both halves wrote their state

    restored = DecideChunksFn(MIXED, None, 60_000, 1_000, 86_400_000)  # another owner: nothing cached
    restored.setup()
    copies = [raw._replace(source=f"attempts-topic@0:{900 + n}") for n, raw in enumerate(raws[50:60])]
    conflicting = raws[5]._replace(fields={**raws[5].fields, "amount_minor": "77"}, source="attempts-topic@0:999")
    decided, letters = _decide(restored, [validated(copies + [conflicting] + raws[60:])], state)
    assert decided == expected[60:]
    assert letters == ["dedup"]
