"""paybeam's start-up skips the notebook widgets Beam's gcp extra pulls in (pipelines/lean_startup.py)."""
from __future__ import annotations

import json
import subprocess
import sys

from pipelines.lean_startup import SKIPPED_MODULES, skip_notebook_widgets
from tests.stream_helpers import REPO

_PROBE = """
import json, sys
import pipelines.cli
from google.cloud.bigquery import _tqdm_helpers
from apache_beam.utils.interactive_utils import is_in_ipython
print(json.dumps({"ipython": "IPython" in sys.modules and sys.modules["IPython"] is not None,
                  "ipywidgets": "ipywidgets" in sys.modules, "beam": "apache_beam" in sys.modules,
                  "bigquery_bars": _tqdm_helpers.tqdm_notebook is not None, "in_ipython": is_in_ipython()}))
"""


def test_a_paybeam_process_imports_beam_without_ipython_or_notebook_widgets():
    probe = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(probe.stdout.splitlines()[-1]) == {"ipython": False, "ipywidgets": False, "beam": True,
                                                         "bigquery_bars": False, "in_ipython": False}


def test_a_process_with_ipython_already_keeps_the_notebook_widgets():
    with_ipython = {"IPython": object()}
    assert skip_notebook_widgets(with_ipython) is False and list(with_ipython) == ["IPython"]
    fresh = {}
    assert skip_notebook_widgets(fresh) is True and fresh == {name: None for name in SKIPPED_MODULES}
