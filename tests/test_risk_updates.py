"""Rule updates while running (transforms/risk/updates.py): a valid, versioned set replaces; anything else doesn't."""
from __future__ import annotations

from tests.test_risk_windows import CARD_TESTING
from transforms.risk.updates import apply_rules_update

V1 = """
rules:
  - {id: card-testing, version: 1, key: card_fingerprint, filter: {outcome: DECLINED, amount_minor: {max: 500}},
     aggregate: count, window: 10m, threshold: 5, action: block, reason: card_testing}
"""


def test_a_new_version_replaces_the_rules_in_force():
    update = apply_rules_update(CARD_TESTING, V1.replace("version: 1", "version: 2").replace("threshold: 5",
                                                                                                "threshold: 3"))
    assert update.accepted and update.problems == ()
    assert update.rule_set.rule_versions == "card-testing@2" and update.rule_set.rules[0].bands[0].at_least == 3


def test_the_same_rules_again_are_accepted_and_change_nothing():
    update = apply_rules_update(CARD_TESTING, V1)
    assert update.accepted and update.rule_set == CARD_TESTING


def test_a_changed_rule_without_a_new_version_is_rejected_and_the_old_rules_stay():
    update = apply_rules_update(CARD_TESTING, V1.replace("threshold: 5", "threshold: 3"))
    assert not update.accepted and update.rule_set is CARD_TESTING
    assert update.problems == ("rule 'card-testing': field 'version': the rule changed but its version is 1, "
                               "not above 1",)


def test_a_malformed_update_is_rejected_with_its_problems_and_the_old_rules_stay():
    for text in ("rules: [", "{}", V1.replace("window: 10m", "window: soon"), "\x00\xff"):
        update = apply_rules_update(CARD_TESTING, text, "rules-topic@3")
        assert not update.accepted and update.rule_set is CARD_TESTING and update.problems
        assert all("\n" not in problem for problem in update.problems)
