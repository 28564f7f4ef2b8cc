"""deploy/: the Flink deployment manifests agree with each other, with paybeam's CLI and with
the Beam and Python this suite runs on.

Nothing here starts a container (no Docker engine on the CI machines, docs/DESIGN.md 7): the files
are parsed and their cross-references checked — versions, ports, endpoints, flags, secrets,
checkpointing and resources — so a drifted tag or a typo fails here instead of in a cluster.
"""
from __future__ import annotations

import argparse
import atexit
import functools
import inspect
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import apache_beam
import pytest
import yaml
from apache_beam.options.pipeline_options import FlinkRunnerOptions, PortableOptions, StandardOptions

from pipelines import reconcile_stream
from pipelines.version import __version__ as PAYBEAM_VERSION
from runners.options import build_pipeline_options, canonical_runner, unknown_beam_args

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"

# Flink minors Beam 2.77 publishes job servers for (docs/DESIGN.md 6); flinkVersion enum values the
# Flink Kubernetes Operator knows for them.
BEAM_FLINK_VERSIONS = ("1.19", "1.20", "2.0", "2.1", "2.2")
OPERATOR_FLINK_VERSIONS = {"v1_19", "v1_20", "v2_0", "v2_1", "v2_2"}
# sdks/python/container/boot.go: `boot --worker_pool` runs worker_pool_main --service_port=50000.
BOOT_WORKER_POOL_PORT = 50000
FLINK_REST_PORT = 8081
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL", re.IGNORECASE)
SECRET_SETTING = re.compile(r"(password|secret|token|sasl\.jaas\.config)", re.IGNORECASE)
K8S_ENV_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


# --------------------------------------------------------------------------- loading


def _versions() -> Dict[str, str]:
    values = {}
    for number, line in enumerate((DEPLOY / "versions.env").read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", key), f"versions.env:{number}: not KEY=VALUE: {line!r}"
        assert key not in values, f"versions.env: {key} set twice"
        values[key] = value
    return values


V = _versions()
COMPOSE = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
SERVICES: Dict[str, dict] = COMPOSE["services"]
DOCKERFILE = (DEPLOY / "Dockerfile").read_text()
K8S_FILES = sorted(K8S.glob("*.yaml")) + sorted(K8S.glob("*.yml"))
K8S_DOCS: List[dict] = [doc for path in K8S_FILES for doc in yaml.safe_load_all(path.read_text()) if doc]


def _k8s(kind: str) -> List[dict]:
    return [doc for doc in K8S_DOCS if doc.get("kind") == kind]


def _one(kind: str) -> dict:
    docs = _k8s(kind)
    assert len(docs) == 1, f"expected one {kind} in deploy/k8s, found {len(docs)}"
    return docs[0]


def _tag(image: str) -> Tuple[str, str]:
    name, _, tag = image.rpartition(":")
    assert name and tag and "/" not in tag, f"image without a tag: {image!r}"
    return name, tag


def _walk_images(node, where: str) -> Iterator[Tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "image" and isinstance(value, str):
                yield where, value
            else:
                yield from _walk_images(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk_images(value, f"{where}[{index}]")


def _all_images() -> List[Tuple[str, str]]:
    images = list(_walk_images(COMPOSE, "docker-compose.yml"))
    images += list(_walk_images(K8S_DOCS, "k8s"))
    return images


def _pod_specs() -> Iterator[Tuple[str, dict]]:
    """(where, pod spec) for every pod the k8s manifests define or template."""
    for doc in K8S_DOCS:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        spec = doc.get("spec") or {}
        if doc["kind"] in ("Job", "Deployment", "StatefulSet", "DaemonSet"):
            yield name, spec["template"]["spec"]
        if doc["kind"] == "CronJob":
            yield name, spec["jobTemplate"]["spec"]["template"]["spec"]
        if doc["kind"] == "FlinkDeployment":
            if "podTemplate" in spec:
                yield f"{name}.podTemplate", spec["podTemplate"]["spec"]
            for role in ("jobManager", "taskManager"):
                template = (spec.get(role) or {}).get("podTemplate")
                if template:
                    yield f"{name}.{role}.podTemplate", template["spec"]


def _containers(pod: dict) -> List[dict]:
    return list(pod.get("containers") or []) + list(pod.get("initContainers") or [])


def _flink_properties(service: dict) -> dict:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    text = environment.get("FLINK_PROPERTIES")
    assert text, "a Flink service without FLINK_PROPERTIES"
    return yaml.safe_load(text)


def _duration_millis(value) -> int:
    """Flink durations: a bare number is milliseconds; else <n><unit> (ms, s, min, h, d)."""
    text = str(value).strip().lower().replace(" ", "")
    match = re.fullmatch(r"(\d+)(ms|milli|millis|s|sec|secs|second|seconds|m|min|mins|minute|minutes|h|hour|hours|d|day|days)?",
                         text)
    assert match, f"not a Flink duration: {value!r}"
    number, unit = int(match.group(1)), match.group(2) or "ms"
    scale = {"ms": 1, "milli": 1, "millis": 1, "s": 1000, "sec": 1000, "secs": 1000, "second": 1000, "seconds": 1000,
             "m": 60_000, "min": 60_000, "mins": 60_000, "minute": 60_000, "minutes": 60_000,
             "h": 3_600_000, "hour": 3_600_000, "hours": 3_600_000, "d": 86_400_000, "day": 86_400_000,
             "days": 86_400_000}[unit]
    return number * scale


def _host_port(address: str) -> Tuple[str, int]:
    address = re.sub(r"^[a-z]+://", "", address)
    host, sep, port = address.rpartition(":")
    assert sep and host and port.isdigit(), f"not HOST:PORT: {address!r}"
    return host, int(port)


# --------------------------------------------------------------------------- submitters


_STAND_INS = Path(tempfile.mkdtemp(prefix="paybeam-deploy-test-"))
atexit.register(shutil.rmtree, _STAND_INS, True)


def _stand_in(path: str) -> str:
    stand_in = _STAND_INS / Path(path).name
    stand_in.touch()
    return str(stand_in)


class Submission:
    """A `paybeam stream` command line from the manifests, parsed the way the CLI parses it."""

    def __init__(self, where: str, argv: List[str]):
        assert argv and argv[0] == "stream", f"{where}: expected `paybeam stream …`, got {argv[:1]}"
        self.where = where
        self.argv = argv[1:]
        parser = argparse.ArgumentParser(prog="paybeam stream", allow_abbrev=False)
        reconcile_stream.add_stream_arguments(parser)
        self.args, self.beam_args = parser.parse_known_args(self.argv)
        self.runner = canonical_runner(self.args.runner)
        self.job = reconcile_stream.job_from_arguments(self.args, self.beam_args)

    @functools.cached_property
    def options(self):
        """What `paybeam stream` builds inside the paybeam image; built on first use, so a bad flag
        fails its own test rather than collection.

        Two things differ from this checkout: the job-server jar exists in the image, not here
        (test_dockerfile_bakes_the_flink_job_server_jar_the_submitter_names checks the path), so
        an empty stand-in file of the same name takes its place; and paybeam is installed from a
        wheel there, so no setup.py sits next to it (setup_file=None, if runners.options takes it).
        """
        args = [f"--flink_job_server_jar={_stand_in(arg.split('=', 1)[1])}"
                if arg.startswith("--flink_job_server_jar=") else arg for arg in self.beam_args]
        extra = {"setup_file": None} if "setup_file" in inspect.signature(build_pipeline_options).parameters else {}
        options = build_pipeline_options(self.runner, args, streaming=self.job.streaming, **extra)
        return options

    def raw(self, name: str) -> Optional[str]:
        """The value of `--name=…` exactly as the manifest writes it."""
        values = [arg.split("=", 1)[1] for arg in self.beam_args if arg.startswith(f"--{name}=")]
        assert len(values) <= 1, f"{self.where}: --{name} given twice"
        return values[0] if values else None

    def option(self, view, name):
        return getattr(self.options.view_as(view), name)


def _compose_submitter() -> Tuple[str, dict]:
    found = [(name, service) for name, service in SERVICES.items()
             if "paybeam" in (service.get("entrypoint") or [""])[0]
             and (service.get("command") or [""])[0] == "stream"]
    assert len(found) == 1, f"expected one `paybeam stream` service in compose, found {[n for n, _ in found]}"
    return found[0]


def _k8s_submitter() -> Tuple[str, dict, dict]:
    found = []
    for where, pod in _pod_specs():
        for container in _containers(pod):
            argv = list(container.get("command") or []) + list(container.get("args") or [])
            if argv[:2] == ["paybeam", "stream"]:
                found.append((f"{where}/{container['name']}", pod, container))
    assert len(found) == 1, f"expected one `paybeam stream` container in deploy/k8s, found {[w for w, _, _ in found]}"
    return found[0]


def _submissions() -> List[Submission]:
    name, service = _compose_submitter()
    where, _, container = _k8s_submitter()
    return [Submission(f"compose:{name}", list(service["command"])),
            Submission(f"k8s:{where}", list(container["args"]))]


SUBMISSIONS = _submissions()


@pytest.fixture(params=SUBMISSIONS, ids=lambda submission: submission.where)
def submission(request) -> Submission:
    return request.param


# --------------------------------------------------------------------------- versions


def test_versions_env_matches_the_beam_and_python_under_test():
    assert V["BEAM_VERSION"] == apache_beam.__version__
    assert V["PYTHON_VERSION"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert V["PAYBEAM_VERSION"] == PAYBEAM_VERSION


def test_flink_version_is_published_by_beam_and_known_to_the_operator():
    flink = V["FLINK_VERSION"]
    assert flink in BEAM_FLINK_VERSIONS
    assert flink in FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS, "the installed Beam has no job server for it"
    assert V["FLINK_OPERATOR_VERSION_ENUM"] == "v" + flink.replace(".", "_")
    assert V["FLINK_OPERATOR_VERSION_ENUM"] in OPERATOR_FLINK_VERSIONS
    name, tag = _tag(V["FLINK_IMAGE"])
    assert name in ("flink", "apache/flink")
    assert tag == flink or tag.startswith(flink + ".") or tag.startswith(flink + "-"), tag


def test_versions_env_derived_names():
    beam, python, flink = V["BEAM_VERSION"], V["PYTHON_VERSION"], V["FLINK_VERSION"]
    assert V["BEAM_SDK_IMAGE"] == f"apache/beam_python{python}_sdk:{beam}"
    assert V["BEAM_FLINK_JOB_SERVER_IMAGE"] == f"apache/beam_flink{flink}_job_server:{beam}"
    assert V["BEAM_FLINK_JOB_SERVER_JAR"] == f"beam-runners-flink-{flink}-job-server-{beam}.jar"
    _, tag = _tag(V["PAYBEAM_IMAGE"])
    assert tag == f"{PAYBEAM_VERSION}-beam{beam}-py{python}-flink{flink}"


def _image_problem(image: str) -> Optional[str]:
    """Why `image` disagrees with versions.env, or None."""
    name, tag = _tag(image)
    beam, python, flink = V["BEAM_VERSION"], V["PYTHON_VERSION"], V["FLINK_VERSION"]
    if match := re.fullmatch(r"apache/beam_python(\d+\.\d+)_sdk", name):
        return None if (match.group(1), tag) == (python, beam) else f"Beam SDK image is not python{python}/{beam}"
    if match := re.fullmatch(r"apache/beam_flink(\d+\.\d+)_job_server", name):
        return None if (match.group(1), tag) == (flink, beam) else f"job server is not flink{flink}/{beam}"
    if name.split("/")[-1] == "paybeam":
        return None if tag == _tag(V["PAYBEAM_IMAGE"])[1] else f"paybeam image tag is not {V['PAYBEAM_IMAGE']}"
    if name in ("flink", "apache/flink"):
        return None if image == V["FLINK_IMAGE"] else f"Flink image is not {V['FLINK_IMAGE']}"
    if name in ("apache/kafka", "apache/kafka-native"):
        return None if image == V["KAFKA_IMAGE"] else f"Kafka image is not {V['KAFKA_IMAGE']}"
    return f"an image versions.env does not pin ({image})"


def test_every_image_tag_agrees_with_versions_env():
    images = _all_images()
    assert images
    problems = [f"{where}: {image}: {problem}" for where, image in images
                if (problem := _image_problem(image))]
    assert not problems, "\n".join(problems)


def test_image_checker_catches_drift():
    beam, python, flink = V["BEAM_VERSION"], V["PYTHON_VERSION"], V["FLINK_VERSION"]
    assert _image_problem(f"apache/beam_python{python}_sdk:2.76.0")
    assert _image_problem(f"apache/beam_python3.12_sdk:{beam}") or python == "3.12"
    assert _image_problem(f"apache/beam_flink2.2_job_server:{beam}") or flink == "2.2"
    assert _image_problem("flink:1.19")
    assert _image_problem("redis:7")
    assert _image_problem(V["PAYBEAM_IMAGE"]) is None


def _dockerfile_args() -> Dict[str, str]:
    args: Dict[str, str] = {}
    for name, default in re.findall(r"^ARG\s+([A-Z_]+)=(\S+)", DOCKERFILE, re.MULTILINE):
        assert args.setdefault(name, default) == default, f"Dockerfile: ARG {name} has two defaults"
    return args


def _substitute(text: str, values: Dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Z_]+)\}?", lambda m: values[m.group(1)], text)


def test_dockerfile_builds_on_the_matching_beam_sdk_image():
    args = _dockerfile_args()
    for key in ("BEAM_VERSION", "PYTHON_VERSION", "FLINK_VERSION"):
        assert args.get(key) == V[key], f"Dockerfile ARG {key}"
    bases = re.findall(r"^FROM\s+(\S+)", DOCKERFILE, re.MULTILINE)
    assert len(bases) == 1
    assert _substitute(bases[0], args) == V["BEAM_SDK_IMAGE"]
    entrypoint = re.findall(r"^ENTRYPOINT\s+(.+)$", DOCKERFILE, re.MULTILINE)
    assert entrypoint and yaml.safe_load(entrypoint[-1]) == ["/opt/apache/beam/boot"], \
        "the worker-pool sidecar relies on Beam's boot entrypoint (--worker_pool)"


def test_dockerfile_bakes_the_flink_job_server_jar_the_submitter_names():
    args = _dockerfile_args()
    adds = [_substitute(" ".join(line.split()[1:]), args)
            for line in re.sub(r"\\\n\s*", " ", DOCKERFILE).splitlines() if line.startswith("ADD ")]
    jar = V["BEAM_FLINK_JOB_SERVER_JAR"]
    url = (f"https://repo.maven.apache.org/maven2/org/apache/beam/beam-runners-flink-{V['FLINK_VERSION']}-job-server/"
           f"{V['BEAM_VERSION']}/{jar}")
    targets = [add.split()[-1] for add in adds if add.split()[0] == url]
    assert targets, f"no ADD of {url}"
    for submission in SUBMISSIONS:
        path = submission.raw("flink_job_server_jar")
        if path:
            assert path in targets, f"{submission.where}: --flink_job_server_jar={path} is not baked into the image"


def test_dockerfile_copies_every_installed_package():
    setup = (REPO / "setup.py").read_text()
    include = re.search(r"find_packages\(include=\[([^\]]*)\]", setup)
    assert include, "setup.py: find_packages(include=[…]) not found"
    top_levels = {pattern.strip().strip("\"'").rstrip("*") for pattern in include.group(1).split(",") if pattern.strip()}
    copied = {line.split()[1].rstrip("/") for line in DOCKERFILE.splitlines() if line.startswith("COPY ")}
    assert "setup.py" in copied
    assert top_levels <= copied, f"Dockerfile does not COPY {sorted(top_levels - copied)}"


def test_compose_build_args_match_versions_env():
    builds = [(name, service["build"]) for name, service in SERVICES.items() if "build" in service]
    assert builds
    for name, build in builds:
        assert build["dockerfile"] == "deploy/Dockerfile" and (DEPLOY / build["context"] / build["dockerfile"]).is_file()
        for key in ("BEAM_VERSION", "PYTHON_VERSION", "FLINK_VERSION"):
            assert str(build["args"][key]) == V[key], f"compose {name}: build arg {key}"
        assert _tag(SERVICES[name]["image"])[1] == _tag(V["PAYBEAM_IMAGE"])[1]


def test_flink_version_consistent_everywhere():
    flink = V["FLINK_VERSION"]
    deployment = _one("FlinkDeployment")
    assert deployment["apiVersion"] == "flink.apache.org/v1beta1"
    assert deployment["spec"]["flinkVersion"] == V["FLINK_OPERATOR_VERSION_ENUM"]
    assert deployment["spec"]["image"] == V["FLINK_IMAGE"]
    flink_services = [name for name, service in SERVICES.items() if _tag(service["image"])[0] in ("flink", "apache/flink")
                      and service.get("command") in ("jobmanager", "taskmanager")]
    assert sorted(SERVICES[name]["command"] for name in flink_services) == ["jobmanager", "taskmanager"]
    job_servers = [service["image"] for service in SERVICES.values() if "_job_server:" in service["image"]]
    assert job_servers == [V["BEAM_FLINK_JOB_SERVER_IMAGE"]]
    for submission in SUBMISSIONS:
        assert submission.option(FlinkRunnerOptions, "flink_version") == flink, submission.where


# --------------------------------------------------------------------------- submitter flags


def test_submitter_passes_only_flags_paybeam_stream_and_beam_accept(submission):
    assert submission.runner in ("FlinkRunner", "PortableRunner"), submission.where
    assert unknown_beam_args(submission.beam_args, submission.runner) == []
    assert unknown_beam_args(submission.beam_args, "FlinkRunner") == []
    # what the parser left over is Beam's: no paybeam-style (dashed) flag slipped through as a typo
    dashed = [arg for arg in submission.beam_args if "-" in arg.lstrip("-").split("=", 1)[0]]
    assert dashed == [], f"{submission.where}: {dashed}"


def test_flag_check_rejects_a_typo():
    typo = Submission("typo", ["stream", "--bootstrap-servers=k:9092", "--payments-topic=p",
                               "--settlements-topic=s", "--runner=FlinkRunner", "--flink_mster=jm:8081"])
    assert unknown_beam_args(typo.beam_args, "FlinkRunner") == ["--flink_mster=jm:8081"]


def test_submitter_runs_unbounded_streaming_on_an_external_worker_pool(submission):
    assert submission.job.streaming and submission.job.bounded is None, submission.where
    assert "--streaming" in submission.beam_args
    assert submission.option(StandardOptions, "streaming") is True
    assert submission.option(PortableOptions, "environment_type") == "EXTERNAL"
    host, port = _host_port(submission.option(PortableOptions, "environment_config"))
    assert host in ("localhost", "127.0.0.1")
    assert port == BOOT_WORKER_POOL_PORT
    assert submission.option(FlinkRunnerOptions, "parallelism") > 0
    assert submission.job.kafka_io == "python"


def test_submitter_declares_the_worker_image_so_nothing_is_shipped(submission):
    image = submission.raw("sdk_container_image")
    assert image, f"{submission.where}: --sdk_container_image=<paybeam image> tells paybeam the workers have it"
    assert _image_problem(image) is None and image.rsplit(":", 1)[0].split("/")[-1] == "paybeam"
    if submission.where.startswith("compose:"):
        sidecar = _worker_pool_service()[1]["image"]
    else:
        spec = _one("FlinkDeployment")["spec"]["taskManager"]["podTemplate"]["spec"]
        sidecar = next(c["image"] for c in _containers(spec) if "--worker_pool" in (c.get("args") or []))
    assert image == sidecar, f"{submission.where}: the worker pool runs {sidecar}, not {image}"
    assert not submission.raw("setup_file"), "paybeam is in the image; --setup_file would reinstall it per worker"


def test_submitter_enables_checkpointing(submission):
    flags = dict(arg.lstrip("-").split("=", 1) for arg in submission.beam_args if "=" in arg)
    assert int(flags["checkpointing_interval"]) > 0, submission.where


# --------------------------------------------------------------------------- compose topology


def _worker_pool_service() -> Tuple[str, dict]:
    pools = [(name, service) for name, service in SERVICES.items() if "--worker_pool" in (service.get("command") or [])]
    assert len(pools) == 1, "expected one worker-pool service in compose"
    return pools[0]


def test_compose_worker_pool_is_a_sidecar_of_the_taskmanager_on_the_submitters_port():
    name, pool = _worker_pool_service()
    assert _tag(pool["image"])[1] == _tag(V["PAYBEAM_IMAGE"])[1], "workers need the paybeam image"
    assert "entrypoint" not in pool, "the pool needs Beam's boot entrypoint"
    mode = pool.get("network_mode", "")
    assert mode.startswith("service:"), f"{name} must share the TaskManager's network namespace"
    taskmanager = SERVICES[mode.split(":", 1)[1]]
    assert taskmanager["command"] == "taskmanager"
    assert str(BOOT_WORKER_POOL_PORT) in [str(port) for port in taskmanager.get("expose", [])]
    submitter_name, _ = _compose_submitter()
    submission = next(s for s in SUBMISSIONS if s.where == f"compose:{submitter_name}")
    assert _host_port(submission.option(PortableOptions, "environment_config"))[1] == BOOT_WORKER_POOL_PORT
    assert name in SERVICES[submitter_name].get("depends_on", {})


def _job_server_flags(service: dict) -> Dict[str, str]:
    return dict(arg.lstrip("-").split("=", 1) for arg in service["command"])


def test_compose_submitter_endpoints_resolve_to_services():
    submitter_name, _ = _compose_submitter()
    submission = next(s for s in SUBMISSIONS if s.where == f"compose:{submitter_name}")
    master_host, master_port = _host_port(submission.option(FlinkRunnerOptions, "flink_master"))
    assert SERVICES[master_host]["command"] == "jobmanager" and master_port == FLINK_REST_PORT
    if submission.runner == "PortableRunner":
        job_host, job_port = _host_port(submission.option(PortableOptions, "job_endpoint"))
        server = SERVICES[job_host]
        flags = _job_server_flags(server)
        assert int(flags.get("job-port", 8099)) == job_port
        assert flags.get("job-host") == "0.0.0.0", "the job server must listen beyond its own loopback"
        artifact_host, artifact_port = _host_port(submission.option(PortableOptions, "artifact_endpoint"))
        assert artifact_host == job_host and artifact_port == int(flags.get("artifact-port", 8098))
        assert _host_port(flags["flink-master"]) == (master_host, master_port)
        # the job server stages artifacts into a directory the TaskManager serves them from
        staging = flags.get("artifacts-dir", "/tmp/beam-artifact-staging")
        _, pool = _worker_pool_service()
        taskmanager = SERVICES[pool["network_mode"].split(":", 1)[1]]
        server_volumes = {v.split(":")[0] for v in server.get("volumes", []) if v.split(":")[1] == staging}
        tm_volumes = {v.split(":")[0] for v in taskmanager.get("volumes", []) if v.split(":")[1] == staging}
        assert server_volumes & tm_volumes, "job server and TaskManager must share the artifact staging volume"
        assert job_host in SERVICES[submitter_name].get("depends_on", {})


def test_compose_kafka_listener_used_by_the_submitter_resolves_to_the_kafka_service():
    submitter_name, _ = _compose_submitter()
    submission = next(s for s in SUBMISSIONS if s.where == f"compose:{submitter_name}")
    for address in submission.args.bootstrap_servers.split(","):
        host, port = _host_port(address)
        assert host in SERVICES, f"{host} is not a compose service"
        kafka = SERVICES[host]["environment"]
        advertised = dict(reversed(entry.split("://", 1)) for entry in kafka["KAFKA_ADVERTISED_LISTENERS"].split(","))
        listener = advertised.get(f"{host}:{port}")
        assert listener, f"kafka does not advertise {host}:{port}"
        bound = dict(entry.split("://", 1) for entry in kafka["KAFKA_LISTENERS"].split(","))
        assert _host_port(bound[listener])[1] == port
        assert listener not in kafka["KAFKA_CONTROLLER_LISTENER_NAMES"].split(",")
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller", "single-node KRaft"
    # the topic-creating service talks to the same listener and creates the topics the job uses
    creators = [service for service in SERVICES.values() if (service.get("command") or [None])[:2] == ["kafka", "create-topics"]]
    assert creators
    command = creators[0]["command"]
    assert f"--bootstrap-servers={submission.args.bootstrap_servers}" in command
    assert set(submission.job.topics.values()) <= set(command)


def test_compose_checkpointing_is_on_and_durable():
    properties = {name: _flink_properties(service) for name, service in SERVICES.items()
                  if service.get("command") in ("jobmanager", "taskmanager")}
    assert len(properties) == 2
    for name, config in properties.items():
        assert _duration_millis(config["execution.checkpointing.interval"]) > 0, name
        directory = config.get("execution.checkpointing.dir") or config.get("state.checkpoints.dir")
        assert directory and directory.startswith("file:///"), name
        path = directory[len("file://"):]
        mounts = [v.split(":")[1] for v in SERVICES[name].get("volumes", [])]
        assert any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts), \
            f"{name}: {directory} is not on a volume"
    dirs = {config.get("execution.checkpointing.dir") for config in properties.values()}
    assert len(dirs) == 1, "JobManager and TaskManager must agree on the checkpoint directory"


def test_compose_taskmanager_and_worker_pool_have_resource_limits():
    _, pool = _worker_pool_service()
    taskmanager = SERVICES[pool["network_mode"].split(":", 1)[1]]
    for service in (taskmanager, pool):
        limits = service["deploy"]["resources"]["limits"]
        assert limits.get("cpus") and limits.get("memory")


def test_compose_has_no_literal_secrets():
    for name, service in SERVICES.items():
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) if "=" in item else (item, None) for item in environment)
        for key, value in environment.items():
            if SECRET_NAME.search(key):
                assert value is None or re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:?[-?][^}]*)?\}", str(value)), \
                    f"compose {name}: {key} is a literal; pass it from the shell or an env file"
        for arg in service.get("command") or []:
            if isinstance(arg, str) and "=" in arg and SECRET_SETTING.search(arg.split("=")[-2] if arg.count("=") > 1 else ""):
                assert "${" in arg.rsplit("=", 1)[1], f"compose {name}: literal secret in {arg!r}"


# --------------------------------------------------------------------------- Kubernetes


def test_k8s_manifests_parse_and_share_one_namespace():
    assert K8S_FILES and K8S_DOCS
    namespaces = {doc["metadata"]["name"] for doc in _k8s("Namespace")}
    for doc in K8S_DOCS:
        assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), doc
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") in namespaces, f"{doc['kind']}/{doc['metadata']['name']}"


def test_k8s_flink_session_cluster_with_worker_pool_sidecar():
    deployment = _one("FlinkDeployment")
    spec = deployment["spec"]
    assert "job" not in spec, "a session cluster: jobs come from the submitter"
    taskmanager = spec["taskManager"]
    sidecars = [c for c in _containers(taskmanager["podTemplate"]["spec"]) if "--worker_pool" in (c.get("args") or [])]
    assert len(sidecars) == 1, "the TaskManager pod template needs the Beam worker-pool sidecar"
    sidecar = sidecars[0]
    assert _tag(sidecar["image"])[1] == _tag(V["PAYBEAM_IMAGE"])[1]
    assert "command" not in sidecar, "the sidecar needs Beam's boot entrypoint"
    assert [p["containerPort"] for p in sidecar.get("ports", [])] == [BOOT_WORKER_POOL_PORT]
    where, _, _ = _k8s_submitter()
    submission = next(s for s in SUBMISSIONS if s.where == f"k8s:{where}")
    assert _host_port(submission.option(PortableOptions, "environment_config")) == ("localhost", BOOT_WORKER_POOL_PORT)
    names = [c["name"] for c in _containers(taskmanager["podTemplate"]["spec"])]
    assert "flink-main-container" in names or len(names) == 1


def test_k8s_submitter_targets_the_operators_rest_service():
    deployment = _one("FlinkDeployment")
    where, _, _ = _k8s_submitter()
    submission = next(s for s in SUBMISSIONS if s.where == f"k8s:{where}")
    host, port = _host_port(submission.option(FlinkRunnerOptions, "flink_master"))
    rest = f"{deployment['metadata']['name']}-rest"
    namespace = deployment["metadata"]["namespace"]
    assert host in (rest, f"{rest}.{namespace}", f"{rest}.{namespace}.svc", f"{rest}.{namespace}.svc.cluster.local")
    assert port == FLINK_REST_PORT
    if submission.runner == "FlinkRunner":
        assert submission.option(FlinkRunnerOptions, "flink_submit_uber_jar") is True, \
            "without the uber jar FlinkRunner would start a Java job server in the submitter pod"
        assert Path(submission.raw("flink_job_server_jar")).name == V["BEAM_FLINK_JOB_SERVER_JAR"]


def test_k8s_checkpointing_is_on_and_durable():
    deployment = _one("FlinkDeployment")
    config = deployment["spec"]["flinkConfiguration"]
    assert _duration_millis(config["execution.checkpointing.interval"]) > 0
    directory = config.get("execution.checkpointing.dir") or config.get("state.checkpoints.dir")
    assert directory, "no checkpoint directory"
    if directory.startswith("file://"):
        path = directory[len("file://"):]
        claims = {claim["metadata"]["name"]: claim for claim in _k8s("PersistentVolumeClaim")}
        for where, pod in _pod_specs():
            if not where.startswith("FlinkDeployment/"):
                continue
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            main = [c for c in pod["containers"] if c["name"] == "flink-main-container"]
            assert main, where
            mounted = [m for m in main[0].get("volumeMounts", [])
                       if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")]
            assert mounted, f"{where}: {directory} is not on a mounted volume"
            claim = volumes[mounted[0]["name"]]["persistentVolumeClaim"]["claimName"]
            assert "ReadWriteMany" in claims[claim]["spec"]["accessModes"], "JobManager and TaskManagers share it"
    else:
        assert re.match(r"(s3|s3a|s3p|gs|abfss?|hdfs|oss)://", directory), directory


def test_k8s_taskmanager_and_sidecar_have_resources():
    spec = _one("FlinkDeployment")["spec"]
    for role in ("jobManager", "taskManager"):
        resource = spec[role]["resource"]
        assert resource.get("memory") and resource.get("cpu"), role
    for where, pod in _pod_specs():
        for container in pod.get("containers", []):
            if container["name"] == "flink-main-container":
                continue  # sized by spec.<role>.resource
            resources = container.get("resources") or {}
            assert resources.get("requests") and resources.get("limits"), f"{where}/{container['name']}"
            assert resources["limits"].get("memory"), f"{where}/{container['name']}"


def _configmap_keys() -> Dict[str, set]:
    return {cm["metadata"]["name"]: set((cm.get("data") or {}).keys()) for cm in _k8s("ConfigMap")}


def test_k8s_no_literal_secrets():
    assert not [doc for doc in _k8s("Secret") if doc.get("data") or doc.get("stringData")], \
        "Secrets are created out of band, never committed"
    for name, keys in _configmap_keys().items():
        assert not [key for key in keys if SECRET_NAME.search(key)], f"ConfigMap {name} holds a secret"
    for where, pod in _pod_specs():
        for container in _containers(pod):
            for env in container.get("env") or []:
                if SECRET_NAME.search(env["name"]):
                    assert "value" not in env and "secretKeyRef" in (env.get("valueFrom") or {}), \
                        f"{where}/{container['name']}: {env['name']} must come from a secretKeyRef"
            secret_envs = {env["name"] for env in container.get("env") or []
                           if "secretKeyRef" in (env.get("valueFrom") or {})}
            for arg in list(container.get("command") or []) + list(container.get("args") or []):
                setting = arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else arg
                key, sep, value = setting.partition("=")
                if sep and SECRET_SETTING.search(key):
                    refs = K8S_ENV_REF.findall(value)
                    assert refs and re.fullmatch(r"(\$\([A-Za-z0-9_]+\))+", value) and set(refs) <= secret_envs, \
                        f"{where}/{container['name']}: {key} must be $(VAR) of a secretKeyRef env var"


def test_k8s_submitter_env_references_resolve():
    where, pod, container = _k8s_submitter()
    configmaps = _configmap_keys()
    declared = set()
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            assert name in configmaps, f"{where}: ConfigMap {name} is not in deploy/k8s"
            declared |= configmaps[name]
    for env in container.get("env") or []:
        declared.add(env["name"])
        ref = (env.get("valueFrom") or {}).get("configMapKeyRef")
        if ref:
            assert ref["key"] in configmaps.get(ref["name"], set()), f"{where}: {ref}"
    used = {name for arg in container["args"] for name in K8S_ENV_REF.findall(arg)}
    assert used and used <= declared, f"{where}: undefined $(…) in args: {sorted(used - declared)}"
    # bootstrap servers come from the ConfigMap
    bootstrap = [arg for arg in container["args"] if arg.startswith("--bootstrap-servers=")]
    assert len(bootstrap) == 1
    variable = K8S_ENV_REF.fullmatch(bootstrap[0].split("=", 1)[1]).group(1)
    env = {e["name"]: e for e in container.get("env") or []}
    from_configmap = ("configMapKeyRef" in (env.get(variable, {}).get("valueFrom") or {})
                      or (variable not in env and any(variable in keys for keys in configmaps.values())))
    assert from_configmap, f"{where}: --bootstrap-servers must come from the ConfigMap"
    # consumer and producer both get the SASL settings
    submission = next(s for s in SUBMISSIONS if s.where == f"k8s:{where}")
    for settings in (submission.job.consumer_config, submission.job.producer_config):
        assert {"security.protocol", "sasl.mechanism", "sasl.username", "sasl.password"} <= set(settings)


def test_k8s_service_accounts_and_claims_exist():
    accounts = {sa["metadata"]["name"] for sa in _k8s("ServiceAccount")}
    deployment = _one("FlinkDeployment")
    assert deployment["spec"]["serviceAccount"] in accounts
    bound = {subject["name"] for binding in _k8s("RoleBinding") + _k8s("ClusterRoleBinding")
             for subject in binding.get("subjects", []) if subject.get("kind") == "ServiceAccount"}
    assert deployment["spec"]["serviceAccount"] in bound, "Flink's JobManager creates TaskManager pods: it needs RBAC"
    _, pod, _ = _k8s_submitter()
    assert pod.get("serviceAccountName") in accounts
    claims = {claim["metadata"]["name"] for claim in _k8s("PersistentVolumeClaim")}
    for where, spec in _pod_specs():
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, where


def test_k8s_submitter_job_is_not_retried_into_a_duplicate():
    job = _one("Job")
    assert job["spec"].get("backoffLimit") == 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
