"""Starts Beam's Java SDK harness for a PROCESS environment: what Beam's Java container boot program
(sdks/java/container/boot.go) does, without the container (no Docker engine here).

The runner (Flink's ProcessEnvironmentFactory, Prism) starts the environment's command
(deploy/java_harness_boot.sh) with `--id` and `--provision_endpoint` (Flink adds the other endpoints,
Prism does not; Prism quotes the id: `--id='job-001[job]_…'`). The provision service says where the
control and logging services are and which pipeline options apply; FnHarness.main reads them from
HARNESS_ID, CONTROL_API_SERVICE_DESCRIPTOR, LOGGING_API_SERVICE_DESCRIPTOR (text protos),
PIPELINE_OPTIONS (JSON) and RUNNER_CAPABILITIES. Its classpath is the expansion service's jars
(deploy/fetch/kafka_expansion.sh: KafkaIO + SDK harness at KAFKA_JAVA_BEAM_VERSION), not staged
artifacts, so the Java transforms run at the version that expanded them.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Optional, Sequence

CLASSPATH_ENV = "PAYBEAM_JAVA_HARNESS_CLASSPATH"
# Java 17: the harness's coders and memory estimator reflect into these (boot.go opens them too).
_JVM_FLAGS = ["-Xmx512m"] + [f"--add-opens=java.base/{package}=ALL-UNNAMED"
                              for package in ("java.lang", "java.util", "java.nio", "sun.nio.ch")]


def _classpath() -> str:
    if os.environ.get(CLASSPATH_ENV):
        return os.environ[CLASSPATH_ENV]
    from runners.engine_cache import fetched, pinned_versions

    engine = fetched(f"kafka-java-beam-{pinned_versions()['KAFKA_JAVA_BEAM_VERSION']}", make_target="engine-kafka-java")
    return str(engine / "expansion" / "*")


def _descriptor(url: str) -> str:
    return f'url: "{url}"'


def harness_environment(worker_id: str, provision_endpoint: str, fallback: Dict[str, str]) -> Dict[str, str]:
    """FnHarness's environment variables, from the runner's provision service."""
    import grpc
    from apache_beam.portability.api import beam_provision_api_pb2, beam_provision_api_pb2_grpc
    from google.protobuf import json_format

    with grpc.insecure_channel(provision_endpoint) as channel:
        info = beam_provision_api_pb2_grpc.ProvisionServiceStub(channel).GetProvisionInfo(
            beam_provision_api_pb2.GetProvisionInfoRequest(), metadata=[("worker_id", worker_id)]).info
    env = {"HARNESS_ID": worker_id,
           "CONTROL_API_SERVICE_DESCRIPTOR": _descriptor(info.control_endpoint.url or fallback["control"]),
           "LOGGING_API_SERVICE_DESCRIPTOR": _descriptor(info.logging_endpoint.url or fallback["logging"]),
           "PIPELINE_OPTIONS": json_format.MessageToJson(info.pipeline_options),
           "RUNNER_CAPABILITIES": " ".join(info.runner_capabilities)}
    if info.status_endpoint.url:
        env["STATUS_API_SERVICE_DESCRIPTOR"] = _descriptor(info.status_endpoint.url)
    return env


def java_command(classpath: str) -> List[str]:
    return ["java", *_JVM_FLAGS, "-cp", classpath, "org.apache.beam.fn.harness.FnHarness"]


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--id", required=True)
    parser.add_argument("--provision_endpoint", required=True)
    parser.add_argument("--control_endpoint", default="")
    parser.add_argument("--logging_endpoint", default="")
    args, _unused = parser.parse_known_args(argv)  # --artifact_endpoint, --semi_persist_dir: not needed
    worker_id = args.id.strip("'")
    env = harness_environment(worker_id, args.provision_endpoint,
                              {"control": args.control_endpoint, "logging": args.logging_endpoint})
    command = java_command(_classpath())
    os.execvpe(command[0], command, {**os.environ, **env})  # the runner watches (and stops) this process


if __name__ == "__main__":
    main(sys.argv[1:])
