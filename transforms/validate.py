"""Parse + validate: raw field mappings into typed records, or dead letters.

The same rules for every format and for Kafka, because every reader yields
`RawRecord`s. The pure functions raise `InvalidRecord` with a human reason;
`ParseAndValidate` routes failures to a dead-letter output with the reason,
the stage and the raw payload, so nothing is dropped silently.

Card numbers (schemas/pan.py): an identifier field holding one (other than
an Adyen PSP reference where Adyen documents it) rejects its record, and
every dead letter's reason and raw payload is masked here, the one place
dead letters are made, before any writer sees it.
"""

from typing import Any, Callable, Iterator, Mapping, Tuple, Union

import apache_beam as beam
from apache_beam import pvalue

from schemas.attempts import ATTEMPTS, LABELS, AttemptLabel, AuthorizationAttempt
from schemas.codecs import capped
from schemas.internal_records import Judged
from schemas.kafka_values import mask_payload
from schemas.money import MoneyError, normalize_currency
from schemas.pan import find_pan_spans, mask_pans
from schemas.records import (
    PAYMENT_FIELDS,
    PAYMENTS,
    SETTLEMENT_FIELDS,
    SETTLEMENTS,
    DeadLetter,
    PaymentEvent,
    RawRecord,
    SettlementLine,
)
from schemas.rules import EVENT_TYPES, PANS_MASKED, RECORD_TYPES, SIGNED_RECORD_TYPES  # PANS_MASKED: also a tag
from schemas.timestamps import TimestampError, parse_date
from schemas.vendors.adyen import PROCESSOR as ADYEN
from schemas.vendors.adyen import psp_references, psp_references_in
from transforms.record_fields import (  # noqa: F401 - InvalidRecord, TEXT_LIMITS: this module's API too
    PAN_IN_IDENTIFIER,
    TEXT_LIMITS,
    InvalidRecord,
    check_missing_columns,
    choice,
    currency_field,
    money_field,
    optional_text,
    required_text,
    timestamp_field,
)
from transforms.risk.attempts import parse_authorization_attempt
from transforms.risk.labels import parse_attempt_label

DEAD_LETTERS = "dead_letters"
STAGE_DECODE = "decode"
STAGE_VALIDATE = "validate"


def _is_signed_record_type(fields: Mapping[str, Any]) -> bool:
    value = fields.get("record_type")
    return isinstance(value, str) and value.strip().upper() in SIGNED_RECORD_TYPES


def _matched_side(fields: Mapping[str, Any]) -> tuple:
    """(matched_minor, matched_currency) of a record that has a matched side, else (None, None).

    Both or neither: a positive amount and a known currency (DESIGN 3.2)."""
    amount, currency = fields.get("matched_minor"), fields.get("matched_currency")
    if (amount is None or amount == "") and (currency is None or currency == ""):
        return None, None
    minor = money_field(fields, "matched_minor")
    if minor <= 0:
        raise InvalidRecord(f"matched_minor must be positive, got {minor}")
    try:
        return minor, normalize_currency(currency)
    except MoneyError as error:
        raise InvalidRecord(f"matched_currency: {error}") from None


# The text fields of a typed record that identify something: a card number in
# one is refused, never rewritten (a rewritten key would match the wrong thing).
# The other text fields are enums, currencies and dates, which cannot hold one.
IDENTIFIER_FIELDS = {
    PAYMENTS: ("event_id", "payment_id", "processor", "processor_reference", "merchant_id"),
    SETTLEMENTS: ("settlement_id", "processor", "processor_reference", "merchant_id", "payout_id"),
}


def is_pan_rejection(reason: str) -> bool:
    """Whether a dead letter's reason says an identifier looked like a card number."""
    return PAN_IN_IDENTIFIER in reason


def _refuse_card_numbers(record: Any, input_name: str) -> Any:
    for name in IDENTIFIER_FIELDS[input_name]:
        value = getattr(record, name)
        if not value:
            continue
        documented = psp_references_in(name, value) if record.processor == ADYEN else frozenset()
        if any(value[start:end] not in documented for start, end in find_pan_spans(value)):
            raise InvalidRecord(f"{name} {PAN_IN_IDENTIFIER}")
    return record


def parse_payment_event(fields: Mapping[str, Any]) -> PaymentEvent:
    """Validates one ledger event against docs/DESIGN.md 3.1 (and refuses card numbers in identifiers)."""
    check_missing_columns(fields, PAYMENT_FIELDS)
    amount = money_field(fields, "amount_minor")
    if amount <= 0:
        raise InvalidRecord(f"amount_minor must be positive (the event_type gives the direction), got {amount}")
    return _refuse_card_numbers(PaymentEvent(
        event_id=required_text(fields, "event_id"),
        payment_id=required_text(fields, "payment_id"),
        event_type=choice(fields, "event_type", EVENT_TYPES),
        processor=required_text(fields, "processor").lower(),
        processor_reference=required_text(fields, "processor_reference"),
        merchant_id=required_text(fields, "merchant_id"),
        amount_minor=amount,
        currency=currency_field(fields),
        event_time=timestamp_field(fields, "event_time"),
    ), PAYMENTS)


def parse_settlement_line(fields: Mapping[str, Any]) -> SettlementLine:
    """Validates one settlement line against docs/DESIGN.md 3.2 (incl. net = gross - fee; no card numbers)."""
    check_missing_columns(fields, SETTLEMENT_FIELDS, optional=("payout_id",))
    gross = money_field(fields, "gross_minor")
    fee = money_field(fields, "fee_minor")
    net = money_field(fields, "net_minor")
    # Matched lines are positive (the record type gives the direction). Account-
    # level lines carry a signed gross, as vendors book them both ways: a fee
    # refund, a returned payout or a debit adjustment is negative (3.2). The
    # record type is judged after the amounts, as it always was.
    if gross <= 0 and not _is_signed_record_type(fields):
        raise InvalidRecord(f"gross_minor must be positive (the record_type gives the direction), got {gross}")
    if net != gross - fee:
        raise InvalidRecord(f"net_minor {net} != gross_minor {gross} - fee_minor {fee}")
    try:
        settlement_date = parse_date(fields.get("settlement_date"), "settlement_date").isoformat()
    except TimestampError as error:
        raise InvalidRecord(str(error)) from None
    matched_minor, matched_currency = _matched_side(fields)
    return _refuse_card_numbers(SettlementLine(
        settlement_id=required_text(fields, "settlement_id"),
        processor=required_text(fields, "processor").lower(),
        processor_reference=required_text(fields, "processor_reference"),
        merchant_id=required_text(fields, "merchant_id"),
        record_type=choice(fields, "record_type", RECORD_TYPES),
        gross_minor=gross,
        fee_minor=fee,
        net_minor=net,
        currency=currency_field(fields),
        settlement_date=settlement_date,
        booked_time=timestamp_field(fields, "booked_time"),
        payout_id=optional_text(fields, "payout_id"),
        matched_minor=matched_minor,
        matched_currency=matched_currency,
    ), SETTLEMENTS)


PARSERS: dict[str, Callable[[Mapping[str, Any]], Union[PaymentEvent, SettlementLine, AuthorizationAttempt,
                                                      AttemptLabel]]] = {
    PAYMENTS: parse_payment_event,
    SETTLEMENTS: parse_settlement_line,
    ATTEMPTS: parse_authorization_attempt,
    LABELS: parse_attempt_label,
}


def judge_raw_record(raw: RawRecord) -> Judged:
    """A typed record, or the dead letter that explains why there is none, with card numbers masked."""
    if raw.decode_error is not None or raw.fields is None:
        return dead_letter(raw, STAGE_DECODE, raw.decode_error or "no fields")
    try:
        return Judged(PARSERS[raw.input](raw.fields), 0)
    except InvalidRecord as error:
        return dead_letter(raw, STAGE_VALIDATE, str(error))


def validate_raw_record(raw: RawRecord) -> Union[PaymentEvent, SettlementLine, DeadLetter]:
    """A typed record, or the dead letter that explains why there is none."""
    return judge_raw_record(raw).outcome


def dead_letter(raw: RawRecord, stage: str, reason: str) -> Judged:
    """The dead letter of `raw`, its reason and payload masked (every stage makes its dead letters here)."""
    # Adyen PSP references stay readable in the payload; a reason can echo a value, so it is masked too.
    # The source (file:line, topic/partition@offset) is the operator's, not the record's, and stays.
    keep = psp_references(raw.fields) if isinstance(raw.fields, Mapping) else frozenset()
    payload, in_payload = mask_payload(raw.raw_payload, keep)
    reason, in_reason = mask_pans(reason, keep)
    # Cut after masking (a cut never falls in a digit run, so it cannot expose one): a valid-looking record
    # rejected for its size still carries its whole text up to here (a 1 MB JSON line, a Kafka value).
    return Judged(DeadLetter(raw.input, raw.source, stage, capped(reason), capped(payload)), in_payload + in_reason)


def _route(raw: RawRecord, with_sources: bool) -> Iterator[Any]:
    outcome, pans_masked = judge_raw_record(raw)
    if isinstance(outcome, DeadLetter):
        yield pvalue.TaggedOutput(DEAD_LETTERS, outcome)
    else:
        yield (raw.source, outcome) if with_sources else outcome
    if pans_masked:
        yield pvalue.TaggedOutput(PANS_MASKED, pans_masked)


class ParseAndValidate(beam.PTransform):
    """RawRecords of one input -> typed records (main; with `with_sources`, (source, record) pairs, which
    deduplication needs), DeadLetters (`dead_letters`) and, for each dead letter with card numbers masked,
    how many (`pans_masked`)."""

    def __init__(self, input_name: str, with_sources: bool = False):
        super().__init__()
        if input_name not in PARSERS:
            raise ValueError(f"unknown input {input_name!r}")
        self._record_type = {PAYMENTS: PaymentEvent, SETTLEMENTS: SettlementLine, ATTEMPTS: AuthorizationAttempt,
                             LABELS: AttemptLabel}[input_name]
        self._with_sources = with_sources

    def expand(self, raw_records):
        outputs = raw_records | "Validate" >> beam.FlatMap(_route, self._with_sources).with_outputs(
            DEAD_LETTERS, PANS_MASKED, main="valid")
        outputs.valid.element_type = Tuple[str, self._record_type] if self._with_sources else self._record_type
        outputs[DEAD_LETTERS].element_type = DeadLetter
        outputs[PANS_MASKED].element_type = int
        return outputs
