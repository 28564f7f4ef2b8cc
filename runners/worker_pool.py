"""`paybeam worker-pool`: a Python SDK worker pool for EXTERNAL environments (the sidecar of a Flink
TaskManager, or of a portable job service) whose harnesses start like the Beam SDK container's
(runners/python_harness_boot.py): with the job's pipeline options and plugins, not as Beam's bare
`worker_pool_main` starts them.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Tuple

HARNESS_BOOT = "paybeam-sdk-harness"  # setup.py's console script for runners/python_harness_boot.py


class HarnessBootMissing(RuntimeError):
    pass


def harness_boot_command() -> str:
    """The boot program's path: beside this interpreter (a virtualenv's bin), else on PATH."""
    beside = Path(sys.executable).parent / HARNESS_BOOT
    found = str(beside) if beside.is_file() else shutil.which(HARNESS_BOOT)
    if not found:
        raise HarnessBootMissing(f"{HARNESS_BOOT} is not installed beside {sys.executable} nor on PATH: "
                                 "reinstall paybeam (pip install -e .)")
    return found


def serve(port: int) -> Tuple[str, object]:
    """Starts the pool on `port` (0: a free one); returns its HOST:PORT and the gRPC server to stop."""
    from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer

    return BeamFnExternalWorkerPoolServicer.start(port=port, use_process=True,
                                                  container_executable=harness_boot_command())
