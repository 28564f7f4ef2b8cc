"""Beam's DoFn introspection, remembered per DoFn object (transforms/dofn_specs.py), answers as Beam's own."""
from __future__ import annotations

import gc

import apache_beam as beam
import pytest
from apache_beam.transforms import userstate

import pipelines  # noqa: F401 (its start-up installs the memo)
from transforms import dofn_specs
from transforms.columnar.live_flow import MatchLiveFn
from transforms.flow import ReconcileConfig


def _specs(dofn):
    state, timers = dofn_specs._COMPUTE_SPECS(dofn)
    return {spec.name for spec in state}, {spec.name for spec in timers}


def _remembered(dofn):
    state, timers = userstate.get_dofn_specs(dofn)
    return {spec.name for spec in state}, {spec.name for spec in timers}


def test_paybeam_processes_remember_the_specs_and_answer_as_beam_does():
    assert userstate.get_dofn_specs is dofn_specs.remembered_dofn_specs
    dofns = [MatchLiveFn(ReconcileConfig(), 1000, 2), beam.Map(len).fn, beam.DoFn()]
    for dofn in dofns:
        assert _remembered(dofn) == _remembered(dofn) == _specs(dofn)
    assert _remembered(dofns[0]) == ({"candidates", "keys", "meta"}, {"ts-tick"})
    assert userstate.is_stateful_dofn(dofns[0]) and not userstate.is_stateful_dofn(dofns[1])


def test_callers_get_their_own_sets_and_a_gone_dofn_leaves_the_memo():
    dofn = MatchLiveFn(ReconcileConfig(), 1000, 2)
    state, _ = userstate.get_dofn_specs(dofn)
    state.clear()
    assert _remembered(dofn)[0] == {"candidates", "keys", "meta"}
    key = id(dofn)
    assert key in dofn_specs._SPECS
    del dofn
    gc.collect()
    assert key not in dofn_specs._SPECS


def test_another_beam_version_fails_loudly():
    with pytest.raises(dofn_specs.UnpatchedBeamVersion, match="Beam 2.78.0"):
        dofn_specs.remember_dofn_specs("2.78.0")
