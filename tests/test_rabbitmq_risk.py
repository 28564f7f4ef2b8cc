"""`paybeam risk stream --source rabbitmq` on Prism (both engines) and on the embedded Flink against a real
RabbitMQ (engines stage).

Attempts arrive on a queue in event-time order, hostile messages among them; half-way the watched rules
file is replaced by a new version and the stream takes it without a restart. Every decision in the
decisions queue must be the in-order decision of its attempt under the rule set it records (the
backtest's engine on the attempts up to it), the first half under the launch rules and the second under
the update; the hostile messages are dead letters with their reasons; every attempt is acked.
"""
from __future__ import annotations

import json
import os
import time

import pytest

from pipelines.io.rabbitmq import AmqpEndpoint, declare_queue, publish_values
from tests.card_numbers import card_number
from tests.rabbitmq_helpers import Unpiped, kill, queue_rows, ready_count, start_stream
from tests.stream_helpers import wait_until
from tests.test_risk_rules_in_force import RULES_V1, RULES_V2, V2
from tests.test_risk_stream import _as_decision, _runner_arguments, _timed, _values, first_half
from transforms.risk.windows import decide_in_order

pytestmark = pytest.mark.engines


@pytest.mark.parametrize("runner, engine", [("PrismRunner", "columnar"), ("PrismRunner", "elementwise"),
                                            ("FlinkRunner", "columnar")])
def test_live_decisions_from_a_queue_follow_a_rules_update_and_equal_the_in_order_engine(rabbitmq_broker, tmp_path,
                                                                                         request, runner, engine):
    url, endpoint = rabbitmq_broker.amqp_url, AmqpEndpoint(rabbitmq_broker.amqp_url)
    run = os.urandom(4).hex()
    queues = {name: f"{name}-{run}" for name in ("attempts", "decisions", "dead_letters")}
    declare_queue(endpoint, queues["attempts"], "quorum")
    ordered, first, rules_file, hostile = first_half(tmp_path)
    publish_values(endpoint, queues["attempts"], _values(first) + hostile)
    log = tmp_path / "risk.err"
    process = start_stream(url, ["risk", "stream", "--source", "rabbitmq", *_runner_arguments(runner, request),
                                 "--attempts-queue", queues["attempts"], "--decisions-topic", queues["decisions"],
                                 "--dead-letters-topic", queues["dead_letters"], "--exchange", f"paybeam-{run}",
                                 "--rules", str(rules_file), "--watch-rules", "--rules-poll-ms", "0",
                                 "--idle-timeout", "1", "--engine", engine], log)
    try:
        wait_until("the first half's decisions", lambda: len(queue_rows(endpoint, queues["decisions"])) >= len(first),
                   Unpiped(process), 180)
        staged = tmp_path / "rules.yaml.new"  # replaced atomically, as a deploy tool does
        staged.write_text(V2)
        os.replace(staged, rules_file)
        second = _timed(ordered[40:], max(int(time.time() * 1000) + 1_000, first[-1].event_time + 500))
        publish_values(endpoint, queues["attempts"], _values(second))
        wait_until("every decision", lambda: len(queue_rows(endpoint, queues["decisions"])) >= len(ordered),
                   Unpiped(process), 120)
        wait_until("the dead letters", lambda: len(queue_rows(endpoint, queues["dead_letters"])) >= len(hostile),
                   Unpiped(process), 60)
        wait_until("every attempt acked", lambda: ready_count(endpoint, queues["attempts"]) == 0, Unpiped(process), 60)
    except BaseException:
        print(f"the stream's log:\n{log.read_text()[-4000:]}")
        raise
    finally:
        kill(process, group=True)
    attempts = first + second
    rows, letters = queue_rows(endpoint, queues["decisions"]), queue_rows(endpoint, queues["dead_letters"])
    assert len(rows) == len(attempts) and len({row["attempt_id"] for row in rows}) == len(attempts)
    by_print = {RULES_V1.fingerprint: RULES_V1, RULES_V2.fingerprint: RULES_V2}
    position = {a.attempt_id: index for index, a in enumerate(attempts)}
    for row in rows:
        decision = _as_decision(row)
        assert decision == decide_in_order(attempts[:position[decision.attempt_id] + 1], by_print[decision.ruleset])[-1]
    under = {row["attempt_id"]: row["ruleset"] for row in rows}
    assert all(under[a.attempt_id] == RULES_V1.fingerprint for a in first)
    assert all(under[a.attempt_id] == RULES_V2.fingerprint for a in second)
    assert decide_in_order(attempts, RULES_V1) != sorted(
        (_as_decision(row) for row in rows), key=lambda d: position[d.attempt_id])  # V2 changed something
    reasons = " | ".join(letter["reason"] for letter in letters)
    assert [letter["input"] for letter in letters] == ["attempts"] * 3
    assert "missing field" in reasons and "invalid JSON" in reasons and "card number" in reasons, reasons
    stderr = log.read_text()
    assert card_number() not in json.dumps(rows) + json.dumps(letters) + stderr
    assert "amqp://***@127.0.0.1" in stderr and "guest:guest" not in stderr
