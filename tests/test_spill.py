"""Spilled shuffles (pipelines/io/spill.py): the same answer as in-memory shuffles, nothing left behind.

The DirectRunner spills by default, so every other columnar test on it runs
spilled; here the two transports are compared on the same inputs, the files
are read back row for row, and the run's spill directory is checked to go.
"""
from __future__ import annotations

import glob
import os
import subprocess
import sys
import time
from dataclasses import replace

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from datagen.generator import GeneratorConfig, generate
from pipelines.io.spill import SpillDirectory, SpillRefused, SpillToFiles, SpillWriter
from pipelines.reconcile_batch import BatchJob, spills
from tests.cli_helpers import (
    cli_with_file_size_limit,
    ground_truth_multiset,
    reconcile,
    result_multiset,
    results,
    run_summary,
)
from tests.engine_parity import assert_same_outputs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = pa.schema([("id", pa.string()), ("amount_minor", pa.int64()), ("currency", pa.string())])

rows = st.lists(st.tuples(st.integers(0, 3), st.one_of(st.none(), st.text(max_size=12)),
                          st.one_of(st.none(), st.integers(-2 ** 63, 2 ** 63 - 1)),
                          st.sampled_from(["EUR", "USD", "JPY", None])), max_size=40)


def _table(part) -> pa.Table:
    return pa.table({"id": [row[1] for row in part], "amount_minor": [row[2] for row in part],
                     "currency": [row[3] for row in part]}, schema=SCHEMA)


@settings(max_examples=40, deadline=None)
@given(rows, st.integers(1, 4))
def test_spilled_tables_read_back_row_for_row_and_column_for_column(tmp_path_factory, drawn, tables_per_shard):
    directory = str(tmp_path_factory.mktemp("spill"))
    shuffle = SpillToFiles(directory)
    # The DoFn as a runner drives it: one bundle, several tables per shard, paths emitted at the end.
    writer = SpillWriter(directory, "test", SCHEMA)
    writer.start_bundle()
    written = {}
    for index in range(tables_per_shard):
        for shard in range(4):
            part = [row for row in drawn[index::tables_per_shard] if row[0] == shard]
            table = _table(part)
            writer.process((shard, table))
            written.setdefault(shard, []).append(table)
    emitted = [windowed.value for windowed in writer.finish_bundle()]
    assert sorted(shard for shard, _ in emitted) == sorted(written)
    for shard, path in emitted:
        (back,) = shuffle.loaded([path])
        assert back.equals(pa.concat_tables(written[shard]))


def test_spilled_shards_group_and_load_like_in_memory_ones_in_a_pipeline(tmp_path):
    shuffle = SpillToFiles(str(tmp_path))
    tables = [(0, _table([(0, "a", 1, "EUR")])), (1, _table([(1, "b", 2, "USD")])), (0, _table([(0, "c", 3, None)]))]
    with TestPipeline() as pipeline:
        grouped = (shuffle.stored(pipeline | beam.Create(tables), "T", SCHEMA)
                   | beam.GroupByKey()
                   | beam.MapTuple(lambda shard, paths: (shard, sorted(pa.concat_tables(
                       list(shuffle.loaded(paths))).column("id").to_pylist()))))
        assert_that(grouped, equal_to([(0, ["a", "c"]), (1, ["b"])]))


def test_the_run_directory_goes_when_the_run_ends_even_on_failure(tmp_path):
    with SpillDirectory(str(tmp_path)) as path:
        assert os.path.basename(path).startswith(f"paybeam-spill-{os.getpid()}-")
        open(os.path.join(path, "x.arrows"), "wb").close()
    assert os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError):
        with SpillDirectory(str(tmp_path)) as path:
            raise RuntimeError("the pipeline failed")
    assert os.listdir(tmp_path) == []


def test_a_killed_run_s_directory_is_removed_by_the_next_run_and_a_live_one_is_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead_dir = tmp_path / f"paybeam-spill-{int(dead.stdout)}-abc"
    live_dir = tmp_path / "paybeam-spill-1-abc"  # pid 1 lives as long as the machine
    other = tmp_path / "not-a-spill-dir"
    for directory in (dead_dir, live_dir, other):
        directory.mkdir()
        (directory / "0.arrows").write_bytes(b"x")
    spill = SpillDirectory(str(tmp_path))
    with spill:
        pass
    assert spill.removed == [str(dead_dir)]
    assert sorted(os.listdir(tmp_path)) == sorted([live_dir.name, other.name])


def test_a_spill_dir_that_is_not_a_directory_is_refused_in_one_line(tmp_path, capsys):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(SpillRefused, match="is not a directory"):
        SpillDirectory(missing).__enter__()
    (tmp_path / "p.csv").write_text(HEADER + "\n")
    (tmp_path / "s.csv").write_text(SETTLEMENT_HEADER + "\n")
    code = reconcile(str(tmp_path / "p.csv"), str(tmp_path / "s.csv"), str(tmp_path / "out"), "--spill-dir", missing)
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"paybeam reconcile: error: --spill-dir {missing!r} is not a directory"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("runner, beam_args, spilled", [
    ("DirectRunner", [], True),
    ("direct", ["--direct_running_mode=multi_processing", "--direct_num_workers=2"], True),
    ("PrismRunner", [], True),  # LOOPBACK workers, Beam's default on Prism
    ("PrismRunner", ["--environment_type=DOCKER"], False),
    ("FlinkRunner", [], True),  # the embedded Flink ([auto]) with LOOPBACK workers
    ("FlinkRunner", ["--flink_master=[local]", "--environment_type=loopback"], True),
    ("FlinkRunner", ["--flink_master=flink.internal:8081"], False),  # a cluster's workers
    ("FlinkRunner", ["--environment_type=PROCESS", "--environment_config={\"command\": \"boot\"}"], False),
    ("DataflowRunner", [], False),
])
def test_a_run_spills_by_default_only_where_every_worker_shares_this_disk(runner, beam_args, spilled):
    job = BatchJob(payments=[], settlements=[], output="out", config=None, runner=runner, beam_args=beam_args)
    assert spills(job) is spilled
    assert spills(replace(job, spill=True)) and not spills(replace(job, spill=False))
    assert not spills(replace(job, engine="elementwise"))


HEADER = "event_id,payment_id,event_type,processor,processor_reference,merchant_id,amount_minor,currency,event_time"
SETTLEMENT_HEADER = ("settlement_id,processor,processor_reference,merchant_id,record_type,gross_minor,fee_minor,"
                     "net_minor,currency,settlement_date,booked_time,payout_id")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    base = tmp_path_factory.mktemp("spill-e2e")
    dataset = generate(GeneratorConfig(payments=1200, seed=23, fmt="parquet"), str(base / "data"))
    # A second delivery file whose copies conflict with the first reads, one of them under another
    # reconciliation key: the id shuffle and the key shuffle put its rows in different shards.
    extra = base / "data" / "payments" / "late.csv"
    extra.write_text("\n".join([
        HEADER,
        "e_x1,p_x1,CAPTURED,stripe,ch_x1,m_1,1000,USD,2026-01-05T10:00:00Z",
        "e_x1,p_x1,CAPTURED,stripe,ch_other,m_1,1000,USD,2026-01-05T10:00:00Z",
        "e_x2,p_x2,CAPTURED,adyen,ad_x2,m_2,700,EUR,2026-01-06T10:00:00Z",
        "e_x2,p_x2,CAPTURED,adyen,ad_x2,m_2,700,EUR,2026-01-06T10:00:00Z",
    ]) + "\n")
    payments = os.path.join(dataset.out_dir, "payments", "*")
    settlements = os.path.join(dataset.out_dir, "settlements", "*")
    spill_root = base / "spill"
    spill_root.mkdir()
    outputs = {}
    for name, extra_args in (("spilled", ["--spill-dir", str(spill_root)]), ("in-memory", ["--no-spill"]),
                             ("spilled-5-shards", ["--shards", "5"])):
        outputs[name] = str(base / f"out-{name}")
        assert reconcile(payments, settlements, outputs[name], "--csv", *extra_args) == 0
    return dataset, outputs, spill_root


def test_spilled_and_in_memory_shuffles_write_identical_outputs(generated):
    _, outputs, _ = generated
    assert_same_outputs(outputs["spilled"], outputs["in-memory"])
    assert_same_outputs(outputs["spilled"], outputs["spilled-5-shards"])
    assert run_summary(outputs["spilled"])["shuffles"] == "spilled"
    assert run_summary(outputs["spilled-5-shards"])["shuffles"] == "spilled"
    assert run_summary(outputs["in-memory"])["shuffles"] == "in memory"


def test_a_spilled_run_equals_the_ground_truth_and_leaves_no_files(generated):
    dataset, outputs, spill_root = generated
    # The generated rows' answer (the extra file's two keys come on top).
    generated_rows = [row for row in results(outputs["spilled"])
                      if row["processor_reference"] not in ("ch_x1", "ch_other", "ad_x2")]
    assert result_multiset(generated_rows) == ground_truth_multiset(dataset.ground_truth_path)
    counts = run_summary(outputs["spilled"])["inputs"]["payments"]
    assert counts["conflicting"] == 1 and counts["read"] == counts["accepted"] + counts["rejected"]
    assert os.listdir(spill_root) == []


def test_a_run_killed_while_it_spills_leaves_its_files_to_the_next_run_which_removes_them(tmp_path):
    dataset = generate(GeneratorConfig(payments=20_000, seed=5, fmt="parquet"), str(tmp_path / "data"))
    payments = os.path.join(dataset.out_dir, "payments", "*")
    settlements = os.path.join(dataset.out_dir, "settlements", "*")
    spill_root = tmp_path / "spill"
    spill_root.mkdir()
    run = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "reconcile", "--payments", payments,
                            "--settlements", settlements, "--output", str(tmp_path / "out"),
                            "--spill-dir", str(spill_root)],
                           cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        spilled = _first_spill_file(spill_root, run)
    finally:
        run.kill()
        run.wait(timeout=60)
    assert spilled is not None, "the run ended before it spilled anything"
    assert os.path.exists(spilled)  # a killed run cannot clean up: its files stay
    assert reconcile(payments, settlements, str(tmp_path / "out"), "--spill-dir", str(spill_root)) == 0
    assert os.listdir(spill_root) == []
    assert run_summary(str(tmp_path / "out"))["shuffles"] == "spilled"


def _first_spill_file(root, run, deadline_seconds: float = 120.0):
    """The first spill file the run writes under `root`, watched for until the run ends (or the deadline)."""
    deadline = time.monotonic() + deadline_seconds
    while run.poll() is None and time.monotonic() < deadline:
        found = glob.glob(os.path.join(str(root), "paybeam-spill-*", "*.arrows"))
        if found:
            return found[0]
        time.sleep(0.01)  # polling the filesystem for the condition, not waiting out a guess
    return None


def test_a_full_disk_while_spilling_fails_the_run_in_one_line_and_leaves_no_spill_files(tmp_path):
    """RLIMIT_FSIZE makes every write past 64 KiB fail (EFBIG) as a full disk would (ENOSPC): the
    payments' spill files are the first to outgrow it."""
    dataset = generate(GeneratorConfig(payments=3_000, seed=8, fmt="parquet"), str(tmp_path / "data"))
    spill_root = tmp_path / "spill"
    spill_root.mkdir()

    run = subprocess.run(cli_with_file_size_limit(64 << 10, [
                             "reconcile", "--payments", os.path.join(dataset.out_dir, "payments", "*"),
                             "--settlements", os.path.join(dataset.out_dir, "settlements", "*"),
                             "--output", str(tmp_path / "out"), "--spill-dir", str(spill_root)]),
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    assert run.stderr.count("error:") == 1 and "Traceback" not in run.stderr
    assert "File too large" in run.stderr
    assert os.listdir(spill_root) == []
    assert sorted(os.listdir(tmp_path)) == ["data", "spill"]  # no output, no staging directory
