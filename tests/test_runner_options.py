"""runners.options: runner names, pass-through Beam flags, PipelineOptions (docs/DESIGN.md 6)."""
from __future__ import annotations

import contextlib
import io

import pytest
from apache_beam.options.pipeline_options import (
    DirectOptions,
    FlinkRunnerOptions,
    PortableOptions,
    StandardOptions,
)

from pipelines.cli import main
from runners.options import (
    RUNNERS,
    OptionsError,
    build_pipeline_options,
    canonical_runner,
    check_settlement_day_windows,
    unknown_beam_args,
)
from transforms.daily_totals import SettlementDay, TriggerPolicy


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
    # docs/DESIGN.md 6 lists these for the production FlinkRunner; they must not be rejected as typos.
    design_flags = [
        "--flink_master=localhost:8081",
        "--parallelism=4",
        "--checkpointing_interval=60000",
        "--environment_type=EXTERNAL",
        "--flink_job_server_jar=https://repo.example.com/beam-runners-flink-2.2-job-server-2.77.0.jar",
    ]
    assert unknown_beam_args(design_flags, "flink") == []
    # Java-side Flink options are not options of the local runners: there they stay typos.
    assert unknown_beam_args(design_flags, "direct") == ["--checkpointing_interval=60000"]
    # EXTERNAL needs the worker pool's address (a deliberate OptionsError otherwise, tested below).
    options = build_pipeline_options("flink", design_flags + ["--environment_config=localhost:50000"],
                                     streaming=True)
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


# ---------------------------------------------------------------- per-runner presets and checks

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import apache_beam as beam  # noqa: E402
from apache_beam.options.pipeline_options import (  # noqa: E402
    DebugOptions,
    GoogleCloudOptions,
    PrismRunnerOptions,
    SetupOptions,
    WorkerOptions,
)

from runners import presets  # noqa: E402
from runners.engine_cache import pinned_versions  # noqa: E402
from runners.environments import default_sdk_image  # noqa: E402
from runners.flink_options import FLINK_VERSIONS  # noqa: E402

REPO_SETUP = Path(__file__).resolve().parents[1] / "setup.py"
SDK_IMAGE = f"apache/beam_python{sys.version_info[0]}.{sys.version_info[1]}_sdk:{beam.__version__}"
FLINK_EXTERNAL = ["--flink_master=flink-jobmanager:8081", "--environment_type=EXTERNAL",
                  "--environment_config=localhost:50000"]
DATAFLOW = ["--project=acme-payments", "--region=europe-west1", "--temp_location=gs://acme-tmp/paybeam"]


def _setup_file(options):
    return options.view_as(SetupOptions).setup_file


def _environment(options):
    portable = options.view_as(PortableOptions)
    return portable.environment_type, portable.environment_config


# DirectRunner

def test_direct_defaults_to_in_memory_and_ships_nothing():
    options = build_pipeline_options("direct")
    assert options.view_as(DirectOptions).direct_running_mode == "in_memory"
    assert options.view_as(DirectOptions).direct_num_workers == 1
    assert _setup_file(options) is None


def test_direct_multi_processing_with_workers():
    options = build_pipeline_options("direct", ["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    assert options.view_as(DirectOptions).direct_running_mode == "multi_processing"
    assert options.view_as(DirectOptions).direct_num_workers == 2


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_direct_num_workers_below_one_is_an_error(workers):
    with pytest.raises(OptionsError, match="direct_num_workers must be at least 1"):
        build_pipeline_options("direct", [f"--direct_num_workers={workers}"])


@pytest.mark.parametrize("args, fragment", [
    (["--direct_running_mode=multi_process"], "invalid choice"),
    (["--direct_num_workers=two"], "invalid int value"),
])
def test_bad_values_of_known_flags_are_options_errors_not_exits(args, fragment):
    with pytest.raises(OptionsError, match=fragment):
        build_pipeline_options("direct", args)


def test_runner_flag_among_beam_args_cannot_override_the_runner():
    with pytest.raises(OptionsError, match="--runner"):
        build_pipeline_options("direct", ["--runner=FlinkRunner"])


# PrismRunner

def test_prism_with_a_local_binary(tmp_path):
    prism = tmp_path / "prism"
    prism.write_text("")
    options = build_pipeline_options("prism", [f"--prism_location={prism}"], streaming=True)
    assert options.view_as(StandardOptions).runner == "PrismRunner"
    assert options.view_as(PrismRunnerOptions).prism_location == str(prism)
    assert options.view_as(StandardOptions).streaming is True
    assert _setup_file(options) is None


def test_prism_location_that_does_not_exist_is_an_error(tmp_path):
    with pytest.raises(OptionsError, match="prism_location"):
        build_pipeline_options("prism", [f"--prism_location={tmp_path / 'missing'}"])


def _prism_cache(root: Path, with_binary: bool = True) -> Path:
    """An engine cache laid out as deploy/fetch/prism.sh leaves it (the binary is an empty file:
    options only check that it exists)."""
    directory = root / f"prism-{pinned_versions()['PRISM_VERSION']}"
    (directory / "bin").mkdir(parents=True)
    if with_binary:
        (directory / "bin" / "prism").write_text("")
    (directory / ".complete").write_text("")
    return directory / "bin" / "prism"


@pytest.fixture
def fetched_prism(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ENGINES_CACHE", str(tmp_path / "engines"))
    return _prism_cache(tmp_path / "engines")


def test_prism_without_location_uses_the_fetched_binary(fetched_prism):
    options = build_pipeline_options("prism", [], streaming=True)
    assert options.view_as(PrismRunnerOptions).prism_location == str(fetched_prism)


def test_prism_runs_get_their_own_prism_process(fetched_prism):
    # Not Beam's per-process singleton, which keeps the options of the first PrismRunner (or of the
    # DirectRunner's Prism attempt) for every later run in the process.
    options = build_pipeline_options("prism", [])
    assert options.view_as(DebugOptions).lookup_experiment("disable_prism_server_singleton")
    assert not build_pipeline_options("direct", []).view_as(DebugOptions).lookup_experiment(
        "disable_prism_server_singleton")


def test_prism_location_given_wins_over_the_fetched_binary(fetched_prism, tmp_path):
    mine = tmp_path / "my-prism"
    mine.write_text("")
    assert build_pipeline_options("prism", [f"--prism_location={mine}"]).view_as(
        PrismRunnerOptions).prism_location == str(mine)


def test_prism_without_location_or_fetched_binary_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGINES_CACHE", str(tmp_path / "empty"))
    with pytest.raises(OptionsError) as info:
        build_pipeline_options("prism", [])
    message = str(info.value)
    assert "make engine-prism" in message and "--prism_location" in message and "\n" not in message
    # An interrupted fetch (no .complete) is not a binary either; nor a marker without the binary.
    _prism_cache(tmp_path / "half", with_binary=False)
    monkeypatch.setenv("ENGINES_CACHE", str(tmp_path / "half"))
    with pytest.raises(OptionsError, match="make engine-prism"):
        build_pipeline_options("prism", [])


def test_prism_job_endpoint_needs_no_binary(tmp_path, monkeypatch):
    # --job_endpoint: submit to a Prism already running (`prism --job_port P`); Beam starts none.
    monkeypatch.setenv("ENGINES_CACHE", str(tmp_path / "empty"))
    options = build_pipeline_options("prism", ["--job_endpoint=localhost:8073"])
    assert options.view_as(PrismRunnerOptions).prism_location is None


def test_direct_runner_gets_no_prism_location(fetched_prism):
    # DirectRunner tries Prism itself when it has a location: it must keep doing what Beam does.
    assert build_pipeline_options("direct", []).view_as(PrismRunnerOptions).prism_location is None


def test_prism_location_may_be_a_url():
    url = "https://github.com/apache/beam/releases/download/v2.77.0/apache_beam-v2.77.0-prism-linux-amd64.zip"
    assert build_pipeline_options("prism", [f"--prism_location={url}"]).view_as(
        PrismRunnerOptions).prism_location == url


# FlinkRunner

def test_flink_external_worker_pool_production_preset():
    options = build_pipeline_options("flink", FLINK_EXTERNAL + ["--parallelism=4", "--checkpointing_interval=60000"],
                                     streaming=True)
    assert options.view_as(StandardOptions).runner == "FlinkRunner"
    assert options.view_as(StandardOptions).streaming is True
    assert options.view_as(FlinkRunnerOptions).flink_master == "flink-jobmanager:8081"
    assert options.view_as(FlinkRunnerOptions).parallelism == 4
    assert options.view_as(FlinkRunnerOptions).flink_version == "2.2"
    assert _environment(options) == ("EXTERNAL", "localhost:50000")
    # Java-side options reach the job server.
    assert options.get_all_options(retain_unknown_options=True)["checkpointing_interval"] == "60000"
    assert _setup_file(options) == str(REPO_SETUP)


def test_flink_external_without_environment_config_is_an_error():
    with pytest.raises(OptionsError, match="EXTERNAL needs --environment_config=HOST:PORT"):
        build_pipeline_options("flink", ["--flink_master=flink:8081", "--environment_type=EXTERNAL"])


def test_flink_external_address_as_environment_option():
    options = build_pipeline_options("flink", ["--environment_type=EXTERNAL",
                                               "--environment_option=external_service_address=pool:50000"])
    assert options.view_as(PortableOptions).lookup_environment_option("external_service_address") == "pool:50000"


def test_flink_external_config_must_be_host_port():
    with pytest.raises(OptionsError, match="not HOST:PORT"):
        build_pipeline_options("flink", ["--environment_type=EXTERNAL", "--environment_config=worker-pool"])


def test_environment_type_is_case_insensitive():
    options = build_pipeline_options("flink", ["--environment_type=external", "--environment_config=pool:50000"])
    assert _environment(options) == ("EXTERNAL", "pool:50000")


def test_unsupported_environment_type_is_an_error():
    with pytest.raises(OptionsError, match="unsupported --environment_type=BEAM"):
        build_pipeline_options("flink", ["--environment_type=BEAM"])


def test_environment_config_without_type_is_an_error():
    with pytest.raises(OptionsError, match="needs --environment_type"):
        build_pipeline_options("flink", ["--environment_config=pool:50000"])


def test_flink_process_environment_with_command():
    config = json.dumps({"command": "/opt/apache/beam/boot"})
    options = build_pipeline_options("flink", ["--environment_type=PROCESS", f"--environment_config={config}"])
    assert _environment(options) == ("PROCESS", config)
    assert _setup_file(options) == str(REPO_SETUP)


@pytest.mark.parametrize("args, fragment", [
    (["--environment_type=PROCESS"], "PROCESS needs --environment_config="),
    (["--environment_type=PROCESS", "--environment_config=/opt/apache/beam/boot"], "must be JSON"),
    (["--environment_type=PROCESS", '--environment_config={"env": {}}'], 'no "command"'),
])
def test_flink_process_environment_needs_a_json_command(args, fragment):
    with pytest.raises(OptionsError, match=fragment):
        build_pipeline_options("flink", args)


def test_flink_docker_defaults_to_the_sdk_image_of_this_beam_and_python():
    options = build_pipeline_options("flink", ["--flink_master=flink:8081", "--environment_type=DOCKER"])
    assert _environment(options) == ("DOCKER", SDK_IMAGE)
    assert default_sdk_image() == SDK_IMAGE
    if sys.version_info[:2] == (3, 11) and beam.__version__ == "2.77.0":
        assert SDK_IMAGE == "apache/beam_python3.11_sdk:2.77.0"
    # The stock image lacks paybeam: it is shipped.
    assert _setup_file(options) == str(REPO_SETUP)


def test_flink_docker_with_a_custom_image_ships_nothing():
    options = build_pipeline_options("flink", ["--environment_type=DOCKER",
                                               "--environment_config=registry.acme/paybeam:1.4"])
    assert _environment(options) == ("DOCKER", "registry.acme/paybeam:1.4")
    assert _setup_file(options) is None


def test_flink_docker_takes_sdk_container_image():
    options = build_pipeline_options("flink", ["--environment_type=DOCKER",
                                               "--sdk_container_image=registry.acme/paybeam:1.4"])
    assert _environment(options) == ("DOCKER", "registry.acme/paybeam:1.4")
    assert _setup_file(options) is None


@pytest.mark.parametrize("version", FLINK_VERSIONS)
def test_every_published_flink_version_is_accepted(version):
    options = build_pipeline_options("flink", FLINK_EXTERNAL + [f"--flink_version={version}"])
    assert options.view_as(FlinkRunnerOptions).flink_version == version


def test_flink_versions_match_beam_and_the_design():
    assert FLINK_VERSIONS == ("1.19", "1.20", "2.0", "2.1", "2.2")
    assert list(FLINK_VERSIONS) == FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS
    assert build_pipeline_options("flink", FLINK_EXTERNAL).view_as(FlinkRunnerOptions).flink_version == "2.2"


@pytest.mark.parametrize("args", [["--flink_version=1.18"], ["--flink_version", "1.17"]])
def test_unsupported_flink_version_is_an_error(args):
    with pytest.raises(OptionsError, match="unsupported --flink_version=1.1[78].*1.19, 1.20, 2.0, 2.1, 2.2"):
        build_pipeline_options("flink", FLINK_EXTERNAL + args)


@pytest.mark.parametrize("master", ["flink-jobmanager:8081", "http://10.0.0.5:8081", "https://flink.acme.com"])
def test_loopback_with_a_remote_flink_master_is_an_error(master):
    with pytest.raises(OptionsError, match="LOOPBACK"):
        build_pipeline_options("flink", [f"--flink_master={master}", "--environment_type=LOOPBACK"])


@pytest.mark.parametrize("master", ["[auto]", "[local]", "localhost:8081", "http://127.0.0.1:8081", None])
def test_loopback_with_a_local_flink_master_is_fine_and_ships_nothing(master):
    args = ["--environment_type=LOOPBACK"] + ([f"--flink_master={master}"] if master else [])
    options = build_pipeline_options("flink", args)
    assert _environment(options) == ("LOOPBACK", None)
    assert _setup_file(options) is None  # the workers are the submitting process itself


def test_loopback_takes_no_environment_config():
    with pytest.raises(OptionsError, match="LOOPBACK takes no --environment_config"):
        build_pipeline_options("flink", ["--environment_type=LOOPBACK", "--environment_config=x:1"])


@pytest.mark.parametrize("args", [["--parallelism=0"], ["--max_parallelism=0"]])
def test_flink_parallelism_must_be_positive(args):
    with pytest.raises(OptionsError, match="parallelism must be at least 1"):
        build_pipeline_options("flink", FLINK_EXTERNAL + args)


@pytest.mark.parametrize("args", [["--checkpointing_interval=0"], ["--checkpointing_interval=1m"],
                                  ["--checkpointing_interval"]])
def test_flink_checkpointing_interval_must_be_positive_millis(args):
    with pytest.raises(OptionsError, match="checkpointing_interval"):
        build_pipeline_options("flink", FLINK_EXTERNAL + args)


def test_java_side_flag_with_separate_value_is_not_a_typo():
    assert unknown_beam_args(["--checkpointing_interval", "60000"], "flink") == []
    assert unknown_beam_args(["--checkpointing_interval", "60000"], "direct") == ["--checkpointing_interval",
                                                                                   "60000"]
    options = build_pipeline_options("flink", FLINK_EXTERNAL + ["--checkpointing_interval", "60000"])
    assert options.get_all_options(retain_unknown_options=True)["checkpointing_interval"] == "60000"


def test_flink_job_server_jar_must_exist_when_local(tmp_path):
    with pytest.raises(OptionsError, match="flink_job_server_jar"):
        build_pipeline_options("flink", FLINK_EXTERNAL + [f"--flink_job_server_jar={tmp_path / 'missing.jar'}"])
    jar = tmp_path / "beam-runners-flink-2.2-job-server-2.77.0.jar"
    jar.write_bytes(b"")
    options = build_pipeline_options("flink", FLINK_EXTERNAL + [f"--flink_job_server_jar={jar}"])
    assert options.view_as(FlinkRunnerOptions).flink_job_server_jar == str(jar)


def test_flink_submit_uber_jar_needs_a_cluster_master():
    with pytest.raises(OptionsError, match="flink_submit_uber_jar"):
        build_pipeline_options("flink", ["--flink_submit_uber_jar", "--environment_type=EXTERNAL",
                                         "--environment_config=pool:50000"])
    options = build_pipeline_options("flink", FLINK_EXTERNAL + ["--flink_submit_uber_jar"])
    assert options.view_as(FlinkRunnerOptions).flink_submit_uber_jar is True


def test_flink_typo_is_still_an_error():
    with pytest.raises(OptionsError, match="--checkpointing_intervall=1"):
        build_pipeline_options("flink", FLINK_EXTERNAL + ["--checkpointing_intervall=1"])


# PortableRunner

def test_portable_needs_a_job_endpoint():
    with pytest.raises(OptionsError, match="PortableRunner needs --job_endpoint"):
        build_pipeline_options("portable", ["--environment_type=EXTERNAL", "--environment_config=pool:50000"])


def test_portable_with_external_worker_pool():
    options = build_pipeline_options("portable", ["--job_endpoint=localhost:8099", "--environment_type=EXTERNAL",
                                                  "--environment_config=localhost:50000"])
    assert options.view_as(PortableOptions).job_endpoint == "localhost:8099"
    assert _environment(options) == ("EXTERNAL", "localhost:50000")
    assert _setup_file(options) == str(REPO_SETUP)


def test_portable_external_without_config_is_an_error():
    with pytest.raises(OptionsError, match="EXTERNAL needs"):
        build_pipeline_options("portable", ["--job_endpoint=localhost:8099", "--environment_type=EXTERNAL"])


def test_portable_accepts_flink_java_side_options():
    options = build_pipeline_options("portable", ["--job_endpoint=flink-job-server:8099",
                                                  "--checkpointing_interval=10000"], streaming=True)
    assert options.view_as(StandardOptions).streaming is True


# DataflowRunner

def test_dataflow_with_project_region_and_gcs_temp_location():
    options = build_pipeline_options("dataflow", DATAFLOW, streaming=True)
    gcp = options.view_as(GoogleCloudOptions)
    assert (gcp.project, gcp.region, gcp.temp_location) == ("acme-payments", "europe-west1", "gs://acme-tmp/paybeam")
    assert options.view_as(StandardOptions).streaming is True
    assert _setup_file(options) == str(REPO_SETUP)


@pytest.mark.parametrize("drop", range(3))
def test_dataflow_without_project_region_or_temp_location_is_an_error(drop):
    missing = DATAFLOW[drop].split("=")[0]
    with pytest.raises(OptionsError, match=f"DataflowRunner needs {missing}"):
        build_pipeline_options("dataflow", DATAFLOW[:drop] + DATAFLOW[drop + 1:])


@pytest.mark.parametrize("flag", ["--temp_location=/tmp/paybeam", "--temp_location=s3://acme/tmp",
                                  "--staging_location=/tmp/staging"])
def test_dataflow_locations_must_be_on_gcs(flag):
    with pytest.raises(OptionsError, match="gs://"):
        build_pipeline_options("dataflow", DATAFLOW + [flag])


def test_dataflow_with_a_custom_container_ships_nothing():
    options = build_pipeline_options("dataflow", DATAFLOW + ["--sdk_container_image=eu.gcr.io/acme/paybeam:1.4"])
    assert options.view_as(WorkerOptions).sdk_container_image == "eu.gcr.io/acme/paybeam:1.4"
    assert _setup_file(options) is None


# --setup_file for remote runners

REMOTE_PRESETS = {
    "FlinkRunner": FLINK_EXTERNAL,
    "PortableRunner": ["--job_endpoint=localhost:8099", "--environment_type=EXTERNAL",
                       "--environment_config=localhost:50000"],
    "DataflowRunner": DATAFLOW,
}


def test_default_setup_file_is_the_repo_setup_py():
    assert presets.default_setup_file() == REPO_SETUP


@pytest.mark.parametrize("runner", sorted(REMOTE_PRESETS))
def test_remote_runners_ship_the_repo_setup_py(runner):
    assert _setup_file(build_pipeline_options(runner, REMOTE_PRESETS[runner])) == str(REPO_SETUP)


@pytest.mark.parametrize("runner", sorted(REMOTE_PRESETS))
def test_a_given_setup_file_wins(runner, tmp_path):
    own = tmp_path / "setup.py"
    own.write_text("")
    options = build_pipeline_options(runner, REMOTE_PRESETS[runner] + [f"--setup_file={own}"])
    assert _setup_file(options) == str(own)


def test_a_given_setup_file_must_exist(tmp_path):
    with pytest.raises(OptionsError, match="--setup_file=.* does not exist"):
        build_pipeline_options("flink", FLINK_EXTERNAL + [f"--setup_file={tmp_path / 'setup.py'}"])


@pytest.mark.parametrize("runner", sorted(REMOTE_PRESETS))
def test_no_setup_py_and_no_image_is_an_error_saying_what_to_pass(runner, monkeypatch):
    monkeypatch.setattr(presets, "default_setup_file", lambda: None)
    with pytest.raises(OptionsError) as info:
        build_pipeline_options(runner, REMOTE_PRESETS[runner])
    assert "--setup_file" in str(info.value) and "--sdk_container_image" in str(info.value)
    with pytest.raises(OptionsError):
        build_pipeline_options(runner, REMOTE_PRESETS[runner], setup_file=None)


@pytest.mark.parametrize("runner", sorted(REMOTE_PRESETS))
def test_no_setup_py_is_fine_with_a_custom_image(runner):
    options = build_pipeline_options(runner, REMOTE_PRESETS[runner] + ["--sdk_container_image=acme/paybeam:1"],
                                     setup_file=None)
    assert _setup_file(options) is None


def test_setup_file_keyword_overrides_the_default(tmp_path):
    other = tmp_path / "setup.py"
    other.write_text("")
    assert _setup_file(build_pipeline_options("flink", FLINK_EXTERNAL, setup_file=other)) == str(other)


@pytest.mark.parametrize("runner", ["DirectRunner", "PrismRunner"])
def test_local_runners_ship_nothing(runner, fetched_prism):
    assert _setup_file(build_pipeline_options(runner)) is None


@pytest.mark.parametrize("runner, args", [("direct", []), ("prism", []), ("flink", FLINK_EXTERNAL),
                                          ("portable", REMOTE_PRESETS["PortableRunner"]), ("dataflow", DATAFLOW)])
def test_streaming_flag_for_every_runner(runner, args, fetched_prism):
    assert build_pipeline_options(runner, args, streaming=True).view_as(StandardOptions).streaming is True
    assert build_pipeline_options(runner, args).view_as(StandardOptions).streaming is False
    assert build_pipeline_options(runner, args + ["--streaming"], streaming=True).get_all_options()["streaming"]


# `paybeam runners`

def test_presets_cover_every_runner():
    assert tuple(preset.name for preset in presets.PRESETS) == RUNNERS


def test_describe_runners_lists_each_runner_and_its_needs():
    text = presets.describe_runners()
    for runner in RUNNERS:
        assert runner in text
    for needed in ("--prism_location", "--flink_master", "--environment_config", "--flink_job_server_jar",
                   "Java", "--job_endpoint", "--project", "--region", "--temp_location=gs://",
                   "--direct_num_workers", "--setup_file", SDK_IMAGE, "2.2"):
        assert needed in text, needed


def test_paybeam_runners_prints_the_listing(capsys):
    from pipelines.cli import main

    assert main(["runners"]) == 0
    assert capsys.readouterr().out.strip() == presets.describe_runners()
    assert main(["runners", "--nonsense"]) == 2
    assert "unrecognized arguments: --nonsense" in capsys.readouterr().err


# Settlement-day windows on Java-side runners (a DST zone needs a Python-defined WindowFn)

def test_a_dst_zone_in_event_time_windows_is_refused_on_java_side_runners():
    amsterdam = SettlementDay("Europe/Amsterdam", 6)
    for runner in ("flink", "FlinkRunner", "portable"):
        with pytest.raises(OptionsError, match="Europe/Amsterdam changes its UTC offset"):
            check_settlement_day_windows(runner, amsterdam, TriggerPolicy.streaming())
        with pytest.raises(OptionsError, match="PrismRunner or DirectRunner"):
            check_settlement_day_windows(runner, amsterdam, TriggerPolicy(None))  # unbounded, no early panes


def test_fixed_offset_zones_bounded_runs_and_python_side_runners_are_accepted():
    amsterdam = SettlementDay("Europe/Amsterdam", 6)
    # Fixed-offset zones get Beam's FixedWindows, which Java knows.
    for zone in ("UTC", "Etc/GMT-1", "GMT"):
        assert check_settlement_day_windows("flink", SettlementDay(zone, 6), TriggerPolicy.streaming()) is None
    # Bounded without early panes: days are keys in the global window, no WindowFn at all.
    assert check_settlement_day_windows("flink", amsterdam, TriggerPolicy.batch()) is None
    # The Python-side runners run paybeam's own WindowFn.
    for runner in ("direct", "prism"):
        assert check_settlement_day_windows(runner, amsterdam, TriggerPolicy.streaming()) is None


def test_paybeam_stream_on_flink_with_a_dst_zone_is_a_usage_error_before_any_connection():
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["stream", "--bootstrap-servers", "127.0.0.1:9", "--payments-topic", "p",
                     "--settlements-topic", "s", "--time-zone", "Europe/Amsterdam", "--runner", "FlinkRunner",
                     "--flink_master=[local]", "--checkpointing_interval=10000"])
    assert code == 2
    assert err.getvalue().count("error:") == 1 and "Europe/Amsterdam changes its UTC offset" in err.getvalue()


def test_an_unbounded_flink_run_refuses_checkpoints_shorter_than_ten_seconds():
    with pytest.raises(OptionsError, match="checkpointing_interval=2000 is too short"):
        build_pipeline_options("flink", ["--flink_master=[local]", "--checkpointing_interval=2000"], streaming=True)
    options = build_pipeline_options("flink", ["--flink_master=[local]", "--checkpointing_interval", "10000"],
                                     streaming=True)
    assert options.get_all_options(retain_unknown_options=True)["checkpointing_interval"] == "10000"
    # Bounded runs (no Kafka reader to stall) take any positive interval.
    build_pipeline_options("flink", ["--flink_master=[local]", "--checkpointing_interval=2000"])


def test_an_unbounded_flink_run_takes_its_first_checkpoint_one_interval_after_it_starts():
    # Flink draws the first checkpoint's delay from [min pause, interval]: the pause defaults to the interval.
    options = build_pipeline_options("flink", ["--flink_master=[local]", "--checkpointing_interval", "15000"],
                                     streaming=True).get_all_options(retain_unknown_options=True)
    assert options["min_pause_between_checkpoints"] == "15000"
    given = build_pipeline_options("flink", ["--flink_master=[local]", "--checkpointing_interval=15000",
                                             "--min_pause_between_checkpoints=12000"], streaming=True)
    assert given.get_all_options(retain_unknown_options=True)["min_pause_between_checkpoints"] == "12000"
    with pytest.raises(OptionsError, match="min_pause_between_checkpoints=2000 is too short"):
        build_pipeline_options("flink", ["--flink_master=[local]", "--checkpointing_interval=15000",
                                         "--min_pause_between_checkpoints=2000"], streaming=True)
    bounded = build_pipeline_options("flink", ["--flink_master=[local]", "--checkpointing_interval=15000"])
    assert "min_pause_between_checkpoints" not in bounded.get_all_options(retain_unknown_options=True)


def test_an_unbounded_run_on_the_embedded_flink_checkpoints_to_files():
    # Flink's default there, the JobManager's memory, fails every checkpoint beyond 5 MB of state per task.
    from runners.flink_options import LOCAL_FLINK_CHECKPOINTS

    def options(*flags, streaming=True):
        return build_pipeline_options("flink", list(flags), streaming=streaming).get_all_options(
            retain_unknown_options=True)

    for local in ([], ["--flink_master=[local]"], ["--flink_master", "[auto]"]):
        embedded = options(*local, "--checkpointing_interval=10000")
        assert embedded["state_backend"] == "filesystem"
        assert embedded["state_backend_storage_path"] == LOCAL_FLINK_CHECKPOINTS.as_uri()
    assert options("--flink_master=[local]", "--state_backend=rocksdb",
                   "--state_backend_storage_path=file:///data/checkpoints")["state_backend"] == "rocksdb"
    # A cluster checkpoints where its own configuration says; a bounded run needs no checkpoints.
    assert "state_backend" not in options("--flink_master=localhost:8081", "--environment_type=EXTERNAL",
                                          "--environment_config=localhost:50000")
    assert "state_backend" not in options("--flink_master=[local]", streaming=False)


def test_flink_pipelines_get_the_runner_whose_job_server_is_always_stopped():
    from apache_beam.runners.direct.direct_runner import SwitchingDirectRunner
    from apache_beam.runners.portability.prism_runner import PrismRunner

    from runners.flink_job_server import FlinkRunner, new_pipeline

    assert isinstance(new_pipeline(build_pipeline_options("flink", ["--flink_master=[local]"])).runner, FlinkRunner)
    # Any other runner: the one Beam builds from --runner.
    assert isinstance(new_pipeline(build_pipeline_options("direct")).runner, SwitchingDirectRunner)
    assert isinstance(new_pipeline(build_pipeline_options("prism")).runner, PrismRunner)
