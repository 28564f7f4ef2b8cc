"""`paybeam reconcile` on a real Flink (issue 11 §1): Beam's Flink job server, assembled by
deploy/fetch/flink.sh from Maven Central, run by Beam's Python FlinkRunner through
`--flink_job_server_jar`, executing the batch pipeline on an embedded Flink mini-cluster
(`--flink_master=[local]`). Results, daily totals, dead letters and counts must equal the
DirectRunner's byte for byte after canonical ordering (tests/flink_helpers.canonical)."""
from __future__ import annotations

import os

import pytest

from datagen.generator import GeneratorConfig, generate
from pipelines.kafka_tools import replay_files
from tests.cli_helpers import reconcile, result_multiset, results, run_summary
from tests.flink_helpers import canonical_outputs, flink_args, worker_pool
from tests.kafka_helpers import unique_topic
from tests.stream_helpers import committed_to_the_end, decoded, final_revisions, new_topics, run_stream_in_process


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    # Seed 9 at 300 payments has every status, duplicates and rejected lines (dead letters).
    return generate(GeneratorConfig(payments=300, seed=9), str(tmp_path_factory.mktemp("flink_data")))


def _glob(sample, kind: str) -> str:
    return os.path.join(sample.out_dir, kind, "*")


def _direct(sample, tmp_path, *extra):
    out = str(tmp_path / "direct")
    assert reconcile(_glob(sample, "payments"), _glob(sample, "settlements"), out, *extra) == 0
    return canonical_outputs(out)


def test_flink_batch_equals_direct_runner(flink_engine, sample, tmp_path):
    out = str(tmp_path / "flink")
    assert reconcile(_glob(sample, "payments"), _glob(sample, "settlements"), out,
                     *flink_args(flink_engine, "[local]", "--environment_type=LOOPBACK")) == 0
    on_flink = canonical_outputs(out)
    assert len({row["status"] for row in results(out)}) >= 6, "the sample must exercise most statuses"
    assert on_flink["dead_letters"], "the sample must produce dead letters"
    assert on_flink == _direct(sample, tmp_path)


def test_three_way_reconciliation_on_flink_equals_direct_runner(flink_engine, tmp_path):
    """--bank-statements on Flink (columnar: payouts per shard, bank matching in one step over side inputs)
    gives the DirectRunner's payouts, bank matches and counts."""
    data = generate(GeneratorConfig(payments=300, seed=9, bank_statements="bai2"), str(tmp_path / "data"))
    bank = ("--bank-statements", os.path.join(data.out_dir, "bank_statements", "*"))
    out = str(tmp_path / "flink")
    assert reconcile(_glob(data, "payments"), _glob(data, "settlements"), out, *bank,
                     *flink_args(flink_engine, "[local]", "--environment_type=LOOPBACK")) == 0
    on_flink = canonical_outputs(out)
    assert on_flink["payouts"] and on_flink["bank_matches"]
    assert on_flink["run_summary"]["inputs"]["bank_statements"]["read"] > 0
    assert on_flink == _direct(data, tmp_path, *bank)


@pytest.mark.engines
def test_one_million_payments_reconcile_on_the_embedded_flink(flink_engine, tmp_path):
    """Beam's Flink batch GroupByKey sorts one list per shard and task. At 1M payments (six shards, two
    task slots as `[auto]` gives on this 2-core machine) a list exceeded the embedded Flink's sort buffer
    and the run failed ("The record exceeds the maximum size of a sort buffer (current maximum: 4718592
    bytes)", twice; a configuration of its own without the large-record handler failed at 200,000
    payments in one shard). paybeam's batch configuration spills such records instead. The shuffles
    stay in Flink (`--no-spill`: the route of workers without a shared disk), where the tables are."""
    dataset = generate(GeneratorConfig(payments=1_000_000, seed=7, fmt="parquet"), str(tmp_path / "data"))
    out = str(tmp_path / "flink")
    assert reconcile(_glob(dataset, "payments"), _glob(dataset, "settlements"), out, "--no-spill",
                     *flink_args(flink_engine, "[auto]", "--environment_type=LOOPBACK")) == 0
    summary = run_summary(out)
    assert summary["runner"] == "FlinkRunner" and summary["shuffles"] == "in memory"
    assert summary["statuses"] == {status: n for status, n in dataset.expected["statuses"].items() if n}
    for name in ("payments", "settlements"):
        counts = summary["inputs"][name]
        assert counts["read"] == counts["accepted"] + counts["rejected"] == dataset.expected["counts"][name]["read"]


@pytest.mark.engines
def test_flink_runs_without_job_server_flags_on_the_cached_job_server(flink_engine, tmp_path, capsys, monkeypatch):
    """As a new user runs it after `make test`: `--runner FlinkRunner --flink_master=[local]` and no
    --flink_version/--flink_job_server_jar. Beam alone would download the Flink 2.2 job server for
    2.77.0, which Maven Central does not serve (404); paybeam uses the cached one and says so."""
    from runners import options as runner_options

    monkeypatch.setattr(runner_options, "_SAID", set())  # said once per process: this test must see it
    dataset = generate(GeneratorConfig(payments=30, seed=9), str(tmp_path / "data"))
    out = str(tmp_path / "flink")
    assert reconcile(_glob(dataset, "payments"), _glob(dataset, "settlements"), out,
                     "--runner", "FlinkRunner", "--flink_master=[local]") == 0
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("FlinkRunner:")]
    assert said == [f"FlinkRunner: using the cached Flink 1.19 job server ({flink_engine / 'job-server.jar'}); "
                    "--flink_job_server_jar overrides"]
    summary = run_summary(out)
    assert summary["statuses"] == {status: n for status, n in dataset.expected["statuses"].items() if n}
    for name in ("payments", "settlements"):
        assert (summary["inputs"][name]["read"], summary["inputs"][name]["rejected"]) == (
            dataset.expected["counts"][name]["read"], dataset.expected["counts"][name]["rejected"])


@pytest.mark.engines
def test_a_dst_time_zone_in_a_batch_run_on_flink_equals_direct_runner(flink_engine, sample, tmp_path):
    """Batch runs key settlement days in the global window (no Python WindowFn for Java to reject),
    so a zone with DST works on Flink; only event-time windows (streams) are refused up front."""
    zone = ("--time-zone", "Europe/Amsterdam", "--cutoff-hour", "6", "--engine", "elementwise")
    out = str(tmp_path / "flink")
    assert reconcile(_glob(sample, "payments"), _glob(sample, "settlements"), out, *zone,
                     *flink_args(flink_engine, "[local]", "--environment_type=LOOPBACK")) == 0
    on_flink = canonical_outputs(out)
    assert on_flink["daily_totals"]
    assert on_flink == _direct(sample, tmp_path, *zone)
    assert on_flink["daily_totals"] != _direct(sample, tmp_path / "utc", "--engine", "elementwise")["daily_totals"]


@pytest.mark.engines
def test_flink_elementwise_engine_with_external_worker_pool(flink_engine, sample, tmp_path):
    """The per-element engine (state, timers, dedup) on Flink, Python workers in a separate pool
    process (the production sidecar topology) at parallelism 2."""
    out = str(tmp_path / "flink")
    with worker_pool(tmp_path / "worker_pool.log") as pool:
        assert reconcile(_glob(sample, "payments"), _glob(sample, "settlements"), out, "--engine", "elementwise",
                         *flink_args(flink_engine, "[local]", "--environment_type=EXTERNAL",
                                     f"--environment_config={pool}", "--parallelism=2")) == 0
    assert "paybeam-sdk-harness', '--id=" in (tmp_path / "worker_pool.log").read_text()
    assert result_multiset(results(out))
    assert canonical_outputs(out) == _direct(sample, tmp_path, "--engine", "elementwise")


@pytest.mark.engines
def test_bounded_kafka_stream_on_flink_equals_batch_and_commits(kafka_broker, flink_engine, sample, tmp_path):
    """`paybeam stream --bounded` on Flink (batch mode): paybeam's Kafka Splittable DoFn reads both
    topics to their end offsets, the answer equals the batch answer on the same files, and the
    group's offsets are committed to the end (only after the outputs were written)."""
    servers = kafka_broker.bootstrap_servers
    topics = new_topics(servers)
    replay_files(servers, [_glob(sample, "payments")], [_glob(sample, "settlements")],
                 topics["payments"], topics["settlements"])
    group = unique_topic("flink-bounded")
    run = run_stream_in_process(servers, topics, group, "--start", "earliest", "--engine", "elementwise",
                                *flink_args(flink_engine, "[local]", "--environment_type=LOOPBACK"))
    assert run.exit_code == 0, run.stderr[-3000:]
    direct = str(tmp_path / "direct")
    assert reconcile(_glob(sample, "payments"), _glob(sample, "settlements"), direct, "--engine", "elementwise") == 0
    streamed = final_revisions(decoded(servers, topics["results"]))
    assert result_multiset(streamed) == result_multiset(results(direct))
    for name in ("payments", "settlements"):
        assert committed_to_the_end(servers, group, topics[name])
