"""Worker threads of a batch run on the DirectRunner (runners/direct_threads.py).

The rule is pure (engine, shards, cores -> threads; the user's flags win) and
tested directly; end to end, a threaded run must write what a one-worker run
writes, and run.json says which one ran.
"""
from __future__ import annotations

import os

import pytest
from apache_beam.options.pipeline_options import DirectOptions

from datagen.generator import GeneratorConfig, generate
from runners.direct_threads import (
    MAX_DEFAULT_THREADS,
    MIN_SHARDS_FOR_THREADS,
    default_direct_threads,
    direct_thread_args,
    usable_cores,
    workers_of,
)
from runners.options import build_pipeline_options
from tests.cli_helpers import reconcile, results, run_summary
from tests.engine_parity import assert_same_outputs


@pytest.mark.parametrize("engine, shards, cores, threads", [
    ("columnar", MIN_SHARDS_FOR_THREADS, 2, 2),
    ("columnar", MIN_SHARDS_FOR_THREADS - 1, 2, 1),  # too few shards: threads cost start-up
    ("columnar", 64, 1, 1),  # one core
    ("columnar", 64, 16, MAX_DEFAULT_THREADS),
    ("elementwise", 64, 2, 1),  # Python under the GIL: threads only add
])
def test_threads_come_with_enough_shards_and_cores_for_the_columnar_engine(engine, shards, cores, threads):
    assert default_direct_threads(engine, shards, cores) == threads


@pytest.mark.parametrize("runner, args, streaming, expected", [
    ("DirectRunner", [], False, ["--direct_running_mode=multi_threading", "--direct_num_workers=2"]),
    ("DirectRunner", ["--direct_num_workers=1"], False, []),  # the user's choice wins
    ("DirectRunner", ["--direct_running_mode", "multi_processing"], False, []),
    ("DirectRunner", [], True, []),  # streams keep their one worker
    ("PrismRunner", [], False, []),
    ("FlinkRunner", [], False, []),
])
def test_thread_flags_only_where_the_user_did_not_choose(runner, args, streaming, expected):
    assert direct_thread_args(runner, args, streaming, 2) == expected
    assert direct_thread_args(runner, args, streaming, 1) == []


def test_options_and_run_json_name_the_workers():
    threaded = build_pipeline_options("direct", [], direct_threads=2)
    direct = threaded.view_as(DirectOptions)
    assert (direct.direct_running_mode, direct.direct_num_workers) == ("multi_threading", 2)
    assert workers_of(threaded) == "2 threads"
    assert workers_of(build_pipeline_options("direct", [])) == "in-process"
    assert workers_of(build_pipeline_options("direct", ["--direct_num_workers=3",
                                                        "--direct_running_mode=multi_processing"])) == "3 processes"
    # The user's flags win over paybeam's default threads.
    assert workers_of(build_pipeline_options("direct", ["--direct_num_workers=1"], direct_threads=2)) == "in-process"
    assert workers_of(build_pipeline_options("portable", ["--job_endpoint=localhost:8099"], direct_threads=2)) == "runner"
    assert usable_cores() >= 1


def test_a_threaded_run_writes_what_one_worker_writes(tmp_path):
    dataset = generate(GeneratorConfig(payments=1500, seed=41, fmt="parquet"), str(tmp_path / "data"))
    payments = os.path.join(dataset.out_dir, "payments", "*")
    settlements = os.path.join(dataset.out_dir, "settlements", "*")
    shards = str(MIN_SHARDS_FOR_THREADS + 1)
    threaded, single = str(tmp_path / "threaded"), str(tmp_path / "single")
    assert reconcile(payments, settlements, threaded, "--csv", "--shards", shards) == 0
    assert reconcile(payments, settlements, single, "--csv", "--shards", shards, "--direct_num_workers=1") == 0
    expected_threads = default_direct_threads("columnar", int(shards), usable_cores())
    assert run_summary(threaded)["workers"] == ("in-process" if expected_threads == 1 else f"{expected_threads} threads")
    assert run_summary(single)["workers"] == "in-process"
    assert len(results(threaded)) > 1500
    assert_same_outputs(threaded, single)
