"""Risk decisions: one per authorization attempt (docs/DESIGN.md 10.4)."""

from typing import NamedTuple, Sequence

import apache_beam as beam

from schemas.stable_schema import stable_schema


@stable_schema
class FiredRule(NamedTuple):
    rule_id: str
    rule_version: int
    value: int  # the aggregate that reached the band (ratios in basis points, amount_vs_mean_pct in %)
    volume: int  # how many attempts the aggregate was over
    action: str  # allow | review | block | score
    score: int  # 0 unless action is score
    reason: str


@stable_schema
class RiskDecision(NamedTuple):
    attempt_id: str
    event_time: int  # epoch millis, UTC
    merchant_id: str
    amount_minor: int  # the attempt's, for blocked and reviewed volume
    currency: str
    action: str  # allow | review | block: the combined action of the active rules that fired
    score: int  # the sum of the fired active rules' scores
    fired: Sequence[FiredRule]  # active rules that fired, by rule id
    shadow_fired: Sequence[FiredRule]  # shadow rules that would have fired, by rule id (never acted on)
    rule_versions: str  # every evaluated rule as id@version, comma-separated, by id
    ruleset: str  # the rule set's fingerprint (transforms/risk/rules.py: fingerprint_of)


@stable_schema
class RuleChange(NamedTuple):
    """An attempt whose action a new rule set changes (`paybeam risk backtest --compare-rules`)."""

    attempt_id: str
    event_time: int
    merchant_id: str
    amount_minor: int
    currency: str
    action_before: str
    action_after: str
    fired_before: str  # id@version=value/action, `;`-separated
    fired_after: str


def fired_text(fired: Sequence[FiredRule]) -> str:
    """`id@version=value/action` per fired rule, `;`-separated: a decision's rules in one text cell."""
    return ";".join(f"{rule.rule_id}@{rule.rule_version}={rule.value}/{rule.action}" for rule in fired)


DECISION_FIELDS = RiskDecision._fields
RULE_CHANGE_FIELDS = RuleChange._fields

for _record in (FiredRule, RiskDecision, RuleChange):
    beam.coders.registry.register_coder(_record, beam.coders.RowCoder)
