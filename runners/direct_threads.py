"""How many worker threads a batch run on the DirectRunner gets when the user does not say (docs/DESIGN.md 9.4).

The DirectRunner (Beam's FnApiRunner) runs one in-process worker unless told
`--direct_num_workers=N --direct_running_mode=multi_threading`; with threads it
splits each stage's input between them (stateful stages stay whole). Arrow does
the columnar engine's work outside the GIL, so threads pay on enough shards
and cost start-up below that (measured 2026-12-05 on 2 cores: 300k payments,
2 shards, +0.4 s; 600k, 4 shards, even; 1M, 6 shards, -0.5 s; 10M -19 s). The
per-element engine is Python under the GIL: threads only add (50k payments,
34 -> 57 s and 23 GB), so it keeps one worker.
"""
from __future__ import annotations

import os
from typing import List, Sequence

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from runners.beam_flags import raw_values

MIN_SHARDS_FOR_THREADS = 4
MAX_DEFAULT_THREADS = 2  # measured on 2 cores only; more is the user's --direct_num_workers


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_direct_threads(engine: str, shards: int, cores: int) -> int:
    """Worker threads for a batch run of `engine` over `shards` shards on `cores` cores."""
    if engine != "columnar" or shards < MIN_SHARDS_FOR_THREADS:
        return 1
    return max(1, min(cores, MAX_DEFAULT_THREADS))


def direct_thread_args(runner: str, beam_args: Sequence[str], streaming: bool, threads: int) -> List[str]:
    """The DirectRunner flags that give a batch run `threads` worker threads, unless the user chose the
    workers or the running mode."""
    chosen = raw_values(beam_args, "direct_num_workers") or raw_values(beam_args, "direct_running_mode")
    if runner != "DirectRunner" or streaming or threads <= 1 or chosen:
        return []
    return ["--direct_running_mode=multi_threading", f"--direct_num_workers={threads}"]


def workers_of(options: PipelineOptions) -> str:
    """What ran the job's Python, for run.json: on the DirectRunner "in-process", "N threads" or "N processes"
    (its running mode); other runners' workers are the runner's own ("runner")."""
    if options.view_as(StandardOptions).runner != "DirectRunner":
        return "runner"
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode == "in_memory":
        return "in-process"
    count = direct.direct_num_workers
    kind = "thread" if direct.direct_running_mode == "multi_threading" else "process"
    return f"{count} {kind}{'' if count == 1 else ('s' if kind == 'thread' else 'es')}"
