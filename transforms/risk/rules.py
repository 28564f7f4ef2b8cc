"""Risk rules as data: a YAML or JSON rules file -> a validated RuleSet (docs/DESIGN.md 10.2).

Every mistake in the file is reported at start-up, one line each, naming the
rule and the field (`RulesError.problems`); nothing half-valid is ever used.
The rules are frozen dataclasses, so a rule set can travel through Beam as a
side input or a state value and two sets compare by value.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from schemas.attempts import ATTEMPT_TYPES, OUTCOMES, THREE_DS_RESULTS
from schemas.errors import UserError
from schemas.money import MoneyError, normalize_currency

ACTIVE, SHADOW, PAUSED = "active", "shadow", "paused"
STATES = (ACTIVE, SHADOW, PAUSED)

ALLOW, REVIEW, BLOCK, SCORE = "allow", "review", "block", "score"
ACTIONS = (ALLOW, REVIEW, BLOCK, SCORE)
# A decision's action: the highest of its fired active rules' actions (and of what their summed score reaches).
# No rule can lift a block: an allow rule is recorded (e.g. trusted traffic) but never overrides one.
PRECEDENCE = {ALLOW: 0, REVIEW: 1, BLOCK: 2}

KEY_FIELDS = ("card_fingerprint", "card_bin", "customer_id", "ip", "device_id", "merchant_id")
DISTINCT_FIELDS = (*KEY_FIELDS, "billing_country", "issuing_country", "currency")

COUNT, SUM_AMOUNT, DISTINCT, RATIO, AMOUNT_VS_MEAN = "count", "sum_amount", "distinct", "ratio", "amount_vs_mean_pct"
AGGREGATES = (COUNT, SUM_AMOUNT, DISTINCT, RATIO, AMOUNT_VS_MEAN)
# Aggregates over the earlier attempts only: they compare outcomes or amounts with history, and the
# outcome of the attempt being decided is not known when it is decided.
HISTORY_ONLY = (RATIO, AMOUNT_VS_MEAN)

LIST_CONDITIONS = {"attempt_type": ATTEMPT_TYPES, "outcome": OUTCOMES, "decline_code": None, "currency": None,
                   "billing_country": None, "issuing_country": None, "three_ds": THREE_DS_RESULTS}
# Conditions on what only the authorization tells: the attempt being decided passes none of them.
AFTER_AUTHORIZATION = ("outcome", "decline_code")

MAX_SCORE = 10**9  # scores of all fired rules are summed
MAX_RULE_NUMBER = 10**18  # the largest whole number a rules file may hold ("a whole number" in its messages)
MAX_WINDOW_MILLIS = 90 * 86_400_000  # state is kept for the longest window: bounded by design
_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^([1-9][0-9]{0,6})([smhd])$")
_RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_RULE_KEYS = {"id", "version", "state", "key", "filter", "aggregate", "numerator", "window", "baseline",
              "threshold", "bands", "min_volume", "action", "score", "reason"}
_FILE_KEYS = {"version", "score_review_at", "score_block_at", "rules"}


class RulesError(UserError):
    """A rules file with mistakes: `problems` holds one line per mistake."""

    def __init__(self, source: str, problems: List[str]):
        self.source, self.problems = source, problems
        super().__init__("\n".join(f"{source}: {problem}" for problem in problems))


@dataclass(frozen=True)
class AmountRange:
    min_minor: Optional[int] = None  # inclusive
    max_minor: Optional[int] = None  # inclusive


@dataclass(frozen=True)
class Filter:
    """Conditions an attempt must all pass to count in a rule's aggregate; a missing condition passes."""

    values: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()  # (field, allowed values), sorted by field
    amount: AmountRange = AmountRange()

    def allowed(self, name: str) -> Optional[Tuple[str, ...]]:
        return dict(self.values).get(name)

    @property
    def needs_authorization(self) -> bool:
        return any(name in AFTER_AUTHORIZATION for name, _ in self.values)


@dataclass(frozen=True)
class Band:
    at_least: int
    action: str
    score: int = 0


@dataclass(frozen=True)
class Baseline:
    """A ratio rule fires only when its rate is at least `factor_pct` % of the same rate over `window_millis`."""

    window_millis: int
    factor_pct: int
    min_volume: int = 1


@dataclass(frozen=True)
class Rule:
    id: str
    version: int
    state: str
    key: Tuple[str, ...]
    filter: Filter
    aggregate: str
    window_millis: int
    bands: Tuple[Band, ...]  # ascending at_least; a plain threshold is one band
    reason: str
    distinct_field: Optional[str] = None
    numerator: Filter = Filter()  # ratio only
    baseline: Optional[Baseline] = None  # ratio only
    min_volume: int = 1

    @property
    def tag(self) -> str:
        return f"{self.id}@{self.version}"

    @property
    def longest_window_millis(self) -> int:
        return max(self.window_millis, self.baseline.window_millis if self.baseline else 0)


@dataclass(frozen=True)
class RuleSet:
    rules: Tuple[Rule, ...]
    version: str = ""  # the file's own `version`, as text
    score_review_at: Optional[int] = None
    score_block_at: Optional[int] = None
    fingerprint: str = field(default="", compare=False)  # of the canonical JSON: equal sets, equal prints

    @property
    def evaluated(self) -> Tuple[Rule, ...]:
        """The rules a decision evaluates: active and shadow ones (paused rules are kept, not run)."""
        return tuple(rule for rule in self.rules if rule.state != PAUSED)

    @property
    def rule_versions(self) -> str:
        """What every decision records: the evaluated rules as `id@version`, comma-separated, by id."""
        return ",".join(sorted(rule.tag for rule in self.evaluated))

    @property
    def key_specs(self) -> Tuple[Tuple[str, ...], ...]:
        """The distinct entity keys of the evaluated rules: one keyed history each."""
        return tuple(sorted({rule.key for rule in self.evaluated}))

    def rules_for(self, key: Tuple[str, ...]) -> Tuple[Rule, ...]:
        """The evaluated rules of one entity key, the ones a history of that key decides."""
        return tuple(rule for rule in self.evaluated if rule.key == key)

    def longest_window_millis(self, key: Tuple[str, ...]) -> int:
        """How long a history of `key` is kept: its rules' longest window (the state's TTL)."""
        return max((rule.longest_window_millis for rule in self.rules_for(key)), default=0)

    @property
    def retention_millis(self) -> int:
        """The longest window of any evaluated rule: how long anything is kept for this rule set."""
        return max((self.longest_window_millis(spec) for spec in self.key_specs), default=0)


def parse_duration_millis(text: Any) -> int:
    """'90s', '10m', '1h', '7d' -> milliseconds; ValueError with the reason otherwise."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"{text!r} is not a duration like 90s, 10m, 1h or 7d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def load_rules(text: str, source: str = "rules") -> RuleSet:
    """Parses a rules file's text (JSON, or YAML when it is not JSON); raises RulesError listing every mistake."""
    try:
        document = json.loads(text)
    except ValueError:
        import yaml  # PyYAML, a Beam dependency; safe_load builds plain data only, never objects

        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise RulesError(source, [f"not valid YAML or JSON: {' '.join(str(error).split())}"]) from None
    return rule_set_of(document, source)


def load_rules_file(path: str) -> RuleSet:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(4 << 20)
    except (OSError, UnicodeDecodeError) as error:
        raise RulesError(path, [f"cannot be read: {error}"]) from None
    return load_rules(text, path)


def rule_set_of(document: Any, source: str = "rules") -> RuleSet:
    """A parsed document -> RuleSet; RulesError lists every mistake, one line each."""
    problems: List[str] = []
    if not isinstance(document, Mapping):
        raise RulesError(source, ["the file must hold a mapping with a 'rules' list"])
    for unknown in sorted(set(map(str, document)) - _FILE_KEYS):
        problems.append(f"unknown top-level field {unknown!r} (known: {', '.join(sorted(_FILE_KEYS))})")
    entries = document.get("rules")
    if not isinstance(entries, list) or not entries:
        problems.append("'rules' must be a non-empty list of rules")
        entries = []
    review_at = _optional_positive(document, "score_review_at", problems)
    block_at = _optional_positive(document, "score_block_at", problems)
    rules = []
    for index, entry in enumerate(entries, start=1):
        rule = _rule(entry, index, problems)
        if rule is not None:
            rules.append(rule)
    seen: Dict[str, int] = {}
    for rule in rules:
        if rule.id in seen:
            problems.append(f"rule {rule.id!r}: field 'id': used by more than one rule")
        seen[rule.id] = 1
    if any(rule.state != PAUSED and any(band.action == SCORE for band in rule.bands) for rule in rules) \
            and review_at is None and block_at is None:
        problems.append("rules with action 'score' need score_review_at or score_block_at at the top level")
    if problems:
        raise RulesError(source, problems)
    rule_set = RuleSet(tuple(sorted(rules, key=lambda rule: rule.id)), str(document.get("version", "")),
                       review_at, block_at)
    return RuleSet(rule_set.rules, rule_set.version, review_at, block_at, fingerprint=fingerprint_of(rule_set))


def fingerprint_of(rule_set: RuleSet) -> str:
    """A short hash of the rule set's canonical form: what a decision says it was decided by."""
    canonical = json.dumps(_plain(rule_set), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def _plain(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {name: _plain(getattr(value, name)) for name in value.__dataclass_fields__ if name != "fingerprint"}
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def _rule(entry: Any, index: int, problems: List[str]) -> Optional[Rule]:
    name = f"rule #{index}"
    if not isinstance(entry, Mapping):
        problems.append(f"{name}: must be a mapping of fields")
        return None
    rule_id = entry.get("id")
    if isinstance(rule_id, str) and _RULE_ID.match(rule_id):
        name = f"rule {rule_id!r}"
    else:
        problems.append(f"{name}: field 'id': {rule_id!r} must be 1-64 letters, digits, '_', '.' or '-'")
    before = len(problems)
    say = _Reporter(name, problems)
    for unknown in sorted(set(map(str, entry)) - _RULE_KEYS):
        say(unknown, f"unknown field (known: {', '.join(sorted(_RULE_KEYS))})")
    version = entry.get("version")
    if not _is_int(version) or version < 1:
        say("version", f"{version!r} must be a whole number (at most 10^18), 1 or more")
    state = entry.get("state", ACTIVE)
    if state not in STATES:
        say("state", f"{state!r} is not one of {', '.join(STATES)}")
    key = _key(entry.get("key"), say)
    filter_ = _filter(entry.get("filter"), "filter", say)
    aggregate, distinct_field = _aggregate(entry.get("aggregate"), say)
    window = _duration(entry.get("window"), "window", say)
    numerator = _filter(entry.get("numerator"), "numerator", say) if aggregate == RATIO else Filter()
    if aggregate == RATIO and entry.get("numerator") is None:
        say("numerator", "a ratio needs the numerator's conditions (e.g. outcome: [DECLINED])")
    elif aggregate != RATIO and entry.get("numerator") is not None:
        say("numerator", "only a ratio has a numerator")
    baseline = _baseline(entry.get("baseline"), window, say) if entry.get("baseline") is not None else None
    if baseline is not None and aggregate != RATIO:
        say("baseline", "only a ratio compares with a baseline")
    bands = _bands(entry, say)
    min_volume = entry.get("min_volume", 1)
    if not _is_int(min_volume) or min_volume < 1:
        say("min_volume", f"{min_volume!r} must be a whole number (at most 10^18), 1 or more")
    reason = entry.get("reason")
    if not isinstance(reason, str) or not _RULE_ID.match(reason):
        say("reason", f"{reason!r} must be a reason code of 1-64 letters, digits, '_', '.' or '-'")
    if len(problems) > before or not isinstance(rule_id, str) or not _RULE_ID.match(rule_id):
        return None
    return Rule(rule_id, version, state, key, filter_, aggregate, window, bands, reason, distinct_field, numerator,
                baseline, min_volume)


class _Reporter:
    def __init__(self, name: str, problems: List[str]):
        self.name, self.problems = name, problems

    def __call__(self, field_name: str, message: str) -> None:
        self.problems.append(f"{self.name}: field {field_name!r}: {message}")


def _is_int(value: Any) -> bool:
    """A whole number a rule may hold: at most 10^18 either way, so every threshold, score and count of a
    rule, and every aggregate compared with them, fits the 64-bit integers of the columnar engine."""
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_RULE_NUMBER


def _optional_positive(document: Mapping, name: str, problems: List[str]) -> Optional[int]:
    value = document.get(name)
    if value is None:
        return None
    if not _is_int(value) or value < 1:
        problems.append(f"field {name!r}: {value!r} must be a whole number (at most 10^18), 1 or more")
        return None
    return value


def _key(value: Any, say: _Reporter) -> Tuple[str, ...]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        say("key", f"{value!r} must name one or more of {', '.join(KEY_FIELDS)}")
        return ()
    unknown = [name for name in names if name not in KEY_FIELDS]
    if unknown or len(set(names)) != len(names):
        say("key", f"{value!r} must name distinct fields among {', '.join(KEY_FIELDS)}")
        return ()
    return tuple(sorted(names))


def _filter(value: Any, where: str, say: _Reporter) -> Filter:
    if value is None:
        return Filter()
    if not isinstance(value, Mapping):
        say(where, "must be a mapping of conditions")
        return Filter()
    conditions = []
    amount = AmountRange()
    for name, allowed in value.items():
        if name == "amount_minor":
            amount = _amount_range(allowed, f"{where}.amount_minor", say)
            continue
        if name not in LIST_CONDITIONS:
            say(f"{where}.{name}", f"unknown condition (known: amount_minor, {', '.join(LIST_CONDITIONS)})")
            continue
        values = [allowed] if isinstance(allowed, str) else allowed
        if not isinstance(values, list) or not values or not all(isinstance(item, str) and item for item in values):
            say(f"{where}.{name}", f"{allowed!r} must be a value or a non-empty list of values")
            continue
        normalized = [_normalized(name, item) for item in values]
        choices = LIST_CONDITIONS[name]
        wrong = [item for item, norm in zip(values, normalized) if norm is None or (choices and norm not in choices)]
        if wrong:
            known = f" (one of {', '.join(choices)})" if choices else ""
            say(f"{where}.{name}", f"{', '.join(map(repr, wrong))} not a valid value{known}")
            continue
        conditions.append((name, tuple(sorted(set(normalized)))))
    return Filter(tuple(sorted(conditions)), amount)


def _normalized(name: str, value: str) -> Optional[str]:
    text = value.strip()
    if name == "currency":
        try:
            return normalize_currency(text)
        except MoneyError:
            return None
    if name in ("billing_country", "issuing_country"):
        return text.upper() if re.fullmatch(r"[A-Za-z]{2}", text) else None
    if name in ("attempt_type", "outcome", "three_ds"):
        return text.upper()
    return text


def _amount_range(value: Any, where: str, say: _Reporter) -> AmountRange:
    if not isinstance(value, Mapping) or not value or set(value) - {"min", "max"}:
        say(where, f"{value!r} must be a mapping with min and/or max (minor units, inclusive)")
        return AmountRange()
    low, high = value.get("min"), value.get("max")
    for bound in (low, high):
        if bound is not None and (not _is_int(bound) or bound < 0):
            say(where, f"{bound!r} must be a whole number (at most 10^18) of minor units, 0 or more")
            return AmountRange()
    if low is not None and high is not None and low > high:
        say(where, f"min {low} is above max {high}")
        return AmountRange()
    return AmountRange(low, high)


def _aggregate(value: Any, say: _Reporter) -> Tuple[str, Optional[str]]:
    if isinstance(value, str) and value.startswith(f"{DISTINCT}:"):
        distinct_field = value.split(":", 1)[1]
        if distinct_field not in DISTINCT_FIELDS:
            say("aggregate", f"distinct:{distinct_field} — the field must be one of {', '.join(DISTINCT_FIELDS)}")
        return DISTINCT, distinct_field
    if value not in AGGREGATES or value == DISTINCT:
        say("aggregate", f"{value!r} is not one of count, sum_amount, distinct:<field>, ratio, amount_vs_mean_pct")
        return "", None
    return value, None


def _duration(value: Any, where: str, say: _Reporter) -> int:
    try:
        millis = parse_duration_millis(value)
    except ValueError as error:
        say(where, str(error))
        return 0
    if millis > MAX_WINDOW_MILLIS:
        say(where, f"{value!r} is longer than 90d, the longest window paybeam keeps state for")
        return 0
    return millis


def _baseline(value: Any, window: int, say: _Reporter) -> Optional[Baseline]:
    if not isinstance(value, Mapping) or set(value) - {"window", "factor_pct", "min_volume"}:
        say("baseline", "must be a mapping of window, factor_pct and optionally min_volume")
        return None
    millis = _duration(value.get("window"), "baseline.window", say)
    if millis and window and millis <= window:
        say("baseline.window", "must be longer than the rule's window")
    factor, volume = value.get("factor_pct"), value.get("min_volume", 1)
    if not _is_int(factor) or factor < 1:
        say("baseline.factor_pct", f"{factor!r} must be a whole percentage, 1 or more (300 = three times)")
        return None
    if not _is_int(volume) or volume < 1:
        say("baseline.min_volume", f"{volume!r} must be a whole number (at most 10^18), 1 or more")
        return None
    return Baseline(millis, factor, volume)


def _bands(entry: Mapping, say: _Reporter) -> Tuple[Band, ...]:
    threshold, bands = entry.get("threshold"), entry.get("bands")
    if (threshold is None) == (bands is None):
        say("threshold", "give either threshold (with action) or bands, not both")
        return ()
    if threshold is not None:
        if not _is_int(threshold) or threshold < 0:
            say("threshold", f"{threshold!r} must be a whole number (at most 10^18) (ratios in basis points, 5000 = 50%)")
            return ()
        band = _band({"at_least": threshold, "action": entry.get("action"), "score": entry.get("score")},
                     "action", say)
        return (band,) if band else ()
    if entry.get("action") is not None or entry.get("score") is not None:
        say("action", "with bands, each band names its action")
    if not isinstance(bands, list) or not bands:
        say("bands", "must be a non-empty list of {at_least, action[, score]}")
        return ()
    parsed = [_band(band, f"bands[{number}]", say) for number, band in enumerate(bands)]
    if any(band is None for band in parsed):
        return ()
    levels = [band.at_least for band in parsed]
    if levels != sorted(set(levels)):
        say("bands", "at_least must rise from band to band")
        return ()
    return tuple(parsed)


def _band(value: Any, where: str, say: _Reporter) -> Optional[Band]:
    if not isinstance(value, Mapping):
        say(where, "must be a mapping of at_least, action and optionally score")
        return None
    at_least, action, score = value.get("at_least"), value.get("action"), value.get("score")
    if not _is_int(at_least) or at_least < 0:
        say(where, f"at_least {at_least!r} must be a whole number (at most 10^18), 0 or more")
        return None
    if action not in ACTIONS:
        say(where, f"action {action!r} is not one of {', '.join(ACTIONS)}")
        return None
    if action == SCORE:
        if not _is_int(score) or not 1 <= score <= MAX_SCORE:
            say(where, f"score {score!r}: action 'score' needs a whole score from 1 to {MAX_SCORE:,}")
            return None
        return Band(at_least, action, score)
    if score is not None:
        say(where, "only action 'score' takes a score")
        return None
    return Band(at_least, action)


def band_reached(rule: Rule, value: int) -> Optional[Band]:
    """The highest band whose at_least `value` reaches, if any."""
    reached = None
    for band in rule.bands:
        if value >= band.at_least:
            reached = band
    return reached


def describe(rule_set: RuleSet) -> Sequence[str]:
    """One line per rule, for start-up logs and `paybeam risk rules`."""
    return [f"{rule.tag} {rule.state} key={'+'.join(rule.key)} {rule.aggregate}"
            f"{':' + rule.distinct_field if rule.distinct_field else ''} window={rule.window_millis // 1000}s "
            f"reason={rule.reason}" for rule in rule_set.rules]
