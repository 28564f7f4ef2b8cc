"""Running `paybeam stream --bounded` against a broker in tests, and looking at what it left behind."""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from confluent_kafka import Consumer, Producer, TopicPartition

from pipelines.cli import main
from pipelines.io.kafka import create_topics
from schemas.kafka_values import encode_value
from tests.kafka_helpers import read_topic, unique_topic

INPUTS = ("payments", "settlements")
OUTPUTS = ("results", "daily_totals", "alerts", "dead_letters")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def new_topics(bootstrap_servers: str, partitions: int = 2, create: Sequence[str] = INPUTS + OUTPUTS,
               config: Optional[Dict[str, Dict[str, str]]] = None) -> Dict[str, str]:
    """Fresh topics for one test; `config` gives topic settings by name (e.g. {"payments": {...}})."""
    topics = {name: unique_topic(name) for name in INPUTS + OUTPUTS}
    config = config or {}
    plain = [topics[name] for name in create if name not in config]
    if plain:
        create_topics(bootstrap_servers, plain, partitions=partitions)
    for name in create:
        if name in config:
            create_topics(bootstrap_servers, [topics[name]], partitions=partitions, config=config[name])
    return topics


def produce_values(bootstrap_servers: str, topic: str, values: Iterable[bytes], partitions: int = 2,
                   **settings) -> None:
    """Produces the values round-robin over the topic's partitions; all acknowledged or the test fails."""
    errors: List[str] = []
    producer = Producer({"bootstrap.servers": bootstrap_servers, "linger.ms": 5, **settings})
    for index, value in enumerate(values):
        producer.produce(topic, value=value, partition=index % partitions,
                         on_delivery=lambda error, _m: errors.append(str(error)) if error else None)
    assert producer.flush(30) == 0 and not errors, errors


def produce_records(bootstrap_servers: str, topic: str, records: Iterable, schema: str, partitions: int = 2) -> None:
    produce_values(bootstrap_servers, topic, [encode_value(record._asdict(), "json", schema) for record in records],
                   partitions)


def stream_arguments(bootstrap_servers: str, topics: Dict[str, str], group: str, *extra: str) -> List[str]:
    arguments = ["stream", "--bootstrap-servers", bootstrap_servers, "--bounded", "--group-id", group,
                 "--idle-timeout", "1"]
    for name in INPUTS + OUTPUTS:
        arguments += [f"--{name.replace('_', '-')}-topic", topics[name]]
    return arguments + list(extra)


class Run(NamedTuple):
    exit_code: int
    stdout: str
    stderr: str


def run_stream_in_process(bootstrap_servers: str, topics: Dict[str, str], group: str, *extra: str) -> Run:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(stream_arguments(bootstrap_servers, topics, group, *extra))
    return Run(code, out.getvalue(), err.getvalue())


def paybeam_process(arguments: Sequence[str]) -> subprocess.Popen:
    """`paybeam ARGS` as a child process with its output captured (everything it writes, logs included)."""
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", *arguments], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until(what: str, condition: Callable[[], object], process: subprocess.Popen, deadline_seconds: float,
               command: str = "paybeam"):
    """Polls `condition` until it returns something truthy; fails the test, with the run's stderr, if the
    run (a child process with its stderr piped) exits first, or when time runs out."""
    import pytest

    deadline = time.monotonic() + deadline_seconds
    while True:
        value = condition()
        if value:
            return value
        if process.poll() is not None:
            _, stderr = process.communicate()
            pytest.fail(f"{command} exited with {process.returncode} while waiting for {what}:\n{stderr[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {deadline_seconds}s")
        time.sleep(0.5)  # poll interval of the deadline loop


def error_lines(stderr: str) -> List[str]:
    return [line for line in stderr.splitlines() if "error:" in line]


def committed(bootstrap_servers: str, group: str, topic: str, partitions: int = 2) -> Dict[int, int]:
    """The group's committed offset per partition (negative: none)."""
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": group})
    try:
        entries = consumer.committed([TopicPartition(topic, number) for number in range(partitions)], timeout=20)
        return {entry.partition: entry.offset for entry in entries}
    finally:
        consumer.close()


def end_offsets(bootstrap_servers: str, topic: str) -> Dict[int, int]:
    """The number of messages per partition (offsets of a fresh topic start at 0)."""
    counts: Dict[int, int] = {}
    for message in read_topic(bootstrap_servers, topic):
        counts[message.partition] = max(counts.get(message.partition, 0), message.offset + 1)
    return counts


def committed_to_the_end(bootstrap_servers: str, group: str, topic: str, partitions: int = 2) -> bool:
    """Whether the group committed every message of the topic: each partition's end offset, and for a partition
    that never held a message no commit at all (there was nothing to commit; which partitions stay empty is up
    to the producer's partitioner)."""
    ends, offsets = end_offsets(bootstrap_servers, topic), committed(bootstrap_servers, group, topic, partitions)
    return all(offsets[partition] == ends[partition] if partition in ends else offsets[partition] in (-1001, 0)
               for partition in range(partitions))


def decoded(bootstrap_servers: str, topic: str) -> List[dict]:
    return [json.loads(message.value) for message in read_topic(bootstrap_servers, topic)]


def group_name() -> str:
    return f"g-{uuid.uuid4().hex[:10]}"


def fields_of(rows: List[dict], name: str) -> List[Optional[str]]:
    return sorted(row[name] for row in rows)


def result_key(row: dict) -> Tuple[str, str, str]:
    """What a result row revises: (processor, processor_reference, kind)."""
    return row["processor"], row["processor_reference"], row["kind"]


def final_revisions(rows: List[dict]) -> List[dict]:
    """The result rows at their key's highest revision: the answer a stream converged to (a restored
    or re-read run may have written a revision twice; both copies are kept)."""
    top: Dict[Tuple[str, str, str], int] = {}
    for row in rows:
        top[result_key(row)] = max(top.get(result_key(row), -1), row["revision"])
    return [row for row in rows if row["revision"] == top[result_key(row)]]
