"""Beam's Prism runner as a real process for tests (docs/DESIGN.md 6): the binary that
`make engine-prism` built, started once per session and shared by the pipelines that name its
job endpoint (PrismRunner with --job_endpoint submits there instead of starting its own Prism)."""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import List, Optional

from apache_beam.options.pipeline_options import PipelineOptions

from runners.options import OptionsError, build_pipeline_options
from runners.prism_options import fetched_prism_binary

STARTUP_DEADLINE_SECONDS = 60


def prism_binary() -> Path:
    """The fetched binary; AssertionError (a test failure, not a skip) saying how to fetch it."""
    try:
        return fetched_prism_binary()
    except OptionsError as error:
        raise AssertionError(f"{error} (the Prism tests need it)") from None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


class PrismProcess:
    """`prism --job_port P` until stop(); its log (JSON lines) goes to `log_path`."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.port = _free_port()
        self.endpoint = f"localhost:{self.port}"
        self._process: Optional[subprocess.Popen] = None

    def start(self) -> "PrismProcess":
        command = [str(prism_binary()), "--job_port", str(self.port), "--serve_http=false",
                   "--log_kind", "json", "--log_level", "warn"]
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + STARTUP_DEADLINE_SECONDS
        while True:
            if self._process.poll() is not None:
                raise AssertionError(f"prism exited with {self._process.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection(("localhost", self.port), timeout=0.5):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"prism not listening after {STARTUP_DEADLINE_SECONDS}s:\n{self.log_tail()}")
                time.sleep(0.1)  # poll interval of the deadline loop

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)


def prism_args(endpoint: Optional[str] = None) -> List[str]:
    """paybeam CLI flags for PrismRunner, on the shared process when `endpoint` is given."""
    return ["--runner=PrismRunner"] + ([f"--job_endpoint={endpoint}"] if endpoint else [])


def prism_streaming_options(endpoint: str) -> PipelineOptions:
    """Options of a TestPipeline in streaming mode on the shared Prism (workers LOOPBACK, in this process)."""
    return build_pipeline_options("PrismRunner", [f"--job_endpoint={endpoint}"], streaming=True)


def on_prism(options: PipelineOptions) -> bool:
    """Whether a TestStream test's options (the `stream_options` fixture) run it on Prism."""
    from apache_beam.options.pipeline_options import StandardOptions

    return options.view_as(StandardOptions).runner == "PrismRunner"
