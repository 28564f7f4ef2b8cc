"""Starts Beam's Python SDK harness the way Beam's SDK container boot program does
(sdks/python/container/boot.go), without the container: for `paybeam worker-pool`
(runners/worker_pool.py), which runs it as its pool's container executable.

What it adds over the harness a bare `worker_pool_main` starts (`python -c "SdkHarness(…).run()"`):
the job's pipeline options reach the harness, so it imports the `--beam_plugins` paybeam sets
(`schemas.worker_plugin`, registering every record's stable schema id) *before* it decodes a row,
sends its logs to the runner, and honours the options' log levels and state cache. A bare harness
registers a record class only when it happens to unpickle a transform that imports it; if its first
bundle decodes a row before that, Beam makes a generated `BeamSchema_<id>` type for the id, keeps it
for the life of the process, and every `isinstance(record, PaymentEvent)` in that worker is False
(docs/DESIGN.md 7). Staged packages are not installed: paybeam runs as installed beside this boot.

Two things a harness in a pool of processes needs that Beam's in-process workers do not: its stdout, a pipe
Beam's pool never reads, goes to stderr, so a full pipe cannot stop it; and its metrics' short ids are its
own (`distinct_short_ids`). It does not ask the kernel to end it with its parent: PR_SET_PDEATHSIG fires
when the parent *thread* that started it ends, and pools start harnesses from pool threads (a Flink
TaskManager's harnesses were killed mid-job, 2026-12-07); a harness ends when its runner's control stream
does, which a killed launcher's run ends too (tests/test_risk_stream.py).
"""
from __future__ import annotations

import os
import secrets
import sys
from typing import Optional, Sequence

from runners.harness_provision import boot_environment

_SHORT_ID_SPACE_BITS = 20  # metrics a harness may name before its ids could reach another harness's range


def main(argv: Optional[Sequence[str]] = None) -> None:
    environment = boot_environment(argv, __doc__.splitlines()[0])  # --help prints to stdout before this
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    os.environ.update(environment)
    distinct_short_ids()
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main([])


def distinct_short_ids() -> None:
    """Starts this process's metric short ids at a random point of a 64-bit space.

    A harness names each metric it reports by a short id counted from 1 in its process, and Prism (2.77) keeps
    one table of them per job: two harness processes of one job (a pipeline with two environments,
    docs/DESIGN.md 10.13) gave the same id to different metrics, and Prism, decoding one's counter as the other's
    distribution, panicked ("error decoding metrics beam:metric:sampled_byte_size:v1 … EOF"). In-process
    harnesses share one cache, which is why LOOPBACK never showed it."""
    import apache_beam
    from apache_beam.runners.worker import sdk_worker

    from transforms.state_cache import refuse_unpatched_beam

    refuse_unpatched_beam("runners/python_harness_boot.py sets Beam's metric short-id counter",
                          "Prism with two harness processes (docs/DESIGN.md 7)", apache_beam.__version__,
                          [] if hasattr(getattr(sdk_worker, "SHORT_ID_CACHE", None), "_last_short_id")
                          else ["sdk_worker.SHORT_ID_CACHE._last_short_id"])
    sdk_worker.SHORT_ID_CACHE._last_short_id = secrets.randbits(64 - _SHORT_ID_SPACE_BITS) << _SHORT_ID_SPACE_BITS


if __name__ == "__main__":
    main(sys.argv[1:])
