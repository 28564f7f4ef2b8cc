"""The floors of docs/DESIGN.md 2 stay enforced as the code grows.

`make lint` runs import-linter on `.importlinter`; these tests keep that file complete (a new module
is covered by the contracts without anyone remembering to list it) and check what import-linter
cannot: no module imports another module's `_private` name.
"""
from __future__ import annotations

import ast
import configparser
from pathlib import Path

from tests.stream_helpers import REPO

PACKAGES = ("schemas", "transforms", "runners", "pipelines", "datagen", "analysis")


def _modules(package: str) -> set:
    root = Path(REPO)
    return {".".join(path.relative_to(root).with_suffix("").parts[:-1] if path.name == "__init__.py"
                     else path.relative_to(root).with_suffix("").parts)
            for path in (root / package).rglob("*.py")}


def _contract(name: str) -> configparser.SectionProxy:
    config = configparser.ConfigParser()
    config.read(Path(REPO) / ".importlinter")
    return config[f"importlinter:contract:{name}"]


def _listed(contract: configparser.SectionProxy, option: str) -> set:
    return {line.strip() for line in contract[option].splitlines() if line.strip()}


def _top_modules(modules: set, parent: str) -> set:
    """`parent`'s direct children (a sub-package counts once, by its own name)."""
    depth = parent.count(".") + 1
    return {".".join(module.split(".")[:depth + 1]) for module in modules
            if module.startswith(parent + ".") and module.count(".") >= depth}


def test_the_io_floor_contract_forbids_every_pipelines_module_above_io():
    above_io = _top_modules(_modules("pipelines"), "pipelines") - {"pipelines.io", "pipelines.version"}
    forbidden = _listed(_contract("io-floor"), "forbidden_modules")
    assert above_io - forbidden == set(), "add these to .importlinter [io-floor] forbidden_modules"
    assert forbidden - above_io == set(), "these no longer exist: remove them from .importlinter"


def test_the_engine_contract_covers_every_per_element_transforms_module():
    per_element = _top_modules(_modules("transforms"), "transforms") - {"transforms.columnar"}
    sources = _listed(_contract("columnar-above-elementwise"), "source_modules")
    assert per_element - sources == set(), "add these to .importlinter [columnar-above-elementwise] source_modules"
    assert sources - per_element == set(), "these no longer exist: remove them from .importlinter"


def _private_imports(path: Path, own_module: str):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] in PACKAGES and node.module != own_module:
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    yield f"{path.relative_to(REPO)}: from {node.module} import {alias.name}"


def test_no_module_imports_another_modules_private_name():
    root = Path(REPO)
    found = []
    for folder in (*PACKAGES, "tests", "benchmarks"):
        for path in sorted((root / folder).rglob("*.py")):
            own = ".".join(path.relative_to(root).with_suffix("").parts)
            found.extend(_private_imports(path, own))
    assert found == [], "make the name public where it lives, or move the code that needs it there"
