"""What a paybeam process skips at start-up (imported by `pipelines/__init__.py`, so before any paybeam
entry point imports Apache Beam): the notebook widgets, outside a notebook, and Beam's repeated DoFn
introspection while it builds a pipeline (`transforms/dofn_specs.py`).

`import apache_beam` imports google-cloud-bigquery (Beam's gcp extra), whose progress-bar helper
imports `tqdm.notebook`, which imports ipywidgets and IPython (Beam's interactive extra): 0.3-0.4 s
of every paybeam command on the 2-core machine (docs/DESIGN.md 9.4), for notebook progress bars a
command line never draws. A None entry in `sys.modules` makes that import raise ImportError,
which bigquery handles (it then draws no notebook bars); the same for IPython itself, which Beam
imports anyway to ask whether it runs in one (`interactive_utils.is_in_ipython`, on every applied
transform). A process that has IPython already (a notebook kernel importing paybeam) keeps both.
"""
from __future__ import annotations

import sys

SKIPPED_MODULES = ("tqdm.notebook", "IPython")


def skip_notebook_widgets(modules: dict = sys.modules) -> bool:
    """Blocks SKIPPED_MODULES unless one of them is already imported; whether it did."""
    if any(name in modules for name in SKIPPED_MODULES):
        return False
    for name in SKIPPED_MODULES:
        modules[name] = None
    return True


skip_notebook_widgets()

from transforms.dofn_specs import remember_dofn_specs  # noqa: E402 (after the skip: it imports Apache Beam)

remember_dofn_specs()
