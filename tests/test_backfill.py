"""`paybeam backfill`: per-date runs, skip when unchanged, byte-identical re-runs, crash safety, scheduling files.

Real pipeline runs on the DirectRunner over a small generated dataset split
into date partitions (in/payments/{date}/part.csv, in/settlements/{date}/part.csv).
"""
from __future__ import annotations

import argparse
import ast
import configparser
import csv
import glob
import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from datagen.generator import GeneratorConfig, generate
from datagen.partitions import split_by_date
from pipelines import backfill
from pipelines.arguments import UsageError
from pipelines.io.atomic_publish import PUBLISH_BARRIER_ENV, OutputLocked
from runners.options import OptionsError
from schemas import arrow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATES = ("2026-01-05", "2026-01-06", "2026-01-07")
DATA_FILES = (backfill.RESULTS_FILE, backfill.DAILY_TOTALS_FILE, backfill.DEAD_LETTERS_FILE, backfill.MANIFEST)


# --------------------------------------------------------------------------- helpers

def _args(inputs: str, output: str, *extra: str, date_from: str = DATES[0], date_to: str = DATES[-1]):
    return ["--from", date_from, "--to", date_to,
            "--payments", os.path.join(inputs, "payments", "{date}", "*.csv"),
            "--settlements", os.path.join(inputs, "settlements", "{yyyy}-{mm}-{dd}", "*"),
            "--output", output,
            # One partition per date: these tests are about publishing, skipping and failing per date.
            # test_window_* below cover reading neighbouring partitions.
            "--days-before", "0", "--days-after", "0", *extra]


def _run(argv, lines=None):
    parser = argparse.ArgumentParser()
    backfill.add_backfill_arguments(parser)
    args, beam_args = parser.parse_known_args(argv)
    sink = lines if lines is not None else []
    return backfill.run_backfill(args, beam_args, out=sink.append)


def _status_lines(lines):
    return {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in lines if line[:4].isdigit() and ":" in line[:11]}


def _snapshot(output: str, names=None) -> dict:
    """{relative path: (bytes, mtime_ns)} of every file under `output` except the lock."""
    files = {}
    for root, _, names_here in os.walk(output):
        for name in names_here:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, output)
            if name == backfill.LOCK_FILE or (names is not None and name not in names):
                continue
            with open(path, "rb") as handle:
                files[rel] = (handle.read(), os.stat(path).st_mtime_ns)
    return files


def _bytes(snapshot: dict) -> dict:
    return {rel: content for rel, (content, _) in snapshot.items()}


def _copy_output(source: str, target: str) -> str:
    shutil.copytree(source, target, copy_function=shutil.copy2)
    return target


def _sha256(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _leftovers(output: str):
    return sorted(name for name in os.listdir(output) if name.startswith(".date="))


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    base = tmp_path_factory.mktemp("backfill")
    dataset = generate(GeneratorConfig(payments=200, seed=23, days=3, start="2026-01-05T00:00:00Z"),
                       str(base / "generated"))
    root = str(base / "in")
    assert split_by_date(dataset.out_dir, root) == list(DATES)
    return root


@pytest.fixture(scope="module")
def baseline(inputs, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("baseline") / "out")
    lines = []
    assert _run(_args(inputs, output), lines) == 0, lines
    return output, lines


# --------------------------------------------------------------------------- 1. a range runs

def test_range_runs_every_date_with_manifest(inputs, baseline):
    output, lines = baseline
    statuses = _status_lines(lines)
    assert sorted(statuses) == list(DATES) and all(text.startswith("ran") for text in statuses.values())
    assert sorted(os.listdir(output)) == [backfill.LOCK_FILE] + [f"date={day}" for day in DATES]
    for day in DATES:
        folder = os.path.join(output, f"date={day}")
        assert sorted(os.listdir(folder)) == sorted([*DATA_FILES, backfill.RUN_LOG])
        manifest = json.load(open(os.path.join(folder, backfill.MANIFEST), encoding="utf-8"))
        assert manifest["date"] == day
        # end of the day + the 3-day SLA
        assert manifest["as_of"].startswith(f"2026-01-{int(day[-2:]) + 4:02d}T00:00:00")
        for name in ("payments", "settlements"):
            expected_path = os.path.join(inputs, name, day, "part.csv")
            assert manifest["inputs"][name] == [{"path": expected_path, "size": os.path.getsize(expected_path),
                                                 "sha256": _sha256(expected_path)}]
            counts = manifest["counts"]["window_inputs"][name]
            assert counts["read"] == counts["accepted"] + counts["rejected"] > 0
        assert manifest["paybeam_version"] and manifest["beam_version"]
        assert manifest["options"]["runner"] == "DirectRunner"
        assert manifest["options"]["policy"]["settlement_sla_seconds"] == 3 * 86400
        results = pq.read_table(os.path.join(folder, backfill.RESULTS_FILE))
        assert results.schema.remove_metadata().equals(arrow.RECONCILIATION_RESULT)
        assert results.num_rows == manifest["counts"]["results_rows"] > 0
        assert sum(manifest["counts"]["statuses"].values()) == results.num_rows
        assert pq.ParquetFile(os.path.join(folder, backfill.RESULTS_FILE)).metadata.num_row_groups == 1
        totals = pq.read_table(os.path.join(folder, backfill.DAILY_TOTALS_FILE))
        assert totals.schema.remove_metadata().equals(arrow.DAILY_TOTAL)
        assert results.equals(results.sort_by([(name, "ascending") for name in results.column_names]))
        for entry, info in manifest["outputs"].items():
            assert _sha256(os.path.join(folder, entry)) == info["sha256"]
        letters = open(os.path.join(folder, backfill.DEAD_LETTERS_FILE), encoding="utf-8").read().splitlines()
        assert letters == sorted(letters) and len(letters) == manifest["counts"]["dead_letters_rows"]
        assert "wall" not in json.dumps(manifest) and "started" not in json.dumps(manifest)
    assert "3 ran, 0 skipped, 0 failed" in lines[-1]


# --------------------------------------------------------------------------- 2. skip and --force

def test_rerun_skips_unchanged_dates_and_force_is_byte_identical(inputs, baseline, tmp_path):
    output = _copy_output(baseline[0], str(tmp_path / "out"))
    before = _snapshot(output)
    lines = []
    assert _run(_args(inputs, output), lines) == 0
    assert _status_lines(lines) == {day: "skipped (unchanged)" for day in DATES}
    assert _snapshot(output) == before  # bytes and mtimes
    assert "0 ran, 3 skipped, 0 failed" in lines[-1]

    lines = []
    assert _run(_args(inputs, output, "--force"), lines) == 0
    assert all(text.startswith("ran") for text in _status_lines(lines).values())
    after = _snapshot(output, names=DATA_FILES)
    assert _bytes(after) == _bytes(_snapshot(output=baseline[0], names=DATA_FILES))
    assert all(after[rel][1] != before[rel][1] for rel in after)  # really rewritten
    assert _leftovers(output) == []


# --------------------------------------------------------------------------- 3. a changed input

def test_changed_input_reruns_exactly_that_date(inputs, baseline, tmp_path):
    output = _copy_output(baseline[0], str(tmp_path / "out"))
    before = _snapshot(output)
    path = os.path.join(inputs, "payments", DATES[1], "part.csv")
    original = open(path, "rb").read()
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    captured = next(row for row in rows[1:] if row[2] == "CAPTURED")
    extra = ["evt_backfill_test_extra", "pay_backfill_test_extra", "CAPTURED", captured[3], "ref_backfill_extra",
             captured[5], "1234", captured[7], f"{DATES[1]}T12:00:00.000Z"]
    try:
        with open(path, "a", encoding="utf-8", newline="") as handle:
            csv.writer(handle, lineterminator="\n").writerow(extra)
        lines = []
        assert _run(_args(inputs, output), lines) == 0
        statuses = _status_lines(lines)
        assert statuses[DATES[0]] == statuses[DATES[2]] == "skipped (unchanged)"
        assert statuses[DATES[1]].startswith("ran")
        after = _snapshot(output)
        for rel in before:
            if not rel.startswith(f"date={DATES[1]}"):
                assert after[rel] == before[rel]
        manifest = json.load(open(os.path.join(output, f"date={DATES[1]}", backfill.MANIFEST), encoding="utf-8"))
        assert manifest["inputs"]["payments"][0]["sha256"] == _sha256(path)
        old = json.load(open(os.path.join(baseline[0], f"date={DATES[1]}", backfill.MANIFEST), encoding="utf-8"))
        assert manifest["counts"]["window_inputs"]["payments"]["read"] == old["counts"]["window_inputs"]["payments"]["read"] + 1
    finally:
        with open(path, "wb") as handle:
            handle.write(original)


# --------------------------------------------------------------------------- 4. killed mid-date

def test_killed_run_leaves_previous_output_and_next_run_cleans_up(inputs, baseline, tmp_path):
    output = _copy_output(baseline[0], str(tmp_path / "out"))
    before = _snapshot(output)
    day = DATES[1]
    fifo = _barrier(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.backfill", *_args(inputs, output, "--force", date_from=day, date_to=day)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, PUBLISH_BARRIER_ENV: fifo})
    try:
        _wait_until_staged(fifo)  # the date is complete in its temporary directory, not yet published
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert _leftovers(output) == [f".date={day}.tmp-{process.pid}"]
    without = {rel: value for rel, value in _snapshot(output).items() if not rel.startswith(".date=")}
    assert without == before  # the published directory: same bytes, same mtimes

    lines = []
    assert _run(_args(inputs, output), lines) == 0
    assert f"recovery: removed .date={day}.tmp-{process.pid}" in lines
    assert _status_lines(lines) == {d: "skipped (unchanged)" for d in DATES}
    assert _leftovers(output) == []
    assert _snapshot(output) == before


def _barrier(tmp_path) -> str:
    fifo = str(tmp_path / "barrier")
    os.mkfifo(fifo)
    return fifo


def _wait_until_staged(fifo: str) -> None:
    """Blocks until a run reaches pipelines.io.atomic_publish.publish_barrier (everything staged)."""
    with open(fifo, encoding="utf-8") as handle:
        assert handle.read() == "staged\n"


def _children(pid: int) -> list:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _wait_until_gone(pids: list, timeout: float) -> list:
    """Waits for the processes to end (pidfds become readable when they do); returns those still alive."""
    poller, alive = select.poll(), {}
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        alive[fd] = pid
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout  # a bound on a hang, not a timing assertion
    try:
        while alive and time.monotonic() < deadline:
            for fd, _ in poller.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                poller.unregister(fd)
                alive.pop(fd)
                os.close(fd)
        return sorted(alive.values())
    finally:
        for fd in alive:
            os.close(fd)


def test_parallel_workers_die_with_a_killed_backfill(inputs, baseline, tmp_path):
    """Observed before: workers of a SIGKILLed backfill went on and started (and published) new dates."""
    output = _copy_output(baseline[0], str(tmp_path / "out"))
    before = _snapshot(output)
    fifo = _barrier(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.backfill", *_args(inputs, output, "--force", "--parallel", "2")],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, PUBLISH_BARRIER_ENV: fifo})
    try:
        _wait_until_staged(fifo)  # a worker holds a complete date; the other is running or waiting too
        workers = _children(process.pid)
        assert workers, "the backfill has no worker processes"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert _wait_until_gone(workers, timeout=60) == [], "workers outlived their parent"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    published = {rel: value for rel, value in _snapshot(output).items() if not rel.startswith(".date=")}
    assert published == before  # no worker published anything after its parent died


def test_crash_between_renames_is_recovered(inputs, baseline, tmp_path):
    """The fallback publish (no RENAME_EXCHANGE) can die after final -> .old; the next run restores .old."""
    output = _copy_output(baseline[0], str(tmp_path / "out"))
    before = _snapshot(output)
    day = DATES[2]
    os.rename(os.path.join(output, f"date={day}"), os.path.join(output, f".date={day}.old-4242"))
    shutil.copytree(os.path.join(baseline[0], f"date={day}"), os.path.join(output, f".date={day}.tmp-4242"))
    lines = []
    assert _run(_args(inputs, output), lines) == 0
    assert f"recovery: restored {os.path.join(output, f'date={day}')} from .date={day}.old-4242" in lines
    assert _status_lines(lines) == {d: "skipped (unchanged)" for d in DATES}
    assert _leftovers(output) == []
    assert _snapshot(output) == before


def test_publish_without_exchange_swaps_directories(tmp_path):
    final, tmp, old = (str(tmp_path / name) for name in ("final", "tmp", "old"))
    for folder, text in ((final, "old"), (tmp, "new")):
        os.makedirs(folder)
        with open(os.path.join(folder, "f"), "w") as handle:
            handle.write(text)
    backfill.publish(tmp, final, old, use_exchange=False)
    assert open(os.path.join(final, "f")).read() == "new"
    assert sorted(os.listdir(tmp_path)) == ["final"]


def test_second_backfill_on_same_output_is_refused(tmp_path):
    output = str(tmp_path / "out")
    os.makedirs(output)
    with backfill.OutputLock(output):
        with pytest.raises(OutputLocked, match="another backfill") as refused:
            with backfill.OutputLock(output):
                pass
    assert refused.value.exit_code == 2  # what the user gave (an output in use), not a failed run


# --------------------------------------------------------------------------- 5. a bad date

def test_missing_inputs_fail_only_that_date(inputs, baseline, tmp_path):
    output = _copy_output(baseline[0], str(tmp_path / "out"))
    before = _snapshot(output)
    day = DATES[1]
    settlements = os.path.join(inputs, "settlements", day)
    aside = str(tmp_path / "aside")
    shutil.move(settlements, aside)
    try:
        lines = []
        assert _run(_args(inputs, output, "--force"), lines) == 1
    finally:
        shutil.move(aside, settlements)
    statuses = _status_lines(lines)
    assert statuses[day].startswith("failed") and "settlements" in statuses[day] and "no files match" in statuses[day]
    assert statuses[DATES[0]].startswith("ran") and statuses[DATES[2]].startswith("ran")
    assert "2 ran, 0 skipped, 1 failed" in lines[-1]
    table_row = next(line for line in lines[-1].splitlines() if line.startswith(day))
    assert "failed" in table_row and "no files match" in table_row
    after = _snapshot(output)
    assert {rel: v for rel, v in after.items() if rel.startswith(f"date={day}")} == \
        {rel: v for rel, v in before.items() if rel.startswith(f"date={day}")}
    assert _leftovers(output) == []


def test_pipeline_error_fails_only_that_date(inputs, baseline, tmp_path, monkeypatch):
    """A date whose pipeline fails fails alone: the range job fails, its dates re-run one job each."""
    import apache_beam as beam

    from pipelines import backfill_run, reconcile_batch

    output = _copy_output(baseline[0], str(tmp_path / "out"))
    before = _snapshot(output)
    bad_day = DATES[0]
    real_build = reconcile_batch.build_pipeline
    real_range = backfill_run.build_range_pipeline
    range_jobs = []

    def boom(_):
        raise RuntimeError("corrupt record in the test input")

    def poison_if_bad_day(pipeline, paths):
        if any(f"{os.sep}{bad_day}{os.sep}" in path for path in paths):
            _ = pipeline | "Poison" >> beam.Create([1]) | "Boom" >> beam.Map(boom)

    def build(pipeline, job, *rest):
        real_build(pipeline, job, *rest)
        poison_if_bad_day(pipeline, job.payments)

    def build_range(pipeline, jobs, shards, *rest):
        range_jobs.append(len(jobs))
        real_range(pipeline, jobs, shards, *rest)
        poison_if_bad_day(pipeline, [path for job in jobs for path in job.payments])

    monkeypatch.setattr(reconcile_batch, "build_pipeline", build)
    monkeypatch.setattr(backfill_run, "build_range_pipeline", build_range)
    lines = []
    assert _run(_args(inputs, output, "--force", date_to=DATES[1]), lines) == 1
    statuses = _status_lines(lines)
    assert statuses[bad_day].startswith("failed") and "corrupt record in the test input" in statuses[bad_day]
    assert "\n" not in statuses[bad_day]
    assert statuses[DATES[1]].startswith("ran")
    after = _snapshot(output)
    assert {rel: v for rel, v in after.items() if rel.startswith(f"date={bad_day}")} == \
        {rel: v for rel, v in before.items() if rel.startswith(f"date={bad_day}")}
    assert _leftovers(output) == []
    assert range_jobs == [2]  # both dates were tried as one job first


# --------------------------------------------------------------------------- 6. --parallel

def test_parallel_gives_the_sequential_bytes(inputs, baseline, tmp_path):
    output = str(tmp_path / "out")
    lines = []
    assert _run(_args(inputs, output, "--parallel", "2"), lines) == 0
    assert all(text.startswith("ran") for text in _status_lines(lines).values())
    assert _bytes(_snapshot(output, names=DATA_FILES)) == _bytes(_snapshot(baseline[0], names=DATA_FILES))


# --------------------------------------------------------------------------- 7. usage errors

@pytest.mark.parametrize("change, message", [
    ({"--from": "2026-01-07", "--to": "2026-01-05"}, "is after"),
    ({"--from": "2026-02-30"}, "--from"),
    ({"--to": "yesterday"}, "not a date"),
    ({"--payments": "in/payments/*.csv"}, "no date placeholder"),
    ({"--settlements": "in/{yyyy}/{mm}/*.csv"}, "no date placeholder"),
    ({"--payments": "in/{day}/*.csv"}, "unknown placeholder"),
    ({"--payments": "in/{date}/../2026-01-08/*.csv"}, "'..' segment"),
    ({"--parallel": "0"}, "--parallel"),
    ({"--settlement-sla": "three days"}, "duration"),
    ({"--time-zone": "Mars/Olympus"}, "invalid option"),
])
def test_usage_errors(tmp_path, change, message):
    values = {"--from": "2026-01-05", "--to": "2026-01-06", "--payments": "in/{date}/p.csv",
              "--settlements": "in/{date}/s.csv", "--output": str(tmp_path / "out")}
    values.update(change)
    argv = [item for pair in values.items() for item in pair]
    with pytest.raises(UsageError, match=message):
        _run(argv)
    assert not os.path.exists(tmp_path / "out")


def test_as_of_is_not_an_option_and_unknown_beam_flags_are_refused(tmp_path):
    parser = argparse.ArgumentParser()
    backfill.add_backfill_arguments(parser)
    assert "--as-of" not in parser._option_string_actions
    argv = ["--from", "2026-01-05", "--to", "2026-01-05", "--payments", "a/{date}", "--settlements", "b/{date}",
            "--output", str(tmp_path / "out"), "--flink_mster=x"]
    with pytest.raises(OptionsError, match="flink_mster") as refused:
        _run(argv)
    assert refused.value.exit_code == 2


def test_as_of_follows_time_zone_and_cutoff():
    from datetime import date, timedelta

    utc = backfill.as_of_millis_for(date(2026, 1, 5), "UTC", 0, timedelta(days=3))
    assert utc == 1767916800000  # 2026-01-09T00:00:00Z
    berlin = backfill.as_of_millis_for(date(2026, 1, 5), "Europe/Berlin", 0, timedelta(days=3))
    assert utc - berlin == 3600 * 1000
    assert backfill.as_of_millis_for(date(2026, 1, 5), "UTC", 6, timedelta(0)) == 1767657600000 + 6 * 3600 * 1000  # 2026-01-06T06:00Z


def test_main_reports_usage_errors_in_one_line(capsys):
    assert backfill.main(["--from", "2026-01-02", "--to", "2026-01-01", "--payments", "a/{date}",
                          "--settlements", "b/{date}", "--output", "/nonexistent/out"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m pipelines.backfill: error:") and "\n" not in err


# --------------------------------------------------------------------------- scheduling files

SCHEDULE = os.path.join(REPO, "deploy", "schedule")


def test_airflow_dag_parses_and_uses_the_beam_operator():
    path = os.path.join(SCHEDULE, "airflow_paybeam_backfill.py")
    source = open(path, encoding="utf-8").read()
    tree = ast.parse(source)
    imports = {(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               for alias in node.names}
    assert ("airflow.providers.apache.beam.operators.beam", "BeamRunPythonPipelineOperator") in imports
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and getattr(node.func, "id", None) == "BeamRunPythonPipelineOperator"]
    assert calls
    keywords = {keyword.arg for keyword in calls[0].keywords}
    assert {"task_id", "py_file", "py_options", "pipeline_options", "runner"} <= keywords
    assert "pipelines.backfill" in source and "paybeam backfill" in source


def test_systemd_units_and_cron():
    service = configparser.ConfigParser(interpolation=None, strict=False)
    service.optionxform = str
    service.read(os.path.join(SCHEDULE, "paybeam-backfill.service"))
    assert service["Service"]["Type"] == "oneshot"
    assert "paybeam backfill" in service["Service"]["ExecStart"]
    assert "--from" in service["Service"]["ExecStart"] and "--to" in service["Service"]["ExecStart"]
    timer = configparser.ConfigParser(interpolation=None, strict=False)
    timer.optionxform = str
    timer.read(os.path.join(SCHEDULE, "paybeam-backfill.timer"))
    assert timer["Timer"]["OnCalendar"]
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Timer"]["Unit"] == "paybeam-backfill.service"
    assert timer["Install"]["WantedBy"] == "timers.target"
    cron = [line for line in open(os.path.join(SCHEDULE, "paybeam-backfill.cron"), encoding="utf-8")
            if line.strip() and not line.lstrip().startswith("#") and "=" not in line.split()[0]]
    assert cron and all(len(line.split()) > 6 and "paybeam backfill" in line for line in cron)


# --------------------------------------------------------------------------- neighbouring partitions

_PAYMENT_HEADER = ("event_id,payment_id,event_type,processor,processor_reference,merchant_id,amount_minor,currency,"
                   "event_time\n")
_SETTLEMENT_HEADER = ("settlement_id,processor,processor_reference,merchant_id,record_type,gross_minor,fee_minor,"
                      "net_minor,currency,settlement_date,booked_time,payout_id\n")


def _partition(base, name, day, text):
    folder = base / name / day
    folder.mkdir(parents=True, exist_ok=True)
    header = _PAYMENT_HEADER if name == "payments" else _SETTLEMENT_HEADER
    (folder / "part.csv").write_text(header + text, encoding="utf-8")
    return folder / "part.csv"


@pytest.fixture
def cross_day_inputs(tmp_path):
    """ch_a is captured on the 5th and settles on the 6th; ch_z is captured on the 4th and settles on the 5th."""
    _partition(tmp_path, "payments", "2026-01-04", "e_z,p_z,CAPTURED,stripe,ch_z,m_1,700,USD,2026-01-04T20:00:00Z\n")
    _partition(tmp_path, "payments", "2026-01-05", "e_a,p_a,CAPTURED,stripe,ch_a,m_1,500,USD,2026-01-05T10:00:00Z\n")
    _partition(tmp_path, "settlements", "2026-01-05",
               "s_z,stripe,ch_z,m_1,CAPTURE,700,0,700,USD,2026-01-05,2026-01-05T08:00:00Z,\n")
    later = _partition(tmp_path, "settlements", "2026-01-06",
                       "s_a,stripe,ch_a,m_1,CAPTURE,500,0,500,USD,2026-01-06,2026-01-06T09:00:00Z,\n")
    return tmp_path, later


def _day_results(output, day):
    table = pq.read_table(os.path.join(output, f"date={day}", "results.parquet"))
    return sorted((row["processor_reference"], row["status"]) for row in table.to_pylist())


def _window_args(inputs, output, *extra):
    return ["--from", "2026-01-05", "--to", "2026-01-05",
            "--payments", os.path.join(inputs, "payments", "{date}", "*.csv"),
            "--settlements", os.path.join(inputs, "settlements", "{date}", "*.csv"),
            "--output", output, *extra]


def test_window_reads_neighbouring_partitions_and_keeps_only_the_dates_keys(cross_day_inputs, tmp_path):
    inputs, _ = cross_day_inputs
    windowed, isolated = str(tmp_path / "windowed"), str(tmp_path / "isolated")
    assert _run(_window_args(str(inputs), windowed)) == 0
    # ch_a's settlement is in the 6th's partition; ch_z belongs to the 4th and is left to that date.
    assert _day_results(windowed, "2026-01-05") == [("ch_a", "MATCHED")]
    assert _run(_window_args(str(inputs), isolated, "--days-before", "0", "--days-after", "0")) == 0
    # Without context the same day shows two false breaks.
    assert _day_results(isolated, "2026-01-05") == [("ch_a", "MISSING_SETTLEMENT"), ("ch_z", "UNEXPECTED_SETTLEMENT")]


def test_window_change_in_a_neighbour_reruns_the_date(cross_day_inputs, tmp_path):
    inputs, later = cross_day_inputs
    output = str(tmp_path / "out")
    assert _run(_window_args(str(inputs), output)) == 0
    lines = []
    assert _run(_window_args(str(inputs), output), lines) == 0
    assert _status_lines(lines)["2026-01-05"] == "skipped (unchanged)"
    with open(later, "a", encoding="utf-8") as handle:  # a late correction lands in the 6th's partition
        handle.write("s_a2,stripe,ch_a,m_1,CAPTURE,500,0,500,USD,2026-01-06,2026-01-06T10:00:00Z,\n")
    lines = []
    assert _run(_window_args(str(inputs), output), lines) == 0
    assert _status_lines(lines)["2026-01-05"].startswith("ran")
    assert _day_results(output, "2026-01-05") == [("ch_a", "DUPLICATE_SETTLEMENT"), ("ch_a", "MATCHED")]


# --------------------------------------------------------------------------- one job per range

def test_a_range_is_one_job_that_reads_each_file_once_and_equals_one_job_per_date(inputs, tmp_path, monkeypatch):
    """Default window: every date reads all three partitions, yet each file is opened once, and the
    published bytes equal those of one job per date."""
    from pipelines.io import arrow_files

    log = tmp_path / "opened.txt"
    real_reader = arrow_files.chunks_of_file

    def counting_reader(readable, *args):
        with open(log, "a", encoding="utf-8") as handle:  # a file: the DoFn runs from a pickled copy
            handle.write(readable.metadata.path + "\n")
        yield from real_reader(readable, *args)

    monkeypatch.setattr(arrow_files, "chunks_of_file", counting_reader)
    one_job, per_date = str(tmp_path / "one_job"), str(tmp_path / "per_date")
    window = ("--days-before", "4", "--days-after", "3")  # given last, they override _args' zeros
    assert _run(_args(inputs, one_job, *window)) == 0
    opened = log.read_text(encoding="utf-8").splitlines()
    input_files = sorted(glob.glob(os.path.join(inputs, "*", "*", "*.csv")))
    assert sorted(opened) == input_files  # 3 dates x 6 files in their windows, each read once
    log.unlink()
    assert _run(_args(inputs, per_date, *window, "--dates-per-job", "1")) == 0
    assert len(log.read_text(encoding="utf-8").splitlines()) == 3 * len(input_files)
    for day in DATES:
        for name in DATA_FILES:
            with open(os.path.join(one_job, f"date={day}", name), "rb") as left, \
                    open(os.path.join(per_date, f"date={day}", name), "rb") as right:
                assert left.read() == right.read(), f"{day}/{name}"


def test_a_truncated_partition_fails_its_date_unless_allowed(tmp_path):
    import gzip

    payments = tmp_path / "in" / "payments" / "2026-01-05"
    payments.mkdir(parents=True)
    body = _PAYMENT_HEADER + "".join(f"e_{i},p_{i},CAPTURED,stripe,ch_{i},m_1,500,USD,2026-01-05T10:00:00Z\n"
                                     for i in range(20_000))
    compressed = gzip.compress(body.encode())
    (payments / "part.csv.gz").write_bytes(compressed[: len(compressed) // 2])
    _partition(tmp_path / "in", "settlements", "2026-01-05",
               "s_a,stripe,ch_1,m_1,CAPTURE,500,0,500,USD,2026-01-05,2026-01-05T12:00:00Z,\n")
    argv = ["--from", "2026-01-05", "--to", "2026-01-05",
            "--payments", str(tmp_path / "in" / "payments" / "{date}" / "*"),
            "--settlements", str(tmp_path / "in" / "settlements" / "{date}" / "*.csv"),
            "--days-before", "0", "--days-after", "0"]
    lines = []
    assert _run([*argv, "--output", str(tmp_path / "strict")], lines) == 1
    status = _status_lines(lines)["2026-01-05"]
    assert status.startswith("failed") and "truncated" in status
    assert not os.path.exists(tmp_path / "strict" / "date=2026-01-05")
    assert _run([*argv, "--output", str(tmp_path / "tolerant"), "--allow-truncated"]) == 0
    manifest = json.loads((tmp_path / "tolerant" / "date=2026-01-05" / backfill.MANIFEST).read_text())
    assert manifest["counts"]["window_inputs"]["payments"]["truncated_files"] == 1
