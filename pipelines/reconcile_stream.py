"""Streaming reconciliation of live Kafka topics, through the same transforms as batch.

    python -m pipelines.reconcile_stream --bootstrap-servers HOST:PORT \
        --payments-topic payments --settlements-topic settlements [--bounded] [--runner R] [beam flags]

Unbounded (the default; Prism and Flink run it with `--streaming`, added
here): the watermark is `as_of`, results are revised as late data arrives,
daily totals fire early (processing time), on time and late.
`--bounded` is a catch-up run over what the topics hold now (or up to N
records, or up to an event time): the local Fn API runner processes it as a
finite input, the watermark ends at infinity, and, exactly like batch,
deadlines are judged at `--as-of` (default: the latest event time read).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from pipelines.arguments import (
    COLUMNAR,
    ELEMENTWISE,
    ENGINES,
    UsageError,
    add_alert_arguments,
    add_policy_arguments,
    alert_policy,
    as_of_millis_argument,
    match_policy,
    settlement_day,
    trigger_policy,
)
from pipelines.io.kafka_client import DEFAULT_BROKER_TIMEOUT_SECONDS
from pipelines.io.kafka_sink import KafkaWriteConfig, WriteToKafka, WriteToKafkaWithDeadLetters
from pipelines.io.kafka_source import (
    BOUNDED_MODES,
    START_POSITIONS,
    CommitOffsetsWhenWritten,
    KafkaReadConfig,
    ReadKafkaCommitLater,
    ReadRawRecordsFromKafka,
)
from pipelines.io.progress import CountRecords
from pipelines.kafka_arguments import check_client_settings, parse_settings
from pipelines.run_errors import RunFailed, one_line_cause, quiet_beam_tracebacks
from pipelines.summary import as_of_text, counts_from_metrics, format_summary, input_counts, status_counts
from runners.options import OptionsError, build_pipeline_options
import schemas.arrow_coder  # noqa: F401  (registers the RawChunk and Arrow table coders)
from schemas.arrow_readers import tabulate_records
from schemas.raw_chunks import RawChunk
from schemas.record_tables import daily_total_records, result_records
from schemas.kafka_values import VALUE_FORMATS
from schemas.records import PAYMENTS, SETTLEMENTS, DailyTotal, ReconciliationResult
from schemas.timestamps import TimestampError, parse_timestamp_millis
from transforms.alerts import AlertPolicy, BreakRateAlerts
from transforms.columnar.flow import ColumnarReconcile
from transforms.counting import ReportCounts
from transforms.flow import ReconcileConfig, ReconcileRecords
from transforms.reconcile import AsOf

OUTPUT_SCHEMAS = {
    "results": "reconciliation_result",
    "daily_totals": "daily_total",
    "alerts": "break_rate_alert",
    "dead_letters": "dead_letter",
}


@dataclass
class StreamJob:
    bootstrap_servers: str
    topics: Dict[str, str]  # payments, settlements, results, daily_totals, alerts, dead_letters
    group_id: str
    config: ReconcileConfig
    alert_policy: AlertPolicy
    bounded: Optional[str] = None
    start: str = "committed"
    start_timestamp_millis: Optional[int] = None
    max_records: Optional[int] = None
    stop_at_millis: Optional[int] = None
    idle_timeout_seconds: float = 10.0
    value_format: str = "json"
    output_value_format: str = "json"
    kafka_io: str = "python"
    consumer_config: Dict[str, str] = field(default_factory=dict)
    producer_config: Dict[str, str] = field(default_factory=dict)
    runner: str = "DirectRunner"
    beam_args: List[str] = field(default_factory=list)
    engine: str = ELEMENTWISE
    shards: int = 1
    broker_timeout_seconds: float = DEFAULT_BROKER_TIMEOUT_SECONDS

    @property
    def streaming(self) -> bool:
        return self.bounded is None


def add_stream_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap-servers", required=True, metavar="HOST:PORT[,…]")
    parser.add_argument("--payments-topic", required=True)
    parser.add_argument("--settlements-topic", required=True)
    parser.add_argument("--results-topic", default="paybeam.results")
    parser.add_argument("--daily-totals-topic", default="paybeam.daily_totals")
    parser.add_argument("--alerts-topic", default="paybeam.alerts")
    parser.add_argument("--dead-letters-topic", default="paybeam.dead_letters")
    parser.add_argument("--group-id", default="paybeam", help="consumer group whose offsets are committed")
    parser.add_argument("--start", choices=START_POSITIONS, default="committed",
                        help="where to start: committed group offsets (default; earliest where none), earliest, "
                             "latest, or --start-time")
    parser.add_argument("--start-time", metavar="TIME", help="RFC 3339 instant for --start=timestamp")
    parser.add_argument("--bounded", nargs="?", const="end_offsets", choices=[m for m in BOUNDED_MODES if m],
                        help="a finite catch-up run: stop at the end offsets seen at start (default), after "
                             "--max-records, or at --stop-at")
    parser.add_argument("--max-records", type=int, metavar="N")
    parser.add_argument("--stop-at", metavar="TIME", help="RFC 3339 event time at which --bounded=until_time stops")
    parser.add_argument("--idle-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="an idle partition stops holding the watermark back after this long (default 10)")
    parser.add_argument("--value-format", choices=VALUE_FORMATS, default="json", help="input message values")
    parser.add_argument("--output-value-format", choices=VALUE_FORMATS, default="json", help="output message values")
    parser.add_argument("--early-firing", default="5m", metavar="DURATION",
                        help="provisional daily-total panes this often in processing time (unbounded runs)")
    parser.add_argument("--kafka-io", choices=("python", "java"), default="python",
                        help="python: paybeam's Splittable DoFn (every runner); java: Beam's cross-language "
                             "KafkaIO (needs Java and the expansion-service jar; Flink/Dataflow)")
    parser.add_argument("--consumer-config", action="append", default=[], metavar="KEY=VALUE",
                        help="extra consumer settings, e.g. security.protocol=SASL_SSL (repeatable)")
    parser.add_argument("--producer-config", action="append", default=[], metavar="KEY=VALUE",
                        help="extra producer settings (repeatable)")
    parser.add_argument("--engine", choices=ENGINES,
                        help="--bounded runs: columnar (default: Arrow batches, the batch engine) or elementwise; "
                             "unbounded runs always use the elementwise engine (watermarks, triggers, timers)")
    parser.add_argument("--broker-timeout", type=float, default=DEFAULT_BROKER_TIMEOUT_SECONDS, metavar="SECONDS",
                        help="fail (exit 1, nothing committed) when the brokers do not answer for this long "
                             f"(default {DEFAULT_BROKER_TIMEOUT_SECONDS:g})")
    parser.add_argument("--shards", type=int, default=8, metavar="N",
                        help="columnar engine: shards for deduplication and matching (default 8)")
    add_policy_arguments(parser)
    add_alert_arguments(parser)


def _instant(text: Optional[str], flag: str) -> Optional[int]:
    try:
        return parse_timestamp_millis(text, flag) if text else None
    except TimestampError as error:
        raise UsageError(str(error)) from None


def job_from_arguments(args: argparse.Namespace, beam_args: Sequence[str]) -> StreamJob:
    """Checks the arguments and turns them into a StreamJob; raises UsageError."""
    bounded = args.bounded
    as_of_millis = as_of_millis_argument(args)
    if as_of_millis is not None and not bounded:
        raise UsageError("--as-of applies to --bounded runs; an unbounded run judges deadlines at the watermark")
    if bounded == "max_records" and not args.max_records:
        raise UsageError("--bounded=max_records needs --max-records N")
    if bounded == "until_time" and not args.stop_at:
        raise UsageError("--bounded=until_time needs --stop-at TIME")
    if args.start == "timestamp" and not args.start_time:
        raise UsageError("--start=timestamp needs --start-time TIME")
    if args.engine == COLUMNAR and not bounded:
        raise UsageError("--engine columnar needs --bounded: an unbounded stream runs the elementwise engine")
    if args.shards < 1:
        raise UsageError("--shards must be at least 1")
    if not args.broker_timeout > 0:
        raise UsageError("--broker-timeout must be positive")
    if bounded:
        as_of = AsOf.fixed(as_of_millis) if as_of_millis is not None else AsOf.latest_in_input()
        # Python batch runners crash on processing-time triggers (docs/DESIGN.md 7): no early panes.
        triggers = trigger_policy(args)
    else:
        as_of = AsOf.watermark()
        triggers = trigger_policy(args, early_firing=args.early_firing)
    return StreamJob(
        bootstrap_servers=args.bootstrap_servers,
        topics={"payments": args.payments_topic, "settlements": args.settlements_topic,
                "results": args.results_topic, "daily_totals": args.daily_totals_topic,
                "alerts": args.alerts_topic, "dead_letters": args.dead_letters_topic},
        group_id=args.group_id,
        config=ReconcileConfig(policy=match_policy(args), as_of=as_of, settlement_day=settlement_day(args),
                               trigger_policy=triggers),
        alert_policy=alert_policy(args, triggers),
        bounded=bounded,
        start=args.start,
        start_timestamp_millis=_instant(args.start_time, "--start-time"),
        max_records=args.max_records,
        stop_at_millis=_instant(args.stop_at, "--stop-at"),
        idle_timeout_seconds=args.idle_timeout,
        value_format=args.value_format,
        output_value_format=args.output_value_format,
        kafka_io=args.kafka_io,
        consumer_config=parse_settings(args.consumer_config, "--consumer-config"),
        producer_config=parse_settings(args.producer_config, "--producer-config"),
        runner=args.runner,
        beam_args=list(beam_args),
        engine=args.engine or (COLUMNAR if bounded else ELEMENTWISE),
        shards=args.shards,
        broker_timeout_seconds=args.broker_timeout,
    )


def read_config(job: StreamJob, input_name: str) -> KafkaReadConfig:
    config = KafkaReadConfig(
        bootstrap_servers=job.bootstrap_servers,
        topics=(job.topics[input_name],),
        group_id=job.group_id,
        input_name=input_name,
        value_format=job.value_format,
        start=job.start,
        start_timestamp_millis=job.start_timestamp_millis,
        bounded=job.bounded,
        max_records=job.max_records,
        stop_at_millis=job.stop_at_millis,
        idle_timeout_seconds=job.idle_timeout_seconds,
        broker_timeout_seconds=job.broker_timeout_seconds,
        consumer_config=job.consumer_config,
    )
    try:
        config.validate()
    except ValueError as error:
        raise UsageError(str(error)) from None
    return config


def write_config(job: StreamJob, output: str) -> KafkaWriteConfig:
    return KafkaWriteConfig(bootstrap_servers=job.bootstrap_servers, topic=job.topics[output],
                            value_format=job.output_value_format, schema_name=OUTPUT_SCHEMAS[output],
                            producer_config=job.producer_config, broker_timeout_seconds=job.broker_timeout_seconds)


def _reader(job: StreamJob, input_name: str) -> beam.PTransform:
    if job.kafka_io == "java":
        from pipelines.io.kafka_java import ReadRawRecordsWithJavaKafkaIO

        return ReadRawRecordsWithJavaKafkaIO(read_config(job, input_name))
    return ReadRawRecordsFromKafka(read_config(job, input_name))


def _writer(job: StreamJob, output: str) -> beam.PTransform:
    if job.kafka_io == "java":
        from pipelines.io.kafka_java import WriteWithJavaKafkaIO

        return WriteWithJavaKafkaIO(write_config(job, output))
    return WriteToKafka(write_config(job, output))


def _commits_after_outputs(job: StreamJob) -> bool:
    """Bounded runs of paybeam's own IO commit after every output is written (docs/DESIGN.md 5)."""
    return job.bounded is not None and job.kafka_io == "python"


def build_pipeline(pipeline: beam.Pipeline, job: StreamJob) -> None:
    """Adds the streaming reconciliation to `pipeline`: Kafka in, the shared flow, Kafka out."""
    if _commits_after_outputs(job):
        reads = {name: pipeline | f"Read{name.title()}" >> ReadKafkaCommitLater(read_config(job, name))
                 for name in (PAYMENTS, SETTLEMENTS)}
        raw = {name: read["records"] for name, read in reads.items()}
    else:
        raw = {name: pipeline | f"Read{name.title()}" >> _reader(job, name) for name in (PAYMENTS, SETTLEMENTS)}
    if job.engine == COLUMNAR:
        outputs = _reconcile_columnar(raw, job)
    else:
        outputs = raw | "Reconcile" >> ReconcileRecords(job.config, with_counts=not job.streaming)
    outputs["alerts"] = outputs["results"] | "BreakRateAlerts" >> BreakRateAlerts(job.alert_policy)
    if "counts" in outputs:
        outputs["counts"] | "ReportCounts" >> ReportCounts()
    if not _commits_after_outputs(job):
        for name in OUTPUT_SCHEMAS:
            outputs[name] | f"Write[{name}]" >> _writer(job, name)
        return
    written = _write_with_dead_letters(outputs, job)
    offsets = [read["offsets"] for read in reads.values()] | "Offsets" >> beam.Flatten()
    _ = (offsets, *written) | "CommitOffsets" >> CommitOffsetsWhenWritten(read_config(job, PAYMENTS))


def _write_with_dead_letters(outputs: Dict[str, beam.PCollection], job: StreamJob) -> List[beam.PCollection]:
    """Writes the outputs; records a sink refuses join the dead letters. Returns every sink's completion output.

    The dead letters are written last and strictly: one that cannot be produced fails the run.
    """
    written, refused = [], []
    for name in ("results", "daily_totals", "alerts"):
        sink = outputs[name] | f"Write[{name}]" >> WriteToKafkaWithDeadLetters(write_config(job, name), name)
        written.append(sink["delivered"])
        refused.append(sink["rejected"] | f"Refused[{name}]" >> beam.WindowInto(GlobalWindows()))
    letters = outputs["dead_letters"] | "DeadLettersGlobal" >> beam.WindowInto(GlobalWindows())
    all_letters = [letters, *refused] | "AllDeadLetters" >> beam.Flatten()
    written.append(all_letters | "Write[dead_letters]" >> WriteToKafka(write_config(job, "dead_letters")))
    return written


def _reconcile_columnar(raw: Dict[str, beam.PCollection], job: StreamJob) -> Dict[str, beam.PCollection]:
    """Messages in batches (RawChunks) through the columnar engine, results back to records for the sinks."""
    chunks = {name: (raw[name]
                     | f"Batch[{name}]" >> beam.BatchElements(min_batch_size=1_000, max_batch_size=100_000)
                     | f"Chunks[{name}]" >> beam.Map(
                         lambda records, name=name: tabulate_records(list(records), job.topics[name], name)
                     ).with_output_types(RawChunk)
                     | f"Progress[{name}]" >> beam.ParDo(CountRecords(f"reading {name}")).with_output_types(RawChunk))
              for name in (PAYMENTS, SETTLEMENTS)}
    outputs = chunks | "Reconcile" >> ColumnarReconcile(job.config, job.shards)
    outputs["results"] = outputs["results"] | "ResultRecords" >> beam.FlatMap(
        result_records).with_output_types(
        ReconciliationResult)
    outputs["daily_totals"] = outputs["daily_totals"] | "DailyTotalRecords" >> beam.FlatMap(
        daily_total_records).with_output_types(DailyTotal)
    return outputs


def run_job(job: StreamJob) -> Optional[dict]:
    """Runs the job; a bounded run returns its summary (as `paybeam reconcile` prints it)."""
    try:
        options = build_pipeline_options(job.runner, job.beam_args, streaming=job.streaming)
    except OptionsError as error:
        raise UsageError(str(error)) from None
    check_client_settings(job.consumer_config, "--consumer-config", "consumer")
    check_client_settings(job.producer_config, "--producer-config", "producer")
    started = time.monotonic()
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, job)
    try:
        with quiet_beam_tracebacks():
            result = pipeline.run()
            result.wait_until_finish()
    except Exception as error:  # noqa: BLE001 — a broker down, an output refused: one line, exit 1
        committed = "; no offsets were committed" if _commits_after_outputs(job) else ""
        raise RunFailed(f"the run failed: {one_line_cause(error)}{committed}") from error
    if job.streaming:
        return None
    counts = counts_from_metrics(result)
    return {"as_of": as_of_text(counts), "wall_seconds": time.monotonic() - started, "runner": job.runner,
            "engine": job.engine, "inputs": input_counts(counts), "statuses": status_counts(counts)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.reconcile_stream",
                                     description=__doc__.splitlines()[0])
    add_stream_arguments(parser)
    args, beam_args = parser.parse_known_args(argv)
    try:
        summary = run_job(job_from_arguments(args, beam_args))
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RunFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if summary is not None:
        print(format_summary(summary, "paybeam stream --bounded"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
