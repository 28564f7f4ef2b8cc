"""The few calls of Flink's REST API (the JobManager's `--flink_master` endpoint) paybeam makes itself:
how many TaskManagers it has, which jobs of a name are running, how often one has restarted and why it
first failed, and cancelling one until Flink reports it cancelled."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Optional, Set

from schemas.errors import last_informative_line

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

    def taskmanagers(self) -> int:
        """How many TaskManagers are registered with the cluster."""
        return len(self._call("/taskmanagers")["taskmanagers"])

    def state(self, job_id: str) -> str:
        return self._call(f"/jobs/{job_id}")["state"]

    def restarts(self, job_id: str) -> int:
        """How many times the job has restarted (Flink's `numRestarts`, region failovers included)."""
        values = self._call(f"/jobs/{job_id}/metrics?get=numRestarts")
        return int(values[0]["value"]) if values else 0

    def first_failure(self, job_id: str) -> Optional[str]:
        """The line naming the oldest root failure in the job's exception history (Flink keeps the newest 16
        by default: `web.exception-history-size`), or None. A Python step's failure is a Java exception whose
        message ends with the SDK harness's traceback, so the line is the last one before the Java frames."""
        entries = self._call(f"/jobs/{job_id}/exceptions")["exceptionHistory"]["entries"]
        if not entries:
            return None
        message = entries[-1]["stacktrace"].split("\n\tat ", 1)[0]
        return last_informative_line(message)[:500]

    def cancel(self, job_id: str, wait_seconds: float = 60.0) -> str:
        """Cancels the job and waits until it is terminal; returns that state (CANCELED unless it ended first)."""
        self._call(f"/jobs/{job_id}?mode=cancel", method="PATCH")
        deadline = time.monotonic() + wait_seconds
        while (state := self.state(job_id)) not in TERMINAL_STATES:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Flink job {job_id} still {state} {wait_seconds:.0f} s after its cancel")
            time.sleep(0.5)  # poll interval: Flink reports the state change, it does not push it
        return state
