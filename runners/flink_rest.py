"""The few calls of Flink's REST API (the JobManager's `--flink_master` endpoint) paybeam makes itself:
which jobs of a name are running, and cancelling one until Flink reports it cancelled."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Set

# Flink's globally terminal job states (org.apache.flink.api.common.JobStatus).
TERMINAL_STATES = frozenset({"FINISHED", "CANCELED", "FAILED"})


class FlinkClusterUnreachable(RuntimeError):
    pass


class FlinkRestClient:
    def __init__(self, url: str, timeout_seconds: float = 10.0):
        self._url = url.rstrip("/")
        self._timeout = timeout_seconds

    def _call(self, path: str, method: str = "GET") -> dict:
        request = urllib.request.Request(self._url + path, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            raise FlinkClusterUnreachable(f"Flink's REST API at {self._url} answered {method} {path} with "
                                          f"HTTP {error.code}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise FlinkClusterUnreachable(f"Flink's REST API at {self._url} did not answer: {reason}") from None
        return json.loads(body) if body else {}

    def running_jobs_named(self, name: str) -> Set[str]:
        """Ids of the jobs called `name` that have not reached a terminal state."""
        return {job["jid"] for job in self._call("/jobs/overview")["jobs"]
                if job["name"] == name and job["state"] not in TERMINAL_STATES}

    def state(self, job_id: str) -> str:
        return self._call(f"/jobs/{job_id}")["state"]

    def cancel(self, job_id: str, wait_seconds: float = 60.0) -> str:
        """Cancels the job and waits until it is terminal; returns that state (CANCELED unless it ended first)."""
        self._call(f"/jobs/{job_id}?mode=cancel", method="PATCH")
        deadline = time.monotonic() + wait_seconds
        while (state := self.state(job_id)) not in TERMINAL_STATES:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Flink job {job_id} still {state} {wait_seconds:.0f} s after its cancel")
            time.sleep(0.5)  # poll interval: Flink reports the state change, it does not push it
        return state
