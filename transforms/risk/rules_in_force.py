"""Which rules are in force while a stream runs: a launch rule set, then each accepted update (DESIGN 10.11).

A `RulesSource` hands over the rules documents that arrived since it was last
asked (a rules topic's new messages, a watched file's new content), in order.
`RulesInForce` applies each with `apply_rules_update`: a valid document with
higher versions for its changed rules replaces the rules, anything else is
rejected with its problems and the rules stay. It remembers every rule set it
accepted by fingerprint, so a later step can decide an attempt with exactly
the rule set the attempt was keyed under (the decision records it).

Each worker process keeps one `RulesInForce` per (source, launch rules)
(`shared_rules_in_force`): all of a process's steps see the same sequence, and
every process reading the same topic from its start, from the same launch
rules, accepts the same sequence of rule sets.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Protocol, Tuple

from transforms.risk.rules import RuleSet
from transforms.risk.updates import apply_rules_update

_LOG = logging.getLogger(__name__)

DEFAULT_POLL_MILLIS = 1_000
DEFAULT_LOOKUP_SECONDS = 60.0
MAX_DOCUMENT_BYTES = 1 << 20  # a rules file is kilobytes; a megabyte is a mistake, not rules
KNOWN_RULE_SETS = 64  # the most recent accepted rule sets a process remembers by fingerprint


class RulesSource(Protocol):
    name: str  # names the source in logs and in the per-process registry

    def poll(self) -> List[Tuple[str, bytes]]:
        """The documents that arrived since the last call, oldest first: (origin such as "topic@offset", bytes)."""

    def close(self) -> None: ...


class RulesSourceSpec(Protocol):
    """What a pipeline hands to its DoFns (picklable): opens the source in the worker."""

    name: str

    def open(self) -> RulesSource: ...


@dataclass(frozen=True)
class RulesChange:
    """One document applied: accepted (with the fingerprint now in force) or rejected (with its problems)."""

    origin: str
    accepted: bool
    fingerprint: str
    changed: bool = False  # accepted and different from the rules in force before
    problems: Tuple[str, ...] = ()
    document: str = ""  # a rejected document's text (undecodable bytes replaced), for its dead letter


def document_text(document: bytes) -> Tuple[Optional[str], Tuple[str, ...]]:
    """A document's text, or the problem that keeps it from being rules."""
    if len(document) > MAX_DOCUMENT_BYTES:
        return None, (f"the document is {len(document)} bytes, over the {MAX_DOCUMENT_BYTES} a rules file may have",)
    try:
        return document.decode("utf-8"), ()
    except UnicodeDecodeError as error:
        return None, (f"the document is not UTF-8 text (byte {error.start})",)


class UnknownRuleSet(RuntimeError):
    """A step was handed an attempt keyed under a rule set this process never saw within the wait."""


@dataclass
class RulesInForce:
    """The rules in force now, the ones accepted before (by fingerprint), and how to catch up with the source."""

    initial: RuleSet
    source: Optional[RulesSource] = None
    poll_millis: int = DEFAULT_POLL_MILLIS
    clock: Callable[[], float] = time.monotonic
    changes: List[RulesChange] = field(default_factory=list)  # every document applied, for logs and metrics

    def __post_init__(self):
        self._current = self.initial
        self._known: "OrderedDict[str, RuleSet]" = OrderedDict({self.initial.fingerprint: self.initial})
        self._last_poll: Optional[float] = None
        self._lock = threading.Lock()

    def current(self) -> RuleSet:
        """The rules in force, after asking the source for news when `poll_millis` has passed since last time."""
        with self._lock:
            now = self.clock()
            if self._last_poll is None or (now - self._last_poll) * 1000 >= self.poll_millis:
                self._last_poll = now
                self._catch_up()
            return self._current

    def rule_set(self, fingerprint: str, wait_seconds: float = DEFAULT_LOOKUP_SECONDS) -> RuleSet:
        """The accepted rule set with this fingerprint; asks the source until it shows (another process may
        have read the update first) or the wait is over."""
        deadline = self.clock() + wait_seconds
        while True:
            with self._lock:
                known = self._known.get(fingerprint)
                if known is not None:
                    return known
                self._catch_up()
                known = self._known.get(fingerprint)
                if known is not None:
                    return known
            if self.clock() >= deadline:
                raise UnknownRuleSet(f"rule set {fingerprint} is not among the rules this worker accepted from "
                                     f"{self.source.name if self.source else 'its launch rules'}")
            time.sleep(0.05)  # the source had nothing new yet: ask again shortly

    def take_changes(self) -> List[RulesChange]:
        """The documents applied since the last call (a DoFn turns them into metrics)."""
        with self._lock:
            taken, self.changes = self.changes, []
            return taken

    def _catch_up(self) -> None:
        if self.source is None:
            return
        try:
            documents = self.source.poll()
        except Exception as error:  # noqa: BLE001 — the source is down: keep deciding with the rules in force
            _LOG.warning("rules source %s cannot be read (%s); the rules in force stay %s",
                         self.source.name, error, self._current.fingerprint)
            return
        for origin, document in documents:
            self._apply(origin, document)

    def _apply(self, origin: str, document: bytes) -> None:
        text, problems = document_text(document)
        before = self._current
        if text is not None:
            update = apply_rules_update(before, text, origin)
            problems = update.problems
            if update.rule_set.fingerprint != before.fingerprint:  # the same rules again change nothing
                self._current = update.rule_set
        if problems:
            change = RulesChange(origin, False, before.fingerprint, problems=tuple(problems),
                                 document=document.decode("utf-8", "replace"))
            for problem in problems:
                _LOG.warning("rules update %s rejected, the rules in force stay %s: %s", origin,
                             before.fingerprint, problem)
        else:
            change = RulesChange(origin, True, self._current.fingerprint,
                                 changed=self._current.fingerprint != before.fingerprint)
            if change.changed:
                _LOG.info("rules update %s accepted: %s in force (%s)", origin, self._current.fingerprint,
                          self._current.rule_versions)
            self._known[self._current.fingerprint] = self._current
            self._known.move_to_end(self._current.fingerprint)
            while len(self._known) > KNOWN_RULE_SETS:
                self._known.popitem(last=False)
        self.changes.append(change)


_SHARED: Dict[Tuple[str, str], RulesInForce] = {}
_SHARED_LOCK = threading.Lock()


def shared_rules_in_force(initial: RuleSet, spec: Optional[RulesSourceSpec],
                          poll_millis: int = DEFAULT_POLL_MILLIS) -> RulesInForce:
    """This process's RulesInForce for a source and launch rule set: one source connection per process."""
    key = (spec.name if spec is not None else "", initial.fingerprint)
    with _SHARED_LOCK:
        found = _SHARED.get(key)
        if found is None:
            found = _SHARED[key] = RulesInForce(initial, spec.open() if spec is not None else None, poll_millis)
        return found
