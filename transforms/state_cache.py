"""A workaround for the cost of Beam 2.77's user-state cache on Python workers.

The SDK worker's StateCache weighs every state value it loads with
`objsize.get_deep_size`, which by default rebuilds an exclusion set of every
loaded module's globals on each call. With Beam's gcp and interactive extras
imported that is about a millisecond per state read: measured at 60% of the
CPU time of a batch reconciliation (one read per record in Deduplicate).
The cache's own filter already skips modules, types and functions, so
excluding module globals is redundant for state values; weighing without it
gives the same sizes for our records at a fraction of the cost.

Stateful DoFns call `use_fast_state_cache_sizing()` in `setup()`, so it takes
effect in whichever worker process runs them (embedded, subprocess, Flink).
It replaces a private function, so it is pinned to the Beam version it was
measured on and fails loudly on any other (setup.py pins the same version):
an upgrade must re-measure and update or drop it.
"""
from __future__ import annotations

from typing import Sequence

import apache_beam
import objsize
from apache_beam.runners.worker import statecache

PATCHED_BEAM_VERSION = "2.77.0"
_PRIVATE_NAMES = ("get_deep_size", "_size_func", "_get_referents_func", "_filter_func")


class UnpatchedBeamVersion(RuntimeError):
    """Beam is not the version whose state cache this module patches."""


def _get_deep_size_without_module_scan(*objs) -> int:
    return objsize.get_deep_size(
        *objs,
        get_size_func=statecache._size_func,
        get_referents_func=statecache._get_referents_func,
        filter_func=statecache._filter_func,
        exclude_modules_globals=False,
    )


def refuse_unpatched_beam(patch: str, cost: str, beam_version: str, missing: Sequence[str] = ()) -> None:
    """UnpatchedBeamVersion unless this is the Beam every paybeam patch of Beam's internals was measured
    on, with each private name the patch replaces (`missing`: those it lacks). `patch` says what is
    patched, `cost` what to re-measure."""
    if beam_version != PATCHED_BEAM_VERSION or missing:
        raise UnpatchedBeamVersion(
            f"{patch} of Beam {PATCHED_BEAM_VERSION}, this is Beam {beam_version}"
            f"{' without ' + ', '.join(missing) if missing else ''}: re-measure {cost} and update or remove "
            f"the patch")


def use_fast_state_cache_sizing(beam_version: str = apache_beam.__version__) -> None:
    """Idempotently replaces the state cache's sizing function in this process (Beam 2.77.0 only)."""
    refuse_unpatched_beam("transforms/state_cache.py patches the state cache", "the state-cache cost (docs/DESIGN.md 7)",
                          beam_version, [name for name in _PRIVATE_NAMES if not hasattr(statecache, name)])
    statecache.get_deep_size = _get_deep_size_without_module_scan
