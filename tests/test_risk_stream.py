"""`paybeam risk stream` on Prism and on the embedded Flink against a real Kafka-protocol broker (DESIGN 10.11,
10.13), with the columnar engine (the default) and the per-element one.

The CLI runs as a child process, as an operator runs it. Attempts arrive on a one-partition topic in
event-time order; half-way a new rule version arrives (on the rules topic after a malformed document, or
by replacing the watched rules file) and the stream takes it without a restart.
The columnar runs decide in a worker process of their own (the default) when the update comes on the
rules topic, and in the reader's process (--worker-processes 1) when it comes from the watched file. Every decision on the decisions topic must be the in-order decision of its
attempt under the rule set it records (the backtest's engine on the attempts up to it), the first half under the launch rules and
the second under the update; hostile messages are dead letters with their reasons and nothing else
is lost: decisions + dead letters = messages.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Callable, List, Optional

import pytest

from pipelines.io.kafka import create_topics
from schemas.kafka_values import encode_value
from schemas.timestamps import parse_timestamp_millis
from tests.card_numbers import card_number
from tests.flink_helpers import flink_args
from tests.kafka_helpers import read_topic, unique_topic
from tests.prism_helpers import prism_binary
from tests.stream_helpers import REPO, produce_values, wait_until
from tests.test_risk_backtest import _attempts
from tests.test_risk_rules_in_force import RULES_V1, RULES_V2, UNVERSIONED, V1, V2
from transforms.risk.windows import decide_in_order

pytestmark = pytest.mark.engines

STARTUP_DEADLINE_SECONDS = 180
OUTPUT_DEADLINE_SECONDS = 120


def _start(arguments: List[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", *arguments], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": REPO}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _wait_for(what: str, condition: Callable[[], Optional[object]], process: subprocess.Popen, deadline_seconds: float):
    return wait_until(what, condition, process, deadline_seconds, "paybeam risk stream")


def _stop(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate()
        pytest.fail("paybeam risk stream did not stop within 60s of SIGTERM")
    return stderr


def _timed(attempts, start_millis: int):
    """The attempts in their order, half a second apart from `start_millis`.

    The reader's watermark follows the records, and an idle partition releases it to wall-clock now (minus
    --idle-timeout): attempts behind it would be late data, whose keys' histories the watermark may already
    have cleared, which the in-order engine does not model. So each half is timed when it is produced."""
    return [a._replace(event_time=start_millis + 500 * index) for index, a in enumerate(attempts)]


def _values(attempts) -> List[bytes]:
    return [encode_value(a._asdict(), "json", "authorization_attempt") for a in attempts]


def _decisions(servers: str, topic: str) -> List[dict]:
    return [json.loads(message.value) for message in read_topic(servers, topic)]


def _as_decision(row: dict):
    """A decision message back as the record the engine returns."""
    from schemas.decisions import FiredRule, RiskDecision

    return RiskDecision(**{**row, "event_time": parse_timestamp_millis(row["event_time"]),
                           "fired": [FiredRule(**rule) for rule in row["fired"]],
                           "shadow_fired": [FiredRule(**rule) for rule in row["shadow_fired"]]})


def _runner_arguments(runner: str, request) -> List[str]:
    if runner == "PrismRunner":
        prism_binary()  # fails with the `make engine-prism` hint when it was not fetched
        return ["--runner", "PrismRunner"]
    # Parallelism 1, as the other unbounded Flink tests (docs/DESIGN.md 7); the workers those the run gives
    # itself on the embedded Flink: the columnar engine's two processes (local_worker_pool), else LOOPBACK.
    return flink_args(request.getfixturevalue("flink_engine"), "[local]", "--checkpointing_interval=10000",
                      "--parallelism=1")


def first_half(tmp_path):
    """80 attempts in event-time order, the first 40 timed from half a minute ago, the launch rules (V1) in a
    file, and three hostile messages (no event time, not JSON, a card number in a field)."""
    ordered = sorted(_attempts(80, 11), key=lambda a: (a.event_time, a.attempt_id))
    first = _timed(ordered[:40], int(time.time() * 1000) - 30_000)
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(V1)
    hostile = [b'{"attempt_id": "att_x1", "event_time": "yesterday"}', b"\xff\xfe not json",
               encode_value(first[0]._replace(attempt_id="att_x2", customer_id=card_number())._asdict(), "json",
                            "authorization_attempt")]
    return ordered, first, rules_file, hostile


@pytest.mark.parametrize("runner, updates, engine", [
    ("PrismRunner", "topic", "columnar"), ("PrismRunner", "file", "columnar"), ("FlinkRunner", "topic", "columnar"),
    ("PrismRunner", "topic", "elementwise"), ("FlinkRunner", "topic", "elementwise")])
def test_live_decisions_follow_a_rules_update_and_equal_the_in_order_engine(kafka_broker, tmp_path, request,
                                                                            runner, updates, engine):
    servers = kafka_broker.bootstrap_servers
    topics = {name: unique_topic(name) for name in ("attempts", "decisions", "dead_letters", "rules")}
    create_topics(servers, [topics["attempts"], topics["rules"]], partitions=1)
    create_topics(servers, [topics["decisions"], topics["dead_letters"]], partitions=2)
    ordered, first, rules_file, hostile = first_half(tmp_path)
    produce_values(servers, topics["attempts"], _values(first) + hostile, partitions=1)
    arguments = ["risk", "stream", *_runner_arguments(runner, request), "--bootstrap-servers", servers,
                 "--attempts-topic", topics["attempts"], "--decisions-topic", topics["decisions"],
                 "--dead-letters-topic", topics["dead_letters"], "--rules", str(rules_file),
                 "--rules-poll-ms", "0", "--start", "earliest", "--idle-timeout", "1", "--group-id", unique_topic("g"),
                 "--engine", engine]
    arguments += ["--rules-topic", topics["rules"]] if updates == "topic" else ["--watch-rules", "--worker-processes", "1"]
    expected_letters = len(hostile) + (updates == "topic")
    process = _start(arguments)
    try:
        _wait_for("the first half's decisions", lambda: len(_decisions(servers, topics["decisions"])) >= len(first),
                  process, STARTUP_DEADLINE_SECONDS)
        if updates == "topic":
            produce_values(servers, topics["rules"], [UNVERSIONED.encode(), V2.encode()], partitions=1)
        else:  # replaced atomically, as a deploy tool does (a file shows only its latest content: no bad one)
            staged = tmp_path / "rules.yaml.new"
            staged.write_text(V2)
            os.replace(staged, rules_file)
        second = _timed(ordered[40:], max(int(time.time() * 1000) + 1_000, first[-1].event_time + 500))
        attempts = first + second
        produce_values(servers, topics["attempts"], _values(second), partitions=1)
        _wait_for("every decision", lambda: len(_decisions(servers, topics["decisions"])) >= len(ordered),
                  process, OUTPUT_DEADLINE_SECONDS)
        letters = _wait_for("the dead letters", lambda: (lambda rows: rows if len(rows) >= expected_letters else None)(
            _decisions(servers, topics["dead_letters"])), process, OUTPUT_DEADLINE_SECONDS)
    finally:
        stderr = _stop(process) if process.poll() is None else process.communicate()[1]
    rows = _decisions(servers, topics["decisions"])
    assert len(rows) == len(attempts) and len({row["attempt_id"] for row in rows}) == len(attempts)
    by_print = {RULES_V1.fingerprint: RULES_V1, RULES_V2.fingerprint: RULES_V2}
    position = {a.attempt_id: index for index, a in enumerate(attempts)}
    for row in rows:
        decision = _as_decision(row)
        index = position[decision.attempt_id]
        assert decision == decide_in_order(attempts[:index + 1], by_print[decision.ruleset])[-1]
    under = {row["attempt_id"]: row["ruleset"] for row in rows}
    assert all(under[a.attempt_id] == RULES_V1.fingerprint for a in first)
    assert all(under[a.attempt_id] == RULES_V2.fingerprint for a in second)
    assert decide_in_order(attempts, RULES_V1) != sorted(
        (_as_decision(row) for row in rows), key=lambda d: position[d.attempt_id])  # V2 changed something
    # three hostile attempts and the update without a new version: dead letters with their reasons
    assert sorted(letter["input"] for letter in letters) == ["attempts"] * 3 + ["rules"] * (updates == "topic")
    reasons = " | ".join(letter["reason"] for letter in letters if letter["input"] == "attempts")
    assert "missing field" in reasons and "invalid JSON" in reasons and "card number" in reasons, reasons
    for update in (letter for letter in letters if letter["input"] == "rules"):
        assert "not above 1" in update["reason"] and update["raw_payload"] == UNVERSIONED
    assert card_number() not in json.dumps(rows) + json.dumps(letters) + stderr


def _harness_processes(session: int) -> List[int]:
    """The Python SDK harnesses (runners/python_harness_boot.py) running in a process session."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read()
        except (OSError, ValueError):  # not a process, or gone meanwhile
            continue
        if int(fields[3]) == session and b"paybeam-sdk-harness" in command and fields[0] != "Z":
            found.append(int(entry))
    return found


def test_a_killed_run_leaves_no_worker_process_behind(kafka_broker, tmp_path):
    """The columnar stream's reading and deciding steps run in two worker processes of the run's own pool
    (runners/worker_pool.py): a SIGKILLed launcher runs no clean-up, and each dies with it all the same."""
    servers = kafka_broker.bootstrap_servers
    topics = {name: unique_topic(name) for name in ("attempts", "decisions", "dead_letters")}
    create_topics(servers, list(topics.values()), partitions=1)
    _, first, rules_file, _ = first_half(tmp_path)
    produce_values(servers, topics["attempts"], _values(first[:5]), partitions=1)
    process = _start(["risk", "stream", *_runner_arguments("PrismRunner", None), "--bootstrap-servers", servers,
                      "--attempts-topic", topics["attempts"], "--decisions-topic", topics["decisions"],
                      "--dead-letters-topic", topics["dead_letters"], "--rules", str(rules_file),
                      "--start", "earliest", "--group-id", unique_topic("g")])
    try:
        _wait_for("the decisions", lambda: len(_decisions(servers, topics["decisions"])) >= 5, process,
                  STARTUP_DEADLINE_SECONDS)
        assert len(_harness_processes(process.pid)) == 2  # one reads, one decides
        process.kill()
        process.communicate()
        deadline = time.monotonic() + 30
        while _harness_processes(process.pid):
            assert time.monotonic() < deadline, "worker processes still running 30 s after their launcher died"
            time.sleep(0.2)  # poll interval of the deadline loop
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # Prism and anything else of the run
        except ProcessLookupError:
            pass
