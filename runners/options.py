"""Turns `--runner` plus pass-through Beam flags into PipelineOptions (docs/DESIGN.md 6).

Unknown flags are an error, not a warning: Beam silently discards what it
cannot parse, and a typo such as `--flink_mster` would otherwise run the job
somewhere the user did not intend. Combinations that cannot work (a Flink
EXTERNAL environment without the worker pool's address, Dataflow without a
gs:// temp_location, …) are errors too, raised before any pipeline is built.

Every remote runner (Flink, Portable, Dataflow) gets `--setup_file` pointing
at paybeam's setup.py so its workers install paybeam, unless the user passed
`--setup_file`, an `--sdk_container_image`, or a custom DOCKER
`--environment_config` image (which must then contain paybeam).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence, Union
from urllib.parse import urlparse

from apache_beam.options.pipeline_options import (
    DebugOptions,
    DirectOptions,
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PipelineOptions,
    PortableOptions,
    PrismRunnerOptions,
    SetupOptions,
    StandardOptions,
    WorkerOptions,
)

from runners import engine_cache, presets
from transforms.daily_totals import SettlementDay, TriggerPolicy

WORKER_PLUGIN = "schemas.worker_plugin"
RUNNERS = ("DirectRunner", "PrismRunner", "FlinkRunner", "PortableRunner", "DataflowRunner")
REMOTE_RUNNERS = ("FlinkRunner", "PortableRunner", "DataflowRunner")
_RUNNER_ALIASES = {name.lower(): name for name in RUNNERS}
_RUNNER_ALIASES.update({name[: -len("Runner")].lower(): name for name in RUNNERS})


class OptionsError(ValueError):
    """Runner options that cannot work; the message says which and why."""


def canonical_runner(name: str) -> str:
    """DirectRunner from "direct", "DirectRunner" or "directrunner"."""
    try:
        return _RUNNER_ALIASES[name.strip().lower()]
    except KeyError:
        raise OptionsError(f"unknown runner {name!r}; choose one of {', '.join(RUNNERS)}") from None


def _beam_argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    for options_class in PipelineOptions.__subclasses__():
        _add_recursively(options_class, parser)
    return parser


def _add_recursively(options_class, parser) -> None:
    try:
        options_class._add_argparse_args(parser)
    except argparse.ArgumentError:
        pass  # an option registered twice by sibling classes
    for subclass in options_class.__subclasses__():
        _add_recursively(subclass, parser)


# Flink runner options defined on the Java side (FlinkPipelineOptions): Beam's
# portable runner learns them from the job server at submission, so no Python
# options class declares them.
JOB_SERVER_OPTIONS = {
    "FlinkRunner": (
        "parallelism", "max_parallelism", "checkpointing_interval", "checkpointing_mode",
        "checkpoint_timeout_millis", "min_pause_between_checkpoints", "tolerable_checkpoint_failure_number",
        "number_of_execution_retries", "execution_retry_delay", "object_reuse", "state_backend",
        "state_backend_storage_path", "externalized_checkpoints_enabled",
        "retain_externalized_checkpoints_on_cancellation", "shutdown_sources_after_idle_ms",
        "auto_watermark_interval", "latency_tracking_interval", "max_bundle_size", "max_bundle_time_millis",
        "savepoint_path", "allow_non_restored_state", "finish_bundle_before_checkpointing",
        "unaligned_checkpoint_enabled", "fail_on_checkpointing_errors",
    ),
}
JOB_SERVER_OPTIONS["PortableRunner"] = JOB_SERVER_OPTIONS["FlinkRunner"]
# An unbounded Flink run's earliest first checkpoint. On the served Flink runner (Beam Java 2.70) a
# checkpoint whose barrier reached a Kafka reader before its first bundle stopped that reader for good:
# no output, no error. Flink schedules the first checkpoint after a job (re)starts at a random delay
# between the minimum pause and the interval (CheckpointCoordinator.getRandomInitDelay), and the
# readers' first bundle comes about 2 s after the job starts here. So the interval and the minimum
# pause must both be at least this, and an unbounded run's minimum pause defaults to its interval:
# the first checkpoint then comes exactly one interval after each start (docs/DESIGN.md 7).
MIN_FLINK_STREAMING_CHECKPOINT_MILLIS = 10_000
# Job-server options whose value must be a positive integer (milliseconds or counts).
_POSITIVE_INT_JOB_SERVER_OPTIONS = ("checkpointing_interval", "checkpoint_timeout_millis",
                                    "min_pause_between_checkpoints", "max_bundle_size", "max_bundle_time_millis")


def _flag_name(arg: str) -> str:
    return arg.lstrip("-").split("=", 1)[0].replace("-", "_")


def unknown_beam_args(beam_args: Sequence[str], runner: str = "DirectRunner") -> List[str]:
    """The flags in `beam_args` that neither Beam's Python options nor the runner's job server define."""
    try:
        _, unknown = _beam_argument_parser().parse_known_args(list(beam_args))
    except argparse.ArgumentError:
        unknown = []  # a known flag with a bad value: build_pipeline_options reports it
    job_server_options = JOB_SERVER_OPTIONS.get(canonical_runner(runner), ())
    result: List[str] = []
    after_allowed_flag = False
    for arg in unknown:
        if arg.startswith("-"):
            after_allowed_flag = _flag_name(arg) in job_server_options and "=" not in arg
            if _flag_name(arg) not in job_server_options:
                result.append(arg)
        elif after_allowed_flag:
            after_allowed_flag = False  # the value of `--checkpointing_interval 60000`
        else:
            result.append(arg)
    return result


def _raw_values(beam_args: Sequence[str], name: str) -> List[str]:
    """Values given for `--name` (as `--name=v` or `--name v`), including options Beam does not declare."""
    values, args = [], list(beam_args)
    for index, arg in enumerate(args):
        if not arg.startswith("-") or _flag_name(arg) != name:
            continue
        if "=" in arg:
            values.append(arg.split("=", 1)[1])
        elif index + 1 < len(args) and not args[index + 1].startswith("--"):
            values.append(args[index + 1])
        else:
            values.append("")
    return values


def _host_of(address: str) -> str:
    address = address.strip()
    if "://" not in address:
        address = "//" + address
    try:
        return (urlparse(address).hostname or "").lower()
    except ValueError:
        return ""


def _is_local_address(address: Optional[str]) -> bool:
    if address is None or address.strip() in presets.FLINK_MAGIC_MASTERS:
        return True
    return _host_of(address) in presets.LOCAL_HOSTS


def _is_local_path(location: str) -> bool:
    scheme = urlparse(location).scheme
    return not scheme or len(scheme) == 1  # "C:\\…" on Windows


_DEFAULT = object()


# Where an unbounded run on the embedded Flink ([local]/[auto]) keeps its checkpoints. Flink's default
# there is the JobManager's memory, capped at 5 MB of state per task: beyond it every checkpoint fails
# and the job restarts for ever, silently (5,000 payments at parallelism 1). Flink makes a directory per
# job under it; the embedded Flink dies with the job server, so those directories stay (README).
LOCAL_FLINK_CHECKPOINTS = Path(tempfile.gettempdir()) / "paybeam-flink-checkpoints"


def _flink_streaming_defaults(runner: str, beam_args: Sequence[str], streaming: bool) -> List[str]:
    """Flags an unbounded Flink run gets unless it sets them: `--min_pause_between_checkpoints=<interval>`
    when it sets an interval, so that its first checkpoint is not drawn from [0, interval] (see above);
    and, on the embedded Flink, checkpoints in files under LOCAL_FLINK_CHECKPOINTS (a cluster has its
    own `state.checkpoints.dir`)."""
    if runner != "FlinkRunner" or not streaming:
        return []
    defaults = []
    intervals = [value for value in _raw_values(beam_args, "checkpointing_interval") if value.isdigit()]
    if intervals and not _raw_values(beam_args, "min_pause_between_checkpoints"):
        defaults.append(f"--min_pause_between_checkpoints={intervals[-1]}")
    master = (_raw_values(beam_args, "flink_master") or ["[auto]"])[-1].strip()
    if master in presets.FLINK_MAGIC_MASTERS and not _raw_values(beam_args, "state_backend"):
        defaults += ["--state_backend=filesystem", f"--state_backend_storage_path={LOCAL_FLINK_CHECKPOINTS.as_uri()}"]
    return defaults


def build_pipeline_options(
    runner: str,
    beam_args: Sequence[str] = (),
    streaming: bool = False,
    *,
    setup_file: Union[str, os.PathLike, None, object] = _DEFAULT,
) -> PipelineOptions:
    """PipelineOptions for `runner` plus the user's pass-through Beam flags.

    Raises OptionsError for an unknown runner or flag, a bad value, or a combination
    that cannot work. `setup_file` is what remote runners ship when the user did not
    say otherwise (default: paybeam's own setup.py, `presets.default_setup_file()`;
    None means there is none, so the user must pass --setup_file or a custom image).
    """
    runner = canonical_runner(runner)
    beam_args = list(beam_args)
    unknown = unknown_beam_args(beam_args, runner)
    if unknown:
        raise OptionsError(f"unknown option(s): {' '.join(unknown)} (neither Beam nor {runner} defines it; "
                           f"`paybeam runners` lists each runner's flags)")
    for version in _raw_values(beam_args, "flink_version"):
        if version not in presets.FLINK_VERSIONS:
            raise OptionsError(f"unsupported --flink_version={version}: Beam 2.77 publishes Flink job servers "
                               f"for {', '.join(presets.FLINK_VERSIONS)} (default {presets.DEFAULT_FLINK_VERSION})")
    try:
        _beam_argument_parser().parse_known_args(beam_args)
    except argparse.ArgumentError as error:
        raise OptionsError(str(error)) from None

    args = [f"--runner={runner}", *beam_args, *_flink_streaming_defaults(runner, beam_args, streaming)]
    if streaming and "--streaming" not in beam_args:
        args.append("--streaming")
    options = PipelineOptions(args)
    if options.view_as(StandardOptions).runner != runner:
        raise OptionsError(f"--runner is set by paybeam's own --runner option, not as a Beam flag "
                           f"(got both {runner} and {options.view_as(StandardOptions).runner})")

    if runner == "DirectRunner":
        _check_direct(options)
    elif runner == "PrismRunner":
        _check_prism(options)
    elif runner == "FlinkRunner":
        _check_flink(options, beam_args, streaming)
    elif runner == "PortableRunner":
        _check_portable(options, beam_args)
    elif runner == "DataflowRunner":
        _check_dataflow(options)
    if runner in REMOTE_RUNNERS:
        _ship_package(options, runner, presets.default_setup_file() if setup_file is _DEFAULT else setup_file)
        # Remote SDK workers import this at start-up, so they decode rows into paybeam's record
        # classes rather than generated tuples (schemas/stable_schema.py).
        setup = options.view_as(SetupOptions)
        setup.beam_plugins = [*(setup.beam_plugins or []), WORKER_PLUGIN]
    return options


# Runners whose Java side groups by window: it knows Beam's standard WindowFns only.
JAVA_WINDOWING_RUNNERS = ("FlinkRunner", "PortableRunner")


def check_settlement_day_windows(runner: str, settlement_day: SettlementDay, trigger_policy: TriggerPolicy) -> None:
    """A DST --time-zone needs paybeam's own settlement-day WindowFn wherever days are event-time
    windows (streams), and a Java-side runner rejects any Python-defined WindowFn at submission
    ("Unknown or unsupported WindowFn: beam:window_fn:pickled_python:v1", docs/DESIGN.md 7). Said
    up front instead. Bounded runs without early panes key days in the global window: any zone works."""
    if (canonical_runner(runner) not in JAVA_WINDOWING_RUNNERS or trigger_policy.keys_windows_in_global_window
            or settlement_day.fixed_utc_offset_seconds() is not None):
        return
    raise OptionsError(
        f"--time-zone={settlement_day.time_zone} changes its UTC offset (DST), so its settlement days need "
        f"paybeam's own WindowFn, which {canonical_runner(runner)}'s Java side rejects; on this runner use a "
        "fixed-offset zone (UTC, Etc/GMT-1, …) with --cutoff-hour, or run the stream on PrismRunner or DirectRunner")


def _check_direct(options: PipelineOptions) -> None:
    direct = options.view_as(DirectOptions)
    if direct.direct_num_workers < 1:
        raise OptionsError(f"--direct_num_workers must be at least 1, got {direct.direct_num_workers}")


def _check_prism(options: PipelineOptions) -> None:
    prism = options.view_as(PrismRunnerOptions)
    location = prism.prism_location
    # Beam shares one Prism per process, started with the options of whichever pipeline came first
    # (the DirectRunner's own Prism attempt included, which has no --prism_location and so tries a
    # download): each PrismRunner run starts its own, from its own --prism_location.
    options.view_as(DebugOptions).add_experiment("disable_prism_server_singleton")
    if not location and options.view_as(PortableOptions).job_endpoint:
        return  # a Prism already running (`prism --job_port P`): Beam starts none, so needs no binary
    if not location:
        # Without --prism_location Beam downloads Prism from GitHub releases, which this project's
        # machines cannot reach: use the binary `make engine-prism` built, or say how to get one.
        prism.prism_location = location = str(fetched_prism_binary())
    if _is_local_path(location) and not os.path.exists(location):
        raise OptionsError(f"--prism_location={location} does not exist; point it at a Prism binary (or its zip), "
                           "or run `make engine-prism` and omit the flag")


def fetched_prism_binary() -> Path:
    """The Prism binary deploy/fetch/prism.sh built for this Beam; OptionsError if it is not there."""
    version = engine_cache.pinned_versions().get("PRISM_VERSION", "")
    try:
        binary = engine_cache.fetched(f"prism-{version}", "engine-prism") / "bin" / "prism"
    except engine_cache.EngineNotFetched:
        raise OptionsError(f"PrismRunner: no Prism {version} binary in {engine_cache.cache_root()}; run "
                           "`make engine-prism` (builds it with Go) or pass --prism_location=/path/to/prism") from None
    if not binary.is_file():
        raise OptionsError(f"PrismRunner: {binary} is missing; re-run `make engine-prism` after deleting "
                           f"{binary.parent.parent}, or pass --prism_location=/path/to/prism")
    return binary


def _check_environment(options: PipelineOptions, runner: str) -> None:
    """EXTERNAL/PROCESS/DOCKER/LOOPBACK and their configs, for the portable runners."""
    portable = options.view_as(PortableOptions)
    if portable.environment_type is None:
        if portable.environment_config:
            raise OptionsError("--environment_config needs --environment_type (EXTERNAL, PROCESS or DOCKER)")
        return
    environment_type = portable.environment_type.upper()
    if environment_type not in presets.ENVIRONMENT_TYPES:
        raise OptionsError(f"unsupported --environment_type={portable.environment_type} for {runner}; "
                           f"choose one of {', '.join(presets.ENVIRONMENT_TYPES)}")
    portable.environment_type = environment_type
    config = portable.environment_config
    if environment_type == "EXTERNAL":
        address = config or portable.lookup_environment_option("external_service_address")
        if not address:
            raise OptionsError(f"{runner} with --environment_type=EXTERNAL needs "
                               "--environment_config=HOST:PORT of the Python worker pool "
                               "(python -m apache_beam.runners.worker.worker_pool_main --service_port PORT)")
        if not re.fullmatch(r"\[?[\w.:-]*\]?:\d+", address.strip()):
            raise OptionsError(f"--environment_config={address} is not HOST:PORT of a worker pool "
                               "(EXTERNAL environment)")
    elif environment_type == "PROCESS":
        if config:
            try:
                command = json.loads(config).get("command")
            except (ValueError, AttributeError):
                raise OptionsError("--environment_config for --environment_type=PROCESS must be JSON like "
                                   "'{\"command\": \"/opt/apache/beam/boot\"}'") from None
            if not command:
                raise OptionsError("--environment_config for PROCESS has no \"command\": give the SDK "
                                   "harness boot executable, e.g. '{\"command\": \"/opt/apache/beam/boot\"}'")
        elif not portable.lookup_environment_option("process_command"):
            raise OptionsError(f"{runner} with --environment_type=PROCESS needs "
                               "--environment_config='{\"command\": \"/path/to/boot\"}' "
                               "(the Beam SDK harness boot executable on every worker)")
    elif environment_type == "DOCKER":
        if not config and not portable.lookup_environment_option("docker_container_image"):
            portable.environment_config = (options.view_as(WorkerOptions).sdk_container_image
                                           or presets.default_sdk_image())
    elif environment_type == "LOOPBACK" and config:
        raise OptionsError("--environment_type=LOOPBACK takes no --environment_config")


def _check_flink(options: PipelineOptions, beam_args: Sequence[str], streaming: bool) -> None:
    flink = options.view_as(FlinkRunnerOptions)
    master = (flink.flink_master or "[auto]").strip()
    _check_environment(options, "FlinkRunner")
    portable = options.view_as(PortableOptions)
    if portable.environment_type == "LOOPBACK" and not _is_local_address(master):
        raise OptionsError(f"--environment_type=LOOPBACK runs the Python workers inside this process, which "
                           f"the remote Flink cluster at {master} cannot reach; use EXTERNAL (worker-pool "
                           "sidecar), PROCESS or DOCKER, or a local --flink_master ([auto], [local], localhost)")
    if flink.parallelism is not None and flink.parallelism != -1 and flink.parallelism < 1:
        raise OptionsError(f"--parallelism must be at least 1, got {flink.parallelism}")
    if flink.max_parallelism is not None and flink.max_parallelism != -1 and flink.max_parallelism < 1:
        raise OptionsError(f"--max_parallelism must be at least 1, got {flink.max_parallelism}")
    for name in _POSITIVE_INT_JOB_SERVER_OPTIONS:
        for value in _raw_values(beam_args, name):
            if not value.isdigit() or int(value) < 1:
                raise OptionsError(f"--{name} must be a positive number of milliseconds/items, got {value!r}")
    for name in ("checkpointing_interval", "min_pause_between_checkpoints") if streaming else ():
        for value in _raw_values(beam_args, name):
            if int(value) < MIN_FLINK_STREAMING_CHECKPOINT_MILLIS:
                raise OptionsError(f"--{name}={value} is too short for an unbounded run on Flink: a checkpoint "
                                   "before the Kafka readers' first bundle can stop them for good on this runner; "
                                   f"use at least {MIN_FLINK_STREAMING_CHECKPOINT_MILLIS} (docs/DESIGN.md 7)")
    jar = flink.flink_job_server_jar
    if jar and _is_local_path(jar) and not os.path.exists(jar):
        raise OptionsError(f"--flink_job_server_jar={jar} does not exist; `make engine-flink` assembles one in "
                           ".cache/engines/ (Maven Central serves no Beam 2.77 job-server jar), or point at a "
                           f"beam-runners-flink-{flink.flink_version}-job-server-<beam version>.jar")
    if flink.flink_submit_uber_jar and master in presets.FLINK_MAGIC_MASTERS:
        raise OptionsError("--flink_submit_uber_jar uploads a jar to a running cluster: it needs "
                           "--flink_master=HOST:PORT of that cluster's REST endpoint")


def _check_portable(options: PipelineOptions, beam_args: Sequence[str]) -> None:
    if not options.view_as(PortableOptions).job_endpoint:
        raise OptionsError("PortableRunner needs --job_endpoint=HOST:PORT of a running job service (a Flink job "
                           "server, or python -m apache_beam.runners.portability.local_job_service_main --port P)")
    _check_environment(options, "PortableRunner")


def _check_dataflow(options: PipelineOptions) -> None:
    gcp = options.view_as(GoogleCloudOptions)
    missing = [flag for flag, value in (("--project", gcp.project), ("--region", gcp.region),
                                        ("--temp_location", gcp.temp_location)) if not value]
    if missing:
        raise OptionsError(f"DataflowRunner needs {', '.join(missing)} (e.g. --project=my-project "
                           "--region=europe-west1 --temp_location=gs://my-bucket/tmp)")
    for flag, value in (("--temp_location", gcp.temp_location), ("--staging_location", gcp.staging_location)):
        if value and not value.startswith("gs://"):
            raise OptionsError(f"DataflowRunner needs {flag} on Cloud Storage (gs://bucket/path), got {value}")


def _custom_image(options: PipelineOptions, runner: str) -> Optional[str]:
    """An image the user chose for the workers, which then must already contain paybeam."""
    image = options.view_as(WorkerOptions).sdk_container_image
    if image:
        return image
    portable = options.view_as(PortableOptions)
    if runner != "DataflowRunner" and (portable.environment_type or "").upper() == "DOCKER":
        image = portable.environment_config or portable.lookup_environment_option("docker_container_image")
        if image and image != presets.default_sdk_image():
            return image
    return None


def _ship_package(options: PipelineOptions, runner: str, default_setup_file) -> None:
    setup = options.view_as(SetupOptions)
    if setup.setup_file:
        if _is_local_path(setup.setup_file) and not os.path.isfile(setup.setup_file):
            raise OptionsError(f"--setup_file={setup.setup_file} does not exist")
        return
    if _custom_image(options, runner):
        return
    if (options.view_as(PortableOptions).environment_type or "").upper() == "LOOPBACK":
        return  # the workers are this very process: paybeam is already importable
    if default_setup_file is None or not Path(default_setup_file).is_file():
        raise OptionsError(f"{runner} workers must install paybeam, but no setup.py was found next to the "
                           "installed package: pass --setup_file=/path/to/paybeam/setup.py, or "
                           "--sdk_container_image=IMAGE (or DOCKER --environment_config=IMAGE) with paybeam "
                           "already installed in the image")
    setup.setup_file = str(default_setup_file)
