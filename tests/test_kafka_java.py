"""`paybeam stream --kafka-io=java` for real (issue 11 §6): Beam's cross-language KafkaIO, expanded by
a Java expansion service that deploy/fetch/kafka_expansion.sh assembles from Maven Central (Beam Java
2.70.0, the Flink job server's version), executed on Flink with the Java transforms in the EMBEDDED
environment (inside the job server's TaskManager, no Docker) and the Python transforms in LOOPBACK.

Against the session's Tansu broker, a bounded Java-KafkaIO run on Flink must produce the same
results, daily totals, alerts and dead letters, the same counts, and the same committed offsets as a
bounded run of paybeam's own Python source on the DirectRunner over the same topics.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from datagen.generator import GeneratorConfig, generate
from pipelines.cli import main
from pipelines.io.kafka import EXPANSION_SERVICE_ENV
from runners.engine_cache import EngineNotFetched, fetched, pinned_versions
from tests.beam_helpers import payment, settlement
from tests.flink_cluster import FlinkCluster
from tests.flink_helpers import canonical, flink_args, free_port, job_server_listening, wait_for_port
from tests.flink_restore_helpers import (
    RETAIN_CHECKPOINTS,
    final_statuses,
    matched,
    matched_and_checkpointed,
    produce_pairs,
    recent_millis,
    start_unbounded,
    statuses_seen,
    stop,
    wait_for,
)
from tests.prism_helpers import prism_args
from tests.stream_helpers import (
    OUTPUTS,
    committed_to_the_end,
    decoded,
    group_name,
    new_topics,
    produce_records,
    run_stream_in_process,
)

REPO = Path(__file__).resolve().parents[1]


def _engine_dir() -> Path:
    return fetched(f"kafka-java-beam-{pinned_versions()['KAFKA_JAVA_BEAM_VERSION']}", make_target="engine-kafka-java")


@pytest.fixture(scope="session")
def kafka_java_engine() -> Path:
    """deploy/fetch/kafka_expansion.sh's jars (`make engine-kafka-java`), fetched on first use."""
    try:
        return _engine_dir()
    except EngineNotFetched:
        subprocess.run(["bash", str(REPO / "deploy" / "fetch" / "kafka_expansion.sh")], check=True,
                       stdout=subprocess.DEVNULL)
        return _engine_dir()


@contextlib.contextmanager
def _expansion_service(engine: Path, log: Path, *flags: str) -> Iterator[str]:
    """The Kafka expansion service JVM on a free port; yields HOST:PORT."""
    port = free_port()
    with open(log, "w") as handle:
        process = subprocess.Popen(
            ["java", "-Xmx512m", "-cp", str(engine / "expansion" / "*"),
             "org.apache.beam.sdk.expansion.service.ExpansionService", str(port), *flags],
            stdout=handle, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process, log, 120)
        yield f"localhost:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="session")
def expansion_service(kafka_java_engine, tmp_path_factory) -> Iterator[str]:
    """Once per session; the Java transforms it expands run EMBEDDED (inside Flink's TaskManager)."""
    with _expansion_service(kafka_java_engine, tmp_path_factory.mktemp("expansion") / "expansion_service.log",
                            "--defaultEnvironmentType=EMBEDDED") as address:
        yield address


@pytest.fixture(scope="session")
def process_expansion_service(kafka_java_engine, tmp_path_factory) -> Iterator[str]:
    """Once per session; Java transforms run in a PROCESS environment: deploy/java_harness_boot.sh."""
    config = json.dumps({"command": str(REPO / "deploy" / "java_harness_boot.sh")})
    with _expansion_service(kafka_java_engine, tmp_path_factory.mktemp("expansion") / "process_expansion.log",
                            "--defaultEnvironmentType=PROCESS", f"--defaultEnvironmentConfig={config}") as address:
        yield address


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    # Seed 9 at 300 payments has every status, duplicates and rejected lines (dead letters).
    return generate(GeneratorConfig(payments=300, seed=9), str(tmp_path_factory.mktemp("kafka_java_data")))


def _topics_with_inputs(broker, sample) -> Dict[str, str]:
    topics = new_topics(broker.bootstrap_servers)
    assert main(["kafka", "produce", "--bootstrap-servers", broker.bootstrap_servers,
                 "--payments", os.path.join(sample.out_dir, "payments", "*"),
                 "--settlements", os.path.join(sample.out_dir, "settlements", "*"),
                 "--payments-topic", topics["payments"], "--settlements-topic", topics["settlements"]]) == 0
    return topics


def _outputs(broker, topics) -> Dict[str, List[str]]:
    return {name: canonical(decoded(broker.bootstrap_servers, topics[name])) for name in OUTPUTS}


def _counts_table(stdout: str) -> List[str]:
    """The summary's count lines, without its first line (run time, runner) and the closing note; sorted,
    as rows with equal counts may come in either order."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("input "))
    return sorted(re.sub(r"\s+", " ", line) for line in lines[start:] if not line.startswith("paybeam stream:"))


@pytest.mark.engines
@pytest.mark.parametrize("engine", ["columnar", "elementwise"])
def test_java_kafka_io_on_flink_equals_python_source_on_direct_runner(
        kafka_broker, expansion_service, kafka_java_engine, sample, engine, monkeypatch, tmp_path):
    topics = _topics_with_inputs(kafka_broker, sample)
    python_topics = {**topics, **new_topics(kafka_broker.bootstrap_servers, create=OUTPUTS)}
    python_topics.update(payments=topics["payments"], settlements=topics["settlements"])
    python_group, java_group = group_name(), group_name()

    started = time.monotonic()
    python = run_stream_in_process(kafka_broker.bootstrap_servers, python_topics, python_group, "--engine", engine)
    python_seconds = time.monotonic() - started
    assert python.exit_code == 0, python.stderr

    if engine == "columnar":  # no address: kafka_java starts the cached service itself (java -jar, EMBEDDED)
        monkeypatch.delenv(EXPANSION_SERVICE_ENV, raising=False)
    else:
        monkeypatch.setenv(EXPANSION_SERVICE_ENV, expansion_service)
    started = time.monotonic()
    java = run_stream_in_process(kafka_broker.bootstrap_servers, topics, java_group, "--engine", engine,
                                 "--kafka-io=java",
                                 *flink_args(kafka_java_engine / "flink", "[local]", "--environment_type=LOOPBACK"))
    java_seconds = time.monotonic() - started
    assert java.exit_code == 0, java.stderr[-5000:]
    print(f"{engine}: python IO on DirectRunner {python_seconds:.1f}s, Java KafkaIO on Flink {java_seconds:.1f}s")

    expected = _outputs(kafka_broker, python_topics)
    assert len(expected["results"]) >= 300 and expected["dead_letters"], "the sample must exercise the outputs"
    assert _outputs(kafka_broker, topics) == expected
    assert _counts_table(java.stdout) == _counts_table(python.stdout)
    for name in ("payments", "settlements"):
        assert committed_to_the_end(kafka_broker.bootstrap_servers, java_group, topics[name])
        assert committed_to_the_end(kafka_broker.bootstrap_servers, python_group, topics[name])


def test_java_kafka_io_cannot_stop_at_an_event_time(kafka_broker):
    topics = new_topics(kafka_broker.bootstrap_servers, create=())
    run = run_stream_in_process(kafka_broker.bootstrap_servers, topics, group_name(), "--kafka-io=java",
                                "--bounded=until_time", "--stop-at", "2026-01-05T00:00:00Z")
    assert run.exit_code == 2
    assert "--bounded=until_time needs --kafka-io=python" in run.stderr


def _start_unbounded(engine: Path, bootstrap: str, topics: Dict[str, str], group: str, master: str, log: Path,
                     *flags: str) -> subprocess.Popen:
    """An unbounded `paybeam stream --kafka-io=java` on the Flink at `master` (flink_restore_helpers)."""
    return start_unbounded(engine / "flink", bootstrap, topics, group, master, log, "--kafka-io=java", *flags)


# At --checkpointing_interval=2000 this stalled in 3 of 7 runs, each time with Flink's first checkpoint
# taken before KafkaIO's first read bundle; paybeam now refuses intervals under 10 s and makes the first
# checkpoint come one interval after the start (runners/flink_options.MIN_FLINK_STREAMING_CHECKPOINT_MILLIS).
@pytest.mark.engines
def test_unbounded_java_kafka_io_reads_and_writes_on_flink(kafka_broker, expansion_service, kafka_java_engine,
                                                          monkeypatch, tmp_path):
    """An unbounded run reads AND writes with Java KafkaIO (WriteToKafka only runs unbounded: bounded
    runs write with paybeam's sink, whose completion the offset commit waits for) and revises results
    as messages arrive: six payments and three settlements first (three MATCHED, three PENDING), then
    the other three settlements while it runs (those PENDING turn MATCHED); daily totals fire
    processing-time EARLY panes (--early-firing 2s); the offsets are committed to the end; SIGTERM
    cancels the job (exit 143) and stops its job server."""
    bootstrap = kafka_broker.bootstrap_servers
    topics = new_topics(bootstrap)
    now = recent_millis()
    references = [f"java-r{n}" for n in range(6)]
    produce_pairs(bootstrap, topics, references, now, range(6), range(3))
    monkeypatch.setenv(EXPANSION_SERVICE_ENV, expansion_service)
    group = group_name()
    started = time.monotonic()
    log = tmp_path / "paybeam_stream.log"
    process = _start_unbounded(kafka_java_engine, bootstrap, topics, group, "[local]", log, "--early-firing", "2s")
    try:
        deadline = time.monotonic() + 300

        def first_verdicts() -> bool:
            rows = decoded(bootstrap, topics["results"])
            seen = statuses_seen(rows)
            return (matched(rows) == references[:3]
                    and all("PENDING" in seen.get(reference, ()) for reference in references[3:]))

        wait_for(process, log, first_verdicts, "3 MATCHED and 3 PENDING", deadline - time.monotonic())
        print(f"unbounded Java KafkaIO on Flink: first verdicts after {time.monotonic() - started:.1f}s")
        produce_pairs(bootstrap, topics, references, now, range(0), range(3, 6))
        wait_for(process, log, lambda: matched(decoded(bootstrap, topics["results"])) == references,
                 "6 MATCHED", deadline - time.monotonic())
        # Offsets: committed on bundle finalization after a completed checkpoint (kafka_java.py).
        wait_for(process, log,
                 lambda: all(committed_to_the_end(bootstrap, group, topics[name]) for name in ("payments", "settlements")),
                 "offsets committed", deadline - time.monotonic())
        assert process.poll() is None, "an unbounded run keeps running"
    finally:
        code = stop(process)
    assert code == 143, log.read_text()[-3000:]
    assert not job_server_listening(log.read_text()), "the job server outlived paybeam"
    assert final_statuses(decoded(bootstrap, topics["results"])) == {reference: "MATCHED" for reference in references}
    assert {row["pane_timing"] for row in decoded(bootstrap, topics["daily_totals"])} >= {"EARLY"}


@pytest.mark.engines
def test_java_harness_in_a_process_environment_on_flink(kafka_broker, process_expansion_service, kafka_java_engine,
                                                        monkeypatch):
    """The Java SDK harness started by deploy/java_harness_boot.sh (the PROCESS environment Prism needs,
    as EMBEDDED is Flink-only), here started by Flink's ProcessEnvironmentFactory: a bounded run."""
    bootstrap = kafka_broker.bootstrap_servers
    topics = new_topics(bootstrap)
    produce_records(bootstrap, topics["payments"],
                    [payment(f"e{n}", f"proc-r{n}", time=n * 60_000) for n in range(6)], "payment_event")
    produce_records(bootstrap, topics["settlements"],
                    [settlement(f"s{n}", f"proc-r{n}", time=n * 60_000 + 3_600_000) for n in range(6)],
                    "settlement_line")
    monkeypatch.setenv(EXPANSION_SERVICE_ENV, process_expansion_service)
    monkeypatch.setenv("PAYBEAM_PYTHON", sys.executable)  # the boot script's interpreter (needs apache-beam)
    group = group_name()
    started = time.monotonic()
    run = run_stream_in_process(bootstrap, topics, group, "--kafka-io=java",
                                *flink_args(kafka_java_engine / "flink", "[local]", "--environment_type=LOOPBACK"))
    assert run.exit_code == 0, run.stderr[-5000:]
    print(f"Java harness as a PROCESS environment on Flink: {time.monotonic() - started:.1f}s")
    assert matched(decoded(bootstrap, topics["results"])) == [f"proc-r{n}" for n in range(6)]
    for name in ("payments", "settlements"):
        assert committed_to_the_end(bootstrap, group, topics[name])


@pytest.mark.engines
@pytest.mark.parametrize("engine", ["columnar", "elementwise"])
def test_java_kafka_io_on_prism_equals_python_source_on_direct_runner(kafka_broker, kafka_java_engine, prism, sample,
                                                                       engine, monkeypatch):
    """Prism has no EMBEDDED environment: paybeam starts the cached expansion service with the PROCESS
    environment of deploy/java_harness_boot.sh, and Prism starts the Java SDK harness through it."""
    topics = _topics_with_inputs(kafka_broker, sample)
    python_topics = {**new_topics(kafka_broker.bootstrap_servers, create=OUTPUTS),
                     "payments": topics["payments"], "settlements": topics["settlements"]}
    python_group, java_group = group_name(), group_name()
    monkeypatch.delenv(EXPANSION_SERVICE_ENV, raising=False)
    started = time.monotonic()
    java = run_stream_in_process(kafka_broker.bootstrap_servers, topics, java_group, "--engine", engine,
                                 "--kafka-io=java", *prism_args(prism.endpoint))
    java_seconds = time.monotonic() - started
    assert java.exit_code == 0, java.stderr[-5000:]
    python = run_stream_in_process(kafka_broker.bootstrap_servers, python_topics, python_group, "--engine", engine)
    assert python.exit_code == 0, python.stderr
    print(f"{engine}: Java KafkaIO on Prism {java_seconds:.1f}s")

    assert _outputs(kafka_broker, topics) == _outputs(kafka_broker, python_topics)
    assert _counts_table(java.stdout) == _counts_table(python.stdout)
    for name in ("payments", "settlements"):
        assert committed_to_the_end(kafka_broker.bootstrap_servers, java_group, topics[name])


# Once opt-in: a restored job could stall like a starting one (a first checkpoint before the readers'
# first bundle); the first checkpoint after a restore now comes one interval later (runners/flink_options.py).
@pytest.mark.engines
def test_taskmanager_killed_mid_stream_restores_from_its_checkpoint(kafka_broker, expansion_service,
                                                                    kafka_java_engine, monkeypatch, tmp_path):
    """An unbounded Java-KafkaIO run on a standalone cluster (JobManager and TaskManager JVMs on the
    kafka-java engine's Flink jars, so KafkaIO runs EMBEDDED in the TaskManager). Three pairs MATCHED
    and a checkpoint completed after them; then the TaskManager is SIGKILLed and a new one started:
    Flink restores the job from that checkpoint (the matcher's state and KafkaIO's positions), and
    the three payments produced after the restore meet settlements produced before the kill, so
    every pair ends MATCHED only if the state came back. SIGTERM then cancels the job (143)."""
    bootstrap = kafka_broker.bootstrap_servers
    topics = new_topics(bootstrap)
    now = recent_millis()
    references = [f"tm-r{n}" for n in range(6)]
    produce_pairs(bootstrap, topics, references, now, range(3), range(6))
    monkeypatch.setenv(EXPANSION_SERVICE_ENV, expansion_service)
    log = tmp_path / "paybeam_stream.log"
    with FlinkCluster(kafka_java_engine / "flink", tmp_path / "cluster") as cluster:
        process = _start_unbounded(kafka_java_engine, bootstrap, topics, group_name(), cluster.master, log)
        try:
            job = matched_and_checkpointed(process, log, cluster, bootstrap, topics, references[:3])
            cluster.kill_taskmanager()
            cluster.start_taskmanager()
            wait_for(process, log, lambda: cluster.restored_checkpoint(job["jid"]) is not None,
                     "a restore from a checkpoint")
            produce_pairs(bootstrap, topics, references, now, range(3, 6), range(0))
            wait_for(process, log, lambda: matched(decoded(bootstrap, topics["results"])) == references,
                     "6 MATCHED")
            failures = cluster.failures(job["jid"])
        finally:
            code = stop(process)
        assert cluster.rest(f"/jobs/{job['jid']}")["state"] == "CANCELED"
    assert code == 143, log.read_text()[-3000:]
    assert not job_server_listening(log.read_text()), "the job server outlived paybeam"
    assert any("TaskManager" in failure or "heartbeat" in failure.lower() for failure in failures), failures[:1]
    assert final_statuses(decoded(bootstrap, topics["results"])) == {reference: "MATCHED" for reference in references}


@pytest.mark.engines
def test_a_cancelled_stream_restarted_from_its_checkpoint_gives_the_answer_of_one_run(
        kafka_broker, expansion_service, kafka_java_engine, monkeypatch, tmp_path):
    """Stop and restart: an unbounded Java-KafkaIO run on a standalone cluster retains its checkpoints
    on cancellation; after three pairs MATCHED and a checkpoint, SIGTERM cancels it (143). A second
    `paybeam stream` started with `--savepoint_path=<that checkpoint>` restores the matcher's state and
    KafkaIO's positions: the payments produced while nothing ran pair with settlements the first run
    read, so every pair ends MATCHED, the answer of one uninterrupted run."""
    bootstrap = kafka_broker.bootstrap_servers
    topics = new_topics(bootstrap)
    now = recent_millis()
    references = [f"sp-r{n}" for n in range(6)]
    produce_pairs(bootstrap, topics, references, now, range(3), range(6))
    monkeypatch.setenv(EXPANSION_SERVICE_ENV, expansion_service)
    group = group_name()
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    with FlinkCluster(kafka_java_engine / "flink", tmp_path / "cluster") as cluster:
        first = _start_unbounded(kafka_java_engine, bootstrap, topics, group, cluster.master, first_log, *RETAIN_CHECKPOINTS)
        try:
            job = matched_and_checkpointed(first, first_log, cluster, bootstrap, topics, references[:3])
        finally:
            first_code = stop(first)
        assert first_code == 143, first_log.read_text()[-3000:]
        # Cancelled on the cluster, not only its job server's submission: a job left running there
        # restarted for ever without its LOOPBACK workers (runners/flink_job_server.py).
        assert cluster.rest(f"/jobs/{job['jid']}")["state"] == "CANCELED"
        assert job["name"].startswith("paybeam-")
        retained = cluster.rest(f"/jobs/{job['jid']}/checkpoints")["latest"]["completed"]["external_path"]
        produce_pairs(bootstrap, topics, references, now, range(3, 6), range(0))
        second = _start_unbounded(kafka_java_engine, bootstrap, topics, group, cluster.master, second_log,
                                  *RETAIN_CHECKPOINTS, f"--savepoint_path={retained}")
        try:
            wait_for(second, second_log, lambda: matched(decoded(bootstrap, topics["results"])) == references,
                     "6 MATCHED after the restart")
            (restarted,) = [job for job in cluster.jobs() if job["state"] == "RUNNING"]
            restored = cluster.rest(f"/jobs/{restarted['jid']}/checkpoints")["latest"]["restored"]
        finally:
            second_code = stop(second)
        assert cluster.rest(f"/jobs/{restarted['jid']}")["state"] == "CANCELED"
    assert second_code == 143, second_log.read_text()[-3000:]
    assert restored and restored["external_path"] == retained
    assert final_statuses(decoded(bootstrap, topics["results"])) == {reference: "MATCHED" for reference in references}
