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
from urllib.parse import urlparse  # noqa: E402

import apache_beam as beam  # noqa: E402
from apache_beam.options.pipeline_options import (  # noqa: E402
    DebugOptions,
    GoogleCloudOptions,
    PrismRunnerOptions,
    SetupOptions,
    WorkerOptions,
)

from runners import options as runner_options  # noqa: E402
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


def test_runs_that_may_execute_on_prism_never_let_it_split_a_slow_bundle(fetched_prism):
    # tests/test_prism_state.py shows what the experiment prevents: lost state of a stateful DoFn.
    for runner, args in (("prism", []), ("direct", []), ("portable", ["--job_endpoint=localhost:8099"])):
        assert build_pipeline_options(runner, args).view_as(DebugOptions).lookup_experiment(
            "prism_disable_sdf_split"), runner


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

def test_flink_external_worker_pool_production_preset(no_engines):
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


def test_flink_versions_match_beam_and_the_design(no_engines):
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

    directories = set()
    for local in ([], ["--flink_master=[local]"], ["--flink_master", "[auto]"]):
        embedded = options(*local, "--checkpointing_interval=10000")
        assert embedded["state_backend"] == "filesystem"
        directory = Path(urlparse(embedded["state_backend_storage_path"]).path)
        # A directory per run under LOCAL_FLINK_CHECKPOINTS, not created before Flink writes there.
        assert directory.parent == LOCAL_FLINK_CHECKPOINTS and directory.name.startswith("run-")
        assert not directory.exists()
        directories.add(directory)
    assert len(directories) == 3
    assert options("--flink_master=[local]", "--state_backend=rocksdb",
                   "--state_backend_storage_path=file:///data/checkpoints")["state_backend"] == "rocksdb"
    # RocksDB alone gets the run's directory too: Flink refuses `rocksdb` without a storage path.
    rocksdb = options("--flink_master=[local]", "--state_backend=rocksdb")
    assert rocksdb["state_backend"] == "rocksdb"
    assert Path(urlparse(rocksdb["state_backend_storage_path"]).path).parent == LOCAL_FLINK_CHECKPOINTS
    # The user's storage path wins (it used to be overridden by paybeam's when --state_backend was absent).
    mine = options("--flink_master=[local]", "--state_backend_storage_path=file:///data/checkpoints")
    assert (mine["state_backend"], mine["state_backend_storage_path"]) == ("filesystem", "file:///data/checkpoints")
    # A cluster checkpoints where its own configuration says; a bounded run needs no checkpoints.
    assert "state_backend" not in options("--flink_master=localhost:8081", "--environment_type=EXTERNAL",
                                          "--environment_config=localhost:50000")
    assert "state_backend" not in options("--flink_master=[local]", streaming=False)


def _assert_embedded_flink_conf(streaming: bool, directory: Path, line: str) -> None:
    """Runs on the embedded Flink get `--flink_conf_dir=directory` holding `line`; the user's own directory
    wins, and a cluster's configuration is its own."""
    def conf_dir(*flags):
        return build_pipeline_options("flink", list(flags), streaming=streaming).get_all_options(
            retain_unknown_options=True).get("flink_conf_dir")

    for local in ([], ["--flink_master=[local]"], ["--flink_master", "[auto]"]):
        assert conf_dir(*local) == str(directory)
    assert line in (directory / "flink-conf.yaml").read_text().splitlines()
    assert conf_dir("--flink_conf_dir=/etc/flink") == "/etc/flink"
    assert conf_dir(*FLINK_EXTERNAL) is None


def test_a_batch_run_on_the_embedded_flink_handles_large_records():
    # A shard's group is one record in Flink's batch sort; the embedded default refused records over 4.5 MB.
    from runners.flink_options import LOCAL_FLINK_BATCH_CONF_DIR

    _assert_embedded_flink_conf(False, LOCAL_FLINK_BATCH_CONF_DIR, "taskmanager.runtime.large-record-handler: true")
    # An unbounded run sorts nothing.
    assert build_pipeline_options("flink", ["--flink_master=[local]"], streaming=True).get_all_options(
        retain_unknown_options=True).get("flink_conf_dir") != str(LOCAL_FLINK_BATCH_CONF_DIR)


def test_an_unbounded_run_on_the_embedded_flink_flushes_network_buffers_every_5_ms():
    # At a live stream's trickle every hop between steps waited for Flink's 100 ms buffer timeout.
    from runners.flink_options import LOCAL_FLINK_STREAMING_CONF_DIR

    _assert_embedded_flink_conf(True, LOCAL_FLINK_STREAMING_CONF_DIR, "execution.buffer-timeout.interval: 5 ms")


def test_an_unbounded_run_on_the_embedded_flink_can_queue_several_chunks_between_two_tasks():
    # Flink's default of 10 buffers (320 KB) a channel made the reading and the deciding task take turns on
    # chunks of several MB; the exclusive buffers a channel stay Flink's, so more parallelism needs no more.
    from runners.flink_options import LOCAL_FLINK_STREAMING_CONF_DIR

    for line in ("taskmanager.network.memory.floating-buffers-per-gate: 320",
                 "taskmanager.network.memory.max-buffers-per-channel: 320", "taskmanager.memory.network.max: 128mb"):
        _assert_embedded_flink_conf(True, LOCAL_FLINK_STREAMING_CONF_DIR, line)
    text = (LOCAL_FLINK_STREAMING_CONF_DIR / "flink-conf.yaml").read_text()
    assert "buffers-per-channel:" not in text.replace("max-buffers-per-channel:", "")


@pytest.mark.parametrize("flags, removed", [
    ([], True),
    (["--externalized_checkpoints_enabled"], False),
    (["--retain_externalized_checkpoints_on_cancellation"], False),
    (["--state_backend_storage_path=file:///data/checkpoints"], False),
    (["--state_backend=rocksdb", "--state_backend_storage_path=file:///data/checkpoints"], False),
    (["--state_backend=rocksdb"], True),
])
def test_the_checkpoint_directory_of_an_embedded_flink_run_is_removed_unless_kept(flags, removed):
    from runners.flink_options import LOCAL_FLINK_CHECKPOINTS, run_checkpoint_directory

    options = build_pipeline_options("flink", ["--flink_master=[local]", *flags], streaming=True)
    directory = run_checkpoint_directory(options)
    if not removed:
        assert directory is None
        return
    assert directory.parent == LOCAL_FLINK_CHECKPOINTS
    assert directory.as_uri() == options.get_all_options(retain_unknown_options=True)["state_backend_storage_path"]
    # A bounded run has none; a cluster checkpoints where its configuration says.
    assert run_checkpoint_directory(build_pipeline_options("flink", ["--flink_master=[local]"])) is None
    assert run_checkpoint_directory(build_pipeline_options("flink", FLINK_EXTERNAL, streaming=True)) is None


def test_the_flink_job_server_removes_its_run_checkpoints_when_it_stops_and_only_those(tmp_path, monkeypatch):
    """What an unbounded embedded-Flink run leaves in LOCAL_FLINK_CHECKPOINTS: nothing of its own, and
    another run's directory (a run going on in parallel) untouched. The job server is not started: its
    stop() after the JVM is gone is what runs at exit, on Ctrl-C and after a failure."""
    from runners import flink_options
    from runners.flink_job_server import FlinkRunner

    monkeypatch.setattr(flink_options, "LOCAL_FLINK_CHECKPOINTS", tmp_path / "checkpoints")
    ours = build_pipeline_options("flink", ["--flink_master=[local]"], streaming=True)
    theirs = build_pipeline_options("flink", ["--flink_master=[local]"], streaming=True)
    kept = build_pipeline_options("flink", ["--flink_master=[local]", "--externalized_checkpoints_enabled",
                                            "--retain_externalized_checkpoints_on_cancellation"], streaming=True)
    written = []
    for options in (ours, theirs, kept):
        directory = Path(urlparse(options.get_all_options(retain_unknown_options=True)[
            "state_backend_storage_path"]).path) / "0123abcd" / "chk-1"
        directory.mkdir(parents=True)  # what Flink writes: <storage path>/<job id>/chk-N
        written.append(directory.parent.parent)
    for options in (ours, kept):
        job_server = FlinkRunner().default_job_server(options)  # a StopOnExitJobServer, never started
        job_server._job_server.stop()  # what its stop() at exit runs once the JVM was started
    assert [directory.exists() for directory in written] == [False, True, True]


@pytest.fixture
def no_engines(tmp_path, monkeypatch):
    """An empty engine cache: what a user has before `make engines`."""
    monkeypatch.setenv("ENGINES_CACHE", str(tmp_path / "no-engines"))


def _flink_cache(root: Path) -> Path:
    """A fetched Flink job server as deploy/fetch/flink.sh leaves it (options only check that it exists)."""
    versions = pinned_versions()
    directory = root / f"flink-{versions['FLINK_JOB_SERVER_FLINK_VERSION']}-beam-{versions['FLINK_JOB_SERVER_BEAM_VERSION']}"
    directory.mkdir(parents=True)
    (directory / "job-server.jar").write_text("")
    (directory / ".complete").write_text("")
    return directory / "job-server.jar"


@pytest.fixture
def fetched_flink(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ENGINES_CACHE", str(tmp_path / "engines"))
    monkeypatch.setattr(runner_options, "_SAID", set())
    return _flink_cache(tmp_path / "engines")


def _flink_options(flags, streaming=False):
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        options = build_pipeline_options("flink", flags, streaming=streaming).view_as(FlinkRunnerOptions)
    return options, stderr.getvalue()


@pytest.mark.parametrize("streaming", [False, True])
def test_flink_without_a_jar_uses_the_cached_job_server_and_says_so(fetched_flink, streaming):
    minor = pinned_versions()["FLINK_JOB_SERVER_FLINK_MINOR"]
    options, said = _flink_options(["--flink_master=[local]"], streaming)
    assert (options.flink_job_server_jar, options.flink_version) == (str(fetched_flink), minor)
    assert said == (f"FlinkRunner: using the cached Flink {minor} job server ({fetched_flink}); "
                    "--flink_job_server_jar overrides\n")
    # Said once per process (a backfill builds the options of every job).
    assert _flink_options(["--flink_master=[local]"], streaming)[1] == ""
    # The pinned --flink_version given: the same jar.
    assert _flink_options([f"--flink_version={minor}"])[0].flink_job_server_jar == str(fetched_flink)


def test_flink_on_a_cluster_uses_the_cached_job_server_and_names_the_flink_the_cluster_needs(fetched_flink):
    options, said = _flink_options(FLINK_EXTERNAL)
    assert options.flink_job_server_jar == str(fetched_flink)
    assert "submitting to flink-jobmanager:8081, which must run Flink 1.19" in said and said.count("\n") == 1


@pytest.mark.parametrize("flags, jar, version", [
    (["--flink_job_server_jar=JAR"], "JAR", "2.2"),                   # the user's jar wins
    (["--flink_job_server_jar=JAR", "--flink_version=1.20"], "JAR", "1.20"),
    (["--flink_version=1.20"], None, "1.20"),                          # another Flink: Beam's jar for it
    (["--flink_version", "2.2"], None, "2.2"),
    (["--job_endpoint=localhost:8099"], None, "2.2"),                  # a job server already running
    (["--flink_master=localhost:8081", "--flink_submit_uber_jar"], None, "2.2"),  # an uber jar's base
])
def test_flink_flags_of_the_user_win_over_the_cached_job_server(fetched_flink, tmp_path, flags, jar, version):
    mine = tmp_path / "mine.jar"
    mine.write_text("")
    options, said = _flink_options(["--environment_type=EXTERNAL", "--environment_config=localhost:50000",
                                    *[flag.replace("JAR", str(mine)) for flag in flags]])
    assert (options.flink_job_server_jar, options.flink_version, said) == (jar and str(mine), version, "")


def test_flink_without_the_cached_job_server_keeps_beams_default(no_engines):
    options, said = _flink_options(["--flink_master=[local]"])
    assert (options.flink_job_server_jar, options.flink_version, said) == (None, "2.2", "")


def test_beams_failed_job_server_download_is_one_line_naming_make_engine_flink(no_engines, monkeypatch):
    """Beam's download of beam-runners-flink-2.2-job-server-2.77.0.jar fails (Maven Central serves none);
    its text, as Beam 2.77 raises it (subprocess_server.JavaJarServer.local_jar)."""
    from runners.flink_options import job_server_fetch_failed

    url = ("https://repo.maven.apache.org/maven2/org/apache/beam/beam-runners-flink-2.2-job-server/2.77.0/"
           "beam-runners-flink-2.2-job-server-2.77.0.jar")
    beam = RuntimeError(f"Unable to fetch remote job server jar at {url}: HTTP Error 404: Not Found. Also failed "
                        f"to fetch from Google Maven mirror at {url}: HTTP Error 404: Not Found. If no Internet "
                        "access at runtime, stage the jar at /root/.apache_beam/cache/jars/x.jar")
    line = job_server_fetch_failed("2.2", beam)
    assert line == ("no Flink job server: Beam could not fetch its Flink 2.2 job server jar (HTTP Error 404: "
                    "Not Found); run `make engine-flink` (paybeam then uses that Flink 1.19 job server by "
                    "default) or pass --flink_job_server_jar=PATH")
    # Where paybeam's Flink job server meets it: Beam's download (local_jar) raising that text.
    from apache_beam.runners.portability import job_server

    from runners.flink_job_server import FlinkRunner
    from schemas.errors import RunFailed

    def download(url, *args, **kwargs):
        assert url.endswith("beam-runners-flink-2.2-job-server-2.77.0.jar")
        raise beam

    monkeypatch.setattr(job_server.JavaJarJobServer, "local_jar", staticmethod(download))
    server = FlinkRunner().default_job_server(build_pipeline_options("flink", ["--flink_master=[local]"]))
    with pytest.raises(RunFailed) as failed:
        server._job_server.subprocess_cmd_and_endpoint()
    assert str(failed.value) == line


def test_flink_pipelines_get_the_runner_whose_job_server_is_always_stopped():
    from apache_beam.runners.direct.direct_runner import SwitchingDirectRunner
    from apache_beam.runners.portability.prism_runner import PrismRunner

    from runners.flink_job_server import FlinkRunner, new_pipeline

    assert isinstance(new_pipeline(build_pipeline_options("flink", ["--flink_master=[local]"])).runner, FlinkRunner)
    # Any other runner: the one Beam builds from --runner.
    assert isinstance(new_pipeline(build_pipeline_options("direct")).runner, SwitchingDirectRunner)
    assert isinstance(new_pipeline(build_pipeline_options("prism")).runner, PrismRunner)


# The Job API deadline (--job_server_timeout) of unbounded runs

@pytest.mark.parametrize("runner, flags", [
    ("prism", ["--prism_location=/bin/true"]),
    ("flink", ["--flink_master=[local]"]),
    ("portable", ["--job_endpoint=localhost:8099"]),
])
def test_an_unbounded_run_on_a_job_api_runner_has_no_practical_job_service_deadline(runner, flags):
    """Beam 2.77 uses --job_server_timeout (default 300 s) as the gRPC deadline of the job's state and
    message streams: an unbounded run died after 300 s, even idle. Unbounded runs get ten years."""
    from runners.options import UNBOUNDED_JOB_SERVER_TIMEOUT

    def timeout(*extra, streaming=True):
        return build_pipeline_options(runner, [*flags, *extra], streaming=streaming).view_as(
            PortableOptions).job_server_timeout

    assert timeout() == UNBOUNDED_JOB_SERVER_TIMEOUT == 315_360_000 > 300 * 1000
    assert UNBOUNDED_JOB_SERVER_TIMEOUT < 2 ** 31  # a job server may read it back as a Java int
    # Bounded (`paybeam stream --bounded`) and batch runs keep Beam's 300 s; the user's value wins.
    assert timeout(streaming=False) == 300
    assert timeout("--job_server_timeout=20") == 20
    assert timeout("--job-server-timeout", "45") == 45


def test_runners_without_a_job_service_get_no_job_server_timeout():
    assert build_pipeline_options("direct", [], streaming=True).view_as(PortableOptions).job_server_timeout == 300
    assert build_pipeline_options("dataflow", DATAFLOW, streaming=True).view_as(
        PortableOptions).job_server_timeout == 300


# The text of a real gRPC error (grpc 1.x, a Job API state stream past its deadline), as str() gives it.
GRPC_DEADLINE_EXCEEDED = ('<_MultiThreadedRendezvous of RPC that terminated with:\n'
                          '\tstatus = StatusCode.DEADLINE_EXCEEDED\n'
                          '\tdetails = "Stream removed (Deadline Exceeded)"\n'
                          '\tdebug_error_string = "DEADLINE_EXCEEDED:Stream removed (Deadline Exceeded)"\n'
                          '>')


def test_a_job_service_deadline_is_named_in_the_one_line_error_not_its_closing_bracket():
    from pipelines.run_errors import one_line_cause
    from schemas.errors import one_line

    class _MultiThreadedRendezvous(Exception):
        pass

    error = _MultiThreadedRendezvous(GRPC_DEADLINE_EXCEEDED)
    assert one_line(error) == "gRPC DEADLINE_EXCEEDED: Stream removed (Deadline Exceeded)"
    assert one_line_cause(error) == ("gRPC DEADLINE_EXCEEDED: Stream removed (Deadline Exceeded) "
                                     "(the job service's deadline, --job_server_timeout seconds)")
    try:
        try:
            raise error
        except Exception as inner:
            raise RuntimeError("Pipeline job-001 failed") from inner
    except RuntimeError as outer:
        assert one_line_cause(outer).startswith("gRPC DEADLINE_EXCEEDED: Stream removed")
    other = _MultiThreadedRendezvous(GRPC_DEADLINE_EXCEEDED.replace("DEADLINE_EXCEEDED", "UNAVAILABLE")
                                     .replace("Stream removed (Deadline Exceeded)", "Socket closed"))
    assert one_line_cause(other) == "gRPC UNAVAILABLE: Socket closed"
    # Lines of punctuation say nothing; Beam's re-raised "Type: message" line stays the cause.
    assert one_line(ValueError("bad amount\n  ]\n>")) == "ValueError: bad amount"
    assert one_line_cause(RuntimeError("Traceback ...\nValueError: bad amount [while running 'Parse']")) == (
        "bad amount [while running 'Parse']")


def test_every_flink_option_paybeam_passes_to_the_job_server_is_one_the_flink_runner_defines():
    # Beam's portable runner drops, without a word, an option the job server does not describe: paybeam
    # once accepted --max_bundle_time_millis (Java: maxBundleTimeMills), which never reached Flink.
    import struct
    import zipfile

    from runners.flink_options import JOB_SERVER_OPTIONS, cached_flink_job_server

    launcher = cached_flink_job_server()
    assert launcher is not None, "`make engine-flink` fetches the Flink job server the tests run"
    (runner_jar,) = launcher.parent.glob("lib/beam-runners-flink-*.jar")
    with zipfile.ZipFile(runner_jar) as jar:
        options_class = jar.read("org/apache/beam/runners/flink/FlinkPipelineOptions.class")

    def declares(method: str) -> bool:  # a method name is a length-prefixed UTF-8 constant of the class file
        return struct.pack(">H", len(method)) + method.encode() in options_class

    for name in JOB_SERVER_OPTIONS:
        camel = "".join(word.capitalize() for word in name.split("_"))
        assert declares(f"get{camel}") or declares(f"is{camel}"), name
    assert not declares("getMaxBundleTimeMillis")


def test_an_unbounded_flink_run_finishes_its_bundles_every_100_ms_unless_told_otherwise():
    def options(*flags, streaming=True):
        return build_pipeline_options("flink", ["--flink_master=[local]", *flags], streaming=streaming).get_all_options(
            retain_unknown_options=True)

    assert options()["max_bundle_time_mills"] == "100"
    assert options("--max_bundle_time_mills=1000")["max_bundle_time_mills"] == "1000"
    assert "max_bundle_time_mills" not in options(streaming=False)
    assert "max_bundle_time_mills" not in build_pipeline_options("prism", [], streaming=True).get_all_options(
        retain_unknown_options=True)


def test_an_unbounded_flink_run_of_arrow_chunks_gives_each_chunk_its_own_bundle_unless_told_otherwise():
    """A stateful step's output leaves the worker when its bundle ends: a chunk of many records is worth a
    bundle; single records (the per-element engine) keep Flink's count."""
    def options(*flags, streaming=True, chunk_bundles=True, runner="flink"):
        return build_pipeline_options(runner, ["--flink_master=[local]", *flags] if runner == "flink" else [],
                                      streaming=streaming, chunk_bundles=chunk_bundles).get_all_options(
            retain_unknown_options=True)

    assert options()["max_bundle_size"] == "1"
    assert options("--max_bundle_size=50")["max_bundle_size"] == "50"
    assert "max_bundle_size" not in options(chunk_bundles=False)
    assert "max_bundle_size" not in options(streaming=False)
    assert "max_bundle_size" not in options(runner="prism")


def test_the_risk_stream_gives_chunks_their_own_bundles_with_the_columnar_engine_only():
    from pipelines.risk_stream import RiskStreamJob, pipeline_options

    def bundle_size(engine: str):
        job = RiskStreamJob(bootstrap_servers="localhost:9092", topics={}, rules_path="rules.yaml", rule_set=None,
                            engine=engine, runner="FlinkRunner", beam_args=["--flink_master=[local]"])
        return pipeline_options(job).get_all_options(retain_unknown_options=True).get("max_bundle_size")

    assert bundle_size("columnar") == "1"
    assert bundle_size("elementwise") is None


def test_a_batch_run_on_a_flink_cluster_gives_up_after_three_restarts_unless_told_otherwise():
    from runners.flink_options import batch_restart_limit

    cluster = ["--flink_master=localhost:8081", "--environment_type=EXTERNAL", "--environment_config=localhost:50000"]

    def limit(*flags, streaming=False):
        return batch_restart_limit(build_pipeline_options("flink", [*cluster, *flags], streaming=streaming))

    assert limit() == 3
    assert limit("--number_of_execution_retries=10") == 10
    assert limit("--number_of_execution_retries=0") == 0
    assert limit("--number_of_execution_retries=-1") is None  # the cluster's own strategy, however long
    assert limit(streaming=True) is None  # a stream resumes from its checkpoints after any failure
    for bad in ("x", "-2", "1.5"):
        with pytest.raises(OptionsError, match="number_of_execution_retries"):
            build_pipeline_options("flink", [*cluster, f"--number_of_execution_retries={bad}"])
