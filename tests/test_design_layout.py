"""docs/DESIGN.md 2 names every module of the code, and only modules that exist."""
from __future__ import annotations

import re
from pathlib import Path

from tests.stream_helpers import REPO

FOLDERS = ("schemas", "transforms", "runners", "pipelines", "datagen", "analysis", "benchmarks")


def _layout_section() -> str:
    design = (Path(REPO) / "docs" / "DESIGN.md").read_text()
    return design[design.index("## 2. Layout"):design.index("## 3. Data contracts")]


def _modules() -> set:
    root = Path(REPO)
    return {path.relative_to(root).as_posix() for folder in FOLDERS for path in (root / folder).rglob("*.py")
            if path.name != "__init__.py" or path.stat().st_size > 0}


def test_every_module_is_named_in_design_section_2():
    named = set(re.findall(r"`([\w/]+\.py)`", _layout_section()))
    missing = sorted(_modules() - named)
    assert missing == [], f"add a row for each to docs/DESIGN.md 2 (its floor's table): {missing}"


def test_every_module_design_section_2_names_exists():
    named = {path for path in re.findall(r"`([\w/]+\.py)`", _layout_section()) if path.split("/")[0] in FOLDERS}
    gone = sorted(named - _modules())
    assert gone == [], f"docs/DESIGN.md 2 names modules that no longer exist: {gone}"
