"""New rule versions while a stream runs (docs/DESIGN.md 10.10): accept a whole valid rule set, or keep the old.

An update is a whole rules document (what a rules topic message or a watched
file holds). It replaces the rule set in force only when it is valid and every
rule that changed carries a higher version than before, so `id@version`, which
every decision records, always names one content. Anything else is rejected
with its problems, one line each, and the previous rules stay in force.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from transforms.risk.rules import RulesError, RuleSet, load_rules


@dataclass(frozen=True)
class RulesUpdate:
    accepted: bool
    rule_set: RuleSet  # the rules in force after the update: the new set, or the previous one
    problems: Tuple[str, ...] = ()


def version_problems(current: RuleSet, candidate: RuleSet) -> Tuple[str, ...]:
    """Rules of `candidate` that changed from `current` without a higher version."""
    before = {rule.id: rule for rule in current.rules}
    problems = []
    for rule in candidate.rules:
        old = before.get(rule.id)
        if old is not None and rule != old and rule.version <= old.version:
            problems.append(f"rule {rule.id!r}: field 'version': the rule changed but its version is {rule.version}, "
                            f"not above {old.version}")
    return tuple(problems)


def apply_rules_update(current: RuleSet, text: str, source: str = "rules update") -> RulesUpdate:
    """The rules in force after receiving `text` while `current` is in force."""
    try:
        candidate = load_rules(text, source)
    except RulesError as error:
        return RulesUpdate(False, current, tuple(error.problems))
    problems = version_problems(current, candidate)
    if problems:
        return RulesUpdate(False, current, problems)
    return RulesUpdate(True, candidate)
