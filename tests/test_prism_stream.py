"""Unbounded `paybeam stream` on Beam's Prism runner against a real Kafka-protocol broker (docs/DESIGN.md 6).

The CLI runs as a child process (`--runner PrismRunner`, no --bounded: Prism starts with --streaming
and reads Kafka through paybeam's Splittable DoFn), as an operator would run it. While it runs, the
test produces messages and watches the output topics: results are revised as messages arrive
(PENDING, then MATCHED), daily totals fire provisional panes in processing time, and offsets are
committed by bundle finalization. SIGTERM / SIGINT stop it (exit 143 / 130), and a second run of the
same group starts from the committed offsets: it reads only what the first did not. With its
stderr on a terminal, the run redraws its status line (pipelines/stream_status.py) from the job's
metrics, and still stops with 143.
"""
from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from datetime import timedelta
from typing import Callable, Dict, List, Optional

import pytest

from tests.beam_helpers import DAY, T0, at, payment, settlement
from tests.kafka_helpers import read_topic
from tests.prism_helpers import prism_binary
from tests.stream_helpers import (
    INPUTS,
    OUTPUTS,
    REPO,
    committed,
    end_offsets,
    group_name,
    new_topics,
    produce_records,
    wait_until,
)

pytestmark = pytest.mark.engines

STARTUP_DEADLINE_SECONDS = 180  # Prism start, pipeline submission, the LOOPBACK worker, first poll
OUTPUT_DEADLINE_SECONDS = 90
STOP_DEADLINE_SECONDS = 60


def _unbounded_arguments(bootstrap_servers: str, topics: Dict[str, str], group: str) -> List[str]:
    arguments = ["stream", "--runner", "PrismRunner", "--bootstrap-servers", bootstrap_servers, "--group-id", group,
                 "--idle-timeout", "1", "--early-firing", "1s"]
    for name in INPUTS + OUTPUTS:
        arguments += [f"--{name.replace('_', '-')}-topic", topics[name]]
    return arguments


def _decoded(bootstrap_servers: str, topic: str) -> List[dict]:
    return [json.loads(message.value) for message in read_topic(bootstrap_servers, topic)]


def _start(arguments: List[str]) -> subprocess.Popen:
    """`paybeam ARGS` in a session of its own, so a failing test can kill it with the Prism it started."""
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", *arguments], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": REPO}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


def _wait_for(what: str, condition: Callable[[], Optional[object]], process: subprocess.Popen,
              deadline_seconds: float = OUTPUT_DEADLINE_SECONDS):
    return wait_until(what, condition, process, deadline_seconds, "paybeam stream")


def _stop(process: subprocess.Popen, signum: int) -> str:
    process.send_signal(signum)
    try:
        _, stderr = process.communicate(timeout=STOP_DEADLINE_SECONDS)
    except subprocess.TimeoutExpired:
        _kill(process)
        stderr = ""
        pytest.fail(f"paybeam stream did not stop within {STOP_DEADLINE_SECONDS}s of {signal.Signals(signum).name}:\n"
                    f"{stderr[-4000:]}")
    return stderr


def _recent() -> int:
    """An event-time offset from beam_helpers.T0 to half a minute ago. The reader's idle partitions
    release the watermark to wall-clock now (minus --idle-timeout), so records of today are on time
    and far from their deadlines (days), and today's daily totals are still open: EARLY panes only."""
    return int(time.time() * 1000) - at() - 30_000


def _day(offset: int) -> str:
    return (T0 + timedelta(milliseconds=offset)).date().isoformat()


def _results_of(rows: List[dict], reference: str) -> List[tuple]:
    return sorted((row["status"], row["revision"]) for row in rows if row["processor_reference"] == reference)


@pytest.fixture(scope="module")
def prism_built():
    return prism_binary()  # fails with the `make engine-prism` hint when it was not fetched


def test_unbounded_stream_on_prism_revises_fires_early_commits_stops_and_resumes(kafka_broker, prism_built):
    servers = kafka_broker.bootstrap_servers
    topics, group = new_topics(servers), group_name()
    now = _recent()
    produce_records(servers, topics["payments"], [payment("e1", "ref_1", 1000, time=now)], "payment_event")
    process = _start(_unbounded_arguments(servers, topics, group))
    try:
        pending = _wait_for("PENDING result for ref_1", lambda: [
            row for row in _decoded(servers, topics["results"]) if row["processor_reference"] == "ref_1"], process,
            STARTUP_DEADLINE_SECONDS)
        assert [(row["status"], row["revision"]) for row in pending] == [("PENDING", 1)]

        produce_records(servers, topics["settlements"], [settlement("s1", "ref_1", 1000, time=now + 1000)],
                        "settlement_line")
        _wait_for("MATCHED revision of ref_1", lambda: ("MATCHED", 2) in _results_of(
            _decoded(servers, topics["results"]), "ref_1"), process)

        # Daily totals: the watermark (wall-clock now) is still inside today, so its panes are EARLY,
        # fired by the 1 s processing-time trigger.
        early = _wait_for("an EARLY daily-total pane", lambda: [
            row for row in _decoded(servers, topics["daily_totals"]) if row["pane_timing"] == "EARLY"], process)
        assert {row["settlement_day"] for row in early} <= {_day(now), _day(now + DAY)}  # (a run across midnight)
        assert all(not row["is_final"] for row in early)

        # Offsets: committed by bundle finalization once the bundles that read them were committed.
        _wait_for("offsets committed to the end", lambda: all(
            committed(servers, group, topics[name]) .get(p, -1) == end
            for name in INPUTS for p, end in end_offsets(servers, topics[name]).items()), process)
        stderr = _stop(process, signal.SIGTERM)
    finally:
        _kill(process)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "error: stopped by SIGTERM" in stderr
    first_run = {(message.partition, message.offset) for message in read_topic(servers, topics["results"])}

    # While nothing runs: a payment and its settlement. The second run of the group starts at the
    # committed offsets, so it reads these two and nothing the first run had committed.
    produce_records(servers, topics["payments"], [payment("e2", "ref_2", 700, time=now + 2000)], "payment_event")
    produce_records(servers, topics["settlements"], [settlement("s2", "ref_2", 700, time=now + 3000)],
                    "settlement_line")
    process = _start(_unbounded_arguments(servers, topics, group))
    try:
        _wait_for("MATCHED result for ref_2", lambda: "MATCHED" in {status for status, _ in _results_of(
            _decoded(servers, topics["results"]), "ref_2")}, process, STARTUP_DEADLINE_SECONDS)
        _wait_for("the second run's offsets committed to the end", lambda: all(
            committed(servers, group, topics[name]).get(p, -1) == end
            for name in INPUTS for p, end in end_offsets(servers, topics[name]).items()), process)
        stderr = _stop(process, signal.SIGINT)
    finally:
        _kill(process)
    assert process.returncode == 130, stderr[-3000:]
    assert "error: interrupted" in stderr
    second_run = [json.loads(message.value) for message in read_topic(servers, topics["results"])
                  if (message.partition, message.offset) not in first_run]
    # Nothing of the first run was read again (its state is gone, so a re-read ref_1 would be judged again).
    assert _results_of(second_run, "ref_1") == []
    assert {row["processor_reference"] for row in second_run} == {"ref_2"}


def test_the_job_service_deadline_ends_an_unbounded_run_in_one_line_naming_it(kafka_broker, prism_built):
    """Beam's --job_server_timeout is the gRPC deadline of the job's state and message streams: an idle
    unbounded run given 20 s dies at about 20 s, and its error line names the deadline (gRPC's text ends
    with a lone `>`, which used to be the whole message). paybeam's own default for unbounded runs is
    ten years (tests/test_runner_options.py); Beam's 300 s ended every run after five minutes."""
    servers = kafka_broker.bootstrap_servers
    topics, group = new_topics(servers), group_name()
    started = time.monotonic()
    process = _start(_unbounded_arguments(servers, topics, group) + ["--job_server_timeout=20"])
    try:
        _, stderr = process.communicate(timeout=STARTUP_DEADLINE_SECONDS)
    finally:
        _kill(process)
    lasted = time.monotonic() - started
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert process.returncode == 1, stderr[-3000:]
    # One line; gRPC's own detail between the status and paybeam's explanation varies by how the stream
    # ended ("(Deadline Exceeded)", "(RST_STREAM (Received RST_STREAM with error code 8))").
    assert len(errors) == 1, stderr[-3000:]
    assert errors[0].startswith("paybeam stream: error: the run failed: gRPC DEADLINE_EXCEEDED: Stream removed (")
    assert errors[0].endswith(") (the job service's deadline, --job_server_timeout seconds)"), errors
    assert 20 <= lasted < 20 + 60, lasted  # the deadline counts from the submission, after Prism started
    # Prism finalizes every bundle of a stage whose ParDo payload asks for finalization; each idle poll that
    # registered no callback used to log a "Bundle is not in a finalizable state" traceback (dozens in these
    # 20 s). What may remain is one bundle per input that only pairs and splits its partitions' restrictions
    # (those stages carry the reader's payload but never call process()): at most two, whatever the run's age.
    unfinalizable = set(re.findall(r"not in a finalizable state for (\S+)", stderr))
    assert len(unfinalizable) <= 2, stderr[-3000:]


STATUS_DEADLINE_SECONDS = 45  # Prism start (~5 s), the first polls, the bundles that count them


def _start_on_a_terminal(arguments: List[str]) -> tuple:
    """`paybeam ARGS` with its stderr on a pseudo-terminal 400 columns wide: the status line is redrawn."""
    terminal, child_end = pty.openpty()
    fcntl.ioctl(child_end, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 400, 0, 0))
    process = subprocess.Popen([sys.executable, "-m", "pipelines.cli", *arguments], cwd=REPO,
                               env={**os.environ, "PYTHONPATH": REPO, "COLUMNS": "400"}, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=child_end, start_new_session=True)
    os.close(child_end)
    return process, terminal


def _drain(terminal: int, timeout: float) -> str:
    """What the child wrote to its terminal within `timeout` seconds ("" once it is closed)."""
    ready, _, _ = select.select([terminal], [], [], timeout)
    if not ready:
        return ""
    try:
        return os.read(terminal, 65536).decode("utf-8", "replace")
    except OSError:  # EIO: every writer is gone
        return ""


def _segments(text: str) -> List[str]:
    """The terminal's text split where a line was ended or redrawn, without the clear-to-end codes."""
    return [segment for segment in re.split(r"[\r\n]+", text.replace("\x1b[K", "")) if segment]


def test_an_unbounded_stream_on_a_terminal_redraws_its_status_line_and_still_stops_with_143(kafka_broker,
                                                                                          prism_built):
    servers = kafka_broker.bootstrap_servers
    topics, group = new_topics(servers), group_name()
    now = _recent()
    produce_records(servers, topics["payments"], [payment(f"e{n}", f"ref_{n}", 1000, time=now + n) for n in range(3)],
                    "payment_event")
    produce_records(servers, topics["settlements"],
                    [settlement(f"s{n}", f"ref_{n}", 1000, time=now + 1000 + n) for n in range(2)], "settlement_line")
    started = time.monotonic()
    process, terminal = _start_on_a_terminal(_unbounded_arguments(servers, topics, group) + ["--status-interval", "1"])
    text = ""
    try:
        wanted = "paybeam stream: 3 payments · 2 settlements read"
        deadline = time.monotonic() + STATUS_DEADLINE_SECONDS
        while not any(segment.startswith(wanted) and "result rows" in segment for segment in _segments(text)):
            if process.poll() is not None or time.monotonic() > deadline:
                text += _drain(terminal, 1)
                pytest.fail(f"no status line with {wanted!r} and result rows (exit {process.returncode}):\n"
                            f"{text[-4000:]}")
            text += _drain(terminal, 0.5)  # bounded wait for the child's next write
        process.send_signal(signal.SIGTERM)
        stop_deadline = time.monotonic() + STOP_DEADLINE_SECONDS
        while process.poll() is None and time.monotonic() < stop_deadline:
            text += _drain(terminal, 0.5)
        text += _drain(terminal, 1)
    finally:
        _kill(process)
        os.close(terminal)
    assert process.returncode == 128 + signal.SIGTERM, text[-3000:]
    counted = [segment for segment in _segments(text) if segment.startswith(wanted)]
    assert re.search(r"· \d+ result rows \(", counted[-1]), counted[-1]
    assert "\rpaybeam stream: 3 payments" in text  # drawn in place
    # The line was ended before the error line: it starts a line of its own.
    assert "\npaybeam stream: error: stopped by SIGTERM" in text.replace("\r\n", "\n").replace("\x1b[K", ""), \
        text[-3000:]
    assert time.monotonic() - started < 60
