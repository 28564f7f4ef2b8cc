"""Which payouts a bank credit names (issue 21, docs/DESIGN.md 3.8): the references searched, pure.

A bank credit names its payout in text the processor chose and the bank passed on: the end-to-end id,
the bank's or the customer's reference, or the remittance information (structured or not). Every such
field is searched the same way, for every processor: split into tokens at anything but letters, digits,
`_` and `-`, upper-cased, and a token equal to a payout id (upper-cased: banks upper-case text) names
that payout. Stripe (`po_…`), Checkout.com (`pyt_…`) and Worldpay (`wpo_…`) payout ids travel whole.
Adyen numbers its payouts (`batch-<Batch Number>`) and its transfers say "BATCH 1234", "Batch:1234" or
"batch-1234": each becomes the token `BATCH-1234`. Tokens shorter than MIN_TOKEN_LENGTH name nothing
(no payout id is that short), which keeps the join on tokens small.
"""
from __future__ import annotations

import re
from typing import FrozenSet, Mapping, Optional

# The bank entry fields searched for payout references, in schemas/bank's BankEntry names.
SEARCHED_FIELDS = ("end_to_end_id", "bank_reference", "customer_reference", "remittance_unstructured",
                   "remittance_structured")
MIN_TOKEN_LENGTH = 6
TOKEN_CHARACTERS = r"A-Za-z0-9_\-"  # a token is a run of these; anything else separates tokens
ADYEN_BATCH_WORD = "batch"  # text without it (in any case) names no Adyen batch
_TOKEN = re.compile(f"[{TOKEN_CHARACTERS}]+")
_ADYEN_BATCH = re.compile(rf"\b{ADYEN_BATCH_WORD}[\s\-_:#.]*(\d{{1,12}})\b", re.IGNORECASE)


def reference_key(payout_id: str) -> str:
    """The key a payout id is joined on (what a token of bank text must equal)."""
    return payout_id.upper()


def references_in(text: Optional[str]) -> FrozenSet[str]:
    """The reference keys one field's text holds."""
    if not text:
        return frozenset()
    keys = {token.upper() for token in _TOKEN.findall(text) if len(token) >= MIN_TOKEN_LENGTH}
    keys.update(f"BATCH-{int(number)}" for number in _ADYEN_BATCH.findall(text))
    return frozenset(keys)


def credit_references(entry: Mapping[str, object]) -> FrozenSet[str]:
    """The reference keys a bank entry's searched fields hold."""
    keys: set = set()
    for name in SEARCHED_FIELDS:
        value = entry.get(name)
        keys.update(references_in(value if isinstance(value, str) else None))
    return frozenset(keys)
