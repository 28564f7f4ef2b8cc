"""A workaround for the cost of Beam 2.77's DoFn introspection while a pipeline is built and translated.

`userstate.get_dofn_specs` (the state and timer specs a DoFn declares) walks every attribute of the
DoFn and builds an `inspect.signature` of each of its methods, on every call, and Beam calls it about
fourteen times per ParDo while it constructs, validates, translates and runs a pipeline: 982 calls and
0.43 s of every `paybeam reconcile` (71 ParDos) on the 2-core machine, whatever the input size. The
answer depends only on the DoFn object, so it is remembered per object, for as long as the object
lives. Like `transforms/state_cache.py`, it replaces a function of the Beam version it was measured
on and fails loudly on any other (setup.py pins the same version).
"""
from __future__ import annotations

import weakref
from typing import Dict, FrozenSet, Set, Tuple

import apache_beam
from apache_beam.transforms import userstate

from transforms.state_cache import UnpatchedBeamVersion, refuse_unpatched_beam  # noqa: F401 (its error)

_COMPUTE_SPECS = userstate.get_dofn_specs
_SPECS: Dict[int, Tuple[weakref.ref, FrozenSet, FrozenSet]] = {}


def remembered_dofn_specs(dofn) -> Tuple[Set, Set]:
    """`userstate.get_dofn_specs(dofn)`, computed once per DoFn object (fresh sets each call)."""
    entry = _SPECS.get(id(dofn))
    if entry is None or entry[0]() is not dofn:
        state_specs, timer_specs = _COMPUTE_SPECS(dofn)
        try:
            alive = weakref.ref(dofn, lambda _, key=id(dofn): _SPECS.pop(key, None))
        except TypeError:  # an object without weak references: nothing to remember it by
            return state_specs, timer_specs
        entry = _SPECS[id(dofn)] = (alive, frozenset(state_specs), frozenset(timer_specs))
    return set(entry[1]), set(entry[2])


def remember_dofn_specs(beam_version: str = apache_beam.__version__) -> None:
    """Idempotently makes Beam's `get_dofn_specs` remember its answers in this process (Beam 2.77.0 only)."""
    refuse_unpatched_beam("transforms/dofn_specs.py patches the DoFn introspection",
                          "its cost (docs/DESIGN.md 9.4)", beam_version)
    userstate.get_dofn_specs = remembered_dofn_specs
