"""runners.options: runner names, pass-through Beam flags, PipelineOptions (DESIGN.md 6)."""
from __future__ import annotations

import pytest
from apache_beam.options.pipeline_options import (
    DirectOptions,
    FlinkRunnerOptions,
    PortableOptions,
    StandardOptions,
)

from runners.options import (
    RUNNERS,
    OptionsError,
    build_pipeline_options,
    canonical_runner,
    unknown_beam_args,
)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("direct", "DirectRunner"),
        ("DirectRunner", "DirectRunner"),
        ("directrunner", "DirectRunner"),
        (" Direct ", "DirectRunner"),
        ("flink", "FlinkRunner"),
        ("FlinkRunner", "FlinkRunner"),
        ("FLINK", "FlinkRunner"),
        ("prism", "PrismRunner"),
        ("portable", "PortableRunner"),
        ("dataflow", "DataflowRunner"),
    ],
)
def test_canonical_runner_aliases(name, expected):
    assert canonical_runner(name) == expected


def test_every_runner_is_its_own_canonical_name():
    for runner in RUNNERS:
        assert canonical_runner(runner) == runner


@pytest.mark.parametrize("name", ["spark", "", "flinkrunners", "Runner"])
def test_unknown_runner_is_an_error_listing_the_choices(name):
    with pytest.raises(OptionsError) as info:
        canonical_runner(name)
    assert repr(name) in str(info.value)
    for runner in RUNNERS:
        assert runner in str(info.value)


def test_options_error_is_a_value_error():
    assert issubclass(OptionsError, ValueError)


def test_unknown_beam_args_finds_typo():
    assert unknown_beam_args(["--flink_mster=x"]) == ["--flink_mster=x"]
    assert unknown_beam_args(["--direct_num_workers=2", "--flink_mster=x"]) == ["--flink_mster=x"]


def test_unknown_beam_args_rejects_abbreviations():
    # argparse would otherwise expand --flink_mas to --flink_master silently
    assert unknown_beam_args(["--flink_mas=localhost:8081"]) == ["--flink_mas=localhost:8081"]


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--direct_num_workers=2"],
        ["--direct_num_workers", "2"],
        ["--direct_running_mode=multi_threading"],
        ["--flink_master=localhost:8081"],
        ["--parallelism=4"],
        ["--environment_type=EXTERNAL", "--environment_config=localhost:50000"],
        ["--job_endpoint=localhost:8099"],
        ["--prism_location=/opt/prism"],
        ["--setup_file=./setup.py"],
        ["--streaming"],
    ],
)
def test_known_beam_args_are_accepted(args):
    assert unknown_beam_args(args) == []


def test_flink_flags_named_in_the_design_are_accepted():
    # DESIGN.md 6 lists these for the production FlinkRunner; they must not be rejected as typos.
    design_flags = [
        "--flink_master=localhost:8081",
        "--parallelism=4",
        "--checkpointing_interval=60000",
        "--environment_type=EXTERNAL",
        "--flink_job_server_jar=/opt/beam/flink-job-server.jar",
    ]
    assert unknown_beam_args(design_flags, "flink") == []
    # Java-side Flink options are not options of the local runners: there they stay typos.
    assert unknown_beam_args(design_flags, "direct") == ["--checkpointing_interval=60000"]
    options = build_pipeline_options("flink", design_flags, streaming=True)
    assert options.view_as(StandardOptions).runner == "FlinkRunner"


def test_build_pipeline_options_sets_runner_and_streaming():
    options = build_pipeline_options("direct", ["--direct_num_workers=2"], streaming=True)
    assert options.view_as(StandardOptions).runner == "DirectRunner"
    assert options.view_as(StandardOptions).streaming is True
    assert options.view_as(DirectOptions).direct_num_workers == 2


def test_build_pipeline_options_batch_by_default():
    options = build_pipeline_options("DirectRunner")
    assert options.view_as(StandardOptions).runner == "DirectRunner"
    assert options.view_as(StandardOptions).streaming is False


def test_build_pipeline_options_flink_pass_through():
    options = build_pipeline_options("flink", ["--flink_master=localhost:8081", "--parallelism=2",
                                               "--environment_type=EXTERNAL",
                                               "--environment_config=localhost:50000"])
    assert options.view_as(StandardOptions).runner == "FlinkRunner"
    assert options.view_as(FlinkRunnerOptions).flink_master == "localhost:8081"
    assert options.view_as(FlinkRunnerOptions).parallelism == 2
    assert options.view_as(PortableOptions).environment_type == "EXTERNAL"
    assert options.view_as(PortableOptions).environment_config == "localhost:50000"


def test_build_pipeline_options_rejects_unknown_flags():
    with pytest.raises(OptionsError, match="--flink_mster=x"):
        build_pipeline_options("flink", ["--flink_mster=x"])


def test_build_pipeline_options_rejects_unknown_runner():
    with pytest.raises(OptionsError, match="unknown runner"):
        build_pipeline_options("spark")
