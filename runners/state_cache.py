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
"""
from __future__ import annotations

import objsize
from apache_beam.runners.worker import statecache


def _get_deep_size_without_module_scan(*objs) -> int:
    return objsize.get_deep_size(
        *objs,
        get_size_func=statecache._size_func,
        get_referents_func=statecache._get_referents_func,
        filter_func=statecache._filter_func,
        exclude_modules_globals=False,
    )


def use_fast_state_cache_sizing() -> None:
    """Idempotently replaces the state cache's sizing function in this process."""
    statecache.get_deep_size = _get_deep_size_without_module_scan
