"""Starts Beam's Java SDK harness for a PROCESS environment: what Beam's Java container boot program
(sdks/java/container/boot.go) does, without the container (no Docker engine here).

The runner (Flink's ProcessEnvironmentFactory, Prism) starts the environment's command
(deploy/java_harness_boot.sh) with `--id` and `--provision_endpoint` (Prism quotes the id:
`--id='job-001[job]_…'`); FnHarness.main reads what the provision service says from environment
variables (runners/harness_provision.py). Its classpath is the expansion service's jars
(deploy/fetch/kafka_expansion.sh: KafkaIO + SDK harness at KAFKA_JAVA_BEAM_VERSION), not staged
artifacts, so the Java transforms run at the version that expanded them.
"""
from __future__ import annotations

import os
import sys
from typing import List, Optional, Sequence

from runners.harness_provision import boot_environment

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


def java_command(classpath: str) -> List[str]:
    return ["java", *_JVM_FLAGS, "-cp", classpath, "org.apache.beam.fn.harness.FnHarness"]


def main(argv: Optional[Sequence[str]] = None) -> None:
    env = boot_environment(argv, __doc__.splitlines()[0])
    command = java_command(_classpath())
    os.execvpe(command[0], command, {**os.environ, **env})  # the runner watches (and stops) this process


if __name__ == "__main__":
    main(sys.argv[1:])
