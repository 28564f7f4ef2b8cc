"""What each runner needs, its defaults, and the text of `paybeam runners` (docs/DESIGN.md 6).

`runners.options.build_pipeline_options` enforces the requirements listed
here (each runner's rules in its own module: flink_options.py, prism_options.py,
environments.py); this module only describes them and says where setup.py is.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from runners.environments import default_sdk_image
from runners.flink_options import DEFAULT_FLINK_VERSION, FLINK_VERSIONS


def default_setup_file() -> Optional[Path]:
    """The paybeam setup.py next to the installed packages (the repo root in a checkout or an
    editable install); None when paybeam was installed from a wheel and no setup.py exists."""
    import runners

    candidate = Path(runners.__file__).resolve().parents[1] / "setup.py"
    return candidate if candidate.is_file() else None


@dataclass(frozen=True)
class RunnerPreset:
    name: str
    summary: str
    use_when: str
    needs: Tuple[str, ...]
    optional: Tuple[str, ...] = ()
    remote: bool = False  # code runs in other processes/machines: paybeam must be shipped (--setup_file)
    streaming: bool = True


PRESETS = (
    RunnerPreset(
        name="DirectRunner",
        summary="local, in memory (default). Beam tries Prism first and falls back to the Python "
                "Fn API runner (batch) or the bundle-based runner (TestStream).",
        use_when="laptops, CI, files up to a few million records, `paybeam stream --bounded`.",
        needs=("nothing",),
        optional=("--direct_running_mode=in_memory|multi_threading|multi_processing",
                  "--direct_num_workers=N (N >= 1; multi_processing moves state reads onto gRPC: slower for paybeam)"),
        streaming=False,
    ),
    RunnerPreset(
        name="PrismRunner",
        summary="Beam's portable local runner (a Go binary) with real streaming: watermarks, "
                "processing-time triggers, unbounded Kafka reads.",
        use_when="trying unbounded `paybeam stream` locally before Flink.",
        needs=("the Prism binary: `make engine-prism` builds it with Go (go install from the Go module",
               "proxy, at this Beam's version) into .cache/engines and paybeam uses it by default;",
               "or --prism_location=/path/to/prism (or its zip) built or downloaded elsewhere."),
        optional=("--prism_log_level=debug|info|warn|error",),
    ),
    RunnerPreset(
        name="FlinkRunner",
        summary="production: Beam's Flink job server translates the pipeline for a Flink cluster; "
                "Python code runs in SDK harnesses beside the task managers.",
        use_when="production batch and unbounded streaming.",
        needs=("--flink_master=HOST:PORT of the JobManager REST endpoint ([auto]/[local]: a local "
               "mini-cluster in the job server)",
               f"--flink_version={'|'.join(FLINK_VERSIONS)} (Beam's default {DEFAULT_FLINK_VERSION}, 1.19 with "
               "the cached job server; match the cluster)",
               "Java 11+ on the submitting machine to start the job server jar (the one `make engine-flink` "
               "cached, used by default; else Beam fetches it from Maven Central, which serves none for "
               "Beam 2.77; or --flink_job_server_jar=PATH for air-gapped machines), or --job_endpoint of "
               "a running Flink job server, or --flink_submit_uber_jar (needs a cluster flink_master)",
               "--environment_type: EXTERNAL --environment_config=HOST:PORT of a Python worker-pool "
               "sidecar (recommended on Kubernetes); PROCESS --environment_config='{\"command\":"
               "\"/opt/apache/beam/boot\"}'; DOCKER [--environment_config=IMAGE] (default "
               f"{default_sdk_image()}); LOOPBACK only with a local flink_master"),
        optional=("--parallelism=N", "--checkpointing_interval=MILLIS (streaming: enables exactly-once "
                  "state and Kafka commits on checkpoints)", "--max_parallelism=N", "--state_backend=…",
                  "other Java FlinkPipelineOptions (checkpointing_mode, savepoint_path, …)"),
        remote=True,
    ),
    RunnerPreset(
        name="PortableRunner",
        summary="any Beam job service speaking the Job API (a Flink/Spark job server, or Beam's "
                "Python local job service).",
        use_when="a job server someone else runs; the tests' Flink-like topology without Flink.",
        needs=("--job_endpoint=HOST:PORT of the job service",
               "--environment_type as for Flink (EXTERNAL worker pool, PROCESS, DOCKER, LOOPBACK)"),
        optional=("Flink's Java-side options pass through when the job service is Flink's",),
        remote=True,
    ),
    RunnerPreset(
        name="DataflowRunner",
        summary="Google Cloud Dataflow (the gcp extra is installed).",
        use_when="running on Google Cloud instead of a Flink cluster.",
        needs=("--project=PROJECT", "--region=REGION (e.g. europe-west1)",
               "--temp_location=gs://BUCKET/tmp", "Google credentials (gcloud auth application-default login)"),
        optional=("--staging_location=gs://…", "--sdk_container_image=IMAGE (with paybeam installed; "
                  "skips --setup_file)", "--max_num_workers=N", "--service_account_email=…"),
        remote=True,
    ),
)
PRESETS_BY_NAME = {preset.name: preset for preset in PRESETS}


def _wrap(text: str, indent: str, subsequent: str = "") -> list:
    return textwrap.wrap(text, width=100, initial_indent=indent, subsequent_indent=subsequent or indent,
                         break_long_words=False, break_on_hyphens=False)


def describe_runners() -> str:
    """The text `paybeam runners` prints: every runner, when to use it, and what it needs."""
    lines = ["paybeam runs on these Beam runners (--runner=NAME; short forms like `flink` work).",
             "Anything not a paybeam option is passed to Beam; unknown flags are errors.", ""]
    for preset in PRESETS:
        lines.append(f"{preset.name}")
        lines.extend(_wrap(preset.summary, "  "))
        lines.extend(_wrap(f"use for: {preset.use_when}", "  "))
        if not preset.streaming:
            lines.append("  unbounded streaming: no (use --bounded, or TestStream in tests)")
        lines.append("  needs:")
        for item in preset.needs:
            lines.extend(_wrap(item, "    ", "      "))
        if preset.optional:
            lines.append("  optional:")
            for item in preset.optional:
                lines.extend(_wrap(item, "    ", "      "))
        lines.append("")
    setup_file = default_setup_file()
    lines += [
        "Remote runners (Flink, Portable, Dataflow) get --setup_file="
        f"{setup_file if setup_file else '<not found: pass --setup_file or a custom image>'}",
        "so the workers install paybeam; pass --setup_file=PATH yourself, or --sdk_container_image=IMAGE /",
        "--environment_config=IMAGE (DOCKER) with an image that already contains paybeam, to change that.",
        "`paybeam stream` adds --streaming for unbounded runs.",
    ]
    return "\n".join(lines)

