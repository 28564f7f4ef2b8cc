"""The simulated world behind `datagen.generator`: merchants, ids and payment lifecycles.

Pure Python, no Beam, no IO. Everything is drawn from one `random.Random`,
so a seed fixes every value. Rows are kept as plain tuples/lists in the
canonical field order (`PAYMENT_FIELDS`, `SETTLEMENT_FIELDS`) with times as
epoch millis (whole seconds) and `settlement_date` as ISO text, because a
million payments do not fit through per-row objects in the time budget.

Every settling ledger event (CAPTURED, REFUNDED, CHARGEBACK) draws one break
scenario (`BreakRates`); everything else settles exactly. The world is a
snapshot taken at `start + days`: ledger events and settlement lines that
would happen later do not exist yet, which is where PENDING keys (and a few
settlements later than the SLA) come from.

Nothing personal is made up: ids are opaque, merchants are "m_" + 6 chars,
and no value has a run of 13 or more digits (nothing looks like a card).
"""
from __future__ import annotations

import math
import re
from bisect import bisect
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from itertools import accumulate
from random import Random
from typing import Callable, Dict, List, Optional, Sequence, Tuple

DAY_MS = 86_400_000
_EPOCH_DAY = date(1970, 1, 1)

PROCESSORS = ("stripe", "adyen", "checkout", "worldpay")
_PROCESSOR_WEIGHTS = (0.40, 0.30, 0.15, 0.15)
CURRENCIES = ("USD", "EUR", "GBP", "JPY", "KWD")
EXPONENTS = {"USD": 2, "EUR": 2, "GBP": 2, "JPY": 0, "KWD": 3}
_HOME_CURRENCY_WEIGHTS = (0.40, 0.25, 0.15, 0.10, 0.10)
# Units of each currency per US dollar (rough, only to make converted amounts plausible).
_PER_USD = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79, "JPY": 150.0, "KWD": 0.307}
# Ticket sizes in minor units: about 1 to 2,000 USD-equivalent.
_AMOUNT_RANGE = {"USD": (100, 200_000), "EUR": (100, 180_000), "GBP": (100, 160_000),
                 "JPY": (150, 300_000), "KWD": (300, 600_000)}
# Fixed part of a capture fee, in minor units.
_FIXED_FEE = {"USD": 30, "EUR": 25, "GBP": 20, "JPY": 40, "KWD": 100}

MERCHANT_COUNT = 20

# Lifecycle probabilities (per payment / per capture).
P_FAILED = 0.03
P_VOIDED = 0.05
P_REFUND = 0.08
P_PARTIAL_REFUND = 0.35
P_CHARGEBACK = 0.015
# Booking delay of a settlement line after its ledger event: whole days (weights) + 10 min..24 h.
_DELAY_DAYS = (0, 1, 2, 3)
_DELAY_CUMULATIVE = tuple(accumulate((0.30, 0.40, 0.20, 0.10)))
# Account-level lines per (processor, merchant, currency, settlement day).
P_FEE_LINE = 0.04
P_ADJUSTMENT_LINE = 0.02



@lru_cache(maxsize=None)
def _log_span(low: float, high: float) -> Tuple[float, float]:
    return math.log(low), math.log(high) - math.log(low)


# A run of 13+ digits would look like a card number (PAN); no value may have one.
CARD_LIKE = re.compile(r"\d{13}")

_MASK64 = (1 << 64) - 1
_MUL_A = 0x9E3779B97F4A7C15
_MUL_B = 0xBF58476D1CE4E5B9
_ALNUM62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_UPPER36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER36 = "0123456789abcdefghijklmnopqrstuvwxyz"
# Byte -> character tables for `bytes.translate` (fast random text; the modulo bias is irrelevant here).
_TABLE62 = bytes(ord(_ALNUM62[b % 62]) for b in range(256))
_TABLE36_UPPER = bytes(ord(_UPPER36[b % 36]) for b in range(256))
_TABLE36_LOWER = bytes(ord(_LOWER36[b % 36]) for b in range(256))


@dataclass(frozen=True)
class BreakRates:
    """Per settling ledger event (captures, refunds, chargebacks): the chance of each break.

    The scenarios exclude each other, so the rates must add up to at most 1.
    `unexpected_settlement` adds a settlement line under a key the ledger does
    not have (next to an event that itself settles normally).
    """

    amount_mismatch: float = 0.02
    currency_mismatch: float = 0.01
    missing_settlement: float = 0.02
    unexpected_settlement: float = 0.01
    duplicate_settlement: float = 0.015
    duplicate_ledger_event: float = 0.01

    def __post_init__(self) -> None:
        for name, value in self.as_tuple():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"BreakRates.{name} must be between 0 and 1, got {value}")
        if sum(value for _, value in self.as_tuple()) > 1.0 + 1e-9:
            raise ValueError("BreakRates must add up to at most 1 (the scenarios exclude each other)")

    def as_tuple(self) -> Tuple[Tuple[str, float], ...]:
        return (
            ("amount_mismatch", self.amount_mismatch),
            ("currency_mismatch", self.currency_mismatch),
            ("missing_settlement", self.missing_settlement),
            ("duplicate_settlement", self.duplicate_settlement),
            ("duplicate_ledger_event", self.duplicate_ledger_event),
            ("unexpected_settlement", self.unexpected_settlement),
        )


# ------------------------------------------------------------------ ids


class IdSequence:
    """Unique, random-looking ids: a 64-bit bijective scramble of a counter.

    Uniqueness is by construction (no set of issued ids is kept). Rendered as
    16 hex digits; in the rare case the digits 3..12 are all decimal (which a
    run of 13 digits needs) digit 8 becomes a letter g..p (G..P), which no
    other id has at that place, so the ids stay unique and never look like a
    card number.
    """

    def __init__(self, prefix: str, salt: int, upper: bool = False):
        self.prefix = prefix
        self._salt = salt & _MASK64
        self._upper = upper
        self.issued = 0

    def next_number(self) -> int:
        n = self.issued
        self.issued = n + 1
        x = ((n * _MUL_A + self._salt) & _MASK64) * _MUL_B & _MASK64
        return x ^ (x >> 29)

    def __call__(self) -> str:
        # next_number() and render() inlined: this runs a few million times per dataset.
        n = self.issued
        self.issued = n + 1
        x = ((n * _MUL_A + self._salt) & _MASK64) * _MUL_B & _MASK64
        text = f"{x ^ (x >> 29):016x}"
        if text[3:13].isdigit():
            return self.render(x ^ (x >> 29))
        return self.prefix + text

    def render(self, x: int) -> str:
        text = f"{x:016X}" if self._upper else f"{x:016x}"
        if text[3:13].isdigit():
            text = text[:8] + chr(ord(text[8]) + (23 if self._upper else 55)) + text[9:]
        return self.prefix + text


class References:
    """Processor-styled payment references, unique across the whole dataset."""

    def __init__(self, rng: Random):
        self._rng = rng
        self._used: set = set()
        self._makers: Dict[str, Callable[[], str]] = {
            "stripe": lambda: "ch_" + rng.randbytes(24).translate(_TABLE62).decode(),
            "adyen": lambda: rng.randbytes(16).translate(_TABLE36_UPPER).decode(),
            "checkout": lambda: f"chk_{rng.getrandbits(96):024x}",
            "worldpay": lambda: f"wp_{rng.getrandbits(80):020x}",
        }

    def new(self, processor: str) -> str:
        make = self._makers[processor]
        used = self._used
        while True:
            reference = make()
            if reference not in used and not CARD_LIKE.search(reference):
                used.add(reference)
                return reference

    def new_merchant_id(self) -> str:
        while True:
            merchant = "m_" + self._rng.randbytes(6).translate(_TABLE36_LOWER).decode()
            if merchant not in self._used:
                self._used.add(merchant)
                return merchant


class Ids:
    """Every id sequence of one dataset (event, payment, settlement, payout ids)."""

    def __init__(self, rng: Random):
        salt = rng.getrandbits
        self.event = IdSequence("evt_", salt(64))
        self.payment = IdSequence("pay_", salt(64))
        # One settlement counter, rendered per processor's style (unique across styles).
        self._settlement = IdSequence("", salt(64))
        self._settlement_styles = {
            "stripe": IdSequence("txn_", 0),
            "adyen": IdSequence("", 0, upper=True),  # Adyen modification references
            "checkout": IdSequence("stl_", 0),
            "worldpay": IdSequence("wps_", 0),
        }
        self._payout = IdSequence("", salt(64))
        self._payout_prefix = {"stripe": "po_", "checkout": "pyt_", "worldpay": "wpo_"}
        self._adyen_batch = 1000 + rng.randrange(9000)

    def settlement(self, processor: str) -> str:
        return self._settlement_styles[processor].render(self._settlement.next_number())

    def payout(self, processor: str) -> str:
        if processor == "adyen":  # Adyen payouts are numbered batches ("batch-<Batch Number>")
            self._adyen_batch += 1
            return f"batch-{self._adyen_batch}"
        return self._payout_prefix[processor] + self._payout.render(self._payout.next_number())


# ------------------------------------------------------------------ time helpers


_DATE_TEXT: Dict[int, str] = {}
_DAY_PREFIX: Dict[int, str] = {}


def date_text(millis: int) -> str:
    """The UTC calendar date of an instant, "YYYY-MM-DD" (cached per day)."""
    day = millis // DAY_MS
    text = _DATE_TEXT.get(day)
    if text is None:
        text = _DATE_TEXT[day] = (_EPOCH_DAY + timedelta(days=day)).isoformat()
    return text


_CLOCK: List[str] = []  # "HH:MM:SS." for every second of a day, built on first use


def timestamp_text(millis: int) -> str:
    """The same text as `schemas.timestamps.format_timestamp`, several times faster."""
    day, rest = divmod(millis, DAY_MS)
    prefix = _DAY_PREFIX.get(day)
    if prefix is None:
        prefix = _DAY_PREFIX[day] = (_EPOCH_DAY + timedelta(days=day)).isoformat() + "T"
        if not _CLOCK:
            _CLOCK.extend(f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}." for s in range(86_400))
    seconds, milli = divmod(rest, 1000)
    return f"{prefix}{_CLOCK[seconds]}{milli:03d}Z"


# ------------------------------------------------------------------ the world


@dataclass(frozen=True)
class Merchant:
    merchant_id: str
    home_currency: str
    processor: str  # preferred processor
    fee_bp: Dict[str, int]  # capture fee in basis points, per processor


def make_merchants(rng: Random, references: References) -> List[Merchant]:
    currency_cum = list(accumulate(_HOME_CURRENCY_WEIGHTS))
    processor_cum = list(accumulate(_PROCESSOR_WEIGHTS))
    merchants = []
    for _ in range(MERCHANT_COUNT):
        merchants.append(Merchant(
            merchant_id=references.new_merchant_id(),
            home_currency=CURRENCIES[min(bisect(currency_cum, rng.random() * currency_cum[-1]), 4)],
            processor=PROCESSORS[min(bisect(processor_cum, rng.random() * processor_cum[-1]), 3)],
            fee_bp={p: 100 + rng.randrange(201) for p in PROCESSORS},
        ))
    return merchants


# A key's members: (processor, processor_reference, kind, ledger event rows, settlement line rows).
KeyRecord = Tuple[str, str, str, list, list]


class World:
    """Simulates payments and their settlements; fills `payments`, `lines` and `keys`.

    `payments` are tuples in PAYMENT_FIELDS order, `lines` are lists in
    SETTLEMENT_FIELDS order (payout_id is filled in by `add_account_lines`).
    """

    def __init__(self, rng: Random, start_millis: int, days: int, rates: BreakRates):
        self.rng = rng
        self.start = start_millis
        self.end = start_millis + days * DAY_MS  # the snapshot instant: nothing later exists
        self.references = References(rng)
        self.ids = Ids(rng)
        self.merchants = make_merchants(rng, self.references)
        self.payments: List[tuple] = []
        self.lines: List[list] = []
        self.keys: List[KeyRecord] = []
        self.thresholds = tuple(accumulate(value for _, value in rates.as_tuple()))
        merchant_weights = [1.0 / (rank + 1) ** 0.8 for rank in range(MERCHANT_COUNT)]
        self._merchant_cum = list(accumulate(merchant_weights))
        self._processor_cum = list(accumulate(_PROCESSOR_WEIGHTS))
        self._amount_logs = {c: (math.log(lo), math.log(hi)) for c, (lo, hi) in _AMOUNT_RANGE.items()}

    # -------------------------------------------------------------- draws

    def _seconds(self, low: float, high: float) -> int:
        """A log-uniform duration in [low, high] seconds, as whole-second millis."""
        log_low, log_span = _log_span(low, high)
        return int(math.exp(log_low + self.rng.random() * log_span)) * 1000

    def _amount(self, currency: str) -> int:
        rnd = self.rng.random
        low, high = self._amount_logs[currency]
        amount = int(math.exp(low + rnd() * (high - low)))
        exponent = EXPONENTS[currency]
        if exponent == 2 and rnd() < 0.4:  # price-like: 19.99, 25.00
            amount = max(99, amount // 100 * 100 + (99 if rnd() < 0.5 else 0))
        elif exponent == 0 and rnd() < 0.5:
            amount = max(10, amount // 10 * 10)
        elif exponent == 3 and rnd() < 0.3:
            amount = max(50, amount // 50 * 50)
        return amount

    def _booking_delay(self) -> int:
        days = _DELAY_DAYS[bisect(_DELAY_CUMULATIVE, self.rng.random() * _DELAY_CUMULATIVE[-1])]
        return days * DAY_MS + (600 + int(self.rng.random() * 85_800)) * 1000

    @staticmethod
    def convert(amount: int, source: str, target: str) -> int:
        major = amount / 10 ** EXPONENTS[source] / _PER_USD[source] * _PER_USD[target]
        return max(1, round(major * 10 ** EXPONENTS[target]))

    # -------------------------------------------------------------- payments

    def simulate(self, payments: int, tick: Optional[Callable[[int], None]] = None) -> None:
        rng = self.rng
        rnd = rng.random
        exp = math.exp
        span_seconds = (self.end - self.start) // 1000
        merchants, merchant_cum = self.merchants, self._merchant_cum
        processor_cum = self._processor_cum
        processor_total, merchant_total = processor_cum[-1], merchant_cum[-1]
        new_payment_id, new_event_id, new_reference = self.ids.payment, self.ids.event, self.references.new
        append, settle, amount_of = self.payments.append, self._settle, self._amount
        start, end = self.start, self.end
        void_log = _log_span(300, 86_400)
        capture_log = _log_span(60, 8 * 3600)
        refund_log = _log_span(2 * 3600, 12 * 86_400)
        dispute_log = _log_span(2 * 86_400, 20 * 86_400)
        for index in range(payments):
            if tick is not None and index % 10_000 == 0 and index:
                tick(10_000)
            merchant = merchants[bisect(merchant_cum, rnd() * merchant_total)]
            merchant_id = merchant.merchant_id
            processor = (merchant.processor if rnd() < 0.7
                         else PROCESSORS[bisect(processor_cum, rnd() * processor_total)])
            currency = merchant.home_currency if rnd() < 0.85 else CURRENCIES[int(rnd() * 5)]
            amount = amount_of(currency)
            t = start + int(rnd() * span_seconds) * 1000
            payment_id, reference = new_payment_id(), new_reference(processor)
            append((new_event_id(), payment_id, "AUTHORIZED", processor, reference, merchant_id, amount, currency, t))
            outcome = rnd()
            if outcome < P_FAILED:
                failed_at = t + (1 + int(rnd() * 30)) * 1000
                if failed_at <= end:
                    append((new_event_id(), payment_id, "FAILED", processor, reference, merchant_id, amount,
                            currency, failed_at))
                continue
            if outcome < P_FAILED + P_VOIDED:
                voided_at = t + int(exp(void_log[0] + rnd() * void_log[1])) * 1000
                if voided_at <= end:
                    append((new_event_id(), payment_id, "VOIDED", processor, reference, merchant_id, amount,
                            currency, voided_at))
                continue
            captured_at = t + int(exp(capture_log[0] + rnd() * capture_log[1])) * 1000
            if captured_at > end:
                continue
            after = rnd()
            refund = after < P_REFUND
            chargeback = P_REFUND <= after < P_REFUND + P_CHARGEBACK
            capture = (new_event_id(), payment_id, "CAPTURED", processor, reference, merchant_id, amount, currency,
                       captured_at)
            append(capture)
            settle(capture, "CAPTURE", merchant, not refund)
            if refund:
                refunded_at = captured_at + int(exp(refund_log[0] + rnd() * refund_log[1])) * 1000
                refund_amount = amount if rnd() >= P_PARTIAL_REFUND else max(1, int(amount * (0.1 + 0.8 * rnd())))
                if refunded_at <= end:
                    event = (new_event_id(), payment_id, "REFUNDED", processor, reference, merchant_id,
                             refund_amount, currency, refunded_at)
                    append(event)
                    settle(event, "REFUND", merchant, False)
            elif chargeback:
                disputed_at = captured_at + int(exp(dispute_log[0] + rnd() * dispute_log[1])) * 1000
                if disputed_at <= end:
                    event = (new_event_id(), payment_id, "CHARGEBACK", processor, reference, merchant_id, amount,
                             currency, disputed_at)
                    append(event)
                    settle(event, "CHARGEBACK", merchant, False)
        if tick is not None:
            tick(payments % 10_000 or (10_000 if payments else 0))

    # -------------------------------------------------------------- settlement

    def _line(self, processor: str, reference: str, merchant: Merchant, record_type: str, gross: int,
              currency: str, booked: int) -> Optional[list]:
        """Appends a settlement line unless it would be booked after the snapshot."""
        if booked > self.end:
            return None
        if record_type == "CAPTURE":
            fee = gross * merchant.fee_bp[processor] // 10_000 + _FIXED_FEE[currency]
            if fee >= gross:
                fee = gross * merchant.fee_bp[processor] // 10_000
        else:
            fee = 0
        line = [self.ids.settlement(processor), processor, reference, merchant.merchant_id, record_type,
                gross, fee, gross - fee, currency, date_text(booked), booked, None]
        self.lines.append(line)
        return line

    def _settle(self, event: tuple, kind: str, merchant: Merchant, refund_free: bool = False) -> None:
        """Settles one ledger event under its key, after drawing its break scenario."""
        rnd = self.rng.random
        _, payment_id, event_type, processor, reference, _, amount, currency, t = event
        ledger, lines = [event], []
        record_type = kind
        booked = (t + _DELAY_DAYS[bisect(_DELAY_CUMULATIVE, rnd() * _DELAY_CUMULATIVE[-1])] * DAY_MS
                  + (600 + int(rnd() * 85_800)) * 1000)
        draw = rnd()
        amount_th, currency_th, missing_th, dup_settlement_th, dup_ledger_th, unexpected_th = self.thresholds
        if draw >= unexpected_th:  # the common case: settles exactly
            line = self._line(processor, reference, merchant, record_type, amount, currency, booked)
            self.keys.append((processor, reference, kind, ledger, [line] if line is not None else lines))
            return
        if draw < amount_th:
            if rnd() < 0.7:
                delta = 1 + int(rnd() * 9)  # a few minor units (rounding, FX dust)
            else:
                delta = max(10, int(amount * (0.01 + 0.19 * rnd())))  # a wrong amount
            gross = amount + delta if rnd() < 0.5 or amount - delta < 1 else amount - delta
            lines.append(self._line(processor, reference, merchant, record_type, gross, currency, booked))
        elif draw < currency_th:
            other = CURRENCIES[(CURRENCIES.index(currency) + 1 + int(rnd() * 4)) % 5]
            lines.append(self._line(processor, reference, merchant, record_type,
                                    self.convert(amount, currency, other), other, booked))
        elif draw < missing_th:
            pass  # the processor never settles it
        elif draw < dup_settlement_th:
            lines.append(self._line(processor, reference, merchant, record_type, amount, currency, booked))
            again = booked + self._seconds(3600, 3 * 86_400)
            lines.append(self._line(processor, reference, merchant, record_type, amount, currency, again))
        elif draw < dup_ledger_th:
            twice_at = t + self._seconds(5, 6 * 3600)
            if twice_at <= self.end:
                twice = (self.ids.event(), payment_id, event_type, processor, reference, merchant.merchant_id,
                         amount, currency, twice_at)
                self.payments.append(twice)
                ledger.append(twice)
            lines.append(self._line(processor, reference, merchant, record_type, amount, currency, booked))
        else:  # unexpected_settlement: this one settles exactly, a stray line appears elsewhere
            lines.append(self._line(processor, reference, merchant, record_type, amount, currency, booked))
            self._unexpected(processor, reference, merchant, kind, amount, currency, t, refund_free)
        self.keys.append((processor, reference, kind, ledger, [line for line in lines if line is not None]))

    def _unexpected(self, processor: str, reference: str, merchant: Merchant, kind: str, amount: int,
                    currency: str, t: int, refund_free: bool) -> None:
        """A settlement line under a key the ledger does not have."""
        rnd = self.rng.random
        if kind == "CAPTURE" and refund_free and rnd() < 0.5:
            # The processor refunded a payment the ledger never refunded.
            gross = amount if rnd() < 0.6 else max(1, int(amount * (0.1 + 0.8 * rnd())))
            booked = t + self._seconds(3600, 5 * 86_400) + self._booking_delay()
            line = self._line(processor, reference, merchant, "REFUND", gross, currency, booked)
            key = (processor, reference, "REFUND")
        else:
            # A charge the ledger never recorded.
            stray = self.references.new(processor)
            booked = t + self._seconds(60, 86_400) + self._booking_delay()
            line = self._line(processor, stray, merchant, "CAPTURE", self._amount(currency), currency, booked)
            key = (processor, stray, "CAPTURE")
        if line is not None:
            self.keys.append((*key, [], [line]))

    # -------------------------------------------------------------- account-level lines

    def add_account_lines(self) -> None:
        """FEE and ADJUSTMENT lines, then one PAYOUT per (processor, merchant, currency, day).

        A day's lines share the payout id; the payout's gross is what the day
        paid out (credits minus debits). A day that nets to nothing has no
        payout, and its lines no payout id. Payouts are booked at the end of
        their day, so days cut by the snapshot have none yet.
        """
        rnd = self.rng.random
        merchants = {m.merchant_id: m for m in self.merchants}
        groups: Dict[tuple, list] = {}
        for line in self.lines:
            group = (line[1], line[3], line[8], line[10] // DAY_MS)
            members = groups.get(group)
            if members is None:
                groups[group] = [line]
            else:
                members.append(line)
        for (processor, merchant_id, currency, day), members in groups.items():
            merchant = merchants[merchant_id]
            for record_type, chance, scale in (("FEE", P_FEE_LINE, 0.02), ("ADJUSTMENT", P_ADJUSTMENT_LINE, 0.01)):
                if rnd() < chance:
                    booked = day * DAY_MS + int(rnd() * 86_400) * 1000
                    gross = max(1, int(self._amount(currency) * scale * (1 + 9 * rnd())))
                    line = self._line(processor, self.references.new(processor), merchant, record_type,
                                      gross, currency, booked)
                    if line is not None:
                        members.append(line)
            paid = 0
            for line in members:
                paid += line[7] if line[4] in ("CAPTURE", "ADJUSTMENT") else -line[7]
            payout_at = day * DAY_MS + DAY_MS - 1000
            if paid <= 0 or payout_at > self.end:
                continue
            payout_id = self.ids.payout(processor)
            for line in members:
                line[11] = payout_id
            payout = self._line(processor, payout_id, merchant, "PAYOUT", paid, currency, payout_at)
            payout[11] = payout_id


def sorted_rows(rows: Sequence, sort_times: Sequence[int]) -> List:
    """Rows in ascending sort time (stable), the order files are written in."""
    order = sorted(range(len(rows)), key=sort_times.__getitem__)
    return [rows[i] for i in order]
