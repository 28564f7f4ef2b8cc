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

Unbounded runs on a Job API runner (Prism, Flink, Portable) get a job-service deadline of ten years
(`--job_server_timeout`, see JOB_API_RUNNERS) unless the user gives one; FlinkRunner runs get the
cached Flink job server (runners/flink_options.py: flink_job_server_defaults), said once on stderr.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Union

from apache_beam.options.pipeline_options import (
    DirectOptions,
    GoogleCloudOptions,
    PipelineOptions,
    PortableOptions,
    SetupOptions,
    StandardOptions,
    WorkerOptions,
)

from runners import presets
from runners.beam_flags import OptionsError, flag_name, is_local_path, raw_values
from runners.direct_threads import direct_thread_args
from runners.environments import check_environment, default_sdk_image
from runners.flink_options import (
    JOB_SERVER_OPTIONS as FLINK_JOB_SERVER_OPTIONS,
)
from runners.flink_options import (
    check_flink,
    check_flink_versions,
    flink_batch_defaults,
    flink_job_server_defaults,
    flink_streaming_defaults,
    runs_on_embedded_flink,
)
from runners.prism_options import check_prism, keep_stateful_bundles_whole
from transforms.daily_totals import SettlementDay, TriggerPolicy

WORKER_PLUGIN = "schemas.worker_plugin"
RUNNERS = ("DirectRunner", "PrismRunner", "FlinkRunner", "PortableRunner", "DataflowRunner")
REMOTE_RUNNERS = ("FlinkRunner", "PortableRunner", "DataflowRunner")
_RUNNER_ALIASES = {name.lower(): name for name in RUNNERS}
_RUNNER_ALIASES.update({name[: -len("Runner")].lower(): name for name in RUNNERS})
# Java-side options a runner's job server declares: Beam's portable runner learns them at submission.
JOB_SERVER_OPTIONS = {"FlinkRunner": FLINK_JOB_SERVER_OPTIONS, "PortableRunner": FLINK_JOB_SERVER_OPTIONS}
# Runners that talk to a job service through Beam's portable runner. Beam 2.77 uses
# --job_server_timeout (default 300 s) as the gRPC deadline of every Job API call, the job's state and
# message streams included (portable_runner.py, JobServiceHandle.run): an unbounded run ends after
# 300 s with DEADLINE_EXCEEDED, even idle. So an unbounded run on them gets UNBOUNDED_JOB_SERVER_TIMEOUT
# unless the user gives --job_server_timeout (docs/DESIGN.md 6).
JOB_API_RUNNERS = ("PrismRunner", "FlinkRunner", "PortableRunner")
# Ten years in seconds: "until stopped". Beam declares the flag an int and passes it to gRPC as a
# timeout in seconds (no "infinite" value); this one stays far from any overflow (and fits an int32
# where a job server reads it back as an option).
UNBOUNDED_JOB_SERVER_TIMEOUT = 10 * 365 * 24 * 3600
_SAID: set = set()


def job_server_timeout_defaults(runner: str, beam_args: Sequence[str], streaming: bool) -> List[str]:
    """`--job_server_timeout=UNBOUNDED_JOB_SERVER_TIMEOUT` for an unbounded run on a Job API runner
    that does not set it (bounded and batch runs keep Beam's 300 s)."""
    if not streaming or runner not in JOB_API_RUNNERS or raw_values(beam_args, "job_server_timeout"):
        return []
    return [f"--job_server_timeout={UNBOUNDED_JOB_SERVER_TIMEOUT}"]


def _say_once(line: Optional[str]) -> None:
    """A default paybeam chose for the user, said once per process on stderr (a backfill builds the
    options of every job)."""
    if line and line not in _SAID:
        _SAID.add(line)
        print(line, file=sys.stderr)


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
            after_allowed_flag = flag_name(arg) in job_server_options and "=" not in arg
            if flag_name(arg) not in job_server_options:
                result.append(arg)
        elif after_allowed_flag:
            after_allowed_flag = False  # the value of `--checkpointing_interval 60000`
        else:
            result.append(arg)
    return result


_DEFAULT = object()
# The DirectRunner tries Prism first when Beam finds one; a PortableRunner's --job_endpoint may be a Prism.
RUNNERS_THAT_MAY_RUN_ON_PRISM = ("DirectRunner", "PrismRunner", "PortableRunner")


def build_pipeline_options(
    runner: str,
    beam_args: Sequence[str] = (),
    streaming: bool = False,
    *,
    setup_file: Union[str, os.PathLike, None, object] = _DEFAULT,
    direct_threads: int = 1,
    chunk_bundles: bool = False,
    worker_pool: Optional[str] = None,
) -> PipelineOptions:
    """PipelineOptions for `runner` plus the user's pass-through Beam flags.

    Raises OptionsError for an unknown runner or flag, a bad value, or a combination
    that cannot work. `setup_file` is what remote runners ship when the user did not
    say otherwise (default: paybeam's own setup.py, `presets.default_setup_file()`;
    None means there is none, so the user must pass --setup_file or a custom image).
    `direct_threads` > 1 gives a batch DirectRunner run that many worker threads unless the user chose
    (runners/direct_threads.py). `chunk_bundles`: the run's elements are Arrow chunks of many records, and
    an unbounded Flink run gives each its own bundle (runners/flink_options.py). `worker_pool`: HOST:PORT of
    the run's own `local_worker_pool` (runners/worker_pool.py), whose harnesses run paybeam as installed here:
    the workers are its processes (EXTERNAL), nothing is shipped to them.
    """
    runner = canonical_runner(runner)
    beam_args = list(beam_args)
    if worker_pool is not None:
        beam_args += ["--environment_type=EXTERNAL", f"--environment_config={worker_pool}"]
    unknown = unknown_beam_args(beam_args, runner)
    if unknown:
        raise OptionsError(f"unknown option(s): {' '.join(unknown)} (neither Beam nor {runner} defines it; "
                           f"`paybeam runners` lists each runner's flags)")
    check_flink_versions(beam_args)
    try:
        _beam_argument_parser().parse_known_args(beam_args)
    except argparse.ArgumentError as error:
        raise OptionsError(str(error)) from None

    job_server_defaults, job_server_note = flink_job_server_defaults(runner, beam_args)
    args = [f"--runner={runner}", *beam_args, *flink_streaming_defaults(runner, beam_args, streaming, chunk_bundles),
            *flink_batch_defaults(runner, beam_args, streaming), *job_server_defaults,
            *job_server_timeout_defaults(runner, beam_args, streaming),
            *direct_thread_args(runner, beam_args, streaming, direct_threads)]
    if streaming and "--streaming" not in beam_args:
        args.append("--streaming")
    options = PipelineOptions(args)
    if options.view_as(StandardOptions).runner != runner:
        raise OptionsError(f"--runner is set by paybeam's own --runner option, not as a Beam flag "
                           f"(got both {runner} and {options.view_as(StandardOptions).runner})")

    if runner in RUNNERS_THAT_MAY_RUN_ON_PRISM:
        keep_stateful_bundles_whole(options)
    if runner == "DirectRunner":
        _check_direct(options)
    elif runner == "PrismRunner":
        check_prism(options)
    elif runner == "FlinkRunner":
        check_flink(options, beam_args, streaming)
    elif runner == "PortableRunner":
        _check_portable(options, beam_args)
    elif runner == "DataflowRunner":
        _check_dataflow(options)
    if runner in REMOTE_RUNNERS and worker_pool is None:
        _ship_package(options, runner, presets.default_setup_file() if setup_file is _DEFAULT else setup_file)
    if runner in REMOTE_RUNNERS or worker_pool is not None:
        # SDK workers in processes of their own import this at start-up, so they decode rows into paybeam's
        # record classes rather than generated tuples (schemas/stable_schema.py).
        setup = options.view_as(SetupOptions)
        setup.beam_plugins = [*(setup.beam_plugins or []), WORKER_PLUGIN]
    _say_once(job_server_note)
    return options


def workers_share_this_disk(runner: str, beam_args: Sequence[str] = ()) -> bool:
    """Whether every Python SDK worker of the run runs on this machine, so sees its local files: the
    DirectRunner's (threads or child processes), and LOOPBACK workers (this very process), which Prism and
    the embedded Flink ([auto]/[local]) get when no --environment_type is given, as Beam does."""
    runner = canonical_runner(runner)
    if runner == "DirectRunner":
        return True
    given = [value.upper() for value in raw_values(beam_args, "environment_type")]
    if given:
        return given[-1] == "LOOPBACK"
    if runner == "PrismRunner":
        return True
    return runner == "FlinkRunner" and runs_on_embedded_flink(beam_args)


def loopback_by_default(runner: str, beam_args: Sequence[str] = ()) -> bool:
    """Whether the run's Python workers would be threads of this process because no --environment_type was
    given (Prism, the embedded Flink): those a `local_worker_pool` may run as processes instead."""
    return (not raw_values(beam_args, "environment_type") and canonical_runner(runner) != "DirectRunner"
            and workers_share_this_disk(runner, beam_args))


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


def _check_portable(options: PipelineOptions, beam_args: Sequence[str]) -> None:
    if not options.view_as(PortableOptions).job_endpoint:
        raise OptionsError("PortableRunner needs --job_endpoint=HOST:PORT of a running job service (a Flink job "
                           "server, or python -m apache_beam.runners.portability.local_job_service_main --port P)")
    check_environment(options, "PortableRunner")


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
        if image and image != default_sdk_image():
            return image
    return None


def _ship_package(options: PipelineOptions, runner: str, default_setup_file) -> None:
    setup = options.view_as(SetupOptions)
    if setup.setup_file:
        if is_local_path(setup.setup_file) and not os.path.isfile(setup.setup_file):
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
