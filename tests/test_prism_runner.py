"""Batch `paybeam reconcile --runner PrismRunner` on the Prism binary `make engine-prism` built
(docs/DESIGN.md 6): with each engine, the results, daily totals, dead letters and counts equal the
DirectRunner's on the same generated files, and so do the break-rate alerts.

The columnar run lets Beam start Prism itself (runners/options.py points --prism_location at the
cached binary); the elementwise run submits to the session's shared Prism (--job_endpoint).
"""
from __future__ import annotations

import glob
import os
from collections import Counter

import apache_beam
import pyarrow.parquet as pq
import pytest

from datagen.generator import GeneratorConfig, generate
from runners.engine_cache import pinned_versions
from tests.cli_helpers import (
    daily_totals,
    dead_letters,
    output_rows,
    reconcile,
    result_multiset,
    results,
    run_summary,
)
from tests.prism_helpers import prism_args, prism_binary

ENGINES = ("columnar", "elementwise")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return generate(GeneratorConfig(payments=300, seed=11), str(tmp_path_factory.mktemp("prism_data")))


def _reconcile(dataset, out, *extra) -> int:
    return reconcile(os.path.join(dataset.out_dir, "payments", "*"),
                     os.path.join(dataset.out_dir, "settlements", "*"), out, *extra)


def _multiset(rows):
    return Counter(tuple(sorted(row.items())) for row in rows)


def _alerts(out):
    rows = []
    for path in sorted(glob.glob(os.path.join(out, "alerts", "*.parquet"))):
        rows.extend(pq.read_table(path).to_pylist())
    return _multiset(rows)


def _letters(out):
    return Counter((letter.get("source"), letter.get("stage"), letter.get("reason")) for letter in dead_letters(out))


# The columnar engine spills its shuffles on Prism's LOOPBACK workers by default; --no-spill keeps the
# route of workers that share no disk (tables through Prism's data channels).
@pytest.mark.parametrize("engine, shuffle", [("columnar", []), ("columnar", ["--no-spill"]), ("elementwise", [])],
                         ids=["columnar", "columnar-no-spill", "elementwise"])
def test_batch_reconcile_on_prism_equals_direct(engine, shuffle, dataset, tmp_path, request):
    direct_out, prism_out = str(tmp_path / "direct"), str(tmp_path / "prism")
    # Alerts at any break in any window, so there are plenty to compare.
    alerts = ("--break-alerts", "--alert-threshold-bps", "1", "--alert-min-volume", "1")
    assert _reconcile(dataset, direct_out, "--engine", engine, *alerts) == 0
    if engine == "columnar":
        prism_binary()  # a missing fetch fails here with the `make engine-prism` hint
        flags = prism_args()
    else:
        flags = prism_args(request.getfixturevalue("prism").endpoint)
    assert _reconcile(dataset, prism_out, "--engine", engine, *alerts, *shuffle, *flags) == 0
    assert run_summary(prism_out)["shuffles"] == ("spilled" if engine == "columnar" and not shuffle else "in memory")

    assert result_multiset(results(prism_out)) == result_multiset(results(direct_out))
    assert len(results(prism_out)) == len(results(direct_out)) > 0
    assert _multiset(daily_totals(prism_out)) == _multiset(daily_totals(direct_out))
    assert len(daily_totals(direct_out)) > 0
    assert _alerts(prism_out) == _alerts(direct_out) and sum(_alerts(direct_out).values()) > 0
    assert _letters(prism_out) == _letters(direct_out) and len(dead_letters(direct_out)) > 0
    prism, direct = run_summary(prism_out), run_summary(direct_out)
    assert prism["runner"] == "PrismRunner" and prism["engine"] == direct["engine"] == engine
    for key in ("statuses", "results_rows", "daily_totals_rows", "as_of"):
        assert prism[key] == direct[key], key
    for name in direct["inputs"]:
        for count in ("read", "accepted", "rejected", "deduplicated"):
            assert prism["inputs"][name][count] == direct["inputs"][name][count], (name, count)
    assert sum(direct["statuses"].values()) == direct["results_rows"]


def test_three_way_reconciliation_on_prism_equals_direct(tmp_path, prism):
    """--bank-statements on Prism with the per-element engine (the session's shared Prism): payouts, bank
    matches and their counts equal the DirectRunner's."""
    data = generate(GeneratorConfig(payments=300, seed=11, bank_statements="camt053"), str(tmp_path / "data"))
    bank = ("--bank-statements", os.path.join(data.out_dir, "bank_statements", "*"), "--engine", "elementwise")
    direct_out, prism_out = str(tmp_path / "direct"), str(tmp_path / "prism")
    assert _reconcile(data, direct_out, *bank) == 0
    assert _reconcile(data, prism_out, *bank, *prism_args(prism.endpoint)) == 0
    for name in ("payouts", "bank_matches"):
        assert _multiset(output_rows(prism_out, name)) == _multiset(output_rows(direct_out, name))
        assert len(output_rows(direct_out, name)) > 0
        assert run_summary(prism_out)[name] == run_summary(direct_out)[name]
    assert run_summary(prism_out)["inputs"]["bank_statements"]["read"] == \
        run_summary(direct_out)["inputs"]["bank_statements"]["read"] > 0


def test_prism_is_pinned_to_the_sdks_beam_version():
    # Prism and the Python SDK speak one Fn API release: deploy/fetch/prism.sh refuses a mismatch too.
    versions = pinned_versions()
    assert versions["PRISM_VERSION"] == versions["BEAM_VERSION"] == apache_beam.__version__
    assert prism_binary().parent.parent.name == f"prism-{apache_beam.__version__}"


def test_prism_without_a_fetched_binary_is_a_one_line_usage_error(dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ENGINES_CACHE", str(tmp_path / "no-engines"))
    code = _reconcile(dataset, str(tmp_path / "out"), "--runner", "PrismRunner")
    assert code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "make engine-prism" in errors[0] and "--prism_location" in errors[0]
    assert not (tmp_path / "out").exists()
