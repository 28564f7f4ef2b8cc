"""Labels for backtests: which attempts were fraud (docs/DESIGN.md 10.9).

A label file is CSV (or any attempt format) with `attempt_id` and either
`label` or `attack` (the column `paybeam risk generate` writes in
attack_truth.csv). An attempt is fraud when the value is non-empty and not
one of legit, 0, false, no (any case); empty means "not fraud" for `attack`
(the generator's ordinary traffic) and is refused for `label`, where it
would be a guess.
"""
from __future__ import annotations

from typing import Any, Mapping

from schemas.attempts import AttemptLabel
from transforms.record_fields import InvalidRecord, optional_text, refuse_card_numbers_in, required_text

NOT_FRAUD = frozenset({"legit", "0", "false", "no"})


def parse_attempt_label(fields: Mapping[str, Any]) -> AttemptLabel:
    if "label" in fields:
        value = required_text(fields, "label")
    elif "attack" in fields:
        value = optional_text(fields, "attack") or "legit"
    else:
        raise InvalidRecord("missing field(s): label (or attack)")
    if len(value) > 64:
        raise InvalidRecord(f"label is {len(value)} characters long, longer than 64")
    return refuse_card_numbers_in(AttemptLabel(required_text(fields, "attempt_id"), value.lower() not in NOT_FRAUD),
                                  ("attempt_id",))
