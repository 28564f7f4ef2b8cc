"""Turns `--runner` plus pass-through Beam flags into PipelineOptions.

Unknown flags are an error, not a warning: Beam silently discards what it
cannot parse, and a typo such as `--flink_mster` would otherwise run the job
somewhere the user did not intend.
"""
from __future__ import annotations

import argparse
from typing import List, Sequence

from apache_beam.options.pipeline_options import PipelineOptions

RUNNERS = ("DirectRunner", "PrismRunner", "FlinkRunner", "PortableRunner", "DataflowRunner")
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
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
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


def unknown_beam_args(beam_args: Sequence[str], runner: str = "DirectRunner") -> List[str]:
    """The flags in `beam_args` that neither Beam's Python options nor the runner's job server define."""
    _, unknown = _beam_argument_parser().parse_known_args(list(beam_args))
    job_server_options = JOB_SERVER_OPTIONS.get(canonical_runner(runner), ())
    return [arg for arg in unknown
            if arg.lstrip("-").split("=", 1)[0].replace("-", "_") not in job_server_options]


def build_pipeline_options(runner: str, beam_args: Sequence[str] = (), streaming: bool = False) -> PipelineOptions:
    """PipelineOptions for `runner` plus the user's pass-through Beam flags."""
    unknown = unknown_beam_args(beam_args, runner)
    if unknown:
        raise OptionsError(f"unknown option(s): {' '.join(unknown)}")
    args = [f"--runner={canonical_runner(runner)}", *beam_args]
    if streaming:
        args.append("--streaming")
    return PipelineOptions(args)
