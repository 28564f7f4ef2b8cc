"""The documents stay true (issue 17 §5).

The README's "CLI at a glance" holds one fenced ```synopsis block per command (`kafka` lists its four
sub-commands in one block, one `paybeam kafka …` entry each). An entry starts at a line beginning with
`paybeam <command words>`; every `--option` it names outside a `# comment` counts as documented. Against
the parser the CLI really builds (`pipelines.cli.build_parser`), each command's entry must name every
option argparse defines for it (but -h/--help), and name no option argparse does not know: an
undocumented flag, or a documented one that was removed or renamed, fails here by name.

Also: every relative link in the README and docs/*.md points at a file that exists, and at a heading
that exists when it carries an #anchor.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from pipelines.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]

Command = Tuple[str, ...]  # ("reconcile",), ("kafka", "produce"), …
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
HELP = {"-h", "--help"}


def _subcommands(parser: argparse.ArgumentParser) -> Dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps sub-parsers only here
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def leaf_commands(parser: argparse.ArgumentParser, prefix: Command = ()) -> Dict[Command, argparse.ArgumentParser]:
    """Every command a user runs, with its parser: the sub-parsers' leaves (`kafka` has sub-commands)."""
    leaves = {}
    for name, sub in _subcommands(parser).items():
        nested = leaf_commands(sub, (*prefix, name))
        leaves.update(nested or {(*prefix, name): sub})
    return leaves


def parser_options(parser: argparse.ArgumentParser) -> set:
    return {option for action in parser._actions for option in action.option_strings} - HELP


def synopses(text: str, parser: argparse.ArgumentParser) -> List[Tuple[Command, str]]:
    """(command, entry text without comments) for every entry of every ```synopsis block, in order."""
    entries: List[Tuple[Command, List[str]]] = []
    for block in re.findall(r"^```synopsis\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.splitlines():
            line = line.split("#", 1)[0].rstrip()
            if line.startswith("paybeam "):
                words, current, command = line.split()[1:], parser, ()
                for word in words:
                    subs = _subcommands(current)
                    if word not in subs:
                        break
                    current, command = subs[word], (*command, word)
                entries.append((command, [line]))
            elif line.strip():
                assert entries, f"a synopsis block starts with a line that is not `paybeam …`: {line!r}"
                entries[-1][1].append(line)
    return [(command, "\n".join(lines)) for command, lines in entries]


def named_options(entry: str) -> set:
    return set(OPTION.findall(entry))


PARSER = build_parser()
COMMANDS = leaf_commands(PARSER)
README_SYNOPSES = synopses(README.read_text(encoding="utf-8"), PARSER)


def _readme_entry(command: Command) -> str:
    found = [entry for named, entry in README_SYNOPSES if named == command]
    assert len(found) == 1, f"README: expected one synopsis of `paybeam {' '.join(command)}`, found {len(found)}"
    return found[0]


def test_the_parser_has_the_commands_the_readme_promises():
    assert {("reconcile",), ("stream",), ("backfill",), ("generate",), ("runners",), ("kafka", "create-topics"),
            ("kafka", "produce"), ("kafka", "consume"), ("kafka", "broker")} <= set(COMMANDS)


def test_every_readme_synopsis_names_a_command():
    unknown = [" ".join(command) or "(none)" for command, _ in README_SYNOPSES if command not in COMMANDS]
    assert not unknown, f"README synopses of commands the CLI does not have: {unknown}"


@pytest.mark.parametrize("command", sorted(COMMANDS), ids=" ".join)
def test_the_readme_synopsis_names_every_option(command):
    missing = parser_options(COMMANDS[command]) - named_options(_readme_entry(command))
    assert not missing, f"`paybeam {' '.join(command)}` options missing from the README synopsis: {sorted(missing)}"


@pytest.mark.parametrize("command", sorted(COMMANDS), ids=" ".join)
def test_every_option_of_the_readme_synopsis_exists(command):
    unknown = named_options(_readme_entry(command)) - parser_options(COMMANDS[command])
    assert not unknown, f"the README synopsis of `paybeam {' '.join(command)}` names options the CLI does not " \
                        f"have: {sorted(unknown)}"


def test_the_synopsis_reader_sees_options_and_skips_comments():
    entries = synopses("```synopsis\npaybeam kafka broker [--port 9092] # not --kind\n"
                       "                     [--kind K]\npaybeam runners\n```\n", PARSER)
    assert [(command, named_options(entry)) for command, entry in entries] == [
        (("kafka", "broker"), {"--port", "--kind"}), (("runners",), set())]
    assert named_options("[--engine columnar|elementwise] [--as-of TIME] --x=1") == {"--engine", "--as-of", "--x"}


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation (backticks, colons, dashes like —) dropped,
    spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    anchors, seen = set(), {}
    for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.M):
        slug = _slug(heading)
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _links(path: Path):
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    text = re.sub(r"`[^`\n]*`", "", text)  # code spans: `[.fff](Z|+00:00)` is no link
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if not re.match(r"[a-z]+:", target):
            yield target


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_resolve(document):
    broken = []
    for target in _links(document):
        file_part, _, anchor = target.partition("#")
        linked = (document.parent / file_part).resolve() if file_part else document
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{document.relative_to(ROOT)}: broken links {broken}"
