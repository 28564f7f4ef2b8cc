"""The authorization attempt: the input of risk decisions (docs/DESIGN.md 3.6).

One row per attempt to authorize a card payment (or to refund one), as a
payment platform's gateway records it. Never a card number: the card is named
by a fingerprint (the platform's token of the PAN) and its BIN (the issuer's
first 6–8 digits). `payment_id` links an attempt to the ledger's payment, whose
later captures, refunds and chargebacks label it for backtests.
"""

from typing import NamedTuple, Optional

import apache_beam as beam

from schemas.stable_schema import stable_schema

ATTEMPTS = "attempts"

AUTHORIZATION = "AUTHORIZATION"
REFUND = "REFUND"
ATTEMPT_TYPES = (AUTHORIZATION, REFUND)

APPROVED = "APPROVED"
DECLINED = "DECLINED"
OUTCOMES = (APPROVED, DECLINED)

# EMV 3-D Secure results as gateways report them; NOT_REQUESTED when the merchant did not ask.
THREE_DS_RESULTS = ("AUTHENTICATED", "ATTEMPTED", "FAILED", "NOT_ENROLLED", "NOT_REQUESTED")

BIN_DIGITS = (6, 8)  # an ISO/IEC 7812 issuer identification number is 6 or 8 digits; 7 is seen in older files


@stable_schema
class AuthorizationAttempt(NamedTuple):
    attempt_id: str
    attempt_type: str  # AUTHORIZATION | REFUND
    event_time: int  # epoch millis, UTC
    merchant_id: str
    amount_minor: int  # positive; the attempt type gives the direction
    currency: str
    card_fingerprint: str
    card_bin: Optional[str]
    customer_id: Optional[str]
    ip: Optional[str]  # normalized text of an IPv4 or IPv6 address
    device_id: Optional[str]
    billing_country: Optional[str]  # ISO 3166-1 alpha-2
    issuing_country: Optional[str]  # ISO 3166-1 alpha-2
    outcome: str  # APPROVED | DECLINED
    decline_code: Optional[str]  # the issuer's or processor's code; only on DECLINED
    three_ds: Optional[str]
    payment_id: Optional[str]  # the ledger's payment, for labels


@stable_schema
class AttemptLabel(NamedTuple):
    """What an attempt turned out to be, for backtests: fraud (a chargeback, a confirmed attack) or not."""

    attempt_id: str
    fraud: bool


LABELS = "labels"

ATTEMPT_FIELDS = AuthorizationAttempt._fields
REQUIRED_ATTEMPT_FIELDS = ("attempt_id", "attempt_type", "event_time", "merchant_id", "amount_minor", "currency",
                           "card_fingerprint", "outcome")
OPTIONAL_ATTEMPT_FIELDS = tuple(name for name in ATTEMPT_FIELDS if name not in REQUIRED_ATTEMPT_FIELDS)

for _record in (AuthorizationAttempt, AttemptLabel):
    beam.coders.registry.register_coder(_record, beam.coders.RowCoder)
