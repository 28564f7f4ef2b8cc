"""Publishing a reconcile run: built aside, made visible at once, `run.json` and `_SUCCESS` last.

A run writes every output into a staging directory next to `--output`
(`.<name>.paybeam-tmp-<pid>`), then adds `run.json` and `_SUCCESS`. On a
local filesystem the staging directory is then swapped in with one atomic
rename (pipelines/io/atomic_publish.py), so `--output` always holds one
complete run: the previous one until the swap, the new one after it. A crash
or Ctrl-C before the swap leaves the previous run untouched; the staging
directory of a dead process is removed by the next run.

Object stores (any `scheme://` Beam filesystem: s3, gs, ...) have no
directory rename. There the previous `_SUCCESS` and `run.json` are deleted
first, then the previous outputs, then the staged files are moved in, and
`run.json` and `_SUCCESS` come last: a reader that sees `_SUCCESS` sees one
complete run (the Hadoop convention); a crash midway leaves no `_SUCCESS`.
"""
from __future__ import annotations

import glob
import logging
import os
import queue
import shutil
import threading
from typing import List, Optional

from apache_beam.io.filesystems import FileSystems

from pipelines.io.atomic_publish import publish, publish_barrier
from schemas.errors import UserError, one_line


class OutputRefused(UserError):
    """--output cannot take a run: a file, a directory with foreign entries, unwritable or unreachable."""


RUN_JSON = "run.json"
SUCCESS = "_SUCCESS"
# Not empty: Beam's S3 writer cannot complete an upload of zero bytes (measured against moto's S3).
SUCCESS_TEXT = "complete: run.json describes this run\n"
# What a reconcile run writes; a directory holding anything else is not replaced.
RUN_ENTRIES = frozenset({"results", "daily_totals", "dead_letters", "csv", "alerts", RUN_JSON, SUCCESS,
                         "_counts.json"})
PROBE_TIMEOUT_SECONDS = 30.0
_TMP_MARK = ".paybeam-tmp-"
_OLD_MARK = ".paybeam-old-"


def is_remote(path: str) -> bool:
    return "://" in path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_text(path: str, text: str) -> None:
    with FileSystems.create(path, mime_type="application/json") as handle:
        handle.write(text.encode("utf-8"))


class RunOutput:
    """The output of one reconcile run: `staging` to write into, then `publish` or `discard`."""

    def __init__(self, output: str, pid: Optional[int] = None, probe_timeout: float = PROBE_TIMEOUT_SECONDS):
        self.output = output.rstrip("/")
        self._probe_timeout = probe_timeout
        self._pid = pid if pid is not None else os.getpid()
        self.remote = is_remote(self.output)
        if self.remote:
            self.staging = f"{self.output}{_TMP_MARK}{self._pid}"
        else:
            final = os.path.abspath(self.output)
            parent, name = os.path.split(final)
            self.staging = os.path.join(parent, f".{name}{_TMP_MARK}{self._pid}")
            self._old = os.path.join(parent, f".{name}{_OLD_MARK}{self._pid}")

    # -- before the run ------------------------------------------------------------------------------
    def prepare(self) -> List[str]:
        """Checks the output can be written and replaced, removes debris of dead runs, creates the staging
        directory; returns what it cleaned. Raises OutputRefused with one line on any problem."""
        if self.remote:
            return self._prepare_remote()
        return self._prepare_local()

    def _prepare_local(self) -> List[str]:
        final = os.path.abspath(self.output)
        if os.path.exists(final):
            if not os.path.isdir(final):
                raise OutputRefused(f"--output {self.output!r} is a file, not a directory")
            foreign = sorted(set(os.listdir(final)) - RUN_ENTRIES)
            if foreign:
                raise OutputRefused(f"--output {self.output!r} holds {foreign[0]!r}, which is not part of a paybeam "
                                    f"run; a run replaces its whole output directory, so name a new or empty one")
        cleaned = self._clean_dead_runs(final)
        try:
            os.makedirs(os.path.dirname(final), exist_ok=True)
            if os.path.exists(self.staging):
                shutil.rmtree(self.staging)
            os.makedirs(self.staging)
        except OSError as error:
            raise OutputRefused(f"--output {self.output!r}: cannot write next to it "
                                f"({error.strerror or error})") from None
        return cleaned

    def _clean_dead_runs(self, final: str) -> List[str]:
        parent, name = os.path.split(final)
        cleaned = []
        for path in sorted(glob.glob(os.path.join(glob.escape(parent), f".{glob.escape(name)}.paybeam-*-*"))):
            mark, _, pid = os.path.basename(path)[len(name) + 1:].rpartition("-")
            if not pid.isdigit() or pid_alive(int(pid)) and int(pid) != self._pid:
                continue
            if mark + "-" == _OLD_MARK and not os.path.isdir(final) and os.path.isfile(os.path.join(path, SUCCESS)):
                os.rename(path, final)  # a crash between "final -> old" and "tmp -> final"
                cleaned.append(f"restored {final} from {os.path.basename(path)}")
            else:
                shutil.rmtree(path, ignore_errors=True)
                cleaned.append(f"removed {os.path.basename(path)}")
        return cleaned

    def _prepare_remote(self) -> List[str]:
        probe = f"{self.staging}/.probe"
        outcome: "queue.Queue[Optional[BaseException]]" = queue.Queue()

        def write_probe() -> None:
            try:
                _write_text(probe, "{}")
                FileSystems.delete([probe])
                outcome.put(None)
            except BaseException as error:  # noqa: BLE001 — reported by the launcher thread
                outcome.put(error)

        # Beam's filesystems log each failed request with its traceback; the one error line says it all.
        logging.disable(logging.CRITICAL)
        try:
            # A daemon thread: client libraries retry an unreachable store for minutes (gs:// offline: 4 min).
            threading.Thread(target=write_probe, name="paybeam-output-probe", daemon=True).start()
            try:
                error = outcome.get(timeout=self._probe_timeout)
            except queue.Empty:
                raise OutputRefused(f"--output {self.output!r} cannot be reached: no answer within "
                                    f"{self._probe_timeout:g} s") from None
        finally:
            logging.disable(logging.NOTSET)
        if error is not None:
            raise OutputRefused(f"--output {self.output!r} cannot be written: {one_line(error)}")
        return []

    # -- after the run -------------------------------------------------------------------------------
    def publish(self, run_json: str) -> None:
        """Adds run.json and _SUCCESS to the staged outputs and makes them the output, replacing the previous
        run completely."""
        publish_barrier()
        if self.remote:
            self._publish_remote(run_json)
            return
        _write_text(os.path.join(self.staging, RUN_JSON), run_json)
        _write_text(os.path.join(self.staging, SUCCESS), SUCCESS_TEXT)
        publish(self.staging, os.path.abspath(self.output), self._old)

    def _publish_remote(self, run_json: str) -> None:
        final = self.output
        for marker in (f"{final}/{SUCCESS}", f"{final}/{RUN_JSON}"):
            if FileSystems.exists(marker):
                FileSystems.delete([marker])
        previous = _files_under(final)
        if previous:
            FileSystems.delete(previous)
        staged = _files_under(self.staging)
        if staged:
            FileSystems.rename(staged, [final + path[len(self.staging):] for path in staged])
        _write_text(f"{final}/{RUN_JSON}", run_json)
        _write_text(f"{final}/{SUCCESS}", SUCCESS_TEXT)

    def discard(self) -> None:
        """Removes the staged outputs (a failed or interrupted run); never raises."""
        try:
            if self.remote:
                staged = _files_under(self.staging)
                if staged:
                    FileSystems.delete(staged)
            else:
                shutil.rmtree(self.staging, ignore_errors=True)
        except Exception:  # noqa: BLE001 — cleanup must not hide the run's own error
            pass


def _files_under(prefix: str) -> List[str]:
    matches = FileSystems.match([f"{prefix}/**"])[0].metadata_list
    return sorted(match.path for match in matches if not match.path.endswith("/"))
