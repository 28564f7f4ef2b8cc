"""Rules files (transforms/risk/rules.py): what a valid file means, and one line per mistake in a bad one."""
from __future__ import annotations

import json

import pytest

from transforms.risk.rules import (
    ACTIVE,
    BLOCK,
    MAX_WINDOW_MILLIS,
    PAUSED,
    RATIO,
    REVIEW,
    SCORE,
    SHADOW,
    Baseline,
    RulesError,
    band_reached,
    describe,
    load_rules,
    load_rules_file,
    parse_duration_millis,
)

CARD_TESTING = """
version: 3
score_review_at: 50
rules:
  - id: card-testing
    version: 2
    key: card_fingerprint
    filter: {outcome: [declined], amount_minor: {max: 500}}
    aggregate: count
    window: 10m
    threshold: 5
    action: block
    reason: card_testing
  - id: merchant-decline-spike
    version: 1
    state: shadow
    key: [merchant_id]
    aggregate: ratio
    numerator: {outcome: DECLINED}
    window: 1h
    baseline: {window: 7d, factor_pct: 300, min_volume: 100}
    min_volume: 50
    bands: [{at_least: 3000, action: review}, {at_least: 6000, action: block}]
    reason: decline_spike
  - id: geo-velocity
    version: 1
    state: paused
    key: [card_fingerprint]
    aggregate: distinct:issuing_country
    window: 1h
    threshold: 2
    action: score
    score: 30
    reason: geo_velocity
"""


def test_a_valid_file_reads_into_frozen_rules_with_units_and_normalized_values():
    rules = load_rules(CARD_TESTING, "rules.yaml")
    by_id = {rule.id: rule for rule in rules.rules}
    card = by_id["card-testing"]
    assert (card.state, card.key, card.window_millis, card.aggregate) == (ACTIVE, ("card_fingerprint",), 600_000, "count")
    assert card.filter.allowed("outcome") == ("DECLINED",) and card.filter.amount.max_minor == 500
    assert card.filter.needs_authorization
    assert band_reached(card, 4) is None and band_reached(card, 5).action == BLOCK
    spike = by_id["merchant-decline-spike"]
    assert spike.state == SHADOW and spike.aggregate == RATIO and spike.min_volume == 50
    assert spike.baseline == Baseline(7 * 86_400_000, 300, 100)
    assert band_reached(spike, 2999) is None and band_reached(spike, 3000).action == REVIEW
    assert band_reached(spike, 9000).action == BLOCK
    geo = by_id["geo-velocity"]
    assert geo.state == PAUSED and geo.distinct_field == "issuing_country" and geo.bands[0].action == SCORE
    # Paused rules are kept but not evaluated; every decision names what it evaluated.
    assert [rule.id for rule in rules.evaluated] == ["card-testing", "merchant-decline-spike"]
    assert rules.rule_versions == "card-testing@2,merchant-decline-spike@1"
    assert rules.key_specs == (("card_fingerprint",), ("merchant_id",))
    assert rules.longest_window_millis(("merchant_id",)) == 7 * 86_400_000
    assert (rules.version, rules.score_review_at, rules.score_block_at) == ("3", 50, None)
    assert len(describe(rules)) == 3


def test_json_and_yaml_of_one_rule_set_are_equal_with_one_fingerprint():
    import yaml

    from_yaml = load_rules(CARD_TESTING)
    from_json = load_rules(json.dumps(yaml.safe_load(CARD_TESTING)))
    assert from_yaml == from_json and from_yaml.fingerprint == from_json.fingerprint != ""
    changed = load_rules(CARD_TESTING.replace("threshold: 5", "threshold: 6"))
    assert changed.fingerprint != from_yaml.fingerprint


@pytest.mark.parametrize("text, expected", [
    ("90s", 90_000), ("10m", 600_000), ("1h", 3_600_000), ("7d", 604_800_000)])
def test_durations(text, expected):
    assert parse_duration_millis(text) == expected


@pytest.mark.parametrize("text", ["", "10", "1.5h", "0m", "-1m", "10 minutes", "1w"])
def test_not_durations(text):
    with pytest.raises(ValueError):
        parse_duration_millis(text)


def _problems(text: str) -> list:
    with pytest.raises(RulesError) as info:
        load_rules(text, "bad.yaml")
    assert str(info.value).splitlines() == [f"bad.yaml: {problem}" for problem in info.value.problems]
    return info.value.problems


def test_every_mistake_is_one_line_naming_the_rule_and_the_field():
    problems = _problems("""
rules:
  - id: a
    version: 0
    state: on
    key: [pan]
    filter: {outcome: [MAYBE], amount_minor: {min: 9, max: 1}, colour: [red]}
    aggregate: median
    window: 10x
    threshold: 5
    action: deny
    reason: r
  - id: a
    version: 1
    key: ip
    aggregate: count
    window: 91d
    threshold: 1
    action: block
    reason: r
  - version: 1
    key: ip
    aggregate: ratio
    window: 1h
    threshold: 1
    action: block
    reason: ok
""")
    expected_fragments = [
        "rule 'a': field 'version'", "rule 'a': field 'state'", "rule 'a': field 'key'",
        "rule 'a': field 'filter.outcome'", "rule 'a': field 'filter.amount_minor'", "rule 'a': field 'filter.colour'",
        "rule 'a': field 'aggregate'", "rule 'a': field 'window'", "rule 'a': field 'action'",
        "rule 'a': field 'window': '91d' is longer than 90d",
        "rule #3: field 'id'", "rule #3: field 'numerator'"]
    for fragment in expected_fragments:
        assert any(fragment in problem for problem in problems), (fragment, problems)
    assert all("\n" not in problem for problem in problems)


@pytest.mark.parametrize("text, fragment", [
    ("[]", "must hold a mapping"),
    ("rules: []", "'rules' must be a non-empty list"),
    ("rules: [1]", "rule #1: must be a mapping"),
    ("rules:\n  - {id: x, version: 1, key: ip, aggregate: count, window: 1m, threshold: 1, action: block, "
     "bands: [{at_least: 1, action: block}], reason: r}", "either threshold (with action) or bands"),
    ("rules:\n  - {id: x, version: 1, key: ip, aggregate: count, window: 1m, reason: r, "
     "bands: [{at_least: 5, action: block}, {at_least: 2, action: review}]}", "must rise"),
    ("rules:\n  - {id: x, version: 1, key: ip, aggregate: count, window: 1m, threshold: 1, action: score, reason: r}",
     "needs a whole score"),
    ("rules:\n  - {id: x, version: 1, key: ip, aggregate: count, window: 1m, threshold: 1, action: score, score: 5, "
     "reason: r}", "need score_review_at or score_block_at"),
    ("rules:\n  - {id: x, version: 1, key: ip, aggregate: count, window: 1h, threshold: 1, action: block, reason: r, "
     "baseline: {window: 1d, factor_pct: 200}}", "only a ratio compares with a baseline"),
    ("rules:\n  - {id: x, version: 1, key: ip, aggregate: ratio, numerator: {outcome: DECLINED}, window: 1h, "
     "threshold: 1, action: block, reason: r, baseline: {window: 30m, factor_pct: 200}}", "longer than the rule's window"),
    ("rules:\n  - {id: x, version: 1, key: ip, aggregate: 'distinct:pan', window: 1m, threshold: 1, action: block, "
     "reason: r}", "distinct:pan"),
    ("rules:\n  - {id: x, version: 1, key: ip, aggregate: count, window: 1m, threshold: 1.5, action: block, reason: r}",
     "field 'threshold'"),
    ("rules:\n  - {id: x, version: true, key: ip, aggregate: count, window: 1m, threshold: 1, action: block, reason: r}",
     "field 'version'"),
    ("nope: 1\nrules:\n  - {id: x, version: 1, key: ip, aggregate: count, window: 1m, threshold: 1, action: block, "
     "reason: r}", "unknown top-level field 'nope'"),
    ("rules: [", "not valid YAML or JSON"),
    ("!!python/object/apply:os.system ['true']", "not valid YAML or JSON"),
])
def test_bad_files(text, fragment):
    assert any(fragment in problem for problem in _problems(text)), fragment


def test_a_rules_file_that_cannot_be_read_is_one_line(tmp_path):
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00rules")
    for path in (tmp_path / "missing.yaml", tmp_path / "binary.yaml"):
        with pytest.raises(RulesError) as info:
            load_rules_file(str(path))
        assert len(str(info.value).splitlines()) == 1 and str(path) in str(info.value)


def test_the_longest_window_is_bounded():
    assert MAX_WINDOW_MILLIS == 90 * 86_400_000
