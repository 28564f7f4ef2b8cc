"""Where a portable runner's Python SDK workers run (--environment_type/--environment_config), for
FlinkRunner and PortableRunner alike: the checks and the default SDK container image."""
from __future__ import annotations

import json
import re
import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions, WorkerOptions

from runners.beam_flags import OptionsError

# Portable environment types a Python SDK harness can run in (Beam's --environment_type).
ENVIRONMENT_TYPES = ("DOCKER", "PROCESS", "EXTERNAL", "LOOPBACK")


def default_sdk_image() -> str:
    """Beam's Python SDK container image matching the installed Beam and Python, e.g.
    apache/beam_python3.11_sdk:2.77.0."""
    major, minor = sys.version_info[:2]
    version = beam.__version__.replace(".dev", "")  # dev builds have no published image; best effort
    return f"apache/beam_python{major}.{minor}_sdk:{version}"


def check_environment(options: PipelineOptions, runner: str) -> None:
    """EXTERNAL/PROCESS/DOCKER/LOOPBACK and their configs, for the portable runners."""
    portable = options.view_as(PortableOptions)
    if portable.environment_type is None:
        if portable.environment_config:
            raise OptionsError("--environment_config needs --environment_type (EXTERNAL, PROCESS or DOCKER)")
        return
    environment_type = portable.environment_type.upper()
    if environment_type not in ENVIRONMENT_TYPES:
        raise OptionsError(f"unsupported --environment_type={portable.environment_type} for {runner}; "
                           f"choose one of {', '.join(ENVIRONMENT_TYPES)}")
    portable.environment_type = environment_type
    config = portable.environment_config
    if environment_type == "EXTERNAL":
        address = config or portable.lookup_environment_option("external_service_address")
        if not address:
            raise OptionsError(f"{runner} with --environment_type=EXTERNAL needs "
                               "--environment_config=HOST:PORT of the Python worker pool "
                               "(python -m apache_beam.runners.worker.worker_pool_main --service_port PORT)")
        if not re.fullmatch(r"\[?[\w.:-]*\]?:\d+", address.strip()):
            raise OptionsError(f"--environment_config={address} is not HOST:PORT of a worker pool "
                               "(EXTERNAL environment)")
    elif environment_type == "PROCESS":
        if config:
            try:
                command = json.loads(config).get("command")
            except (ValueError, AttributeError):
                raise OptionsError("--environment_config for --environment_type=PROCESS must be JSON like "
                                   "'{\"command\": \"/opt/apache/beam/boot\"}'") from None
            if not command:
                raise OptionsError("--environment_config for PROCESS has no \"command\": give the SDK "
                                   "harness boot executable, e.g. '{\"command\": \"/opt/apache/beam/boot\"}'")
        elif not portable.lookup_environment_option("process_command"):
            raise OptionsError(f"{runner} with --environment_type=PROCESS needs "
                               "--environment_config='{\"command\": \"/path/to/boot\"}' "
                               "(the Beam SDK harness boot executable on every worker)")
    elif environment_type == "DOCKER":
        if not config and not portable.lookup_environment_option("docker_container_image"):
            portable.environment_config = (options.view_as(WorkerOptions).sdk_container_image
                                           or default_sdk_image())
    elif environment_type == "LOOPBACK" and config:
        raise OptionsError("--environment_type=LOOPBACK takes no --environment_config")
