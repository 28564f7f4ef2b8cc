"""datagen.partitions.split_by_date and analysis.backfill / analysis.backfill_charts on a real small backfill.

The module fixture generates 200 payments over 3 days, splits them into daily
partitions and runs `pipelines.backfill.main` for the 3 dates (each partition
on its own, `--days-before 0 --days-after 0`, so a changed file concerns
exactly one date) on the DirectRunner.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
from collections import Counter

import pandas as pd
import pytest
from matplotlib.figure import Figure

from analysis import backfill as ab
from analysis import backfill_charts
from datagen.generator import GeneratorConfig, generate
from datagen.partitions import split_by_date
from pipelines import backfill
from schemas.records import PAYMENT_FIELDS, SETTLEMENT_FIELDS
from schemas.rules import BREAK_STATUSES
from schemas.timestamps import format_timestamp, parse_timestamp_millis

DATES = ["2026-01-05", "2026-01-06", "2026-01-07"]


def _argv(inputs: str, output: str, *extra: str):
    return ["--from", DATES[0], "--to", DATES[-1],
            "--payments", os.path.join(inputs, "payments", "{date}", "*.csv"),
            "--settlements", os.path.join(inputs, "settlements", "{date}", "*.csv"),
            "--output", output, "--days-before", "0", "--days-after", "0", *extra]


def _rows(path: str):
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("analysis_backfill")
    dataset = generate(GeneratorConfig(payments=200, seed=31, days=3, start="2026-01-05T00:00:00Z"),
                       str(base / "generated"))
    inputs = str(base / "in")
    dates = split_by_date(dataset.out_dir, inputs)
    output = str(base / "out")
    assert backfill.main(_argv(inputs, output)) == 0
    return dataset, dates, inputs, output


@pytest.fixture(scope="module")
def report(built):
    return ab.load_backfill(built[3])


def _copy(output: str, target) -> str:
    return shutil.copytree(output, str(target))


# --------------------------------------------------------------------------- split_by_date

def test_split_by_date_keeps_every_row_once_in_its_days_partition(built):
    dataset, dates, inputs, _ = built
    assert dates == DATES
    for name, source, fields, column in (("payments", dataset.payment_files[0], PAYMENT_FIELDS, "event_time"),
                                         ("settlements", dataset.settlement_files[0], SETTLEMENT_FIELDS,
                                          "booked_time")):
        source_rows = _rows(source)[1:]
        split_rows = []
        for day in DATES:
            rows = _rows(os.path.join(inputs, name, day, "part.csv"))
            assert rows[0] == list(fields)
            for row in rows[1:]:
                try:
                    expected_day = format_timestamp(parse_timestamp_millis(row[fields.index(column)]))[:10]
                except ValueError:
                    expected_day = DATES[0]
                assert expected_day == day, (name, day, row)
            split_rows += rows[1:]
        assert Counter(map(tuple, split_rows)) == Counter(map(tuple, source_rows))
        assert sorted(os.listdir(os.path.join(inputs, name))) == DATES


def test_split_by_date_uses_the_utc_day_and_sends_unparseable_times_to_the_first_date(tmp_path):
    data = tmp_path / "data"
    (data / "payments").mkdir(parents=True)
    (data / "settlements").mkdir()
    payment = "e{n},p{n},CAPTURED,stripe,ch_{n},m_1,100,USD,{t}"
    (data / "payments" / "payments.csv").write_text("\n".join([
        ",".join(PAYMENT_FIELDS),
        payment.format(n=1, t="2026-01-06T01:00:00+02:00"),  # 2026-01-05T23:00Z: the 5th
        payment.format(n=2, t="yesterday"),
        payment.format(n=3, t="2026-01-06 10:00:00"),  # no offset: does not parse
        payment.format(n=4, t="2026-01-06T10:00:00Z"),
    ]) + "\n", encoding="utf-8")
    (data / "settlements" / "settlements.csv").write_text(
        ",".join(SETTLEMENT_FIELDS) + "\n"
        + "s1,stripe,ch_1,m_1,CAPTURE,100,0,100,USD,2026-01-07,2026-01-07T09:00:00Z,\n", encoding="utf-8")
    out = tmp_path / "in"
    assert split_by_date(str(data), str(out)) == ["2026-01-05", "2026-01-06", "2026-01-07"]
    ids = {day: [row[0] for row in _rows(str(out / "payments" / day / "part.csv"))[1:]]
           for day in ("2026-01-05", "2026-01-06", "2026-01-07")}
    assert ids == {"2026-01-05": ["e1", "e2", "e3"], "2026-01-06": ["e4"], "2026-01-07": []}
    # Every date gets both partitions (header only when empty): backfill needs a date's own files.
    assert _rows(str(out / "settlements" / "2026-01-05" / "part.csv")) == [list(SETTLEMENT_FIELDS)]
    assert [row[0] for row in _rows(str(out / "settlements" / "2026-01-07" / "part.csv"))[1:]] == ["s1"]


def test_split_by_date_refuses_what_it_cannot_split(tmp_path):
    with pytest.raises(ValueError, match="no payments CSV files"):
        split_by_date(str(tmp_path), str(tmp_path / "in"))
    vendor = generate(GeneratorConfig(payments=20, seed=3, days=2, vendor_reports=True), str(tmp_path / "v"))
    with pytest.raises(ValueError, match="not a canonical settlements CSV"):
        split_by_date(vendor.out_dir, str(tmp_path / "in"))


# --------------------------------------------------------------------------- load_backfill

def test_per_date_table_matches_the_published_files(built, report):
    _, _, _, output = built
    dates = report.dates
    assert list(dates["date"]) == DATES
    assert list(report.manifests) == DATES
    for row in dates.to_dict("records"):
        day = row["date"]
        manifest = json.load(open(os.path.join(output, f"date={day}", "manifest.json"), encoding="utf-8"))
        assert row["as_of"] == manifest["as_of"]
        results = report.results[report.results["date"] == day]
        assert row["results_rows"] == len(results) > 0
        assert row["daily_totals_rows"] == (report.daily_totals["date"] == day).sum() > 0
        assert row["dead_letters"] == (report.dead_letters["date"] == day).sum()
        by_status = results["status"].value_counts()
        for status in by_status.index:
            assert row[status] == by_status[status], (day, status)
        assert row["breaks"] == sum(int(n) for s, n in by_status.items() if s in BREAK_STATUSES)
        for name in ("payments", "settlements"):
            window = manifest["counts"]["window_inputs"][name]
            assert row[f"{name}_read"] == window["read"] == row[f"{name}_accepted"] + row[f"{name}_rejected"]
    assert dates["breaks"].sum() > 0  # the sample has breaks, so the chart below has bars
    assert str(dates["results_rows"].dtype) == "Int64"
    assert report.leftovers == []


def test_concatenated_frames_carry_the_date_and_stay_integer(report):
    assert list(report.results.columns[:2]) == ["date", "processor"]
    assert sorted(report.results["date"].unique()) == DATES
    for column in ("ledger_amount_minor", "settled_amount_minor", "difference_minor", "event_time"):
        assert str(report.results[column].dtype) == "Int64"
    assert str(report.daily_totals["captured_minor"].dtype) == "Int64"
    # each date publishes only its own settlement day's totals
    assert (report.daily_totals["settlement_day"] == report.daily_totals["date"]).all()
    assert set(report.dead_letters["date"]) <= set(DATES)


def test_load_backfill_of_an_empty_directory(tmp_path):
    empty = ab.load_backfill(str(tmp_path))
    assert empty.dates.empty and empty.results.empty and "date" in empty.results.columns


# --------------------------------------------------------------------------- manifest_checks

def test_checks_of_a_fresh_backfill_are_all_ok(built):
    checks = ab.manifest_checks(built[3])
    assert list(checks["date"]) == DATES
    assert checks["ok"].all(), checks.to_string()
    assert set(checks["outputs"]) == set(checks["inputs"]) == set(checks["versions"]) == {ab.OK}


def test_a_flipped_byte_in_an_output_file_is_detected(built, tmp_path):
    output = _copy(built[3], tmp_path / "out")
    path = os.path.join(output, f"date={DATES[2]}", "results.parquet")
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x01
    open(path, "wb").write(bytes(data))
    checks = ab.manifest_checks(output).set_index("date")
    assert "results.parquet modified" in checks.loc[DATES[2], "outputs"]
    assert not checks.loc[DATES[2], "ok"]
    assert checks.loc[DATES[2], "inputs"] == ab.OK  # the inputs are fine: only the output was touched
    assert checks.loc[DATES[:2], "ok"].all()

    os.remove(os.path.join(output, f"date={DATES[0]}", "dead_letters.jsonl"))
    assert "dead_letters.jsonl missing" in ab.manifest_checks(output).set_index("date").loc[DATES[0], "outputs"]


def test_a_changed_input_is_detected_and_a_rerun_clears_it(built, tmp_path):
    _, _, inputs, original_output = built
    output = _copy(original_output, tmp_path / "out")
    path = os.path.join(inputs, "payments", DATES[1], "part.csv")
    original = open(path, "rb").read()
    try:
        rows = _rows(path)
        with open(path, "a", encoding="utf-8", newline="") as handle:
            csv.writer(handle, lineterminator="\n").writerow(rows[1])  # a re-delivered row
        checks = ab.manifest_checks(output).set_index("date")
        assert checks.loc[DATES[1], "inputs"].startswith(ab.INPUTS_CHANGED)
        assert path in checks.loc[DATES[1], "inputs"] and "size" in checks.loc[DATES[1], "inputs"]
        assert not checks.loc[DATES[1], "ok"]
        assert checks.loc[[DATES[0], DATES[2]], "ok"].all()  # only the date whose manifest lists the file

        lines = []
        args, beam_args = _parsed(_argv(inputs, output))
        assert backfill.run_backfill(args, beam_args, out=lines.append) == 0
        statuses = dict(line.split(": ", 1) for line in lines if line[:5] == "2026-")
        assert statuses[DATES[0]] == statuses[DATES[2]] == "skipped (unchanged)"
        assert statuses[DATES[1]].startswith("ran")
        assert ab.manifest_checks(output)["ok"].all()

        with open(path, "wb") as handle:  # same size, different bytes
            handle.write(original.replace(b"CAPTURED", b"CAPTUREX", 1))
        assert "sha256 differs" in ab.manifest_checks(original_output).set_index("date").loc[DATES[1], "inputs"]
        os.remove(path)
        assert f"{path} missing" in ab.manifest_checks(original_output).set_index("date").loc[DATES[1], "inputs"]
    finally:
        with open(path, "wb") as handle:
            handle.write(original)
    assert ab.manifest_checks(original_output)["ok"].all()


def _parsed(argv):
    import argparse

    parser = argparse.ArgumentParser()
    backfill.add_backfill_arguments(parser)
    return parser.parse_known_args(argv)


def test_other_versions_are_reported(built, monkeypatch):
    real = ab.installed_versions()
    monkeypatch.setattr(ab, "installed_versions", lambda: {**real, "beam": "9.99.0"})
    checks = ab.manifest_checks(built[3])
    assert all(f"beam {real['beam']} -> 9.99.0 installed" in text for text in checks["versions"])
    assert not checks["ok"].any()
    assert (checks["outputs"] == ab.OK).all()


def test_leftover_directories_are_reported(built, tmp_path):
    output = _copy(built[3], tmp_path / "out")
    os.makedirs(os.path.join(output, f".date={DATES[1]}.tmp-4242", "_scratch"))  # killed while running
    # the fallback publish died between its two renames: no date=D, a complete .old
    os.rename(os.path.join(output, f"date={DATES[2]}"), os.path.join(output, f".date={DATES[2]}.old-77"))
    os.makedirs(os.path.join(output, ".date=2026-01-08.tmp-5"))  # a date that never published
    checks = ab.manifest_checks(output).set_index("date")
    assert list(checks.index) == [*DATES, "2026-01-08"]
    assert checks.loc[DATES[1], "leftovers"] == f".date={DATES[1]}.tmp-4242"
    assert checks.loc[DATES[1], "outputs"] == ab.OK and not checks.loc[DATES[1], "ok"]
    assert checks.loc[DATES[2], "outputs"] == f"no date={DATES[2]} directory"
    assert checks.loc[DATES[2], "leftovers"] == f".date={DATES[2]}.old-77"
    assert checks.loc["2026-01-08", "leftovers"] == ".date=2026-01-08.tmp-5"
    assert list(checks["ok"]) == [True, False, False, False]
    assert ab.load_backfill(output).leftovers == [f".date={DATES[1]}.tmp-4242", f".date={DATES[2]}.old-77",
                                                   ".date=2026-01-08.tmp-5"]


# --------------------------------------------------------------------------- charts

def _bar_heights(figure: Figure):
    return [patch.get_height() for patch in figure.axes[0].patches]


def test_break_trend_chart_stacks_every_break_row(report):
    figure = backfill_charts.break_trend_chart(report.dates)
    assert isinstance(figure, Figure)
    assert sum(_bar_heights(figure)) == report.dates["breaks"].sum() > 0
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert labels == ab.break_status_columns(report.dates) and labels
    assert "MATCHED" not in labels


def test_rows_per_date_chart_has_a_bar_per_date_and_file(report):
    figure = backfill_charts.rows_per_date_chart(report.dates)
    heights = _bar_heights(figure)
    assert len(heights) == 3 * len(DATES)
    assert heights[:len(DATES)] == [int(v) for v in report.dates["results_rows"]]
    assert [tick.get_text() for tick in figure.axes[0].get_xticklabels()] == DATES


def test_charts_refuse_an_empty_table():
    with pytest.raises(ValueError):
        backfill_charts.break_trend_chart(pd.DataFrame({"date": []}))
