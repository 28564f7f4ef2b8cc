"""Where `make engines` (deploy/fetch/*.sh) put the fetched engines, and their pinned versions.

The versions live in deploy/versions.env (the one place they are pinned); the artifacts in
$ENGINES_CACHE (default <repo>/.cache/engines, git-ignored), one directory per artifact and
version, each finished by a `.complete` marker.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict

REPO = Path(__file__).resolve().parents[1]


class EngineNotFetched(RuntimeError):
    """An engine the caller needs is not in the cache; the message says how to fetch it."""


def pinned_versions() -> Dict[str, str]:
    values: Dict[str, str] = {}
    for line in (REPO / "deploy" / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def cache_root() -> Path:
    return Path(os.environ.get("ENGINES_CACHE", REPO / ".cache" / "engines"))


def fetched(directory_name: str, make_target: str = "engines") -> Path:
    """The cache directory `directory_name` if its fetch finished, else EngineNotFetched."""
    path = cache_root() / directory_name
    if not (path / ".complete").exists():
        raise EngineNotFetched(f"{path} is not fetched; run `make {make_target}` first")
    return path
