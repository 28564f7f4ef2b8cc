"""Kafka on Flink benchmark: `paybeam stream --bounded` on Beam's Flink runner (embedded
mini-cluster, parallelism 1 and 2) next to a bare confluent-kafka consumer, in the same run.

    python benchmarks/flink_stream.py [N_PAYMENTS]

Needs `make engine-flink`. Starts a local Tansu broker, replays a generated sample (N payments)
into two 3-partition topics, then times
1. a bare confluent-kafka consumer reading both input topics to their ends,
2. `paybeam stream --bounded --runner FlinkRunner` reconciling both topics end to end, per
   parallelism (wall time includes the job server's and the mini-cluster's start-up).
Bounded, not unbounded: the served Flink job server (Beam 2.70) predates Beam's support for
Python Splittable DoFns in Flink's portable *streaming* mode (docs/DESIGN.md 7), so unbounded
runs are not reliable enough to time. A script, not a test: timings never gate CI.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.stream_source import bare_consumer, timed  # noqa: E402
from datagen.generator import GeneratorConfig, generate  # noqa: E402
from pipelines.cli import main as paybeam  # noqa: E402
from pipelines.io.local_broker import LocalBroker  # noqa: E402
from pipelines.kafka_tools import create_topics, replay_files  # noqa: E402
from runners.engine_cache import fetched, pinned_versions  # noqa: E402


def flink_job_server_jar() -> Path:
    versions = pinned_versions()
    return fetched(f"flink-{versions['FLINK_JOB_SERVER_FLINK_VERSION']}-beam-{versions['FLINK_JOB_SERVER_BEAM_VERSION']}",
                   make_target="engine-flink") / "job-server.jar"


def run(bootstrap: str, payments: int, parallelisms) -> None:
    work = Path(tempfile.mkdtemp(prefix="paybeam-flink-bench-"))
    dataset = generate(GeneratorConfig(payments=payments, seed=7), str(work / "data"))
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

    print()
    print(f"N = {payments:,} payments: {total:,} input messages "
          f"({report.payment_messages:,} payment, {report.settlement_messages:,} settlement)")
    print(f"{'reader':<52}{'seconds':>10}{'records/s':>14}")
    for name, seconds in rows:
        print(f"{name:<52}{seconds:>10.2f}{total / seconds:>14,.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("payments", type=int, nargs="?", default=5_000)
    parser.add_argument("--parallelism", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with LocalBroker() as broker:
        run(broker.bootstrap_servers, args.payments, args.parallelism)
    return 0


if __name__ == "__main__":
    sys.exit(main())
