"""A standalone Flink session cluster for tests (issue 11 §3): a JobManager and a TaskManager as
separate JVMs, started from Flink's own entry points on the jars deploy/fetch/flink.sh fetched
(Maven Central serves no flink-dist, so there are no bin/ scripts: these are the classes
bin/jobmanager.sh and bin/taskmanager.sh start). Free ports, small heaps, checkpoints in a
temporary directory, and a restart strategy so a TaskManager that dies and comes back resumes
the job from its last checkpoint."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Dict, List, Optional

from tests.flink_helpers import free_port, wait_for_port

JOB_MANAGER_MAIN = "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint"
TASK_MANAGER_MAIN = "org.apache.flink.runtime.taskexecutor.TaskManagerRunner"
STARTUP_DEADLINE_SECONDS = 90


class FlinkCluster:
    def __init__(self, engine: Path, workdir: Path, slots: int = 2, taskmanagers: int = 1):
        self.engine, self.workdir, self.slots, self.taskmanagers = engine, workdir, slots, taskmanagers
        self.conf_dir = workdir / "conf"
        self.checkpoints = workdir / "checkpoints"
        self.rest_port, self.rpc_port, self.blob_port = free_port(), free_port(), free_port()
        self.processes: Dict[str, subprocess.Popen] = {}
        self.logs: Dict[str, Path] = {}
        self.taskmanager_starts = 0

    @property
    def master(self) -> str:
        return f"localhost:{self.rest_port}"

    def config(self) -> Dict[str, str]:
        """The flink-conf.yaml keys this cluster runs with (also what deploy/README.md reports)."""
        return {
            "jobmanager.rpc.address": "localhost",
            "jobmanager.rpc.port": str(self.rpc_port),
            "jobmanager.bind-host": "localhost",
            "rest.address": "localhost",
            "rest.bind-address": "localhost",
            "rest.port": str(self.rest_port),
            "blob.server.port": str(self.blob_port),
            "taskmanager.host": "localhost",
            "taskmanager.bind-host": "localhost",
            "taskmanager.rpc.port": "0",
            "taskmanager.data.port": "0",
            "taskmanager.numberOfTaskSlots": str(self.slots),
            "jobmanager.memory.process.size": "800m",
            # bin/taskmanager.sh would derive these from a process size (BashJavaUtils) and pass
            # them as -D flags; started directly, TaskManagerRunner needs every one of them set.
            "taskmanager.cpu.cores": str(self.slots),
            "taskmanager.memory.framework.heap.size": "128m",
            "taskmanager.memory.task.heap.size": "384m",
            "taskmanager.memory.framework.off-heap.size": "128m",
            "taskmanager.memory.task.off-heap.size": "0m",
            # A portable batch job has many exchanges, each blocking one a sort-shuffle partition of at least
            # 512 buffers of 32 KiB (taskmanager.network.sort-shuffle.min-buffers): 192m (6,144 buffers) ran out
            # when a TaskManager's two slots ran such tasks at once ("Insufficient number of network buffers:
            # required 512, but only 455 available", the two-TaskManager test at parallelism 4).
            "taskmanager.memory.network.min": "320m",
            "taskmanager.memory.network.max": "320m",
            "taskmanager.memory.managed.size": "128m",
            "taskmanager.memory.jvm-metaspace.size": "256m",
            "taskmanager.memory.jvm-overhead.min": "192m",
            "taskmanager.memory.jvm-overhead.max": "192m",
            # The job server's classes are on the cluster's classpath (the same lib/), so user code
            # must resolve them parent-first instead of from a second copy in the staged jars.
            "classloader.resolve-order": "parent-first",
            "state.checkpoints.dir": f"file://{self.checkpoints}",
            "state.savepoints.dir": f"file://{self.workdir / 'savepoints'}",
            "restart-strategy.type": "fixed-delay",
            "restart-strategy.fixed-delay.attempts": "1000",
            "restart-strategy.fixed-delay.delay": "2 s",
            "heartbeat.interval": "2000",
            "heartbeat.timeout": "8000",
        }

    def _classpath(self) -> str:
        return os.pathsep.join(sorted(str(jar) for jar in (self.engine / "lib").glob("*.jar")))

    def _module_flags(self) -> List[str]:
        """The Java 17 --add-opens/--add-exports flags of the job server's launcher manifest
        (deploy/fetch/common.sh), so the cluster's JVMs can snapshot what the job server's can."""
        with zipfile.ZipFile(self.engine / "job-server.jar") as launcher:
            manifest = launcher.read("META-INF/MANIFEST.MF").decode().replace("\r\n ", "").splitlines()
        flags = []
        for line in manifest:
            header, _, value = line.partition(": ")
            option = {"Add-Opens": "--add-opens", "Add-Exports": "--add-exports"}.get(header)
            flags += [f"{option}={package}=ALL-UNNAMED" for package in value.split()] if option else []
        return flags

    def _start(self, name: str, main: str, heap: str, direct: str = "256m") -> subprocess.Popen:
        log = self.workdir / f"{name}.log"
        self.logs[name] = log
        with open(log, "a") as handle:
            process = subprocess.Popen(
                ["java", f"-Xmx{heap}", f"-XX:MaxDirectMemorySize={direct}", "-XX:+UseSerialGC", *self._module_flags(),
                 "-cp", self._classpath(), main, "--configDir", str(self.conf_dir)],
                stdout=handle, stderr=subprocess.STDOUT, cwd=str(self.workdir))
        self.processes[name] = process
        return process

    def start(self) -> "FlinkCluster":
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoints.mkdir(exist_ok=True)
        (self.conf_dir / "flink-conf.yaml").write_text("".join(f"{k}: {v}\n" for k, v in self.config().items()))
        jobmanager = self._start("jobmanager", JOB_MANAGER_MAIN, "512m")
        wait_for_port(self.rest_port, jobmanager, self.logs["jobmanager"], STARTUP_DEADLINE_SECONDS)
        self._wait_for_rest(jobmanager)
        for index in range(self.taskmanagers):
            self.start_taskmanager("taskmanager" if index == 0 else f"taskmanager-{index + 1}")
        return self

    def _wait_for_rest(self, jobmanager: subprocess.Popen) -> None:
        """The REST port listens before the dispatcher is elected: 503 until then."""
        deadline = time.monotonic() + STARTUP_DEADLINE_SECONDS
        while True:
            try:
                self.rest("/overview")
                return
            except urllib.error.HTTPError:
                if jobmanager.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"JobManager REST not ready:\n{self.logs['jobmanager'].read_text()[-3000:]}")
                time.sleep(0.5)  # poll interval of the deadline loop

    def rest(self, path: str, attempts: int = 3) -> dict:
        """GET `path` of the REST API. A read that times out is tried again: on this 2-core machine a JobManager
        busy submitting or restoring a job has left a request unanswered for over 10 s."""
        for _ in range(attempts - 1):
            try:
                return self._get(path)
            except TimeoutError:
                continue  # asked again
        return self._get(path)

    def _get(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://{self.master}{path}", timeout=10) as response:
            return json.load(response)

    def registered_taskmanagers(self) -> List[str]:
        return [tm["id"] for tm in self.rest("/taskmanagers")["taskmanagers"]]

    def start_taskmanager(self, name: str = "taskmanager") -> None:
        before = set(self.registered_taskmanagers())
        self.taskmanager_starts += 1
        process = self._start(name, TASK_MANAGER_MAIN, "512m", "448m")
        deadline = time.monotonic() + STARTUP_DEADLINE_SECONDS
        while not set(self.registered_taskmanagers()) - before:
            if process.poll() is not None:
                raise AssertionError(f"TaskManager exited with {process.returncode}:\n"
                                     f"{self.logs[name].read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError("TaskManager did not register with the JobManager")
            time.sleep(0.5)  # poll interval of the deadline loop

    def kill_taskmanager(self) -> None:
        process = self.processes.pop("taskmanager")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    def jobs(self) -> List[dict]:
        return self.rest("/jobs/overview")["jobs"]

    def taskmanagers_that_ran(self, job_id: str) -> set:
        """The ids of the TaskManagers that ran a subtask of any of the job's vertices."""
        ran = set()
        for vertex in self.rest(f"/jobs/{job_id}")["vertices"]:
            for entry in self.rest(f"/jobs/{job_id}/vertices/{vertex['id']}/taskmanagers")["taskmanagers"]:
                ran.add(entry["taskmanager-id"])
        return ran

    def failures(self, job_id: str) -> List[str]:
        """The job's failure history (each a root exception's text); region failovers count too."""
        history = self.rest(f"/jobs/{job_id}/exceptions")["exceptionHistory"]["entries"]
        return [entry["stacktrace"] for entry in history]

    def failure_report(self, entries: int = 3) -> str:
        """Each job's state and the first root failures Flink recorded for it (oldest first), for an
        assertion message: a failed run's Python side shows only the failures its own workers saw."""
        report = []
        for job in self.jobs():
            failures = self.failures(job["jid"])  # newest first
            report.append(f"job {job['jid']} {job['state']}, {len(failures)} failure(s)")
            report += [failure[:3000] for failure in reversed(failures[-entries:])]
        return "\n".join(report)

    def completed_checkpoints(self, job_id: str) -> int:
        return self.rest(f"/jobs/{job_id}/checkpoints")["counts"]["completed"]

    def restored_checkpoint(self, job_id: str) -> Optional[int]:
        restored = self.rest(f"/jobs/{job_id}/checkpoints")["latest"].get("restored")
        return restored["id"] if restored else None

    def stop(self) -> None:
        for name in [*sorted(name for name in self.processes if name.startswith("taskmanager")), "jobmanager"]:
            process = self.processes.pop(name, None)
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def __enter__(self) -> "FlinkCluster":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
