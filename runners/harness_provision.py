"""What an SDK harness needs to start, from the runner's provision service: the part of Beam's
container boot programs (sdks/{java,python}/container/boot.go) that paybeam's own boots share
(runners/java_harness_boot.py, runners/python_harness_boot.py).

The runner starts a boot with `--id` and `--provision_endpoint` (Flink adds the control and logging
endpoints, Prism does not). The provision service says where the control and logging services are
and which pipeline options apply; both harnesses read them from environment variables: the control
and logging descriptors as text protos, PIPELINE_OPTIONS as JSON, RUNNER_CAPABILITIES, and the
worker's id (HARNESS_ID for Java, WORKER_ID for Python).
"""
from __future__ import annotations

import argparse
from typing import Dict, Optional, Sequence

from apache_beam.portability.api import beam_provision_api_pb2


def _descriptor(url: str) -> str:
    return f'url: "{url}"'


def provision_info(provision_endpoint: str, worker_id: str) -> beam_provision_api_pb2.ProvisionInfo:
    import grpc
    from apache_beam.portability.api import beam_provision_api_pb2_grpc

    with grpc.insecure_channel(provision_endpoint) as channel:
        return beam_provision_api_pb2_grpc.ProvisionServiceStub(channel).GetProvisionInfo(
            beam_provision_api_pb2.GetProvisionInfoRequest(), metadata=[("worker_id", worker_id)]).info


def harness_environment(info: beam_provision_api_pb2.ProvisionInfo, worker_id: str,
                        fallback: Dict[str, str]) -> Dict[str, str]:
    """The harness's environment variables; `fallback` holds the control and logging endpoints the
    runner passed as flags, for a provision service that leaves them out."""
    from google.protobuf import json_format

    env = {"HARNESS_ID": worker_id, "WORKER_ID": worker_id,
           "CONTROL_API_SERVICE_DESCRIPTOR": _descriptor(info.control_endpoint.url or fallback["control"]),
           "LOGGING_API_SERVICE_DESCRIPTOR": _descriptor(info.logging_endpoint.url or fallback["logging"]),
           "PIPELINE_OPTIONS": json_format.MessageToJson(info.pipeline_options),
           "RUNNER_CAPABILITIES": " ".join(info.runner_capabilities)}
    if info.status_endpoint.url:
        env["STATUS_API_SERVICE_DESCRIPTOR"] = _descriptor(info.status_endpoint.url)
    return env


def boot_environment(argv: Optional[Sequence[str]], description: str) -> Dict[str, str]:
    """Parses the flags a runner starts a boot program with and returns the harness's environment
    variables. `--artifact_endpoint` and `--semi_persist_dir` are accepted and not used: paybeam's
    boots run the harness installed beside them, not staged artifacts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--id", required=True)
    parser.add_argument("--provision_endpoint", required=True)
    parser.add_argument("--control_endpoint", default="")
    parser.add_argument("--logging_endpoint", default="")
    args, _unused = parser.parse_known_args(argv)
    worker_id = args.id.strip("'")
    return harness_environment(provision_info(args.provision_endpoint, worker_id), worker_id,
                               {"control": args.control_endpoint, "logging": args.logging_endpoint})
