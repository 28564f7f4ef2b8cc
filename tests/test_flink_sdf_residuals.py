"""The embedded Flink keeps a bounded set of SDF residual states however long a Kafka reader polls (docs/DESIGN.md 7).

Beam 2.70's Flink runner stores each bundle's SDF residuals under a value state of a new name,
`sdf_checkpoint:<n>:<index>` with n counting up for ever, and Flink keeps every state name it has seen:
the reading stage's checkpoint (and its synchronous snapshot, during which the stage emits nothing) grew
with every read call for as long as a job ran (apache/beam#27648). paybeam's fetch compiles a
replacement of that one class (deploy/fetch/flink_patch/) whose names cycle through RESIDUAL_NAMES values.

The live risk stream runs on the embedded Flink, idle on three partitions: every read call there ends in a
residual (hundreds in the test's minute), and the checkpoint Flink writes must name no residual state
beyond the cycle. The unpatched runner fails it with names numbered in the hundreds.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipelines.io.kafka import create_topics
from tests.kafka_helpers import unique_topic
from tests.stream_helpers import REPO
from tests.test_risk_rules_in_force import V1
from tests.test_risk_stream import STARTUP_DEADLINE_SECONDS, _runner_arguments, _start, _stop, _wait_for

pytestmark = pytest.mark.engines

PATCH = Path(REPO) / "deploy" / "fetch" / "flink_patch" / "BundleCheckpointHandlers.java"
RESIDUAL_NAMES = int(re.search(r"RESIDUAL_NAMES = (\d+);", PATCH.read_text()).group(1))
RESIDUAL_STATE = re.compile(rb"sdf_checkpoint:(\d+):(\d+)")
CHECKPOINTS_SEEN = 4  # ten seconds apart: 40 s of polling, a few hundred read calls on three partitions


def _latest_checkpoint(storage: Path):
    """(number, files) of the newest complete checkpoint under a run's storage path, or None."""
    done = [path.parent for path in storage.glob("*/chk-*/_metadata")]
    if not done:
        return None
    latest = max(done, key=lambda path: int(path.name.split("-")[1]))
    try:
        return int(latest.name.split("-")[1]), [path.read_bytes() for path in latest.iterdir() if path.is_file()]
    except FileNotFoundError:
        return None  # Flink removed it as the next one completed: look again


def test_a_polling_reader_keeps_a_bounded_set_of_residual_states_on_the_embedded_flink(kafka_broker, tmp_path,
                                                                                       request):
    servers = kafka_broker.bootstrap_servers
    topics = {name: unique_topic(name) for name in ("attempts", "decisions", "dead_letters")}
    create_topics(servers, [topics["attempts"]], partitions=3)
    create_topics(servers, [topics["decisions"], topics["dead_letters"]], partitions=1)
    rules = tmp_path / "rules.yaml"
    rules.write_text(V1)
    storage = tmp_path / "checkpoints"
    arguments = ["risk", "stream", *_runner_arguments("FlinkRunner", request),
                 f"--state_backend_storage_path={storage.as_uri()}", "--bootstrap-servers", servers,
                 "--attempts-topic", topics["attempts"], "--decisions-topic", topics["decisions"],
                 "--dead-letters-topic", topics["dead_letters"], "--rules", str(rules), "--start", "earliest",
                 "--group-id", unique_topic("g")]
    process = _start(arguments)
    try:
        seen = _wait_for(f"checkpoint {CHECKPOINTS_SEEN}", lambda: (lambda latest: latest if latest and latest[0] >=
                         CHECKPOINTS_SEEN else None)(_latest_checkpoint(storage)), process,
                         STARTUP_DEADLINE_SECONDS + 10 * CHECKPOINTS_SEEN)
    finally:
        _stop(process)
    names = {match for data in seen[1] for match in RESIDUAL_STATE.findall(data)}
    assert names, "no residual state in the checkpoint: the reader did not poll"
    assert max(int(bundle) for bundle, _ in names) < RESIDUAL_NAMES, sorted(names)[-5:]
    assert len(names) <= RESIDUAL_NAMES * 3
