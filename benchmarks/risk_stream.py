"""Live risk benchmark of unbounded `paybeam risk stream` (issue 20): catch-up rate and decision latency.

    python benchmarks/risk_stream.py [--runners prism flink] [--engine columnar|elementwise]
        [--parts a b c d] [--sizes 5000 20000] [--rates 100 1000] [--duration 30] [--cards 1000000]
        [--stream-flag=--FLAG=VALUE …] [--bootstrap-servers HOST:PORT] [--latency-log PATH]

Needs `make engine-kafka engine-prism` (and `make engine-flink` for `--runners flink`). Starts an Apache
Kafka broker unless given one, then per runner:
(a) catch-up: per size, `paybeam risk generate` attempts are produced in event-time order (`paybeam risk
    produce`, 3 partitions), and `paybeam risk stream --start earliest` with the example rules is timed
    from launch until the decisions topic holds one decision per attempt. Steady-state attempts/s =
    (N2 - N1) / (t2 - t1), which takes start-up out;
(b) latency: a fresh stream on empty topics is warmed up until it decides one attempt, then a producer
    writes attempts (fresh ids, event time now, cards and customers from a pool) at each rate for
    --duration seconds; a consumer notes when each decision arrives. Per rate: p50 / p99 / max of
    produced -> decision received, and whether every attempt was decided within the drain time;
(c) memory (`--parts c`): --cards attempts of as many cards (and customers, IPs, devices) inside every
    window, so the stream keeps them all; the peak RSS of its process tree until all are decided;
(d) idle (`--parts d`): a stream on empty topics, warmed up until it decides one attempt, then left alone
    for --idle-settle seconds; the CPU its process tree uses over the next --idle-seconds (cores).
Every launched process group is killed at the end. A script, not a test: timings never gate CI.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional

from confluent_kafka import Consumer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.stream_engine import PARTITIONS, latency_summary, topic_messages  # noqa: E402
from benchmarks.stream_runs import StreamProcess  # noqa: E402
from pipelines.brokers.apache_kafka import ApacheKafkaBroker  # noqa: E402
from pipelines.io.kafka import create_topics, new_producer  # noqa: E402
from schemas.kafka_values import encode_value  # noqa: E402

RULES = ROOT / "transforms" / "risk" / "example_rules.yaml"
ATTEMPTS_PER_CUSTOMER = 4.63


class DecisionWatcher(threading.Thread):
    """Reads the decisions topic from its beginning: when (monotonic) each attempt's decision arrived."""

    def __init__(self, bootstrap: str, topic: str):
        super().__init__(daemon=True)
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-watch-{uuid.uuid4().hex}",
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                  "fetch.wait.max.ms": 20})
        self.consumer.subscribe([topic])
        self.arrived: Dict[str, float] = {}
        self._finish = threading.Event()

    def run(self) -> None:
        try:
            while not self._finish.is_set():
                for message in self.consumer.consume(1000, timeout=0.05):
                    if message.error() is None:
                        self.arrived.setdefault(json.loads(message.value())["attempt_id"], time.monotonic())
        finally:
            self.consumer.close()

    def stop(self) -> None:
        self._finish.set()
        self.join(timeout=10)


class Bench:
    def __init__(self, args: argparse.Namespace, bootstrap: str):
        self.args, self.bootstrap = args, bootstrap
        self.work = Path(tempfile.mkdtemp(prefix="paybeam-risk-bench-"))
        self.run_id = uuid.uuid4().hex[:8]
        self.streams: List[StreamProcess] = []

    def topics(self, name: str) -> Dict[str, str]:
        topics = {role: f"risk-{self.run_id}-{name}-{role}" for role in ("attempts", "decisions", "dead_letters")}
        create_topics(self.bootstrap, list(topics.values()), partitions=PARTITIONS)
        return topics

    def launch(self, name: str, topics: Dict[str, str], runner_flags: List[str]) -> StreamProcess:
        stream = StreamProcess(["risk", "stream", "--bootstrap-servers", self.bootstrap, "--start", "earliest",
                                "--attempts-topic", topics["attempts"], "--decisions-topic", topics["decisions"],
                                "--dead-letters-topic", topics["dead_letters"], "--rules", str(self.args.rules),
                                "--group-id", f"bench-{self.run_id}-{name}", "--engine", self.args.engine,
                                *runner_flags, *self.args.stream_flag], self.work / f"{name}.log")
        self.streams.append(stream)
        return stream

    def wait_for(self, stream: StreamProcess, condition, what: str) -> float:
        deadline = time.monotonic() + self.args.deadline
        while not condition():
            if not stream.alive():
                raise RuntimeError(f"the stream exited while waiting for {what}:\n{stream.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {what} after {self.args.deadline:.0f}s:\n{stream.log_tail()}")
            time.sleep(0.2)
        return time.monotonic()

    def catch_up(self, name: str, flags: List[str]) -> dict:
        timings = []
        for size in self.args.sizes:
            data = self.work / f"attempts-{size}"
            os.system(f"{sys.executable} -m pipelines.cli risk generate --out {data} --customers "
                      f"{max(1, round(size / ATTEMPTS_PER_CUSTOMER))} --format parquet > /dev/null")
            topics = self.topics(f"{name}-catchup-{size}")
            os.system(f"{sys.executable} -m pipelines.cli risk produce --bootstrap-servers {self.bootstrap} "
                      f"--attempts '{data}/attempts/*' --attempts-topic {topics['attempts']} > /dev/null")
            attempts = topic_messages(self.bootstrap, topics["attempts"])
            stream = self.launch(f"{name}-catchup-{size}", topics, flags)
            try:
                done = self.wait_for(stream, lambda: topic_messages(self.bootstrap, topics["decisions"]) >= attempts,
                                     f"{attempts} decisions")
                timings.append((attempts, done - stream.started))
            finally:
                stream.stop()
        (n1, t1), (n2, t2) = timings[0], timings[-1]
        return {"runs": timings, "steady_attempts_per_second": (n2 - n1) / (t2 - t1) if t2 > t1 else None}

    def latency(self, name: str, flags: List[str]) -> dict:
        topics = self.topics(f"{name}-latency")
        watcher = DecisionWatcher(self.bootstrap, topics["decisions"])
        watcher.start()
        stream = self.launch(f"{name}-latency", topics, flags)
        producer = new_producer({"bootstrap.servers": self.bootstrap, "linger.ms": "1", "acks": "all"})
        rng = random.Random(7)
        produced: Dict[str, float] = {}

        def send(attempt_id: str) -> None:
            card = rng.randrange(20_000)
            fields = {"attempt_id": attempt_id, "attempt_type": "AUTHORIZATION",
                      "event_time": int(time.time() * 1000), "merchant_id": f"m_{card % 4}",
                      "amount_minor": rng.randrange(100, 50_000), "currency": "USD", "card_fingerprint": f"fp_{card}",
                      "card_bin": "424242", "customer_id": f"cus_{card}", "ip": f"10.0.{card // 256 % 256}.{card % 256}",
                      "device_id": None, "billing_country": "US", "issuing_country": "US", "outcome": "APPROVED",
                      "decline_code": None, "three_ds": None, "payment_id": None}
            producer.produce(topics["attempts"], key=fields["card_fingerprint"].encode(),
                             value=encode_value(fields, "json", "authorization_attempt"))
            producer.poll(0)
            produced[attempt_id] = time.monotonic()

        results = {}
        try:
            send("warm-up")
            producer.flush(10)
            self.wait_for(stream, lambda: "warm-up" in watcher.arrived, "a first decision")
            for rate in self.args.rates:
                ids = []
                start = time.monotonic()
                start_wall = time.time()
                count = int(rate * self.args.duration)
                for index in range(count):
                    due = start + index / rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    attempt_id = f"r{int(rate)}-{index}"
                    send(attempt_id)
                    ids.append(attempt_id)
                producer.flush(30)
                drain = time.monotonic() + max(60.0, self.args.duration)
                while time.monotonic() < drain and not all(i in watcher.arrived for i in ids):
                    time.sleep(0.2)
                latencies = sorted(watcher.arrived[i] - produced[i] for i in ids if i in watcher.arrived)
                if self.args.latency_log:
                    with open(self.args.latency_log, "a") as log:
                        for i in ids:
                            log.write(json.dumps({"rate": rate, "attempt_id": i, "produced": produced[i] - start,
                                                  "produced_at": start_wall + produced[i] - start,
                                                  "latency": watcher.arrived.get(i, float("nan")) - produced[i]})
                                      + "\n")
                results[str(rate)] = {**latency_summary(latencies), "produced": len(ids),
                                      "decided": len(latencies), "kept_up": len(latencies) == len(ids)}
            results.update(checkpoint_summary(stream.flink_checkpoints()))
        finally:
            stream.stop()
            watcher.stop()
        return results

    def memory(self, name: str, flags: List[str]) -> dict:
        """--cards attempts, each of its own card, customer, IP and device (4 merchants), timed over the last
        10 minutes (inside every window): the stream keeps them all. Peak RSS of the stream's process tree
        (per process name, sampled every second) until every attempt is decided."""
        topics = self.topics(f"{name}-memory")
        producer = new_producer({"bootstrap.servers": self.bootstrap, "linger.ms": "50", "acks": "all"})
        count, now = self.args.cards, int(time.time() * 1000)
        for index in range(count):
            card = f"fp_{index:07d}"
            fields = {"attempt_id": f"mem-{index}", "attempt_type": "AUTHORIZATION",
                      "event_time": now - 600_000 + index * 600_000 // count, "merchant_id": f"m_{index % 4}",
                      "amount_minor": 1_000 + index % 5_000, "currency": "USD", "card_fingerprint": card,
                      "card_bin": "424242", "customer_id": f"cus_{index:07d}",
                      "ip": f"10.{index // 65_536 % 256}.{index // 256 % 256}.{index % 256}",
                      "device_id": f"dev_{index:07d}", "billing_country": "US", "issuing_country": "US",
                      "outcome": "APPROVED", "decline_code": None, "three_ds": None, "payment_id": None}
            while True:
                try:
                    producer.produce(topics["attempts"], key=card.encode(),
                                     value=encode_value(fields, "json", "authorization_attempt"))
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
        producer.flush(120)
        stream = self.launch(f"{name}-memory", topics, flags)
        peak: Dict[str, int] = {}
        peak_total = 0
        try:
            deadline = time.monotonic() + self.args.deadline
            while topic_messages(self.bootstrap, topics["decisions"]) < count:
                if not stream.alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"{count} decisions not reached:\n{stream.log_tail()}")
                sizes = stream.rss_by_name()
                peak_total = max(peak_total, sum(sizes.values()))
                for process, size in sizes.items():
                    peak[process] = max(peak.get(process, 0), size)
                time.sleep(1.0)
            seconds = time.monotonic() - stream.started
        finally:
            stream.stop()
        return {"cards": count, "seconds": seconds, "peak_rss_gib": round(peak_total / 2**30, 2),
                "peak_rss_gib_by_process": {k: round(v / 2**30, 2) for k, v in peak.items()}}

    def idle(self, name: str, flags: List[str]) -> dict:
        topics = self.topics(f"{name}-idle")
        watcher = DecisionWatcher(self.bootstrap, topics["decisions"])
        watcher.start()
        stream = self.launch(f"{name}-idle", topics, flags)
        producer = new_producer({"bootstrap.servers": self.bootstrap, "acks": "all"})
        fields = {"attempt_id": "warm-up", "attempt_type": "AUTHORIZATION", "event_time": int(time.time() * 1000),
                  "merchant_id": "m_0", "amount_minor": 100, "currency": "USD", "card_fingerprint": "fp_0",
                  "card_bin": "424242", "customer_id": "cus_0", "ip": "10.0.0.1", "device_id": None,
                  "billing_country": "US", "issuing_country": "US", "outcome": "APPROVED", "decline_code": None,
                  "three_ds": None, "payment_id": None}
        try:
            producer.produce(topics["attempts"], key=b"fp_0", value=encode_value(fields, "json", "authorization_attempt"))
            producer.flush(10)
            self.wait_for(stream, lambda: "warm-up" in watcher.arrived, "a first decision")
            time.sleep(self.args.idle_settle)  # a measuring pause, not a synchronisation
            before = stream.cpu_seconds()
            began = time.monotonic()
            time.sleep(self.args.idle_seconds)
            cores = (stream.cpu_seconds() - before) / (time.monotonic() - began)
            checkpoints = stream.flink_checkpoints()
        finally:
            stream.stop()
            watcher.stop()
        return {"idle_cores": round(cores, 3), "seconds": self.args.idle_seconds,
                **checkpoint_summary(checkpoints)}

    def stop_all(self) -> None:
        for stream in self.streams:
            stream.stop()


def checkpoint_summary(checkpoints: Optional[List[dict]]) -> dict:
    """A Flink run's checkpoints, first and last, per stage (nothing for Prism): Beam 2.70's Flink runner
    registers a Flink state for every deferred residual of a Python SDF, so the reading stage's
    state and snapshot times grow with the run's age (docs/DESIGN.md 7)."""
    if not checkpoints:
        return {}
    def brief(checkpoint: dict) -> dict:
        return {"id": checkpoint["id"], "end_to_end_ms": checkpoint["end_to_end_ms"], "stages": {
            name: stage for name, stage in checkpoint["stages"].items() if stage["state_bytes"] > 100_000}}
    return {"checkpoints": {"count": len(checkpoints), "first": brief(checkpoints[0]), "last": brief(checkpoints[-1])}}


def runner_flags(runner: str) -> List[str]:
    if runner == "prism":
        return ["--runner", "PrismRunner"]
    return ["--runner", "FlinkRunner", "--flink_master=[local]", "--parallelism=1",
            "--checkpointing_interval=10000"]


def run(args: argparse.Namespace, bootstrap: str, broker: str) -> dict:
    bench = Bench(args, bootstrap)
    report = {"machine": f"{platform.node()} ({os.cpu_count()} cores, {platform.machine()})", "broker": broker,
              "engine": args.engine, "rules": args.rules.name, "stream_flags": args.stream_flag,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "runners": {}}
    try:
        for runner in args.runners:
            flags = runner_flags(runner)
            entry = report["runners"][runner] = {}
            if "a" in args.parts:
                entry["catch_up"] = bench.catch_up(runner, flags)
            if "b" in args.parts:
                entry["latency"] = bench.latency(runner, flags)
            if "c" in args.parts:
                entry["memory"] = bench.memory(runner, flags)
            if "d" in args.parts:
                entry["idle"] = bench.idle(runner, flags)
    finally:
        bench.stop_all()
    return report


def _print_checkpoints(runner: str, part: str, checkpoints: Optional[dict]) -> None:
    if not checkpoints:
        return
    first, last = checkpoints["first"], checkpoints["last"]
    print(f"{runner} ({part}): {checkpoints['count']} checkpoints, end to end {first['end_to_end_ms']} -> "
          f"{last['end_to_end_ms']} ms (checkpoints {first['id']} -> {last['id']})")
    for name, stage in last["stages"].items():
        before = first["stages"].get(name, {})
        print(f"  {name[:60]}: state {before.get('state_bytes', 0) / 1e6:.1f} -> {stage['state_bytes'] / 1e6:.1f} MB, "
              f"sync {before.get('sync_ms')} -> {stage['sync_ms']} ms, async {before.get('async_ms')} -> "
              f"{stage['async_ms']} ms")


def _seconds(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.2f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runners", nargs="+", choices=("prism", "flink"), default=["prism"])
    parser.add_argument("--parts", nargs="+", choices=("a", "b", "c", "d"), default=["a", "b"])
    parser.add_argument("--idle-settle", type=float, default=20.0, metavar="SECONDS", help="part d (default 20)")
    parser.add_argument("--idle-seconds", type=float, default=20.0, metavar="SECONDS", help="part d (default 20)")
    parser.add_argument("--stream-flag", action="append", default=[], metavar="--FLAG=VALUE",
                        help="passed to every `paybeam risk stream` (repeatable), e.g. --stream-flag=--read-call-ms=100")
    parser.add_argument("--cards", type=int, default=1_000_000, metavar="N", help="part c: active cards in state")
    parser.add_argument("--engine", choices=("columnar", "elementwise"), default="columnar")
    parser.add_argument("--rules", type=Path, default=RULES,
                        help=f"the rules file (default {RULES.relative_to(ROOT)}, seven rules; "
                             "benchmarks/ten_rules.yaml: the ten active rules of the issue's goals)")
    parser.add_argument("--sizes", type=int, nargs=2, default=[5_000, 20_000], metavar="N")
    parser.add_argument("--rates", type=float, nargs="+", default=[100, 1000], metavar="PER_S")
    parser.add_argument("--duration", type=float, default=30.0, metavar="SECONDS")
    parser.add_argument("--deadline", type=float, default=900.0, metavar="SECONDS")
    parser.add_argument("--bootstrap-servers")
    parser.add_argument("--latency-log", metavar="PATH",
                        help="part b: append each attempt's produce time (s from the rate's start) and latency as "
                             "JSON lines, to see where latency comes from")
    args = parser.parse_args()
    if args.bootstrap_servers:
        report = run(args, args.bootstrap_servers, f"given ({args.bootstrap_servers})")
    else:
        with ApacheKafkaBroker() as broker:
            report = run(args, broker.bootstrap_servers, f"Apache Kafka {broker.version} (started here)")
    print(f"\n{report['date']} on {report['machine']}, {report['broker']}, {args.rules.name}, {args.engine} engine "
          f"{' '.join(args.stream_flag)}")
    for runner, entry in report["runners"].items():
        if "catch_up" in entry:
            runs = ", ".join(f"{n:,} in {t:.1f} s" for n, t in entry["catch_up"]["runs"])
            steady = entry["catch_up"]["steady_attempts_per_second"]
            print(f"{runner}: catch-up {runs}; steady {steady:,.0f} attempts/s" if steady else f"{runner}: {runs}")
        if "memory" in entry:
            memory = entry["memory"]
            print(f"{runner}: {memory['cards']:,} active cards decided in {memory['seconds']:.1f} s, peak RSS "
                  f"{memory['peak_rss_gib']} GiB ({memory['peak_rss_gib_by_process']})")
        if "idle" in entry:
            print(f"{runner}: idle, {entry['idle']['idle_cores']} cores over {entry['idle']['seconds']:g} s")
            _print_checkpoints(runner, "idle", entry["idle"].get("checkpoints"))
        latency = dict(entry.get("latency", {}))
        _print_checkpoints(runner, "latency", latency.pop("checkpoints", None))
        for rate, figures in latency.items():
            print(f"{runner}: {float(rate):,.0f} attempts/s: p50 {_seconds(figures['p50_seconds'])}, p99 "
                  f"{_seconds(figures['p99_seconds'])}, max {_seconds(figures['max_seconds'])}; decided "
                  f"{figures['decided']:,} of {figures['produced']:,}")
    print(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
