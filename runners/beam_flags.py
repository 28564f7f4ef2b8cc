"""Reading pass-through Beam flags as the user wrote them, and the error every runner check raises.

Some flags (Flink's Java-side options) are declared by no Python options class, so their values are
read from the raw arguments; both runners/options.py and the per-runner rule modules need that.
"""
from __future__ import annotations

from typing import List, Sequence
from urllib.parse import urlparse

from schemas.errors import UserError


class OptionsError(UserError):
    """Runner options that cannot work; the message says which and why."""


def flag_name(arg: str) -> str:
    return arg.lstrip("-").split("=", 1)[0].replace("-", "_")


def raw_values(beam_args: Sequence[str], name: str) -> List[str]:
    """Values given for `--name` (as `--name=v` or `--name v`), including options Beam does not declare."""
    values, args = [], list(beam_args)
    for index, arg in enumerate(args):
        if not arg.startswith("-") or flag_name(arg) != name:
            continue
        if "=" in arg:
            values.append(arg.split("=", 1)[1])
        elif index + 1 < len(args) and not args[index + 1].startswith("--"):
            values.append(args[index + 1])
        else:
            values.append("")
    return values


def is_local_path(location: str) -> bool:
    scheme = urlparse(location).scheme
    return not scheme or len(scheme) == 1  # "C:\\…" on Windows
