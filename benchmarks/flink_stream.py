"""Kafka on Flink benchmark: `paybeam stream` on Beam's Flink runner (embedded mini-cluster,
parallelism 1 and 2) next to a bare confluent-kafka consumer, in the same run.

    python benchmarks/flink_stream.py [N_PAYMENTS] [--parallelism 1 2] [--no-unbounded]
                                      [--unbounded-readers python java]

Needs `make engine-flink engine-kafka-java`. Starts a local Tansu broker, replays a generated
sample (N payments, payment times in the last weeks) into two 3-partition topics, then times
1. a bare confluent-kafka consumer reading both input topics to their ends,
2. `paybeam stream --bounded` (paybeam's Python source, Flink batch mode) reconciling both
   topics end to end, per parallelism (wall time includes the job server's and the
   mini-cluster's start-up),
3. unbounded `paybeam stream`, with paybeam's Python source and with `--kafka-io=java` (Java
   KafkaIO in the TaskManager), Flink streaming mode, per parallelism: from launch until the
   results topic holds every result key of the batch answer (`paybeam reconcile` on the same
   files).
A script, not a test: timings never gate CI.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import List, Sequence, Set, Tuple

from confluent_kafka import Consumer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis.results import load_outputs  # noqa: E402
from benchmarks.stream_runs import CLI_WITH_JOB_SERVER_LOG, result_key  # noqa: E402
from benchmarks.stream_source import bare_consumer, timed  # noqa: E402
from datagen.generator import GeneratorConfig, generate  # noqa: E402
from pipelines.brokers.local_broker import LocalBroker  # noqa: E402
from pipelines.cli import main as paybeam  # noqa: E402
from pipelines.io.kafka import create_topics  # noqa: E402
from pipelines.kafka_tools import replay_files  # noqa: E402
from runners.engine_cache import fetched, pinned_versions  # noqa: E402


def flink_job_server_jar() -> Path:
    versions = pinned_versions()
    return fetched(f"flink-{versions['FLINK_JOB_SERVER_FLINK_VERSION']}-beam-{versions['FLINK_JOB_SERVER_BEAM_VERSION']}",
                   make_target="engine-flink") / "job-server.jar"


def kafka_java_job_server_jar() -> Path:
    version = pinned_versions()["KAFKA_JAVA_BEAM_VERSION"]
    return fetched(f"kafka-java-beam-{version}", make_target="engine-kafka-java") / "flink" / "job-server.jar"


def batch_result_keys(work: Path) -> Set[Tuple[str, str, str]]:
    """Every result key of the batch answer over the replayed files (DirectRunner, columnar)."""
    out = work / "batch"
    assert paybeam(["reconcile", "--payments", str(work / "data" / "payments" / "*"),
                    "--settlements", str(work / "data" / "settlements" / "*"), "--output", str(out)]) == 0
    results = load_outputs(str(out)).results
    return set(zip(results["processor"], results["processor_reference"], results["kind"]))


def unbounded_seconds(arguments: List[str], bootstrap: str, results_topic: str, expected: Set, log: Path,
                      deadline_seconds: float = 900) -> float:
    """Launches an unbounded `paybeam stream`; returns the seconds from launch until the results topic
    holds every expected key; then stops it (SIGTERM). Not a rate from the first result on: Java
    WriteToKafka is @RequiresStableInput, so on Flink results are released in bursts as checkpoints
    complete (with this data, all of them within a second of the first)."""
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-watch-{uuid.uuid4().hex}",
                       "auto.offset.reset": "earliest", "enable.auto.commit": False})
    reader.subscribe([results_topic])
    started = time.monotonic()
    with open(log, "w") as handle:
        process = subprocess.Popen([sys.executable, "-c", CLI_WITH_JOB_SERVER_LOG, *arguments], cwd=str(ROOT),
                                   env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=handle,
                                   stderr=subprocess.STDOUT)
    seen: Set[Tuple[str, str, str]] = set()
    try:
        while not expected <= seen:
            assert process.poll() is None, f"paybeam stream exited {process.returncode}; see {log}"
            assert time.monotonic() - started < deadline_seconds, \
                f"{len(expected - seen)} of {len(expected)} result keys missing after {deadline_seconds} s; see {log}"
            for message in reader.consume(1000, timeout=1.0):
                if message.error() is None:
                    seen.add(result_key(json.loads(message.value())))
        done = time.monotonic()
    finally:
        reader.close()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    return done - started


def run(bootstrap: str, payments: int, parallelisms, unbounded: bool = True,
        readers: Sequence[str] = ("python", "java"), deadline_seconds: float = 900) -> None:
    work = Path(tempfile.mkdtemp(prefix="paybeam-flink-bench-"))
    # Payment times in the last weeks: Java KafkaIO's watermark follows broker time (now), and older
    # days would be dropped as later than --allowed-lateness (set to 30 days below).
    start = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(time.time() - 20 * 86400))
    generate(GeneratorConfig(payments=payments, seed=7, start=start), str(work / "data"))
    suffix = uuid.uuid4().hex[:8]
    inputs = {name: f"bench.{name}.{suffix}" for name in ("payments", "settlements")}
    create_topics(bootstrap, list(inputs.values()), partitions=3)
    report = replay_files(bootstrap, [str(work / "data" / "payments" / "*")],
                          [str(work / "data" / "settlements" / "*")], inputs["payments"], inputs["settlements"])
    total = report.payment_messages + report.settlement_messages

    bare_seconds = 0.0
    for topic in inputs.values():
        seconds, _ = timed(bare_consumer, bootstrap, topic)
        bare_seconds += seconds
    rows = [("bare confluent-kafka consumer (both topics)", bare_seconds)]
    jar = flink_job_server_jar()
    minor = pinned_versions()["FLINK_JOB_SERVER_FLINK_MINOR"]
    for parallelism in parallelisms:
        outputs = {name: f"bench.{name}.{suffix}.p{parallelism}" for name in
                   ("results", "daily_totals", "alerts", "dead_letters")}
        create_topics(bootstrap, list(outputs.values()), partitions=3)
        topics = {**inputs, **outputs}
        seconds, exit_code = timed(paybeam, [
            "stream", "--bootstrap-servers", bootstrap, "--bounded", "--start", "earliest",
            "--group-id", f"bench-p{parallelism}-{suffix}",
            *[arg for name in topics for arg in (f"--{name.replace('_', '-')}-topic", topics[name])],
            "--runner", "FlinkRunner", f"--flink_job_server_jar={jar}", "--flink_master=[local]",
            f"--flink_version={minor}", "--environment_type=LOOPBACK", f"--parallelism={parallelism}"])
        assert exit_code == 0
        rows.append((f"paybeam stream --bounded on Flink, parallelism {parallelism}", seconds))
    expected = batch_result_keys(work) if unbounded else set()
    job_server_jars = {"python": jar, "java": kafka_java_job_server_jar()} if unbounded else {}
    for reader, parallelism in [(reader, p) for reader in readers for p in parallelisms] if unbounded else ():
        outputs = {name: f"bench.{name}.{suffix}.{reader}{parallelism}" for name in
                   ("results", "daily_totals", "alerts", "dead_letters")}
        create_topics(bootstrap, list(outputs.values()), partitions=3)
        topics = {**inputs, **outputs}
        arguments = [
            "stream", "--bootstrap-servers", bootstrap, "--start", "earliest", f"--kafka-io={reader}",
            "--allowed-lateness", "30d", "--group-id", f"bench-{reader}{parallelism}-{suffix}",
            *[arg for name in topics for arg in (f"--{name.replace('_', '-')}-topic", topics[name])],
            "--runner", "FlinkRunner", f"--flink_job_server_jar={job_server_jars[reader]}",
            "--flink_master=[local]", f"--flink_version={minor}", "--environment_type=LOOPBACK",
            f"--parallelism={parallelism}", "--checkpointing_interval=10000"]
        try:
            seconds = unbounded_seconds(arguments, bootstrap, outputs["results"], expected,
                                        work / f"unbounded-{reader}-p{parallelism}.log", deadline_seconds)
        except AssertionError as failure:  # a run without the whole answer is a figure too: report it, go on
            print(f"unbounded, --kafka-io={reader}, parallelism {parallelism}: {failure}", file=sys.stderr)
            seconds = None
        rows.append((f"unbounded, --kafka-io={reader}, parallelism {parallelism}", seconds))

    print()
    print(f"N = {payments:,} payments: {total:,} input messages "
          f"({report.payment_messages:,} payment, {report.settlement_messages:,} settlement)")
    print(f"{'reader':<52}{'seconds':>10}{'records/s':>14}")
    print(f"(unbounded: until the results topic holds all {len(expected):,} result keys of the batch answer)"
          if unbounded else "")
    for name, seconds in rows:
        print(f"{name:<52}{seconds:>10.2f}{total / seconds:>14,.0f}" if seconds is not None
              else f"{name:<52}{'no whole answer (see above)':>24}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("payments", type=int, nargs="?", default=5_000)
    parser.add_argument("--parallelism", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-unbounded", dest="unbounded", action="store_false",
                        help="time only the bare consumer and the bounded runs")
    parser.add_argument("--unbounded-readers", nargs="+", choices=("python", "java"), default=["python", "java"],
                        help="the Kafka readers of the unbounded runs (--kafka-io)")
    parser.add_argument("--deadline", type=float, default=900, metavar="SECONDS",
                        help="give up an unbounded run that has not given the whole answer after this long")
    args = parser.parse_args()
    with LocalBroker() as broker:
        run(broker.bootstrap_servers, args.payments, args.parallelism, args.unbounded, args.unbounded_readers,
            args.deadline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
