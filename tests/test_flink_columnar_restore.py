"""Issue 18: the live columnar engine (transforms/columnar/live_flow.py) survives Flink's failures.

Unbounded `paybeam stream --engine columnar` with paybeam's own Python Kafka source (`--kafka-io=python`,
chunk mode) on a standalone Flink cluster (tests/flink_cluster.py, on `make engine-flink`'s jars: no
Java KafkaIO here), the Python transforms in LOOPBACK, so the SDK workers live in the paybeam process
and outlive a TaskManager. The columnar engine keeps each shard's state in Beam bags plus a token, and
an in-memory shard per process used only while the token matches: after Flink restores a checkpoint
the token differs and the shard must be rebuilt from the bags, not taken from the cache that saw
what came after the checkpoint.

Same scenarios as the Java-KafkaIO fault tests in tests/test_kafka_java.py (shared helpers in
tests/flink_restore_helpers.py): three pairs MATCHED and a checkpoint after them, then the TaskManager
is SIGKILLed (or the job cancelled with its checkpoint retained and started again from it), then the
other three payments arrive and meet settlements read before. The outputs must equal the answer of
one uninterrupted run, computed by a bounded run of the same records (DirectRunner, columnar): the
final revision of every key, the last daily-total row of every window (a record lost or counted
twice changes its counts), no dead letters; offsets committed to the end; SIGTERM exits 143 with the
job CANCELED.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from typing import Dict, List

import pytest

from tests.cli_helpers import result_multiset
from tests.flink_cluster import FlinkCluster
from tests.flink_helpers import job_server_listening
from tests.flink_restore_helpers import (
    RETAIN_CHECKPOINTS,
    matched,
    matched_and_checkpointed,
    produce_pairs,
    recent_millis,
    start_unbounded,
    stop,
    wait_for,
)
from tests.kafka_helpers import Message, read_topic
from tests.stream_helpers import (
    INPUTS,
    committed_to_the_end,
    decoded,
    final_revisions,
    group_name,
    new_topics,
    result_key,
    run_stream_in_process,
)

# paybeam's Python source in chunk mode feeds the columnar engine; parallelism 1 as in
# tests/test_flink_streaming.py; EARLY daily-total panes every 2 s, so the last row of a window
# shows every record read so far.
COLUMNAR = ("--engine", "columnar", "--kafka-io=python", "--parallelism=1", "--early-firing", "2s")
PAIRS = 6
SETTLE_SECONDS = 120
DAILY_TOTAL_WINDOW = ("merchant_id", "currency", "settlement_day", "window_start", "window_end")
PANE_FIELDS = ("pane_timing", "pane_index", "is_final")


def _line(row: dict) -> str:
    return json.dumps(row, sort_keys=True, separators=(",", ":"))


def _current_totals(messages: List[Message]) -> Dict[str, List[str]]:
    """Per daily-total window, the sums and counts (no pane fields) of its last row in topic order.

    A window's rows share a message key (merchant|currency), so they are in one partition in the order
    they were produced; after a restore Flink re-emits panes from the checkpoint's pane_index, so an
    index can come twice with different sums and only the later row is current (docs/formats.md)."""
    current: Dict[str, str] = {}
    partition_of: Dict[str, int] = {}
    for message in messages:  # by partition and offset
        row = json.loads(message.value)
        window = _line({name: row[name] for name in DAILY_TOTAL_WINDOW})
        assert partition_of.setdefault(window, message.partition) == message.partition, f"{window} in two partitions"
        current[window] = _line({k: v for k, v in row.items() if k not in PANE_FIELDS})
    return {window: [contents] for window, contents in current.items()}


def _answer(bootstrap: str, topics: Dict[str, str]) -> dict:
    """What a run left on its output topics, up to what at-least-once delivery may repeat: the distinct rows
    at each key's final revision (a key with two different final rows shows both), the last row of each
    daily-total window, the distinct dead letters."""
    finals = {_line(row): row for row in final_revisions(decoded(bootstrap, topics["results"]))}
    return {"results": result_multiset(finals.values()),
            "final_rows_per_key": Counter(result_key(row) for row in finals.values()),
            "daily_totals": _current_totals(read_topic(bootstrap, topics["daily_totals"])),
            "dead_letters": sorted({_line(row) for row in decoded(bootstrap, topics["dead_letters"])})}


def _one_run_answer(bootstrap: str, references: List[str], now: int) -> dict:
    """The answer of one uninterrupted run: every pair produced up front, read by one bounded columnar run
    on the DirectRunner."""
    topics = new_topics(bootstrap)
    produce_pairs(bootstrap, topics, references, now, range(len(references)), range(len(references)))
    run = run_stream_in_process(bootstrap, topics, group_name(), "--engine", "columnar")
    assert run.exit_code == 0, run.stderr[-3000:]
    answer = _answer(bootstrap, topics)
    assert sorted(key[1] for key in answer["final_rows_per_key"]) == references
    assert set(row[3] for row in answer["results"]) == {"MATCHED"} and answer["daily_totals"], answer
    return answer


def _settled(bootstrap: str, topics: Dict[str, str], group: str, expected: dict) -> bool:
    return (_answer(bootstrap, topics) == expected
            and all(committed_to_the_end(bootstrap, group, topics[name]) for name in INPUTS))


def _assert_the_answer_of_one_run(bootstrap: str, topics: Dict[str, str], group: str, expected: dict) -> None:
    answer = _answer(bootstrap, topics)
    assert answer["results"] == expected["results"], "final revisions differ from one run's"
    assert set(answer["final_rows_per_key"].values()) == {1}, answer["final_rows_per_key"]
    assert answer["daily_totals"] == expected["daily_totals"], "a record lost or counted twice"
    assert answer["dead_letters"] == expected["dead_letters"] == []
    for name in INPUTS:
        assert committed_to_the_end(bootstrap, group, topics[name]), f"{name} offsets not committed to the end"


def _latest_checkpoint(cluster: FlinkCluster, job_id: str) -> int:
    return cluster.rest(f"/jobs/{job_id}/checkpoints")["latest"]["completed"]["id"]


def _wait_until_settled(process, log, bootstrap: str, topics: Dict[str, str], group: str, expected: dict) -> None:
    """Polls for the answer of one run and the commits (the assertions after the stop name what differs)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while not _settled(bootstrap, topics, group, expected) and time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-5000:]
        time.sleep(1)  # poll interval of the deadline loop


@pytest.mark.engines
def test_columnar_stream_restores_its_shards_after_the_taskmanager_is_killed(kafka_broker, flink_engine, tmp_path):
    """The columnar twin of test_kafka_java.py::test_taskmanager_killed_mid_stream_restores_from_its_checkpoint:
    the LOOPBACK workers (and their process-wide shard cache) survive the kill, and the shards that took
    payment 3 after the last checkpoint are cached ahead of it; Flink restores the bags and tokens of that
    checkpoint and the source re-reads payment 3, so those shards must be rebuilt from the bags (a cached
    one would drop payment 3 as a re-delivery: missing from the daily totals), and the pairs split by the
    kill still meet."""
    started = time.monotonic()
    bootstrap = kafka_broker.bootstrap_servers
    now = recent_millis()
    references = [f"ctm-r{n}" for n in range(PAIRS)]
    expected = _one_run_answer(bootstrap, references, now)
    topics = new_topics(bootstrap)
    produce_pairs(bootstrap, topics, references, now, range(3), range(PAIRS))
    group = group_name()
    log = tmp_path / "paybeam_stream.log"
    with FlinkCluster(flink_engine, tmp_path / "cluster") as cluster:
        process = start_unbounded(flink_engine, bootstrap, topics, group, cluster.master, log, *COLUMNAR)
        try:
            job = matched_and_checkpointed(process, log, cluster, bootstrap, topics, references[:3])
            checkpoint = _latest_checkpoint(cluster, job["jid"])
            # Payment 3 is read after that checkpoint (within its 10 s pause): the shards that take it are written
            # after it, so the workers' cache is ahead of the restored state and must be dropped for the bags.
            produce_pairs(bootstrap, topics, references, now, range(3, 4), range(0))
            wait_for(process, log, lambda: matched(decoded(bootstrap, topics["results"])) == references[:4],
                     "payment 3 MATCHED after the checkpoint")
            cluster.kill_taskmanager()
            assert _latest_checkpoint(cluster, job["jid"]) == checkpoint, "the kill came after the next checkpoint"
            cluster.start_taskmanager()
            wait_for(process, log, lambda: cluster.restored_checkpoint(job["jid"]) is not None,
                     "a restore from a checkpoint")
            restored = cluster.restored_checkpoint(job["jid"])
            produce_pairs(bootstrap, topics, references, now, range(4, PAIRS), range(0))
            _wait_until_settled(process, log, bootstrap, topics, group, expected)
            failures = cluster.failures(job["jid"])
            assert process.poll() is None, "an unbounded run keeps running"
        finally:
            code = stop(process)
        assert cluster.rest(f"/jobs/{job['jid']}")["state"] == "CANCELED"
    print(f"columnar stream, TaskManager killed and restored: {time.monotonic() - started:.1f}s")
    assert code == 143, log.read_text()[-3000:]
    assert not job_server_listening(log.read_text()), "the job server outlived paybeam"
    assert any("TaskManager" in failure or "heartbeat" in failure.lower() for failure in failures), failures[:1]
    assert restored == checkpoint, "restored from the checkpoint before payment 3"
    _assert_the_answer_of_one_run(bootstrap, topics, group, expected)


@pytest.mark.engines
@pytest.mark.parametrize("backend", ["cluster", "rocksdb"])
def test_columnar_stream_cancelled_and_restarted_from_its_checkpoint_gives_the_answer_of_one_run(
        kafka_broker, flink_engine, tmp_path, backend):
    """The columnar twin of test_kafka_java.py::test_a_cancelled_stream_restarted_from_its_checkpoint_gives_
    the_answer_of_one_run: a second paybeam process (an empty shard cache) restores the retained checkpoint
    with --savepoint_path; the source's positions and the shards' bags come back. With `--state_backend=rocksdb`
    (the large-state route, docs/DESIGN.md 9.5) the bags live in RocksDB and come back from its checkpoint."""
    started = time.monotonic()
    bootstrap = kafka_broker.bootstrap_servers
    now = recent_millis()
    references = [f"csp-r{n}" for n in range(PAIRS)]
    expected = _one_run_answer(bootstrap, references, now)
    topics = new_topics(bootstrap)
    produce_pairs(bootstrap, topics, references, now, range(3), range(PAIRS))
    group = group_name()
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    with FlinkCluster(flink_engine, tmp_path / "cluster") as cluster:
        state = () if backend == "cluster" else (
            "--state_backend=rocksdb", f"--state_backend_storage_path=file://{cluster.checkpoints}")
        first = start_unbounded(flink_engine, bootstrap, topics, group, cluster.master, first_log,
                                *COLUMNAR, *RETAIN_CHECKPOINTS, *state)
        try:
            job = matched_and_checkpointed(first, first_log, cluster, bootstrap, topics, references[:3])
        finally:
            first_code = stop(first)
        assert first_code == 143, first_log.read_text()[-3000:]
        assert cluster.rest(f"/jobs/{job['jid']}")["state"] == "CANCELED"
        used = cluster.rest(f"/jobs/{job['jid']}/checkpoints/config")["state_backend"]
        assert ("RocksDB" in used) == (backend == "rocksdb"), used
        retained = cluster.rest(f"/jobs/{job['jid']}/checkpoints")["latest"]["completed"]["external_path"]
        produce_pairs(bootstrap, topics, references, now, range(3, PAIRS), range(0))
        second = start_unbounded(flink_engine, bootstrap, topics, group, cluster.master, second_log,
                                 *COLUMNAR, *RETAIN_CHECKPOINTS, *state, f"--savepoint_path={retained}")
        try:
            _wait_until_settled(second, second_log, bootstrap, topics, group, expected)
            (restarted,) = [job for job in cluster.jobs() if job["state"] == "RUNNING"]
            restored = cluster.rest(f"/jobs/{restarted['jid']}/checkpoints")["latest"]["restored"]
            assert second.poll() is None, "an unbounded run keeps running"
        finally:
            second_code = stop(second)
        assert cluster.rest(f"/jobs/{restarted['jid']}")["state"] == "CANCELED"
    print(f"columnar stream, cancelled and restarted from its checkpoint: {time.monotonic() - started:.1f}s")
    assert second_code == 143, second_log.read_text()[-3000:]
    assert not job_server_listening(second_log.read_text()), "the job server outlived paybeam"
    assert restored and restored["external_path"] == retained
    _assert_the_answer_of_one_run(bootstrap, topics, group, expected)
