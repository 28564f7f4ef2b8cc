"""Every rule paybeam applies to a FlinkRunner run, in one place (docs/DESIGN.md 6 and 7): the Flink
versions Beam serves job servers for, the Java-side options the job server accepts, the checkpoint
rules of unbounded runs and the flags they get by default, and the checks of a Flink run's options.
(runners/flink_job_server.py runs the pipeline; runners/presets.py describes the runner.)"""
from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import List, Optional, Sequence, Tuple
from urllib.parse import unquote, urlparse

from apache_beam.options.pipeline_options import FlinkRunnerOptions, PipelineOptions, PortableOptions, StandardOptions

from runners import engine_cache
from runners.beam_flags import OptionsError, is_local_path, raw_values
from runners.environments import check_environment

# Beam 2.77 publishes Flink job servers for these (FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS).
FLINK_VERSIONS = ("1.19", "1.20", "2.0", "2.1", "2.2")
DEFAULT_FLINK_VERSION = "2.2"
# flink_master values that mean "no remote cluster": Beam starts or infers one locally.
FLINK_MAGIC_MASTERS = ("[auto]", "[local]")
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")

# Flink runner options defined on the Java side (FlinkPipelineOptions): Beam's
# portable runner learns them from the job server at submission, so no Python
# options class declares them. A name the job server does not describe is dropped
# without a word (Java's `maxBundleTimeMills` is `max_bundle_time_mills`, not
# `..._millis`): tests/test_runner_options.py checks every name against the jar.
JOB_SERVER_OPTIONS = (
    "parallelism", "max_parallelism", "checkpointing_interval", "checkpointing_mode",
    "checkpoint_timeout_millis", "min_pause_between_checkpoints",
    "number_of_execution_retries", "execution_retry_delay", "object_reuse", "state_backend",
    "state_backend_storage_path", "externalized_checkpoints_enabled",
    "retain_externalized_checkpoints_on_cancellation", "shutdown_sources_after_idle_ms",
    "auto_watermark_interval", "latency_tracking_interval", "max_bundle_size", "max_bundle_time_mills",
    "savepoint_path", "allow_non_restored_state", "finish_bundle_before_checkpointing",
    "unaligned_checkpoint_enabled", "fail_on_checkpointing_errors", "flink_conf_dir",
)
# An unbounded Flink run's earliest first checkpoint. On the served Flink runner (Beam Java 2.70) a
# checkpoint whose barrier reached a Kafka reader before its first bundle stopped that reader for good:
# no output, no error. Flink schedules the first checkpoint after a job (re)starts at a random delay
# between the minimum pause and the interval (CheckpointCoordinator.getRandomInitDelay), and the
# readers' first bundle comes about 2 s after the job starts here. So the interval and the minimum
# pause must both be at least this, and an unbounded run's minimum pause defaults to its interval:
# the first checkpoint then comes exactly one interval after each start (docs/DESIGN.md 7).
MIN_FLINK_STREAMING_CHECKPOINT_MILLIS = 10_000
# Job-server options whose value must be a positive integer (milliseconds or counts).
_POSITIVE_INT_JOB_SERVER_OPTIONS = ("checkpointing_interval", "checkpoint_timeout_millis",
                                    "min_pause_between_checkpoints", "max_bundle_size", "max_bundle_time_mills")


def _flink_master(beam_args: Sequence[str]) -> str:
    """The run's --flink_master (the last one given), `[auto]` when it gives none, as Beam defaults."""
    return (raw_values(beam_args, "flink_master") or ["[auto]"])[-1].strip()


def runs_on_embedded_flink(beam_args: Sequence[str]) -> bool:
    """The run's --flink_master is Beam's embedded Flink ([auto], the default, or [local])."""
    return _flink_master(beam_args) in FLINK_MAGIC_MASTERS


def _host_of(address: str) -> str:
    address = address.strip()
    if "://" not in address:
        address = "//" + address
    try:
        return (urlparse(address).hostname or "").lower()
    except ValueError:
        return ""


def _is_local_address(address: Optional[str]) -> bool:
    if address is None or address.strip() in FLINK_MAGIC_MASTERS:
        return True
    return _host_of(address) in LOCAL_HOSTS


# Where an unbounded run on the embedded Flink ([local]/[auto]) keeps its checkpoints. Flink's default
# there is the JobManager's memory, capped at 5 MB of state per task: beyond it every checkpoint fails
# and the job restarts for ever, silently (5,000 payments at parallelism 1). Each run gets its own
# directory under it, `run-<random>` (Flink makes `<job id>/chk-N` inside), which paybeam's Flink job
# server removes when it stops (runners/flink_job_server.py) unless the run asked to keep checkpoints
# (RETAINING_FLAGS); a run going on in parallel has its own directory (docs/runners.md).
LOCAL_FLINK_CHECKPOINTS = Path(tempfile.gettempdir()) / "paybeam-flink-checkpoints"
RUN_CHECKPOINTS_PREFIX = "run-"
# Java-side flags that ask Flink to keep a run's checkpoints after it ends: such a run's directory stays.
RETAINING_FLAGS = ("externalized_checkpoints_enabled", "retain_externalized_checkpoints_on_cancellation")


# An unbounded Flink run's longest bundle unless it sets --max_bundle_time_mills (Flink's default: 1,000 ms).
# Every stateful step of the live stream waits for its bundle to finish before its output moves on, so
# Flink's 1 s bundles added seconds to each result: at 100 pairs/s p50 3.9 -> 2.5 s and p99 8.6 -> 5.6 s with
# 100 ms bundles, and the catch-up rate was not lower (docs/benchmarks.md, 2026-12-04 midday).
FLINK_STREAMING_MAX_BUNDLE_MILLIS = 100

# The embedded Flink's configuration for unbounded runs (a `--flink_conf_dir` of paybeam's own). Flink sends
# a network buffer on when it is full or every `execution.buffer-timeout.interval` (100 ms by default): at
# a live stream's trickle every step to step hop waited for that timer. At 5 ms the live risk stream's
# chunks reached the first-arrivals step 71 ms after the reader emitted them instead of 122 ms (median;
# p50 / p99 0.49 / 0.79 s -> 0.41 / 0.71 s at 1,000 attempts/s, 2026-12-06, docs/benchmarks.md).
#
# Between two tasks Flink lets a producer queue at most `max-buffers-per-channel` network buffers (10 of 32 KB)
# for one consumer, and a task's output pool holds 2 per channel + `floating-buffers-per-gate` (8). A live
# columnar chunk is up to 20,000 records, 3-4 MB: the reading task could not hand on its next chunk until the
# deciding task had taken most of the last, and on Flink a stateful task takes nothing while its bundle runs.
# So the reader and the decider took turns instead of working at once (traced: both idle 0.6-2 s at a time
# in a backlog), and the live risk stream caught up at 14,900-15,000 attempts/s. Room for about three chunks
# (320 floating buffers a gate, 320 a channel, in 128 MB of network memory: 2,048 more buffers, taken only
# when a backlog fills them; the exclusive 2 a channel stay the default, so a higher parallelism needs no
# more memory): 18,300-20,100 (alternating, 2026-12-07, docs/benchmarks.md).
EMBEDDED_STREAMING_CONF = {
    "execution.buffer-timeout.interval": "5 ms",
    "taskmanager.network.memory.floating-buffers-per-gate": "320",
    "taskmanager.network.memory.max-buffers-per-channel": "320",
    "taskmanager.memory.network.min": "128mb",
    "taskmanager.memory.network.max": "128mb",
}

# An unbounded Flink run whose elements are Arrow chunks (the live columnar engines) closes a bundle after
# every element unless it sets --max_bundle_size: a stateful step's output leaves the Python worker only when
# its bundle finishes, so with 100 ms bundles a chunk waited 0.1-0.15 s at each step (Flink checks the
# bundle's age every half bundle time). The live risk stream at 1,000 attempts/s, embedded Flink p1:
# p50 / p99 0.36 / 0.69 s -> 0.20 / 0.46 s, catch-up not slower (9,394 -> 9,416 attempts/s; 2026-12-06,
# docs/benchmarks.md). A chunk holds many records, so a bundle's own cost is paid per chunk, not per
# record; the per-element engine keeps Flink's count (1,000).
FLINK_STREAMING_CHUNK_BUNDLE_SIZE = 1
LOCAL_FLINK_STREAMING_CONF_DIR = Path(tempfile.gettempdir()) / "paybeam-flink-streaming-conf"


def flink_streaming_defaults(runner: str, beam_args: Sequence[str], streaming: bool,
                             chunk_bundles: bool = False) -> List[str]:
    """Flags an unbounded Flink run gets unless it sets them: `--min_pause_between_checkpoints=<interval>`
    when it sets an interval, so that its first checkpoint is not drawn from [0, interval] (see above);
    bundles of at most FLINK_STREAMING_MAX_BUNDLE_MILLIS (and of FLINK_STREAMING_CHUNK_BUNDLE_SIZE elements with
    `chunk_bundles`: elements that are Arrow chunks); and, on the embedded Flink, the heap state backend
    (`filesystem`; `--state_backend=rocksdb` keeps the state on disk instead) checkpointing into a directory
    of its own under LOCAL_FLINK_CHECKPOINTS (a cluster has its own `state.checkpoints.dir`), and
    EMBEDDED_STREAMING_CONF unless the run names a `--flink_conf_dir` (a cluster's configuration is its own)."""
    if runner != "FlinkRunner" or not streaming:
        return []
    defaults = []
    if not raw_values(beam_args, "max_bundle_time_mills"):
        defaults.append(f"--max_bundle_time_mills={FLINK_STREAMING_MAX_BUNDLE_MILLIS}")
    if chunk_bundles and not raw_values(beam_args, "max_bundle_size"):
        defaults.append(f"--max_bundle_size={FLINK_STREAMING_CHUNK_BUNDLE_SIZE}")
    intervals = [value for value in raw_values(beam_args, "checkpointing_interval") if value.isdigit()]
    if intervals and not raw_values(beam_args, "min_pause_between_checkpoints"):
        defaults.append(f"--min_pause_between_checkpoints={intervals[-1]}")
    master = _flink_master(beam_args)
    if master in FLINK_MAGIC_MASTERS:
        if not raw_values(beam_args, "state_backend"):
            defaults.append("--state_backend=filesystem")
        # Either backend needs a storage path (Flink refuses `rocksdb` without one).
        if not raw_values(beam_args, "state_backend_storage_path"):
            run_directory = LOCAL_FLINK_CHECKPOINTS / f"{RUN_CHECKPOINTS_PREFIX}{uuid.uuid4().hex[:12]}"
            defaults.append(f"--state_backend_storage_path={run_directory.as_uri()}")
        if not raw_values(beam_args, "flink_conf_dir"):
            conf = write_flink_conf(LOCAL_FLINK_STREAMING_CONF_DIR, EMBEDDED_STREAMING_CONF)
            defaults.append(f"--flink_conf_dir={conf}")
    return defaults


# How many restarts of a batch job on a Flink cluster paybeam waits through unless the run sets
# --number_of_execution_retries (-1: the cluster's own strategy, however long). Beam 2.70's Flink batch
# translation ignores that flag (only its streaming environment sets a restart strategy), so a batch job runs
# with the cluster's strategy, and a cluster configured for streams restarts a failed job for ever: a batch
# failure no restart mends then never ends. One did: Beam's file sinks delete existing targets in PreFinalize
# and rename in FinalizeWrite, and a failover that reran PreFinalize after a finished FinalizeWrite failed
# every one of 500 restarts ("src and dst files do not exist", clean-clone CI, 2026-12-05). Past the limit
# paybeam cancels the job (runners/flink_job_server.py) and the run fails without publishing; three restarts
# outlive a lost TaskManager and its replacement (tests/test_flink_cluster.py).
FLINK_BATCH_MAX_RESTARTS = 3


def batch_restart_limit(options: PipelineOptions) -> Optional[int]:
    """The restarts a batch cluster job may take before paybeam gives up on it; None for an unbounded run
    (it resumes from its checkpoints after any failure) or when the run asked for the cluster's strategy."""
    if options.view_as(StandardOptions).streaming:
        return None
    value = options.get_all_options(retain_unknown_options=True).get("number_of_execution_retries")
    if value is None:
        return FLINK_BATCH_MAX_RESTARTS
    retries = int(value)
    return retries if retries >= 0 else None


# The embedded Flink's configuration for batch runs (a `--flink_conf_dir` of paybeam's own). Beam runs a
# GroupByKey on Flink batch as a combine into one list per key and task, then a sort of those lists: a
# shard's list is one record, and the embedded Flink's sort buffer refused records over 4.5 MB ("The
# record exceeds the maximum size of a sort buffer (current maximum: 4718592 bytes)", 1M payments).
# Flink's large-record handler spills such records instead (docs/DESIGN.md 7).
EMBEDDED_BATCH_CONF = {"taskmanager.runtime.large-record-handler": "true"}
LOCAL_FLINK_BATCH_CONF_DIR = Path(tempfile.gettempdir()) / "paybeam-flink-batch-conf"


def flink_batch_defaults(runner: str, beam_args: Sequence[str], streaming: bool) -> List[str]:
    """`--flink_conf_dir` with EMBEDDED_BATCH_CONF for a batch run on the embedded Flink that names no
    configuration of its own (a cluster's configuration is the cluster's: docs/operations.md)."""
    if runner != "FlinkRunner" or streaming or raw_values(beam_args, "flink_conf_dir"):
        return []
    if _flink_master(beam_args) not in FLINK_MAGIC_MASTERS:
        return []
    return [f"--flink_conf_dir={write_flink_conf(LOCAL_FLINK_BATCH_CONF_DIR, EMBEDDED_BATCH_CONF)}"]


def write_flink_conf(directory: Path, settings: dict) -> Path:
    """`directory`/flink-conf.yaml holding `settings`, replaced atomically (runs may start in parallel)."""
    directory.mkdir(parents=True, exist_ok=True)
    text = "# Written by paybeam (runners/flink_options.py).\n" + "".join(
        f"{key}: {value}\n" for key, value in sorted(settings.items()))
    partial = directory / f".flink-conf.yaml.{uuid.uuid4().hex}"
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, directory / "flink-conf.yaml")
    return directory


def run_checkpoint_directory(options: PipelineOptions) -> Optional[Path]:
    """The checkpoint directory paybeam gave this run (flink_streaming_defaults) if it is to be removed
    when the run ends: None when the user chose the storage path or asked to retain checkpoints."""
    values = options.get_all_options(retain_unknown_options=True)
    if any(values.get(flag) not in (None, False, "false") for flag in RETAINING_FLAGS):
        return None
    storage = urlparse(str(values.get("state_backend_storage_path") or ""))
    if storage.scheme != "file":
        return None
    directory = Path(unquote(storage.path))
    if directory.parent != LOCAL_FLINK_CHECKPOINTS or not directory.name.startswith(RUN_CHECKPOINTS_PREFIX):
        return None
    return directory


def cached_flink_job_server() -> Optional[Path]:
    """The launcher jar of the Flink job server `make engine-flink` assembled, if the cache holds it."""
    versions = engine_cache.pinned_versions()
    name = f"flink-{versions['FLINK_JOB_SERVER_FLINK_VERSION']}-beam-{versions['FLINK_JOB_SERVER_BEAM_VERSION']}"
    try:
        jar = engine_cache.fetched(name, "engine-flink") / "job-server.jar"
    except engine_cache.EngineNotFetched:
        return None
    return jar if jar.is_file() else None


def flink_job_server_defaults(runner: str, beam_args: Sequence[str]) -> Tuple[List[str], Optional[str]]:
    """Flags a FlinkRunner run gets to use the cached Flink job server (Beam would download one for
    --flink_version, default 2.2, which Maven Central does not serve for Beam 2.77), and the line that
    says so; nothing when the cache does not hold it, when the user chose a jar or another
    --flink_version, or when no job server jar is started (--job_endpoint: a job server already
    running; --flink_submit_uber_jar: the jar is the base of an uber jar uploaded to the cluster, which
    the cached launcher, only a manifest pointing at lib/, cannot be)."""
    if runner != "FlinkRunner" or any(raw_values(beam_args, name) for name in (
            "flink_job_server_jar", "job_endpoint", "flink_submit_uber_jar")):
        return [], None
    minor = engine_cache.pinned_versions()["FLINK_JOB_SERVER_FLINK_MINOR"]
    versions = raw_values(beam_args, "flink_version")
    if versions and versions[-1] != minor:
        return [], None
    jar = cached_flink_job_server()
    if jar is None:
        return [], None
    flags = [f"--flink_job_server_jar={jar}"] + ([] if versions else [f"--flink_version={minor}"])
    master = _flink_master(beam_args)
    cluster = "" if master in FLINK_MAGIC_MASTERS else f", submitting to {master}, which must run Flink {minor}"
    return flags, (f"FlinkRunner: using the cached Flink {minor} job server ({jar}){cluster}; "
                   "--flink_job_server_jar overrides")


def job_server_fetch_failed(flink_version: str, error: BaseException) -> str:
    """One line for Beam's failed download of the Flink job server jar (which it tries when no
    --flink_job_server_jar is given and the engine cache holds none)."""
    text = " ".join(str(error).split())
    reason = text.split(": ", 1)[1].split(". ", 1)[0] if text.startswith("Unable to fetch") and ": " in text else text
    minor = engine_cache.pinned_versions()["FLINK_JOB_SERVER_FLINK_MINOR"]
    return (f"no Flink job server: Beam could not fetch its Flink {flink_version} job server jar ({reason}); "
            f"run `make engine-flink` (paybeam then uses that Flink {minor} job server by default) "
            "or pass --flink_job_server_jar=PATH")


def check_flink_versions(beam_args: Sequence[str]) -> None:
    for version in raw_values(beam_args, "flink_version"):
        if version not in FLINK_VERSIONS:
            raise OptionsError(f"unsupported --flink_version={version}: Beam 2.77 publishes Flink job servers "
                               f"for {', '.join(FLINK_VERSIONS)} (default {DEFAULT_FLINK_VERSION})")


def check_flink(options: PipelineOptions, beam_args: Sequence[str], streaming: bool) -> None:
    flink = options.view_as(FlinkRunnerOptions)
    master = (flink.flink_master or "[auto]").strip()
    check_environment(options, "FlinkRunner")
    portable = options.view_as(PortableOptions)
    if portable.environment_type == "LOOPBACK" and not _is_local_address(master):
        raise OptionsError(f"--environment_type=LOOPBACK runs the Python workers inside this process, which "
                           f"the remote Flink cluster at {master} cannot reach; use EXTERNAL (worker-pool "
                           "sidecar), PROCESS or DOCKER, or a local --flink_master ([auto], [local], localhost)")
    if flink.parallelism is not None and flink.parallelism != -1 and flink.parallelism < 1:
        raise OptionsError(f"--parallelism must be at least 1, got {flink.parallelism}")
    if flink.max_parallelism is not None and flink.max_parallelism != -1 and flink.max_parallelism < 1:
        raise OptionsError(f"--max_parallelism must be at least 1, got {flink.max_parallelism}")
    for name in _POSITIVE_INT_JOB_SERVER_OPTIONS:
        for value in raw_values(beam_args, name):
            if not value.isdigit() or int(value) < 1:
                raise OptionsError(f"--{name} must be a positive number of milliseconds/items, got {value!r}")
    for value in raw_values(beam_args, "number_of_execution_retries"):
        if not value.lstrip("-").isdigit() or int(value) < -1:
            raise OptionsError(f"--number_of_execution_retries must be a number of restarts (or -1: the "
                               f"cluster's own restart strategy), got {value!r}")
    for name in ("checkpointing_interval", "min_pause_between_checkpoints") if streaming else ():
        for value in raw_values(beam_args, name):
            if int(value) < MIN_FLINK_STREAMING_CHECKPOINT_MILLIS:
                raise OptionsError(f"--{name}={value} is too short for an unbounded run on Flink: a checkpoint "
                                   "before the Kafka readers' first bundle can stop them for good on this runner; "
                                   f"use at least {MIN_FLINK_STREAMING_CHECKPOINT_MILLIS} (docs/DESIGN.md 7)")
    jar = flink.flink_job_server_jar
    if jar and is_local_path(jar) and not os.path.exists(jar):
        raise OptionsError(f"--flink_job_server_jar={jar} does not exist; `make engine-flink` assembles one in "
                           ".cache/engines/ (Maven Central serves no Beam 2.77 job-server jar), or point at a "
                           f"beam-runners-flink-{flink.flink_version}-job-server-<beam version>.jar")
    if flink.flink_submit_uber_jar and master in FLINK_MAGIC_MASTERS:
        raise OptionsError("--flink_submit_uber_jar uploads a jar to a running cluster: it needs "
                           "--flink_master=HOST:PORT of that cluster's REST endpoint")
