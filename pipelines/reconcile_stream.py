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
import contextlib
import dataclasses
import sys
import time
from typing import Dict, Optional, Sequence

import apache_beam as beam

import schemas.arrow_coder  # noqa: F401  (registers the RawChunk and Arrow table coders)
from pipelines.arguments import COLUMNAR, UsageError
from pipelines.command import run_entry_point, run_module
from pipelines.io.kafka import (
    KafkaReadConfig,
    KafkaWriteConfig,
    ReadKafkaCommitLater,
    ReadRawChunksFromKafka,
    ReadRawRecordsFromKafka,
    WriteToKafka,
    default_store_topic,
    read_store,
)
from pipelines.io.open_items import carried_records
from pipelines.io.progress import CountRecords
from pipelines.kafka_arguments import check_client_settings
from pipelines.run_errors import (
    one_line_cause,
    quiet_beam_tracebacks,
    wait_cancelling_on_interrupt,
)
from pipelines.stream_bounded import with_carried_records, write_then_commit
from pipelines.stream_job import RABBITMQ, StreamJob, add_stream_arguments, job_from_arguments  # noqa: F401
from pipelines.stream_status import StatusReporter, snapshot_of
from pipelines.summary import (
    as_of_text,
    counts_from_metrics,
    format_summary,
    input_counts,
    status_counts,
)
from runners.flink_job_server import new_pipeline
from runners.options import build_pipeline_options, check_settlement_day_windows
from schemas.arrow_readers import tabulate_records
from schemas.bank.entry import BANK_STATEMENTS
from schemas.errors import RunFailed
from schemas.internal_records import OpenItem
from schemas.raw_chunks import RawChunk
from schemas.record_tables import daily_total_records, result_records
from schemas.records import PAYMENTS, SETTLEMENTS, DailyTotal, ReconciliationResult
from schemas.rules import BANK_MATCHES, PAYOUTS
from transforms.alerts import BreakRateAlerts
from transforms.bank.live_flow import LiveReconcileBank, lines_by_payout
from transforms.columnar.bank_flow import payout_lines_by_payout
from transforms.columnar.flow import ColumnarReconcile
from transforms.columnar.live_flow import AlertsOfResultTables, ColumnarStreamReconcile
from transforms.counting import ReportCounts
from transforms.flow import ReconcileRecords
from transforms.reconcile import key_lifetime_millis
from transforms.validate import DEAD_LETTERS

OUTPUT_SCHEMAS = {
    "results": "reconciliation_result",
    "daily_totals": "daily_total",
    "alerts": "break_rate_alert",
    "dead_letters": "dead_letter",
}
BANK_OUTPUT_SCHEMAS = {PAYOUTS: "payout_balance", BANK_MATCHES: "bank_match"}  # with a bank-statements topic
ALL_OUTPUT_SCHEMAS = {**OUTPUT_SCHEMAS, **BANK_OUTPUT_SCHEMAS}


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
        chunk_max_records=job.chunk_max_records,
        chunk_max_millis=job.chunk_max_millis,
        read_call_millis=job.read_call_millis,
        resume_millis=job.resume_millis,
        linger_millis=job.linger_millis,
    )
    try:
        config.validate()
    except ValueError as error:
        raise UsageError(str(error)) from None
    return config


def write_config(job: StreamJob, output: str) -> KafkaWriteConfig:
    return KafkaWriteConfig(bootstrap_servers=job.bootstrap_servers, topic=job.topics[output],
                            value_format=job.output_value_format,
                            schema_name=ALL_OUTPUT_SCHEMAS[output],
                            producer_config=job.producer_config, broker_timeout_seconds=job.broker_timeout_seconds)


def _reader(job: StreamJob, input_name: str) -> beam.PTransform:
    if job.source == RABBITMQ:
        return _rabbitmq_reader(job, input_name, chunks=False)
    if job.kafka_io == "java":
        from pipelines.io.kafka import ReadRawRecordsWithJavaKafkaIO

        # KafkaIO's own offset commit fails tasks on the Flink runner (pipelines/io/kafka/_java.py).
        return ReadRawRecordsWithJavaKafkaIO(read_config(job, input_name), commit_from_python=job.runner == "FlinkRunner",
                                             runner=job.runner)
    return ReadRawRecordsFromKafka(read_config(job, input_name))


def _chunk_reader(job: StreamJob, input_name: str) -> beam.PTransform:
    """An unbounded columnar run's input: RawChunks of a topic or a queue."""
    if job.source == RABBITMQ:
        return _rabbitmq_reader(job, input_name, chunks=True)
    return ReadRawChunksFromKafka(read_config(job, input_name))


def _rabbitmq_reader(job: StreamJob, input_name: str, chunks: bool) -> beam.PTransform:
    """An unbounded run's input from a queue (with its dead-lettered queue) or, `--streams`, a stream."""
    from pipelines.io.rabbitmq import ReadRawChunksFromRabbitMQ, ReadRawChunksFromRabbitMQStream
    from pipelines.rabbitmq_arguments import rabbit_read_config, rabbit_stream_read_config

    if job.streams:
        return ReadRawChunksFromRabbitMQStream(rabbit_stream_read_config(job, input_name), chunks=chunks)
    return ReadRawChunksFromRabbitMQ(rabbit_read_config(job, input_name), chunks=chunks)


def _writer(job: StreamJob, output: str) -> beam.PTransform:
    if job.source == RABBITMQ:
        from pipelines.io.rabbitmq import WriteToRabbitMQ
        from pipelines.rabbitmq_arguments import rabbit_write_config

        return WriteToRabbitMQ(rabbit_write_config(job, output, ALL_OUTPUT_SCHEMAS[output]))
    if job.kafka_io == "java":
        from pipelines.io.kafka import WriteWithJavaKafkaIO

        return WriteWithJavaKafkaIO(write_config(job, output), runner=job.runner)
    return WriteToKafka(write_config(job, output))


def _commits_after_outputs(job: StreamJob) -> bool:
    """Bounded runs commit after every output is written (docs/DESIGN.md 5), with either Kafka IO:
    a Java read hands its offsets to the same Python commit and sinks (Java's WriteToKafka returns
    no completion signal for the commit to wait on)."""
    return job.bounded is not None


def _reader_commit_later(job: StreamJob, input_name: str) -> beam.PTransform:
    if job.kafka_io == "java":
        from pipelines.io.kafka import ReadJavaKafkaCommitLater

        return ReadJavaKafkaCommitLater(read_config(job, input_name), runner=job.runner)
    return ReadKafkaCommitLater(read_config(job, input_name))


def store_topic(job: StreamJob) -> str:
    return job.open_items_topic or default_store_topic(job.group_id)


def _store_config(job: StreamJob) -> KafkaWriteConfig:
    return KafkaWriteConfig(bootstrap_servers=job.bootstrap_servers, topic=store_topic(job),
                            producer_config=job.producer_config, broker_timeout_seconds=job.broker_timeout_seconds)


def build_pipeline(pipeline: beam.Pipeline, job: StreamJob,
                   carried_items: Optional[Dict[str, OpenItem]] = None, held=None) -> None:
    """Adds the streaming reconciliation to `pipeline`: Kafka (or RabbitMQ) in, the shared flow, out again.

    `carried_items`: the open items of the previous bounded run (read from the store at launch).
    `held`: a bounded RabbitMQ run's HeldBacklog (its spill files are the input).
    """
    carried_items = carried_items or {}
    if job.source == RABBITMQ and job.bounded:
        raw = with_carried_records(pipeline, _held_reads(pipeline, job, held), carried_records(carried_items))
    elif _commits_after_outputs(job):
        reads = {name: pipeline | f"Read{name.title()}" >> _reader_commit_later(job, name)
                 for name in (PAYMENTS, SETTLEMENTS)}
        raw = with_carried_records(pipeline, {name: read["records"] for name, read in reads.items()},
                                   carried_records(carried_items))
    elif job.engine == COLUMNAR:
        chunks = {name: pipeline | f"Read{name.title()}" >> _chunk_reader(job, name)
                  for name in (PAYMENTS, SETTLEMENTS)}
    else:
        raw = {name: pipeline | f"Read{name.title()}" >> _reader(job, name) for name in (PAYMENTS, SETTLEMENTS)}
    if job.engine == COLUMNAR and job.streaming:
        outputs = chunks | "Reconcile" >> ColumnarStreamReconcile(job.config, job.shards, job.timer_tick_millis)
    elif job.engine == COLUMNAR:
        outputs = _reconcile_columnar(raw, job)
    else:
        outputs = raw | "Reconcile" >> ReconcileRecords(job.config, with_counts=not job.streaming)
    if "counts" in outputs:
        outputs["counts"] | "ReportCounts" >> ReportCounts()

    def alerts(results: beam.PCollection) -> beam.PCollection:
        return results | "BreakRateAlerts" >> BreakRateAlerts(job.alert_policy)

    if not _commits_after_outputs(job):
        if "result_tables" in outputs:
            outputs["alerts"] = outputs["result_tables"] | "BreakRateAlerts" >> AlertsOfResultTables(job.alert_policy)
        else:
            outputs["alerts"] = alerts(outputs["results"])
        if job.with_bank:
            outputs.update(_third_leg(pipeline, job, outputs))
        for name in outputs.keys() & {*OUTPUT_SCHEMAS, *BANK_OUTPUT_SCHEMAS}:
            outputs[name] | f"Write[{name}]" >> _writer(job, name)
        return
    horizon = key_lifetime_millis(job.config.policy)
    if job.source == RABBITMQ:
        from pipelines.rabbitmq_arguments import rabbit_write_config, store_write_config
        from pipelines.stream_bounded_rabbitmq import write_then_mark

        write_then_mark(outputs, raw, carried_items,
                        lambda name: rabbit_write_config(job, name, OUTPUT_SCHEMAS[name]),
                        store_write_config(job, store_topic(job)), alerts, horizon, job.snapshot_id,
                        job.started_millis)
        return
    offsets = [read["offsets"] for read in reads.values()] | "Offsets" >> beam.Flatten()
    write_then_commit(outputs, raw, offsets, carried_items, lambda name: write_config(job, name),
                      read_config(job, PAYMENTS), _store_config(job), alerts, horizon)


def _held_reads(pipeline: beam.Pipeline, job: StreamJob, held) -> Dict[str, beam.PCollection]:
    """A bounded RabbitMQ run's records: the spill files of the messages its launcher holds."""
    from pipelines.io.rabbitmq import ReadHeldDeliveries
    from pipelines.rabbitmq_arguments import rabbit_read_config

    return {name: pipeline | f"Read{name.title()}" >> ReadHeldDeliveries(held.queues[name].path,
                                                                          rabbit_read_config(job, name))
            for name in (PAYMENTS, SETTLEMENTS)}


def _third_leg(pipeline: beam.Pipeline, job: StreamJob, outputs: Dict[str, beam.PCollection]
               ) -> Dict[str, beam.PCollection]:
    """An unbounded run's payouts and bank matches (docs/DESIGN.md 3.8): the unique settlement lines by payout
    (per payout, or the columnar engine's shards of them) and the bank-statements topic, through
    LiveReconcileBank; its dead letters join the run's."""
    if "settlement_tables" in outputs:
        payout_lines = outputs["settlement_tables"] | "PayoutLines" >> beam.FlatMap(payout_lines_by_payout)
    else:
        payout_lines = outputs["settlements"] | "PayoutLines" >> beam.FlatMap(lines_by_payout)
    statements = pipeline | "ReadBankStatements" >> _reader(job, BANK_STATEMENTS)
    bank = {"payout_lines": payout_lines, BANK_STATEMENTS: statements} | "ReconcileBank" >> LiveReconcileBank(
        job.payout_policy, job.bank_policy)
    dead_letters = (outputs["dead_letters"], bank[DEAD_LETTERS]) | "AllDeadLetters" >> beam.Flatten()
    return {PAYOUTS: bank[PAYOUTS], BANK_MATCHES: bank[BANK_MATCHES], "dead_letters": dead_letters}


def _carried_items(job: StreamJob) -> Dict[str, OpenItem]:
    """The previous bounded run's open items; an unreachable store fails the run (nothing committed)."""
    if not _commits_after_outputs(job):
        return {}
    try:
        return read_store(job.bootstrap_servers, store_topic(job), job.consumer_config, job.broker_timeout_seconds)
    except Exception as error:  # noqa: BLE001 — a broker down, a store that cannot be read: one line, exit 1
        raise RunFailed(f"cannot read the open items in {store_topic(job)}: {one_line_cause(error)}; "
                        "no offsets were committed") from error


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
    options = build_pipeline_options(job.runner, job.beam_args, streaming=job.streaming)
    check_settlement_day_windows(job.runner, job.config.settlement_day, job.config.trigger_policy)
    check_client_settings(job.consumer_config, "--consumer-config", "consumer")
    check_client_settings(job.producer_config, "--producer-config", "producer")
    started = time.monotonic()
    if job.source == RABBITMQ:
        from pipelines.rabbitmq_arguments import dead_lettered_inputs, declare_run_outputs

        declare_run_outputs(job, [job.topics[name] for name in ALL_OUTPUT_SCHEMAS if name in job.topics])
        if job.streaming and not job.streams:  # a stream never dead-letters
            job = dataclasses.replace(job, dead_lettered_queues=dead_lettered_inputs(job))
            if job.dead_lettered_queues:
                print(f"paybeam stream: also reading what the broker dead-lettered: "
                      f"{', '.join(job.dead_lettered_queues.values())}", file=sys.stderr)
    else:
        read_config(job, PAYMENTS)  # usage errors in the read settings first, before the store is read
    if job.source == RABBITMQ and job.bounded:
        with _held_rabbitmq_inputs(job) as (held, carried):
            result = _run_and_wait(job, options, carried, held)
            held.ack()  # only now: every output, the snapshot and its marker are confirmed
    else:
        carried = _carried_items(job)
        result = _run_and_wait(job, options, carried)
    if job.streaming:
        return None
    counts = counts_from_metrics(result)
    carried_counts = {name: len(records) for name, records in carried_records(carried).items()}
    summary = {"as_of": as_of_text(counts), "wall_seconds": time.monotonic() - started, "runner": job.runner,
               "engine": job.engine, "inputs": _without_carried(input_counts(counts), carried_counts),
               "statuses": status_counts(counts), "carried": carried_counts}
    if job.source == RABBITMQ:
        from pipelines.io.rabbitmq import broker_dead_lettered_counter

        summary["broker_dead_lettered"] = {name: counts.get(broker_dead_lettered_counter(name), 0)
                                           for name in (PAYMENTS, SETTLEMENTS)}
    return summary


def _run_and_wait(job: StreamJob, options, carried: Dict[str, OpenItem], held=None):
    pipeline = new_pipeline(options)
    build_pipeline(pipeline, job, carried, held)
    try:
        with quiet_beam_tracebacks():
            result = pipeline.run()
            with status_reporter(job, result):
                wait_cancelling_on_interrupt(result)
    except Exception as error:  # noqa: BLE001 — a broker down, an output refused: one line, exit 1
        undone = ("; nothing was acked" if job.source == RABBITMQ else "; no offsets were committed") \
            if _commits_after_outputs(job) else ""
        raise RunFailed(f"the run failed: {one_line_cause(error)}{undone}") from error
    return result


@contextlib.contextmanager
def _held_rabbitmq_inputs(job: StreamJob):
    """A bounded RabbitMQ run's input messages and store, held unacked in a spill directory of its own
    (removed at the end); released (requeued by the broker) unless the block acked them."""
    import shutil
    import tempfile

    from pipelines.io.rabbitmq import HoldFailed
    from pipelines.stream_bounded_rabbitmq import StreamsRead, hold_inputs
    from runners.options import workers_share_this_disk

    if not workers_share_this_disk(job.runner, job.beam_args):
        raise UsageError("a --bounded --source rabbitmq run hands its messages to the workers in local files: "
                         "run it on the DirectRunner, Prism or the embedded Flink (LOOPBACK workers)")
    spill_dir = tempfile.mkdtemp(prefix="paybeam-held-")
    held = None
    try:
        streams = StreamsRead(job.stream_port, job.group_id, job.stream_start) if job.streams else None
        held, carried = hold_inputs(job.amqp, job.queues, store_topic(job), job.max_records, spill_dir,
                                    job.broker_timeout_seconds, streams)
        yield held, carried
    except HoldFailed as error:
        raise RunFailed(str(error)) from None
    finally:
        if held is not None:
            held.release()  # a no-op after ack()
        shutil.rmtree(spill_dir, ignore_errors=True)


def status_reporter(job: StreamJob, result):
    """An unbounded run says what it is doing on stderr (pipelines/stream_status.py); a bounded run has its
    progress bars and summary."""
    if not job.streaming or not job.status_interval_seconds:
        return contextlib.nullcontext()
    return StatusReporter(lambda: snapshot_of(result), sys.stderr, job.status_interval_seconds)


def _without_carried(inputs: dict, carried: Dict[str, int]) -> dict:
    """Read and accepted count the topics' messages; the carried records (all valid) are reported apart.

    The dedup column keeps counting every copy dropped, carried or read.
    """
    return {name: dict(counts, read=counts["read"] - carried.get(name, 0),
                       accepted=counts["accepted"] - carried.get(name, 0)) for name, counts in inputs.items()}


def stream_command(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """`paybeam stream`: says what kind of run starts, runs it, prints a bounded run's summary."""
    job = job_from_arguments(args, extra)
    where = (f"results to {job.topics['results']}" if job.source != RABBITMQ else
             f"queues {', '.join(job.queues.values())} on {job.amqp.redacted()}; results to "
             f"exchange {job.exchange!r} ({job.topics['results']})")
    print(f"paybeam stream: {'bounded (' + job.bounded + ')' if job.bounded else 'unbounded'} run on {job.runner}; "
          f"{where}", file=sys.stderr)
    summary = run_job(job)
    if summary is not None:
        print(format_summary(summary, "paybeam stream --bounded"))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m pipelines.reconcile_stream ...`: `paybeam stream` the Beam way, with the same exits."""
    return run_module("python -m pipelines.reconcile_stream", __doc__.splitlines()[0], add_stream_arguments,
                      "stream", stream_command, argv)


if __name__ == "__main__":
    run_entry_point(main)
