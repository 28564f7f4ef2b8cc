"""The state-cache workaround patches exactly the Beam it was measured on, and refuses any other."""
from __future__ import annotations

import pytest
from apache_beam.runners.worker import statecache

from transforms import state_cache


def test_it_patches_the_pinned_beam():
    state_cache.use_fast_state_cache_sizing()
    assert statecache.get_deep_size is state_cache._get_deep_size_without_module_scan


def test_another_beam_version_fails_loudly():
    with pytest.raises(state_cache.UnpatchedBeamVersion, match="Beam 2.78.0"):
        state_cache.use_fast_state_cache_sizing("2.78.0")


def test_a_beam_without_the_patched_function_fails_loudly(monkeypatch):
    monkeypatch.delattr(statecache, "_filter_func")
    with pytest.raises(state_cache.UnpatchedBeamVersion, match="without _filter_func"):
        state_cache.use_fast_state_cache_sizing()
