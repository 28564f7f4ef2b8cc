"""Risk decisions for a whole table of attempts at once: the per-event windows of DESIGN 10.3 in numpy.

The columnar twin of `transforms/risk/windows.py: decide_in_order` for a table
of unique attempts (a backtest's, after deduplication): the same decision for
every attempt, field for field (tests/test_columnar_risk.py compares them
with hypothesis). Per rule:

    rows with a value for the rule's key ─► sorted by (key[, currency], event_time, attempt_id)
      ─► the window's first row per attempt: one searchsorted over (key, time rank)
      ─► counts, numerators and amounts of the earlier rows: differences of prefix sums
      ─► value and population per aggregate ─► the band reached (searchsorted over the bands)

Then every attempt's fired rules are combined by the precedence of 10.2 into
one RISK_DECISION row, the fired rules as list<struct> built from offsets.

Prefix sums of amounts are int64 and wrap: a difference of two of them is the
exact window sum whenever that sum fits int64. Products that could leave
int64 (a mean's amount × 100 × volume, a baseline's cross products) are
computed with Python integers where a float estimate says they might.
Distinct counts sweep the sorted rows once in Python (a two-pointer window):
the one aggregate numpy has no prefix sum for.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas import arrow
from schemas.decisions import FiredRule, RiskDecision
from transforms.risk.rules import (
    AFTER_AUTHORIZATION,
    AMOUNT_VS_MEAN,
    BLOCK,
    COUNT,
    DISTINCT,
    PRECEDENCE,
    RATIO,
    REVIEW,
    SHADOW,
    SUM_AMOUNT,
    Filter,
    Rule,
    RuleSet,
)
from transforms.risk.windows import MAX_AGGREGATE

SAFE_ESTIMATE = float(2 ** 62)  # below this a float estimate of a sum or product leaves int64 room for its rounding error
_ACTION_OF_LEVEL = {level: action for action, level in PRECEDENCE.items()}


@dataclass
class RuleOutcome:
    """One rule over every row (input order): value, volume, fired, and the band's action and score where it
    fired (rows without a value for the rule's key: 0, 0, not fired)."""

    rule: Rule
    value: np.ndarray
    volume: np.ndarray
    fired: np.ndarray
    action: List[str]  # per band index; band_index selects
    band_index: np.ndarray  # -1 where no band was reached
    scores: np.ndarray  # per band

    def take(self, rows: np.ndarray) -> "RuleOutcome":
        """The outcome of these rows only, in this order (a live shard keeps the rows it decided)."""
        return RuleOutcome(self.rule, self.value[rows], self.volume[rows], self.fired[rows], self.action,
                           self.band_index[rows], self.scores)


@dataclass
class EarlierSums:
    """Per row of a table `evaluate_rule` is given: what its windows hold among rows *outside* that table (a
    live key's indexed rows, `transforms/columnar/live_index.py`), added to what the table's own rows give:
    counted rows, their counted amounts and numerator rows in the rule's window, counted and numerator rows
    in its baseline's window. Amounts are int64, or Python integers where they might not fit."""

    count: np.ndarray
    amount: np.ndarray
    numerator: np.ndarray
    base_count: np.ndarray
    base_numerator: np.ndarray


def grouping(rule: Rule) -> Tuple[str, ...]:
    """The fields a rule's windows group rows by: its key, and the currency for the amount aggregates."""
    return rule.key + (("currency",) if rule.aggregate in (SUM_AMOUNT, AMOUNT_VS_MEAN) else ())


class AttemptColumns:
    """The attempt columns every rule reads, converted once."""

    def __init__(self, table: pa.Table):
        self.table = table
        self.rows = table.num_rows
        self.time = table.column("event_time").cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.int64)
        self.amount = table.column("amount_minor").to_numpy(zero_copy_only=False).astype(np.int64)
        ids = table.column("attempt_id")
        # The order attempts are decided in: (event_time, attempt_id); Arrow compares UTF-8 bytes, which
        # orders like Python compares str.
        self.sequence = pc.sort_indices(pa.table({"t": self.time, "id": ids}),
                                        sort_keys=[("t", "ascending"), ("id", "ascending")]).to_numpy()
        # Distinct times from the decision order (already sorted): numpy's unique hashes, at ~10x the cost.
        ordered = self.time[self.sequence]
        first = np.ones(self.rows, dtype=bool)
        first[1:] = ordered[1:] != ordered[:-1]
        self.unique_times = ordered[first]
        self.time_rank = np.empty(self.rows, dtype=np.int64)
        self.time_rank[self.sequence] = np.cumsum(first) - 1
        self._codes: Dict[str, Tuple[np.ndarray, int]] = {}

    def codes(self, name: str) -> Tuple[np.ndarray, int]:
        """Dictionary codes of a text column (-1 for null) and how many distinct values it has."""
        found = self._codes.get(name)
        if found is None:
            encoded = pc.dictionary_encode(self.table.column(name)).combine_chunks()
            codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
            found = self._codes[name] = (codes, len(encoded.dictionary))
        return found

    def passes(self, conditions: Filter, authorized: bool = True) -> np.ndarray:
        """The rows passing every condition (`authorized` False: none on the outcome or decline code)."""
        mask = np.ones(self.rows, dtype=bool)
        for name, allowed in conditions.values:
            if name in AFTER_AUTHORIZATION and not authorized:
                return np.zeros(self.rows, dtype=bool)
            mask &= pc.fill_null(pc.is_in(self.table.column(name), pa.array(allowed, pa.string())),
                                 False).to_numpy(zero_copy_only=False)
        if conditions.amount.min_minor is not None:
            mask &= self.amount >= conditions.amount.min_minor
        if conditions.amount.max_minor is not None:
            mask &= self.amount <= conditions.amount.max_minor
        return mask


def key_groups(columns: AttemptColumns, fields: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
    """(group id per row, rows with a value for every field): one id per distinct combination."""
    group = np.zeros(columns.rows, dtype=np.int64)
    present = np.ones(columns.rows, dtype=bool)
    for name in fields:
        codes, distinct = columns.codes(name)
        present &= codes >= 0
        group = group * (distinct + 1) + (codes + 1)
        if distinct and group.max(initial=0) > 2 ** 40:  # keep ids small: renumber the combinations so far
            group = np.unique(group, return_inverse=True)[1].astype(np.int64)
    return group, present


def _prefix(values: np.ndarray) -> np.ndarray:
    """Sums of values[:p] for p = 0..len (wrapping int64: differences are exact when they fit)."""
    out = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(values, out=out[1:])
    return out


def _window_sums(values: np.ndarray, low: np.ndarray) -> np.ndarray:
    """Sums of values[low[p]:p] per position p: int64 where they surely fit, Python integers elsewhere."""
    position = np.arange(len(values))
    prefix = _prefix(values)
    sums = prefix[position] - prefix[low]
    estimate = np.concatenate([[0.0], np.cumsum(values.astype(np.float64))])
    big = np.flatnonzero(estimate[position] - estimate[low] >= SAFE_ESTIMATE)
    if not len(big):
        return sums
    exact = np.concatenate([[0], np.cumsum(values.astype(object))])
    sums = sums.astype(object)
    sums[big] = exact[big] - exact[low[big]]
    return sums


def exact_sum(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """first + second elementwise, exact: int64 where a float estimate is safe, Python integers elsewhere."""
    if first.dtype != object and second.dtype != object:
        if not (first.astype(np.float64) + second.astype(np.float64) >= SAFE_ESTIMATE).any():
            return first + second
    return first.astype(object) + second.astype(object)


def _exact_products(*factors: np.ndarray) -> np.ndarray:
    """The elementwise product, exact: int64 where a float estimate is safe, Python integers elsewhere."""
    estimate = np.ones(len(factors[0]), dtype=np.float64)
    for factor in factors:
        estimate *= np.abs(factor.astype(np.float64))
    if not (estimate >= SAFE_ESTIMATE).any():
        product = np.ones(len(factors[0]), dtype=np.int64)
        for factor in factors:
            product *= factor
        return product
    product = np.ones(len(factors[0]), dtype=object)
    for factor in factors:
        product *= factor.astype(object)
    return product


def _floor_div(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator // denominator where the denominator is non-zero, else 0, as int64 (the quotients fit)."""
    out = np.zeros(len(numerator), dtype=np.int64)
    nonzero = denominator != 0
    if nonzero.any():
        out[nonzero] = (numerator[nonzero] // denominator[nonzero]).astype(np.int64)
    return out


class _Sorted:
    """One rule's rows in decision order within each group, and each row's window start."""

    def __init__(self, columns: AttemptColumns, group: np.ndarray, present: np.ndarray):
        in_sequence = columns.sequence[present[columns.sequence]]
        by_group = np.argsort(group[in_sequence], kind="stable")
        self.order = in_sequence[by_group]  # input row of each sorted position
        self.group = group[self.order]
        self.time = columns.time[self.order]
        span = len(columns.unique_times) + 1
        self._key = self.group * span + columns.time_rank[self.order]
        self._span, self._columns = span, columns

    def window_start(self, window_millis: int, visible_after: Optional[np.ndarray] = None) -> np.ndarray:
        """Per sorted position, the first position of its group with event_time > its own - window (and >
        `visible_after` of its row, where given: a live key's rows its history had already let go)."""
        bound = self.time - window_millis
        if visible_after is not None:
            bound = np.maximum(bound, visible_after[self.order])
        first_rank = np.searchsorted(self._columns.unique_times, bound, side="right")
        start = np.searchsorted(self._key, self.group * self._span + first_rank, side="left")
        # A row whose own time is let go of sees no earlier row (the reference's bisect stops at the row).
        return start if visible_after is None else np.minimum(start, np.arange(len(start)))


def _distinct_values(sorted_rows: _Sorted, low: np.ndarray, counted: np.ndarray, itself: np.ndarray,
                     codes: np.ndarray) -> np.ndarray:
    """Distinct non-null values among the window's counted rows and the row itself (if it counts)."""
    groups, starts = sorted_rows.group.tolist(), low.tolist()
    counts_row, itself_row, value_row = counted.tolist(), itself.tolist(), codes.tolist()
    out = [0] * len(groups)
    seen: Dict[int, int] = {}
    left, current = 0, None
    for position, group in enumerate(groups):
        if group != current:
            seen, left, current = {}, position, group
        while left < starts[position]:
            value = value_row[left]
            if counts_row[left] and value >= 0:
                remaining = seen[value] - 1
                if remaining:
                    seen[value] = remaining
                else:
                    del seen[value]
            left += 1
        value = value_row[position]
        out[position] = len(seen) + (1 if itself_row[position] and value >= 0 and value not in seen else 0)
        if counts_row[position] and value >= 0:
            seen[value] = seen.get(value, 0) + 1
    return np.asarray(out, dtype=np.int64)


def evaluate_rule(columns: AttemptColumns, rule: Rule, visible_after: Optional[np.ndarray] = None,
                  outside: Optional[EarlierSums] = None) -> RuleOutcome:
    """A rule's aggregate, population and band for every row with a value for its key.

    `visible_after` (per row, optional): the earlier rows a row may see have event_time above it, besides
    being in its window (the live engine's rows expired from a key's history, DESIGN 10.13). `outside`
    (optional): what each row's windows hold beyond the table (not for distinct counts)."""
    group, present = key_groups(columns, grouping(rule))
    rows = _Sorted(columns, group, present)
    order = rows.order
    counted_all = columns.passes(rule.filter)
    counted = counted_all[order]
    itself = counted if not rule.filter.needs_authorization else np.zeros(len(order), dtype=bool)
    low = rows.window_start(rule.window_millis, visible_after)
    position = np.arange(len(order))
    counts = _prefix(counted.astype(np.int64))
    before = counts[position] - counts[low]
    if outside is not None:
        before = before + outside.count[order]
    extra = np.ones(len(order), dtype=bool)
    if rule.aggregate == COUNT:
        volume = value = before + itself
    elif rule.aggregate == RATIO:
        volume = before
        numerators = _prefix((counted & columns.passes(rule.numerator)[order]).astype(np.int64))
        numerator = numerators[position] - numerators[low]
        if outside is not None:
            numerator = numerator + outside.numerator[order]
        value = _floor_div(numerator * 10_000, volume)
        if rule.baseline is not None:
            base_low = rows.window_start(rule.baseline.window_millis, visible_after)
            base_volume = counts[position] - counts[base_low]
            base_numerator = numerators[position] - numerators[base_low]
            if outside is not None:
                base_volume = base_volume + outside.base_count[order]
                base_numerator = base_numerator + outside.base_numerator[order]
            # rate >= factor% of the baseline rate, exactly: n/d * 100 >= f * bn/bd (as the reference).
            left = _exact_products(numerator, base_volume, np.full(len(order), 100, dtype=np.int64))
            right = _exact_products(np.full(len(order), rule.baseline.factor_pct, dtype=np.int64), base_numerator,
                                    volume)
            extra = (base_volume >= rule.baseline.min_volume) & np.asarray(left >= right, dtype=bool)
    elif rule.aggregate == SUM_AMOUNT:
        volume = before + itself
        total = _outside_amount(_window_sums(np.where(counted, columns.amount[order], 0), low), outside, order)
        total = total + np.where(itself, columns.amount[order], 0)
        value = np.minimum(total, MAX_AGGREGATE).astype(np.int64)  # as the reference reports it
    elif rule.aggregate == AMOUNT_VS_MEAN:
        volume = before
        total = _outside_amount(_window_sums(np.where(counted, columns.amount[order], 0), low), outside, order)
        value = _floor_div(_exact_products(columns.amount[order], np.full(len(order), 100, dtype=np.int64), volume),
                           total)
    elif rule.aggregate == DISTINCT:
        if outside is not None:
            raise ValueError("a distinct count is not a sum: it cannot add rows outside the table")
        volume = before + itself
        value = _distinct_values(rows, low, counted, itself, columns.codes(rule.distinct_field)[0][order])
    else:  # pragma: no cover - rules.py admits no other aggregate
        raise ValueError(f"unknown aggregate {rule.aggregate!r}")
    at_least = np.asarray([band.at_least for band in rule.bands], dtype=np.int64)
    band = np.searchsorted(at_least, value, side="right") - 1
    fired = (band >= 0) & (volume >= rule.min_volume) & extra
    outcome = RuleOutcome(rule, np.zeros(columns.rows, dtype=np.int64), np.zeros(columns.rows, dtype=np.int64),
                          np.zeros(columns.rows, dtype=bool), [b.action for b in rule.bands],
                          np.full(columns.rows, -1, dtype=np.int64),
                          np.asarray([b.score for b in rule.bands], dtype=np.int64))
    outcome.value[order], outcome.volume[order], outcome.fired[order] = value, volume, fired
    outcome.band_index[order] = np.where(fired, band, -1)
    return outcome


def _outside_amount(total: np.ndarray, outside: Optional[EarlierSums], order: np.ndarray) -> np.ndarray:
    return total if outside is None else exact_sum(total, outside.amount[order])


def _fired_lists(outcomes: Sequence[RuleOutcome], rows: int) -> pa.Array:
    """list<FIRED_RULE> per row: the fired outcomes' rules, by rule id."""
    entry_rows: List[np.ndarray] = []
    columns: Dict[str, list] = {field.name: [] for field in arrow.FIRED_RULE}
    for outcome in sorted(outcomes, key=lambda o: o.rule.id):
        hit = np.flatnonzero(outcome.fired)
        if not len(hit):
            continue
        band = outcome.band_index[hit]
        entry_rows.append(hit)
        rule = outcome.rule
        columns["rule_id"].append(pa.array(np.full(len(hit), rule.id, dtype=object), pa.string()))
        columns["rule_version"].append(pa.array(np.full(len(hit), rule.version, dtype=np.int64)))
        columns["value"].append(pa.array(outcome.value[hit]))
        columns["volume"].append(pa.array(outcome.volume[hit]))
        columns["action"].append(pa.array(np.asarray(outcome.action, dtype=object)[band], pa.string()))
        columns["score"].append(pa.array(outcome.scores[band]))
        columns["reason"].append(pa.array(np.full(len(hit), rule.reason, dtype=object), pa.string()))
    if not entry_rows:
        return pa.ListArray.from_arrays(pa.array(np.zeros(rows + 1, dtype=np.int32)),
                                        pa.array([], pa.struct(list(arrow.FIRED_RULE))))
    owner = np.concatenate(entry_rows)
    by_row = np.argsort(owner, kind="stable")  # within a row, rule id order (the order rules were appended)
    struct = pa.StructArray.from_arrays([pa.concat_arrays(columns[field.name]).take(pa.array(by_row))
                                         for field in arrow.FIRED_RULE], fields=list(arrow.FIRED_RULE))
    offsets = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(np.bincount(owner, minlength=rows), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), struct)


OUTPUT_COLUMNS = ("attempt_id", "event_time", "merchant_id", "amount_minor", "currency")


def columns_read(*rule_sets: RuleSet) -> List[str]:
    """The attempt columns `decide_table` reads for these rule sets: the decision's own and every column a
    rule keys on, filters on or counts distinct values of (a backtest keeps only these in memory)."""
    names = dict.fromkeys(OUTPUT_COLUMNS)
    for rule_set in rule_sets:
        names.update(dict.fromkeys(rule_columns(rule_set.evaluated)))
    return list(names)


def rule_columns(rules: Sequence[Rule]) -> List[str]:
    """The attempt columns `evaluate_rule` reads for these rules: AttemptColumns' own (time, id, amount), their
    keys (and currency for amount aggregates), filters, numerators and distinct fields."""
    names = dict.fromkeys(("attempt_id", "event_time", "amount_minor"))
    for rule in rules:
        names.update(dict.fromkeys(grouping(rule)))
        names.update(dict.fromkeys(name for name, _ in rule.filter.values + rule.numerator.values))
        if rule.distinct_field:
            names[rule.distinct_field] = None
    return list(names)


def decide_table(attempts: pa.Table, rule_set: RuleSet) -> pa.Table:
    """One RISK_DECISION row per attempt (unique attempt ids), in the table's row order."""
    columns = AttemptColumns(attempts)
    return decision_table(attempts, rule_set, [evaluate_rule(columns, rule) for rule in rule_set.evaluated])


def decision_table(attempts: pa.Table, rule_set: RuleSet, outcomes: Sequence[RuleOutcome]) -> pa.Table:
    """The RISK_DECISION rows of `attempts` from every evaluated rule's outcome over them (same row order):
    fired rules by id, actions combined by the precedence of 10.2."""
    rows = attempts.num_rows
    acting = [o for o in outcomes if o.rule.state != SHADOW]
    score = np.zeros(rows, dtype=np.int64)
    level = np.full(rows, PRECEDENCE["allow"], dtype=np.int64)
    for outcome in acting:
        hit = outcome.fired
        score[hit] += outcome.scores[outcome.band_index[hit]]
        band_levels = np.asarray([PRECEDENCE.get(action, -1) for action in outcome.action], dtype=np.int64)
        level[hit] = np.maximum(level[hit], band_levels[outcome.band_index[hit]])  # `score` bands: -1, no action
    if rule_set.score_block_at is not None:
        blocked = score >= rule_set.score_block_at
        level[blocked] = PRECEDENCE[BLOCK]
    else:
        blocked = np.zeros(rows, dtype=bool)
    if rule_set.score_review_at is not None:
        reviewed = ~blocked & (score >= rule_set.score_review_at)
        level[reviewed] = np.maximum(level[reviewed], PRECEDENCE[REVIEW])
    actions = pa.array(np.asarray([_ACTION_OF_LEVEL[n] for n in range(len(_ACTION_OF_LEVEL))], dtype=object)[level],
                       pa.string())
    return pa.table({
        "attempt_id": attempts.column("attempt_id"),
        "event_time": attempts.column("event_time").cast(arrow.TIMESTAMP),
        "merchant_id": attempts.column("merchant_id"),
        "amount_minor": attempts.column("amount_minor"),
        "currency": attempts.column("currency"),
        "action": actions,
        "score": pa.array(score),
        "fired": _fired_lists(acting, rows),
        "shadow_fired": _fired_lists([o for o in outcomes if o.rule.state == SHADOW], rows),
        "rule_versions": pa.array(np.full(rows, rule_set.rule_versions, dtype=object), pa.string()),
        "ruleset": pa.array(np.full(rows, rule_set.fingerprint, dtype=object), pa.string()),
    }, schema=arrow.RISK_DECISION)


def attempts_table(attempts: Sequence) -> pa.Table:
    """AuthorizationAttempts as an AUTHORIZATION_ATTEMPT table (tests build their inputs with it)."""
    names = arrow.AUTHORIZATION_ATTEMPT.names
    return pa.table({name: [getattr(a, name) for a in attempts] for name in names},
                    schema=arrow.AUTHORIZATION_ATTEMPT)


def decisions_of(table: pa.Table) -> List:
    """A RISK_DECISION table back as RiskDecision records (the stream's sinks, tests and small outputs).

    Column by column (a row's dict costs twice as much), fired rules built only for the rows that have any."""
    columns = [(table.column(name).cast(pa.int64()) if name == "event_time" else table.column(name)).to_pylist()
               for name in RiskDecision._fields]
    for name in ("fired", "shadow_fired"):
        at = RiskDecision._fields.index(name)
        columns[at] = [[FiredRule(**rule) for rule in rules] if rules else [] for rules in columns[at]]
    return [RiskDecision(*values) for values in zip(*columns)]
