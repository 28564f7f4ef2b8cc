"""Risk decisions on a stream (transforms/risk/live.py): on in-order attempts, the backtest's decisions.

TestStream drives the attempts and the watermark, on the bundle-based DirectRunner and on Prism."""
from __future__ import annotations

from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from tests.test_risk_backtest import MIXED, _attempts
from tests.test_risk_windows import attempt
from transforms.risk.live import DecideLiveAttempts, parts_expected
from transforms.risk.windows import decide_in_order


def _stream(attempts, batch: int = 20) -> TestStream:
    stream, watermark = TestStream(), -1
    for start in range(0, len(attempts), batch):
        part = attempts[start:start + batch]
        stream = stream.add_elements([TimestampedValue(a, Timestamp(micros=a.event_time * 1000)) for a in part])
        if max(a.event_time for a in part) > watermark:
            watermark = max(a.event_time for a in part)
            stream = stream.advance_watermark_to(Timestamp(micros=watermark * 1000))
    return stream.advance_watermark_to_infinity()


def test_in_order_attempts_get_the_backtest_s_decisions(stream_options):
    attempts = sorted(_attempts(160, 3), key=lambda a: (a.event_time, a.attempt_id))
    expected = decide_in_order(attempts, MIXED)
    assert {d.action for d in expected} >= {"allow", "block"}
    with TestPipeline(options=stream_options) as pipeline:
        decisions = (pipeline | _stream(attempts) | DecideLiveAttempts(MIXED))["decisions"]
        assert_that(decisions, equal_to(expected))


def test_a_redelivered_attempt_is_decided_once(stream_options):
    attempts = sorted(_attempts(40, 4), key=lambda a: (a.event_time, a.attempt_id))
    with TestPipeline(options=stream_options) as pipeline:
        decisions = (pipeline | _stream(attempts + attempts[-3:]) | DecideLiveAttempts(MIXED))["decisions"]
        assert_that(decisions, equal_to(decide_in_order(attempts, MIXED)))


def test_every_key_the_attempt_has_answers():
    assert parts_expected(attempt(0, 0), MIXED) == 3
    assert parts_expected(attempt(0, 0, customer=None), MIXED) == 2
