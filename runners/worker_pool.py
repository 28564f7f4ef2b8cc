"""`paybeam worker-pool`: a Python SDK worker pool for EXTERNAL environments (the sidecar of a Flink
TaskManager, or of a portable job service) whose harnesses start like the Beam SDK container's
(runners/python_harness_boot.py): with the job's pipeline options and plugins, not as Beam's bare
`worker_pool_main` starts them.

`local_worker_pool`: the same pool inside a run, on this machine's loopback interface only, for a run whose
workers would otherwise be LOOPBACK threads of the launching process: each environment of the pipeline then
gets a Python process of its own (transforms/worker_process.py, docs/DESIGN.md 10.13).
"""
from __future__ import annotations

import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Tuple

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


@contextmanager
def local_worker_pool() -> Iterator[str]:
    """A worker pool for the length of a run, reachable from this machine only (a pool starts whatever harness
    it is asked to, connected to whatever runner asks: never on a public interface); yields its HOST:PORT.
    On leaving, its harness processes are stopped; if this process is killed instead, they end with their runner's
    control stream (runners/python_harness_boot.py)."""
    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2_grpc
    from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer, kill_process_gracefully
    from apache_beam.utils import thread_pool_executor

    pool = BeamFnExternalWorkerPoolServicer(use_process=True, container_executable=harness_boot_command())
    server = grpc.server(thread_pool_executor.shared_unbounded_instance())
    port = server.add_insecure_port("127.0.0.1:0")
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(pool, server)
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)
        # A runner stops the workers it started (StopWorker) when its job ends, not when it is cancelled or dies.
        for process in list(pool._worker_processes.values()):  # Beam keeps no other handle on them
            kill_process_gracefully(process)
