"""paybeam's rules for a PrismRunner run: which Prism binary it uses (the one `make engine-prism`
built, since Beam's default download is not reachable here), one Prism per run, and stateful
bundles that Prism never splits (`keep_stateful_bundles_whole`)."""
from __future__ import annotations

import os
from pathlib import Path

from apache_beam.options.pipeline_options import DebugOptions, PipelineOptions, PortableOptions, PrismRunnerOptions

from runners import engine_cache
from runners.beam_flags import OptionsError, is_local_path


def check_prism(options: PipelineOptions) -> None:
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
    if is_local_path(location) and not os.path.exists(location):
        raise OptionsError(f"--prism_location={location} does not exist; point it at a Prism binary (or its zip), "
                           "or run `make engine-prism` and omit the flag")


# Prism 2.77 splits a bundle that shows no progress between two of its 100 ms progress ticks, and
# its split (engine/elementmanager.go: splitBundle) frees the key of every element it hands back
# while the primary bundle still processes that key. A second bundle of the same key then runs
# at once, each reads the key's state as committed before either, and the one committed last
# overwrites the other's writes: a stateful DoFn loses state (a live shard lost one bundle's
# payments: UNEXPECTED_SETTLEMENT instead of MATCHED, docs/DESIGN.md 7). Prism reads this
# experiment from any pipeline it runs; it stops only those progress-driven splits (a splittable
# DoFn's own checkpoints still return residuals).
NO_PROGRESS_SPLITS = "prism_disable_sdf_split"


def keep_stateful_bundles_whole(options: PipelineOptions) -> None:
    """Runs that may execute on Prism (PrismRunner, a Job API endpoint, the DirectRunner's Prism
    attempt) get NO_PROGRESS_SPLITS."""
    options.view_as(DebugOptions).add_experiment(NO_PROGRESS_SPLITS)


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
