"""What the risk notebook calls: threshold sweeps against labels, and one decision explained (DESIGN 10).

Pure functions over attempts, a rule set and the attack truth; each decision
comes from the per-element engine (`transforms.risk.windows.decide_in_order`),
the one `paybeam risk backtest` runs. Money is summed per currency.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Dict, List, Mapping, Sequence

import pandas as pd
from matplotlib.figure import Figure

from schemas.attempts import AuthorizationAttempt
from schemas.decisions import RiskDecision
from transforms.risk.rules import Band, RuleSet, fingerprint_of
from transforms.risk.windows import decide_in_order, key_of, order_of, passes


def with_threshold(rule_set: RuleSet, rule_id: str, threshold: int) -> RuleSet:
    """The rule set with one rule's bands replaced by a single band at `threshold` (its top band's action)."""
    rules = []
    for rule in rule_set.rules:
        if rule.id == rule_id:
            top = rule.bands[-1]
            rule = replace(rule, bands=(Band(threshold, top.action, top.score),))
        rules.append(rule)
    changed = replace(rule_set, rules=tuple(rules))
    return replace(changed, fingerprint=fingerprint_of(changed))


def rule_quality(decisions: Sequence[RiskDecision], truth: Mapping[str, str], rule_id: str) -> Dict[str, object]:
    """Precision, recall and false-positive rate (in %) of one rule, and the money of what it fired on."""
    fraud = {attempt_id for attempt_id, attack in truth.items() if attack}
    legit_count = len(truth) - len(fraud)
    fired = [d for d in decisions if any(f.rule_id == rule_id for f in [*d.fired, *d.shadow_fired])]
    caught = sum(1 for d in fired if d.attempt_id in fraud)
    money: Dict[str, int] = {}
    for decision in fired:
        money[decision.currency] = money.get(decision.currency, 0) + decision.amount_minor
    return {"fired": len(fired), "fraud_caught": caught,
            "precision_pct": round(100 * caught / len(fired), 1) if fired else None,
            "recall_pct": round(100 * caught / len(fraud), 1) if fraud else None,
            "false_positive_pct": round(100 * (len(fired) - caught) / legit_count, 2) if legit_count else None,
            **{f"fired_minor_{currency}": amount for currency, amount in sorted(money.items())}}


def sweep(attempts: Sequence[AuthorizationAttempt], truth: Mapping[str, str], rule_set: RuleSet, rule_id: str,
          thresholds: Sequence[int]) -> pd.DataFrame:
    """One row per threshold of `rule_id`: its quality on the labelled attempts (attempts in event-time order)."""
    rows = []
    for threshold in thresholds:
        decisions = decide_in_order(attempts, with_threshold(rule_set, rule_id, threshold))
        rows.append({"threshold": threshold, **rule_quality(decisions, truth, rule_id)})
    return pd.DataFrame(rows).fillna(0)


def sweep_chart(table: pd.DataFrame, rule_id: str) -> Figure:
    """Precision and recall against the threshold, and the money the rule fired on (USD minor units)."""
    figure = Figure(figsize=(10, 3.5), layout="constrained")
    quality, money = figure.subplots(1, 2)
    quality.plot(table["threshold"], table["precision_pct"], marker="o", label="precision %")
    quality.plot(table["threshold"], table["recall_pct"], marker="o", label="recall %")
    quality.set_xlabel(f"{rule_id} threshold")
    quality.set_ylim(0, 105)
    quality.legend()
    columns = [name for name in table.columns if name.startswith("fired_minor_")]
    for name in columns:
        money.bar(table["threshold"].astype(str), table[name], label=name.replace("fired_minor_", ""))
    money.set_title("money of the attempts it fired on (minor units)")
    money.set_xlabel(f"{rule_id} threshold")
    if columns:
        money.legend()
    return figure


def explain(decision: RiskDecision, attempts: Sequence[AuthorizationAttempt], rule_set: RuleSet) -> pd.DataFrame:
    """The earlier attempts in each fired rule's window, one row per (rule, attempt), and whether the rule's filter
    counted it."""
    by_id = {attempt.attempt_id: attempt for attempt in attempts}
    decided = by_id[decision.attempt_id]
    rules = {rule.id: rule for rule in rule_set.rules}
    rows: List[dict] = []
    for fired in [*decision.fired, *decision.shadow_fired]:
        rule = rules[fired.rule_id]
        key = key_of(decided, rule.key)
        for attempt in attempts:
            if (key_of(attempt, rule.key) == key and order_of(attempt) < order_of(decided)
                    and attempt.event_time > decided.event_time - rule.window_millis):
                rows.append({"rule": fired.rule_id, "value": fired.value, "key": "|".join(key),
                             "attempt_id": attempt.attempt_id,
                             "seconds_before": (decided.event_time - attempt.event_time) // 1000,
                             "counted": passes(attempt, rule.filter),
                             "outcome": attempt.outcome, "amount_minor": attempt.amount_minor,
                             "currency": attempt.currency, "billing_country": attempt.billing_country})
    return pd.DataFrame(rows)
