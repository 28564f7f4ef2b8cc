"""Streaming benchmark of unbounded `paybeam stream` (issue 18): catch-up throughput, latency and
memory on a real Apache Kafka broker, per runner, in one run.

    python benchmarks/stream_engine.py [--engine columnar|elementwise] [--runners prism flink]
        [--parallelism 1 2] [--sizes N 4N] [--rates 100 1000 5000] [--duration 30]
        [--open-items 1000000] [--parts a b c d] [--extra=--FLAG=VALUE ...] [--json PATH]

Needs `make engine-kafka engine-prism` (and `make engine-flink` for `--runners flink`). Starts an
Apache Kafka broker (pipelines/brokers/apache_kafka.py), then
(a) bare: a confluent-kafka consumer (no Beam) reads both input topics of the largest size to
    their ends: records/s, the ceiling of what a reader can do here;
(b) catch-up: per size, N generated payments are replayed into two 3-partition topics; unbounded
    `paybeam stream --start earliest` is timed from launch until the results topic holds every
    result key of the batch answer (`paybeam reconcile` on the same files). Steady-state
    records/s = (messages(last size) - messages(first size)) / (time(last) - time(first)),
    which takes start-up out; also its ratio to (a);
(c) latency: a fresh stream on empty topics is warmed up until it matches a pair, then a producer
    thread writes pairs (a CAPTURED payment, then its CAPTURE settlement line; fresh ids, event
    times now) at each rate for --duration seconds; a consumer on the results topic notes when
    each key's first MATCHED row arrives. Per rate: p50 / p99 / max of settlement-produced ->
    MATCHED-received, and whether the backlog (pairs produced - pairs matched) stayed bounded;
(d) memory: --open-items one-sided CAPTURED payments (event times now, --settlement-sla 3650d so
    none is due) are produced, then a stream consumes them (one PENDING row per key); peak RSS of
    paybeam's process tree (launcher and LOOPBACK SDK worker, Prism or the job server's JVM with
    the embedded Flink), sampled every 0.5 s, until a few seconds after all are in the results.
Each run uses fresh topics and group ids; every launched process group is killed at the end, also
on Ctrl-C. `--engine` and `--extra` flags are passed to every `paybeam stream`. A script, not a
test: timings never gate CI.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

import apache_beam
import confluent_kafka
import psutil
from confluent_kafka import Consumer, TopicPartition

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.flink_stream import batch_result_keys  # noqa: E402
from benchmarks.stream_runs import StreamProcess, result_key  # noqa: E402
from benchmarks.stream_source import bare_consumer, timed  # noqa: E402
from datagen.generator import GeneratorConfig, generate  # noqa: E402
from datagen.scenarios import PROCESSORS, date_text  # noqa: E402
from pipelines.brokers.apache_kafka import ApacheKafkaBroker, java_binary  # noqa: E402
from pipelines.io.kafka import create_topics, new_producer  # noqa: E402
from pipelines.kafka_tools import replay_files  # noqa: E402
from pipelines.version import paybeam_version  # noqa: E402
from runners.engine_cache import pinned_versions  # noqa: E402
from schemas.kafka_values import encode_value  # noqa: E402
from schemas.records import PaymentEvent, SettlementLine  # noqa: E402

INPUTS = ("payments", "settlements")
OUTPUTS = ("results", "daily_totals", "alerts", "dead_letters")
PARTITIONS = 3
SAMPLE_SECONDS = 0.5
WARMUP_PAIRS_PER_SECOND = 5
SETTLE_SECONDS = 5.0  # (d): RSS is still sampled this long after the last open item's row arrived
FAR_SLA = "3650d"


# ------------------------------------------------------------------ records


class PairMaker:
    """Pairs of records in the generator's shapes (schemas.records, as datagen writes them) with fresh
    ids: a CAPTURED payment event and the CAPTURE settlement line that matches it, both stamped now."""

    def __init__(self, tag: str):
        self.tag = tag
        self.count = 0

    def payment(self, number: int, now_millis: int) -> Tuple[bytes, bytes, Tuple[str, str, str]]:
        processor = PROCESSORS[number % len(PROCESSORS)]
        reference = f"bench_{self.tag}_{number}"
        amount = 1000 + number % 9000
        event = PaymentEvent(f"ev_{self.tag}_{number}", f"pay_{self.tag}_{number}", "CAPTURED", processor, reference,
                             f"m_bench_{number % 7}", amount, "EUR", now_millis)
        key = f"{processor}|{reference}".encode()
        return key, encode_value(event._asdict(), "json", "payment_event"), (processor, reference, "CAPTURE")

    def settlement(self, number: int, now_millis: int) -> bytes:
        processor = PROCESSORS[number % len(PROCESSORS)]
        amount = 1000 + number % 9000
        fee = amount // 50
        line = SettlementLine(f"st_{self.tag}_{number}", processor, f"bench_{self.tag}_{number}",
                              f"m_bench_{number % 7}", "CAPTURE", amount, fee, amount - fee, "EUR",
                              date_text(now_millis), now_millis, None)
        fields = {name: value for name, value in line._asdict().items()
                  if name not in ("matched_minor", "matched_currency")}
        return encode_value(fields, "json", "settlement_line")


def _producer(bootstrap: str):
    return new_producer({"bootstrap.servers": bootstrap, "linger.ms": "1", "enable.idempotence": True, "acks": "all"})


def _produce(producer, topic: str, key: bytes, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value)
            return
        except BufferError:  # the local queue is full: let deliveries drain it
            producer.poll(0.05)


# ------------------------------------------------------------------ watching results


class ResultsWatcher(threading.Thread):
    """Reads a results topic from its beginning in a thread: the keys seen, when (monotonic) each key's
    first row and first MATCHED row arrived, and which of `expected` are still missing."""

    def __init__(self, bootstrap: str, topic: str, expected: Optional[Set[Tuple[str, str, str]]] = None):
        super().__init__(daemon=True)
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-watch-{uuid.uuid4().hex}",
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                  "fetch.wait.max.ms": 50})
        self.consumer.subscribe([topic])
        self.missing = set(expected or ())
        self.first_row: Dict[Tuple[str, str, str], float] = {}
        self.first_matched: Dict[Tuple[str, str, str], float] = {}
        self.rows = 0
        self._finish = threading.Event()

    def run(self) -> None:
        try:
            while not self._finish.is_set():
                messages = self.consumer.consume(1000, timeout=0.1)
                now = time.monotonic()
                for message in messages:
                    if message.error() is not None:
                        continue
                    row = json.loads(message.value())
                    key = result_key(row)
                    self.rows += 1
                    self.first_row.setdefault(key, now)
                    self.missing.discard(key)
                    if row["status"] == "MATCHED":
                        self.first_matched.setdefault(key, now)
        finally:
            self.consumer.close()

    def stop(self) -> None:
        self._finish.set()
        self.join(timeout=10)


def topic_messages(bootstrap: str, topic: str) -> int:
    """Messages in a topic now: the sum of its partitions' high watermarks."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-count-{uuid.uuid4().hex}"})
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
                   for partition in range(PARTITIONS))
    finally:
        consumer.close()


# ------------------------------------------------------------------ the benchmark


class RunFailed(Exception):
    """A stream run that did not give what was waited for: reported as a figure, the benchmark goes on."""


class Bench:
    def __init__(self, args: argparse.Namespace, bootstrap: str):
        self.args = args
        self.bootstrap = bootstrap
        self.work = Path(tempfile.mkdtemp(prefix="paybeam-stream-engine-"))
        self.run_id = uuid.uuid4().hex[:8]
        self.processes: List[StreamProcess] = []
        self.commands: List[str] = []

    # -------------------------------------------------------------- helpers

    def fresh_topics(self, tag: str, names: Sequence[str]) -> Dict[str, str]:
        topics = {name: f"bench.{name}.{self.run_id}.{tag}" for name in names}
        create_topics(self.bootstrap, list(topics.values()), partitions=PARTITIONS)
        return topics

    def runner_configs(self) -> List[Tuple[str, List[str]]]:
        configs = []
        for runner in self.args.runners:
            if runner == "prism":
                configs.append(("prism", ["--runner", "PrismRunner"]))
            else:
                for parallelism in self.args.parallelism:
                    configs.append((f"flink-p{parallelism}", [
                        "--runner", "FlinkRunner", "--flink_master=[local]", f"--parallelism={parallelism}",
                        "--environment_type=LOOPBACK", f"--checkpointing_interval={self.args.checkpointing_interval}"]))
        return configs

    def launch(self, name: str, topics: Dict[str, str], runner_flags: List[str], *more: str) -> StreamProcess:
        arguments = ["stream", "--bootstrap-servers", self.bootstrap, "--start", "earliest",
                     "--engine", self.args.engine, "--group-id", f"bench-{self.run_id}-{name}",
                     *[arg for topic in (*INPUTS, *OUTPUTS) for arg in (f"--{topic.replace('_', '-')}-topic",
                                                                         topics[topic])],
                     *more, *runner_flags, *self.args.extra]
        process = StreamProcess(arguments, self.work / f"{name}.log")
        self.processes.append(process)
        self.commands.append(f"[{name}] {shlex.join(process.command)}")
        return process

    def stop(self, process: StreamProcess) -> None:
        process.stop()
        if process in self.processes:
            self.processes.remove(process)

    def stop_all(self) -> None:
        for process in list(self.processes):
            self.stop(process)

    def check_alive(self, process: StreamProcess, started: float, what: str) -> None:
        if not process.alive():
            raise RunFailed(f"paybeam stream exited {process.process.returncode} while waiting for {what}: "
                            f"{process.log_tail(1)} (see {process.log})")
        if time.monotonic() - started > self.args.deadline:
            raise RunFailed(f"no {what} after {self.args.deadline:g} s (see {process.log})")

    # -------------------------------------------------------------- data for (a) and (b)

    def backlog(self, payments: int) -> dict:
        """N generated payments (payment times in the last weeks) replayed into fresh input topics."""
        base = self.work / f"n{payments}"  # batch_result_keys reads BASE/data and writes BASE/batch
        data = base / "data"
        start = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(time.time() - 20 * 86400))
        generate(GeneratorConfig(payments=payments, seed=7, start=start), str(data))
        topics = self.fresh_topics(f"n{payments}", INPUTS)
        report = replay_files(self.bootstrap, [str(data / "payments" / "*")], [str(data / "settlements" / "*")],
                              topics["payments"], topics["settlements"])
        return {"payments": payments, "topics": topics, "dir": base,
                "messages": report.payment_messages + report.settlement_messages}

    # -------------------------------------------------------------- (a)

    def part_a(self, largest: dict) -> dict:
        seconds = 0.0
        read = 0
        for topic in largest["topics"].values():
            took, count = timed(bare_consumer, self.bootstrap, topic)
            seconds += took
            read += count
        assert read == largest["messages"], (read, largest["messages"])
        return {"payments": largest["payments"], "messages": read, "seconds": seconds, "records_per_second": read / seconds}

    # -------------------------------------------------------------- (b)

    def catch_up_seconds(self, name: str, backlog: dict, expected: Set, runner_flags: List[str]) -> float:
        topics = {**backlog["topics"], **self.fresh_topics(name, OUTPUTS)}
        watcher = ResultsWatcher(self.bootstrap, topics["results"], expected)
        watcher.start()
        process = self.launch(name, topics, runner_flags)
        try:
            while watcher.missing:
                self.check_alive(process, process.started, f"all {len(expected):,} result keys "
                                                           f"({len(watcher.missing):,} missing)")
                time.sleep(0.2)
            return time.monotonic() - process.started
        finally:
            watcher.stop()
            self.stop(process)

    def part_b(self, backlogs: List[dict], bare: Optional[dict]) -> List[dict]:
        with contextlib.redirect_stdout(sys.stderr):  # the batch runs' summaries: not part of the report
            expected = {backlog["payments"]: batch_result_keys(backlog["dir"]) for backlog in backlogs}
        rows = []
        for config, flags in self.runner_configs():
            runs = []
            for backlog in backlogs:
                name = f"b-{config}-n{backlog['payments']}"
                try:
                    seconds = self.catch_up_seconds(name, backlog, expected[backlog["payments"]], flags)
                    error = None
                except RunFailed as failure:
                    print(f"(b) {name}: {failure}", file=sys.stderr)
                    seconds, error = None, str(failure).splitlines()[0]
                runs.append({"payments": backlog["payments"], "messages": backlog["messages"],
                             "result_keys": len(expected[backlog["payments"]]), "seconds": seconds, "error": error})
            first, last = runs[0], runs[-1]
            steady = None
            if len(runs) > 1 and first["seconds"] is not None and last["seconds"] is not None \
                    and last["seconds"] > first["seconds"]:
                steady = (last["messages"] - first["messages"]) / (last["seconds"] - first["seconds"])
            startup = (first["seconds"] - first["messages"] / steady) if steady else None
            rows.append({"runner": config, "runs": runs, "steady_records_per_second": steady,
                         "startup_seconds": startup,
                         "ratio_to_bare": steady / bare["records_per_second"] if steady and bare else None})
        return rows

    # -------------------------------------------------------------- (c)

    def part_c(self) -> List[dict]:
        rows = []
        for config, flags in self.runner_configs():
            name = f"c-{config}"
            topics = self.fresh_topics(name, (*INPUTS, *OUTPUTS))
            watcher = ResultsWatcher(self.bootstrap, topics["results"])
            watcher.start()
            process = self.launch(name, topics, flags, "--settlement-sla", FAR_SLA)
            maker = PairMaker(f"{self.run_id}{config.replace('-', '')}")
            try:
                startup = self.warm_up(process, watcher, topics, maker)
                rates, skip = [], None
                for rate in self.args.rates:
                    if skip:
                        rates.append({"rate": rate, "skipped": skip})
                        continue
                    measured = self.latency_at(process, watcher, topics, maker, rate)
                    rates.append(measured)
                    if measured["unmatched"]:
                        skip = f"the backlog of {measured['rate']} pairs/s did not drain"
                rows.append({"runner": config, "startup_seconds": startup, "rates": rates})
            except RunFailed as failure:
                print(f"(c) {name}: {failure}", file=sys.stderr)
                rows.append({"runner": config, "error": str(failure).splitlines()[0]})
            finally:
                watcher.stop()
                self.stop(process)
        return rows

    def warm_up(self, process: StreamProcess, watcher: ResultsWatcher, topics: Dict[str, str],
                maker: PairMaker) -> float:
        """Pairs at a slow pace until one is MATCHED: the stream runs and has caught up (empty topics).
        Returns the seconds from launch to that first MATCHED row."""
        producer = _producer(self.bootstrap)
        keys = []
        while not any(key in watcher.first_matched for key in keys):
            self.check_alive(process, process.started, "a first MATCHED row")
            keys.append(self.produce_pair(producer, topics, maker, {}))
            producer.poll(0)
            time.sleep(1.0 / WARMUP_PAIRS_PER_SECOND)
        producer.flush(30)
        startup = time.monotonic() - process.started
        # Let the warm-up pairs all match, so that the first rate starts from an empty backlog.
        while not all(key in watcher.first_matched for key in keys):
            self.check_alive(process, process.started, "the warm-up pairs' MATCHED rows")
            time.sleep(0.2)
        return startup

    @staticmethod
    def produce_pair(producer, topics: Dict[str, str], maker: PairMaker, produced: Dict) -> Tuple[str, str, str]:
        """Produces the next pair, notes when its settlement went out; returns its result key."""
        number = maker.count
        maker.count += 1
        now = int(time.time() * 1000)
        key, value, result = maker.payment(number, now)
        _produce(producer, topics["payments"], key, value)
        _produce(producer, topics["settlements"], key, maker.settlement(number, now))
        produced[result] = time.monotonic()
        return result

    def latency_at(self, process: StreamProcess, watcher: ResultsWatcher, topics: Dict[str, str],
                   maker: PairMaker, rate: float) -> dict:
        produced: Dict[Tuple[str, str, str], float] = {}
        done = threading.Event()
        duration = self.args.duration

        def produce() -> None:
            try:
                producer = _producer(self.bootstrap)
                started = time.monotonic()
                sent = 0
                while True:
                    elapsed = time.monotonic() - started
                    if elapsed >= duration:
                        break
                    while sent < min(int(elapsed * rate) + 1, int(duration * rate)):
                        self.produce_pair(producer, topics, maker, produced)
                        sent += 1
                    producer.poll(0)
                    time.sleep(max(0.0, min(0.01, started + sent / rate - time.monotonic())))
                producer.flush(60)
            finally:
                done.set()

        started = time.monotonic()
        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        samples = []  # (seconds since start, pairs produced, pairs matched)
        while not done.is_set():
            self.check_alive(process, started, f"the end of the {rate} pairs/s run")
            keys = list(produced)
            samples.append((time.monotonic() - started, len(keys),
                            sum(1 for key in keys if key in watcher.first_matched)))
            time.sleep(SAMPLE_SECONDS)
        thread.join()
        produced_seconds = time.monotonic() - started
        drain_deadline = time.monotonic() + max(self.args.drain, duration)
        keys = list(produced)
        while time.monotonic() < drain_deadline and not all(key in watcher.first_matched for key in keys):
            if not process.alive():
                raise RunFailed(f"paybeam stream exited {process.process.returncode} during the {rate} pairs/s run: "
                                f"{process.log_tail(1)} (see {process.log})")
            time.sleep(0.2)
        latencies = sorted(watcher.first_matched[key] - produced[key] for key in keys if key in watcher.first_matched)
        unmatched = len(keys) - len(latencies)
        return {"rate": rate, "pairs": len(keys), "achieved_pairs_per_second": len(keys) / produced_seconds,
                "matched": len(latencies), "unmatched": unmatched, **latency_summary(latencies),
                **backlog_summary(samples, rate), "drain_seconds": time.monotonic() - started - produced_seconds,
                "samples": samples}

    # -------------------------------------------------------------- (d)

    def part_d(self) -> List[dict]:
        rows = []
        count = self.args.open_items
        for config, flags in self.runner_configs():
            name = f"d-{config}"
            topics = self.fresh_topics(name, (*INPUTS, *OUTPUTS))
            produce_seconds = self.produce_open_items(topics["payments"], count, f"{self.run_id}d{config}")
            process = self.launch(name, topics, flags, "--settlement-sla", FAR_SLA)
            peak, peak_parts, consumed_at, rss_consumed = 0, {}, None, None
            try:
                next_count = 0.0
                while True:
                    self.check_alive(process, process.started, f"{count:,} PENDING rows")
                    parts = process.rss_by_name()
                    total = sum(parts.values())
                    if total > peak:
                        peak, peak_parts = total, parts
                    now = time.monotonic()
                    if consumed_at is None and now >= next_count:
                        next_count = now + 1.0
                        if topic_messages(self.bootstrap, topics["results"]) >= count:
                            consumed_at, rss_consumed = now, total
                    if consumed_at is not None and now - consumed_at >= SETTLE_SECONDS:
                        break
                    time.sleep(SAMPLE_SECONDS)
                rows.append({"runner": config, "open_items": count, "produce_seconds": produce_seconds,
                             "consume_seconds": consumed_at - process.started, "peak_rss_bytes": peak,
                             "rss_when_consumed_bytes": rss_consumed, "peak_rss_by_process": peak_parts})
            except RunFailed as failure:
                print(f"(d) {name}: {failure}", file=sys.stderr)
                rows.append({"runner": config, "open_items": count, "error": str(failure).splitlines()[0],
                             "peak_rss_bytes": peak or None, "peak_rss_by_process": peak_parts})
            finally:
                self.stop(process)
        return rows

    def produce_open_items(self, topic: str, count: int, tag: str) -> float:
        maker = PairMaker(tag)
        producer = _producer(self.bootstrap)
        started = time.monotonic()
        for number in range(count):
            key, value, _ = maker.payment(number, int(time.time() * 1000))
            _produce(producer, topic, key, value)
            if number % 10_000 == 0:
                producer.poll(0)
        remaining = producer.flush(120)
        assert remaining == 0, f"{remaining} open-item payments not delivered"
        return time.monotonic() - started


def latency_summary(latencies: List[float]) -> dict:
    if not latencies:
        return {"p50_seconds": None, "p99_seconds": None, "max_seconds": None}

    def quantile(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    return {"p50_seconds": quantile(0.50), "p99_seconds": quantile(0.99), "max_seconds": latencies[-1]}


def backlog_summary(samples: List[Tuple[float, int, int]], rate: float) -> dict:
    """The backlog (pairs produced, not yet matched) at the end of producing, and its growth over the
    second half of the run (pairs/s, a least-squares slope). Bounded: it grew by less than one
    second's worth of pairs over that half."""
    if not samples:
        return {"backlog_at_end": None, "backlog_growth_pairs_per_second": None, "bounded": None}
    backlogs = [(t, produced - matched) for t, produced, matched in samples]
    half = [point for point in backlogs if point[0] >= backlogs[-1][0] / 2] or backlogs
    slope = 0.0
    if len(half) > 1:
        mean_t = sum(t for t, _ in half) / len(half)
        mean_b = sum(b for _, b in half) / len(half)
        spread = sum((t - mean_t) ** 2 for t, _ in half)
        slope = sum((t - mean_t) * (b - mean_b) for t, b in half) / spread if spread else 0.0
    span = half[-1][0] - half[0][0]
    return {"backlog_at_end": backlogs[-1][1], "backlog_max": max(b for _, b in backlogs),
            "backlog_growth_pairs_per_second": slope, "bounded": slope * span < max(rate, 1.0)}


# ------------------------------------------------------------------ report


def machine() -> dict:
    java = subprocess.run([java_binary(), "-version"], capture_output=True, text=True).stderr.splitlines()
    versions = pinned_versions()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2 ** 30:.1f} GiB, "
                   f"{platform.system()} {platform.machine()} ({platform.node()})",
        "load_average": os.getloadavg(),
        "versions": {"paybeam": paybeam_version(), "python": platform.python_version(),
                     "apache-beam": apache_beam.__version__, "confluent-kafka": confluent_kafka.__version__,
                     "librdkafka": confluent_kafka.libversion()[0], "psutil": psutil.__version__,
                     "kafka broker": versions["KAFKA_VERSION"], "prism": versions["PRISM_VERSION"],
                     "flink job server": f"Flink {versions['FLINK_JOB_SERVER_FLINK_VERSION']}, Beam "
                                         f"{versions['FLINK_JOB_SERVER_BEAM_VERSION']}",
                     "java": java[0] if java else "?"},
    }


def _number(value, spec: str = ",.0f", empty: str = "—") -> str:
    return empty if value is None else format(value, spec)


def _gib(value) -> str:
    return "—" if not value else f"{value / 2 ** 30:.2f} GiB"


def print_report(report: dict) -> None:
    info = report["machine"]
    print()
    print(f"# paybeam stream benchmark, engine {report['engine']}, {info['date']}")
    print(f"machine: {info['machine']}; load average at start {', '.join(f'{x:.2f}' for x in info['load_average'])}")
    print("versions: " + ", ".join(f"{name} {version}" for name, version in info["versions"].items()))
    print(f"benchmark: {report['command']}")
    if "a" in report:
        a = report["a"]
        print(f"\n## (a) bare confluent-kafka consumer, both input topics ({a['payments']:,} payments)\n")
        print("| messages | seconds | records/s |\n|---:|---:|---:|")
        print(f"| {a['messages']:,} | {a['seconds']:.2f} | {a['records_per_second']:,.0f} |")
    if "b" in report:
        print("\n## (b) catch-up of unbounded `paybeam stream` on a backlog (launch -> every result key)\n")
        print("| runner | payments | messages | result keys | seconds | steady records/s | start-up s | × bare |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for row in report["b"]:
            for index, run in enumerate(row["runs"]):
                last = index == len(row["runs"]) - 1
                seconds = _number(run["seconds"], ".1f", f"failed: {run['error']}")
                print(f"| {row['runner']} | {run['payments']:,} | {run['messages']:,} | {run['result_keys']:,} | "
                      f"{seconds} | {_number(row['steady_records_per_second']) if last else ''} | "
                      f"{_number(row['startup_seconds'], '.1f') if last else ''} | "
                      f"{_number(row['ratio_to_bare'], '.3f') if last else ''} |")
    if "c" in report:
        print(f"\n## (c) latency: settlement produced -> first MATCHED row received ({report['duration']:g} s per rate)\n")
        print("| runner | start-up s | pairs/s asked (done) | pairs | unmatched | p50 s | p99 s | max s | "
              "backlog at end (max) | growth pairs/s | bounded |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for row in report["c"]:
            if "error" in row:
                print(f"| {row['runner']} | failed: {row['error']} |")
                continue
            for rate in row["rates"]:
                if "skipped" in rate:
                    print(f"| {row['runner']} | | {rate['rate']:g} | not run: {rate['skipped']} |")
                    continue
                print(f"| {row['runner']} | {row['startup_seconds']:.1f} | {rate['rate']:g} "
                      f"({rate['achieved_pairs_per_second']:,.0f}) | {rate['pairs']:,} | {rate['unmatched']:,} | "
                      f"{_number(rate['p50_seconds'], '.3f')} | {_number(rate['p99_seconds'], '.3f')} | "
                      f"{_number(rate['max_seconds'], '.3f')} | {rate['backlog_at_end']:,} ({rate['backlog_max']:,}) | "
                      f"{rate['backlog_growth_pairs_per_second']:,.1f} | "
                      f"{'yes' if rate['bounded'] and not rate['unmatched'] else 'no'} |")
    if "d" in report:
        print("\n## (d) memory: peak RSS of the paybeam process tree with open items in state\n")
        print("| runner | open items | seconds to consume | peak RSS | RSS when consumed | peak by process |")
        print("|---|---:|---:|---:|---:|---|")
        for row in report["d"]:
            parts = ", ".join(f"{name} {_gib(size)}" for name, size in
                              sorted(row.get("peak_rss_by_process", {}).items(), key=lambda item: -item[1]))
            if "error" in row:
                print(f"| {row['runner']} | {row['open_items']:,} | failed: {row['error']} | "
                      f"{_gib(row['peak_rss_bytes'])} | | {parts} |")
                continue
            print(f"| {row['runner']} | {row['open_items']:,} | {row['consume_seconds']:.1f} | "
                  f"{_gib(row['peak_rss_bytes'])} | {_gib(row['rss_when_consumed_bytes'])} | {parts} |")
    print(f"\nlogs and data: {report['work']}")
    print("commands:")
    for command in report["commands"]:
        print(f"  {command}")


# ------------------------------------------------------------------ main


def run(args: argparse.Namespace, bootstrap: str, broker_kind: str) -> dict:
    bench = Bench(args, bootstrap)
    report: dict = {"engine": args.engine, "machine": machine(), "broker": broker_kind,
                    "command": shlex.join([sys.executable, *sys.argv]), "duration": args.duration,
                    "commands": bench.commands, "work": str(bench.work)}
    try:
        if {"a", "b"} & set(args.parts):
            sizes = args.sizes if "b" in args.parts else args.sizes[-1:]
            backlogs = [bench.backlog(size) for size in sizes]
            report["a"] = bench.part_a(backlogs[-1])
            if "b" in args.parts:
                report["b"] = bench.part_b(backlogs, report["a"])
            if "a" not in args.parts:
                del report["a"]
        if "c" in args.parts:
            report["c"] = bench.part_c()
        if "d" in args.parts:
            report["d"] = bench.part_d()
    finally:
        bench.stop_all()
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="columnar", help="passed to every paybeam stream (default columnar)")
    parser.add_argument("--runners", nargs="+", choices=("prism", "flink"), default=["prism", "flink"])
    parser.add_argument("--parallelism", type=int, nargs="+", default=[1, 2], help="FlinkRunner's (default 1 2)")
    parser.add_argument("--checkpointing-interval", type=int, default=10_000, metavar="MILLIS",
                        help="FlinkRunner's --checkpointing_interval (default 10000, paybeam's minimum)")
    parser.add_argument("--parts", nargs="+", choices=("a", "b", "c", "d"), default=["a", "b", "c", "d"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 80_000], metavar="N",
                        help="(b) payments per backlog, ascending (default 20000 80000)")
    parser.add_argument("--rates", type=float, nargs="+", default=[100, 1000, 5000], metavar="PAIRS_PER_S",
                        help="(c) default 100 1000 5000")
    parser.add_argument("--duration", type=float, default=30.0, metavar="SECONDS", help="(c) per rate (default 30)")
    parser.add_argument("--drain", type=float, default=60.0, metavar="SECONDS",
                        help="(c) wait at most max(this, --duration) for a rate's last pairs to match (default 60)")
    parser.add_argument("--open-items", type=int, default=1_000_000, metavar="N", help="(d) default 1000000")
    parser.add_argument("--deadline", type=float, default=1800.0, metavar="SECONDS",
                        help="give up a stream that has not given what is waited for after this long (default 1800)")
    parser.add_argument("--extra", action="append", default=[], metavar="FLAG",
                        help="a flag for every paybeam stream, e.g. --extra=--chunk-max-millis=100 (repeatable)")
    parser.add_argument("--bootstrap-servers", help="use this broker instead of starting Apache Kafka")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every figure (and the samples) here")
    args = parser.parse_args()
    if args.sizes != sorted(args.sizes) or len(set(args.sizes)) != len(args.sizes):
        parser.error("--sizes must be distinct and ascending")

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)  # stop the streams as Ctrl-C does
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where started with SIGINT ignored
    if args.bootstrap_servers:
        report = run(args, args.bootstrap_servers, f"given ({args.bootstrap_servers})")
    else:
        with ApacheKafkaBroker() as broker:
            report = run(args, broker.bootstrap_servers, f"Apache Kafka {broker.version} (started here)")
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
        print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
