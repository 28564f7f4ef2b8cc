"""The runner commands of the README and docs/*.md are ones the CLI and the runner checks accept (they are what
users copy)."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from pipelines.cli import build_parser
from runners.options import build_pipeline_options

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _commands():
    text = "\n".join(document.read_text(encoding="utf-8") for document in DOCUMENTS)
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split("#", 1)[0].strip().removeprefix(".venv/bin/")
            if line.startswith("paybeam ") and "--runner=" in line and "…" not in line:
                commands.append(line)
    return commands


COMMANDS = _commands()


def test_the_readme_has_runner_commands():
    runners = {re.search(r"--runner=(\w+)", command).group(1) for command in COMMANDS}
    assert {"FlinkRunner", "PortableRunner", "DataflowRunner"} <= runners


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_runner_command_is_accepted(command):
    argv = shlex.split(command)[1:]
    args, extra = build_parser().parse_known_args(argv)
    streaming = args.command == "stream" and not args.bounded
    build_pipeline_options(args.runner, extra, streaming=streaming)  # raises OptionsError when it could not work
