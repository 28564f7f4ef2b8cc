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
"""
from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

from runners.harness_provision import boot_environment


def main(argv: Optional[Sequence[str]] = None) -> None:
    os.environ.update(boot_environment(argv, __doc__.splitlines()[0]))
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main([])


if __name__ == "__main__":
    main(sys.argv[1:])
