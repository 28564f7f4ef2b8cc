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


def unknown_beam_args(beam_args: Sequence[str]) -> List[str]:
    """The flags in `beam_args` that no Beam PipelineOptions class defines."""
    _, unknown = _beam_argument_parser().parse_known_args(list(beam_args))
    return list(unknown)


def build_pipeline_options(runner: str, beam_args: Sequence[str] = (), streaming: bool = False) -> PipelineOptions:
    """PipelineOptions for `runner` plus the user's pass-through Beam flags."""
    unknown = unknown_beam_args(beam_args)
    if unknown:
        raise OptionsError(f"unknown option(s): {' '.join(unknown)}")
    args = [f"--runner={canonical_runner(runner)}", *beam_args]
    if streaming:
        args.append("--streaming")
    return PipelineOptions(args)
