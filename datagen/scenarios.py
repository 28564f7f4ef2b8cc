"""The simulated world behind `datagen.generator`: merchants, ids and payment lifecycles.

No Beam, no IO. Everything is drawn from one `random.Random`, so a seed fixes
every value. The world is kept in columns of integers (`Table`: codes, row
numbers, amounts in minor units, times as epoch millis in whole seconds) and
its references as UTF-8 bytes (`TextColumn`), not as a Python object per
value: 30 million payments did not fit in memory as tuples. Ids are not
stored at all: a row's id is its id sequence's number of the row
(`IdSequence.texts` renders them when a file is written).

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
from array import array
from bisect import bisect
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from itertools import accumulate
from random import Random
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa

from schemas.rules import EVENT_TYPES, RECORD_TYPES

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
# What a day's payout pays out; the other record types are debited.
CREDIT_RECORD_TYPES = ("CAPTURE", "ADJUSTMENT")

# Codes stored in the tables: positions in these tuples.
PROCESSOR_CODE = {name: code for code, name in enumerate(PROCESSORS)}
CURRENCY_CODE = {name: code for code, name in enumerate(CURRENCIES)}
EVENT_TYPE_CODE = {name: code for code, name in enumerate(EVENT_TYPES)}
RECORD_TYPE_CODE = {name: code for code, name in enumerate(RECORD_TYPES)}
_EVENT_TYPE_OF_KIND = {"CAPTURE": "CAPTURED", "REFUND": "REFUNDED", "CHARGEBACK": "CHARGEBACK"}

# Payments simulated between two flushes of the row buffers into the columns (and progress ticks).
_BATCH = 10_000


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


# ------------------------------------------------------------------ storage


_NUMPY_TYPE = {"b": np.int8, "i": np.int32, "q": np.int64}


class Table:
    """Append-only rows kept as typed columns (`array.array`): a row costs bytes, not Python objects.

    `add` buffers a row tuple and returns its row number; `flush` moves the
    buffer into the columns (one C-level extend per column instead of one
    append per value in the simulation loop). `freeze` ends appending; the
    columns are then numpy arrays, `table["name"]`.
    """

    def __init__(self, **typecodes: str):
        self.names = tuple(typecodes)
        self._columns = [array(code) for code in typecodes.values()]
        self._pending: List[tuple] = []
        self._frozen: Dict[str, np.ndarray] = {}
        self.count = 0

    def add(self, row: tuple) -> int:
        self._pending.append(row)
        number = self.count
        self.count = number + 1
        return number

    def flush(self) -> None:
        if self._pending:
            for column, values in zip(self._columns, zip(*self._pending)):
                column.extend(values)
            self._pending.clear()

    def column(self, name: str) -> np.ndarray:
        """A column as numpy, before `freeze` (a copy: a view would pin the growing array)."""
        self.flush()
        values = self._columns[self.names.index(name)]
        return np.frombuffer(values, _NUMPY_TYPE[values.typecode]).copy()

    def freeze(self) -> None:
        self.flush()
        # Views: the arrays refuse to grow while numpy holds them, which is what frozen means.
        self._frozen = {name: np.frombuffer(values, _NUMPY_TYPE[values.typecode])
                        for name, values in zip(self.names, self._columns)}

    def __getitem__(self, name: str) -> np.ndarray:
        return self._frozen[name]

    def at(self, name: str, rows: np.ndarray) -> np.ndarray:
        """A frozen column's values at `rows`; a row of -1 (none) gives a placeholder 0, for `np.where` to drop."""
        values = self._frozen[name]
        return values[np.maximum(rows, 0)] if len(values) else np.zeros(len(rows), values.dtype)

    def __len__(self) -> int:
        return self.count


class TextColumn:
    """Append-only strings kept as UTF-8 bytes plus offsets (a Python str costs ~50 bytes more each).

    `arrow()` ends appending and hands the strings out as one Arrow array.
    """

    def __init__(self) -> None:
        self._pending: List[str] = []
        self._data = bytearray()
        self._offsets = array("q", [0])
        self.count = 0

    def append(self, text: str) -> None:
        self._pending.append(text)
        self.count += 1

    def flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        blob = "".join(pending).encode("utf-8")
        lengths = [len(text) for text in pending]
        if len(blob) != sum(lengths):  # not all ASCII
            lengths = [len(text.encode("utf-8")) for text in pending]
        self._data += blob
        self._offsets.extend(array("q", accumulate(lengths, initial=self._offsets[-1]))[1:])
        pending.clear()

    def arrow(self) -> pa.LargeStringArray:
        self.flush()
        # The buffers are shared, not copied: appending afterwards must fail, hence no pending list.
        self._pending = None  # type: ignore[assignment]
        return pa.LargeStringArray.from_buffers(self.count, pa.py_buffer(self._offsets), pa.py_buffer(self._data))

    def __len__(self) -> int:
        return self.count


# ------------------------------------------------------------------ ids


_NIBBLE_SHIFTS = np.arange(60, -4, -4, dtype=np.uint64)
_HEX_DIGITS = {False: np.frombuffer(b"0123456789abcdef", np.uint8), True: np.frombuffer(b"0123456789ABCDEF", np.uint8)}


def render_numbers(numbers: np.ndarray, prefix: str, upper: bool) -> List[str]:
    """`IdSequence.render` of many 64-bit numbers at once (numpy, no per-id Python formatting)."""
    nibbles = ((numbers.astype(np.uint64)[:, None] >> _NIBBLE_SHIFTS) & np.uint64(15)).astype(np.uint8)
    chars = _HEX_DIGITS[upper][nibbles]
    chars[(nibbles[:, 3:13] < 10).all(axis=1), 8] += 23 if upper else 55  # render's digit -> g..p (G..P)
    head = prefix.encode("ascii")
    width = len(head) + 16
    text = np.empty((len(numbers), width), np.uint8)
    text[:, :len(head)] = np.frombuffer(head, np.uint8)
    text[:, len(head):] = chars
    return text.view(f"S{width}").ravel().astype(f"U{width}").tolist()


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

    def numbers(self, counters: np.ndarray) -> np.ndarray:
        """`next_number()` at each counter value, without issuing anything (uint64 wraps like `& _MASK64`)."""
        n = np.asarray(counters).astype(np.uint64)
        x = (n * np.uint64(_MUL_A) + np.uint64(self._salt)) * np.uint64(_MUL_B)
        return x ^ (x >> np.uint64(29))

    def texts(self, counters: np.ndarray) -> List[str]:
        """The ids this sequence issues (`__call__`, lower case) as its `counters`-th ones."""
        return render_numbers(self.numbers(counters), self.prefix, self._upper)


class References:
    """Processor-styled payment references, unique across the whole dataset; all kept in `issued`.

    A drawn reference that is already in use is drawn again. With
    `exact=True` that is checked against every issued reference (a set of
    them all: gigabytes at tens of millions). Otherwise only against the
    merchant ids, and `collide()` tells afterwards whether two issued
    references are equal, in which case the caller draws the world again
    exactly. At 80 to 143 random bits per reference that does not happen in
    practice, and when it does not, both ways draw the same values.
    """

    def __init__(self, rng: Random, exact: bool = False):
        self._rng = rng
        self._used: set = set()
        self._exact = exact
        self.issued = TextColumn()
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
                if self._exact:
                    used.add(reference)
                self.issued.append(reference)
                return reference

    def new_index(self, processor: str) -> int:
        """A new reference, as its position in `issued`."""
        self.new(processor)
        return self.issued.count - 1

    def new_merchant_id(self) -> str:
        while True:
            merchant = "m_" + self._rng.randbytes(6).translate(_TABLE36_LOWER).decode()
            if merchant not in self._used:
                self._used.add(merchant)
                return merchant

    def collide(self, issued: pa.Array) -> bool:
        """Whether two of the `issued` references (`self.issued.arrow()`) are equal."""
        if self._exact or len(issued) < 2:
            return False
        hashes = np.empty(len(issued), np.int64)
        for start in range(0, len(issued), 1 << 20):
            part = issued.slice(start, 1 << 20).to_pylist()
            hashes[start:start + len(part)] = np.fromiter(map(hash, part), np.int64, len(part))
        order = np.argsort(hashes)
        same = np.flatnonzero(hashes[order[1:]] == hashes[order[:-1]])
        del hashes
        # Equal hashes are not yet equal strings: compare those few.
        return any(issued[int(order[i])] == issued[int(order[i + 1])] for i in same)


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

    def settlement_texts(self, counters: np.ndarray, processors: np.ndarray) -> List[str]:
        """The ids `settlement(PROCESSORS[code])` issues as its `counters`-th ones."""
        numbers = self._settlement.numbers(counters)
        texts = [""] * len(numbers)
        for code, processor in enumerate(PROCESSORS):
            at = np.flatnonzero(processors == code)
            if len(at):
                style = self._settlement_styles[processor]
                for position, text in zip(at.tolist(), render_numbers(numbers[at], style.prefix, style._upper)):
                    texts[position] = text
        return texts

    def number_rows(self, events: int, payments: int, lines: int) -> None:
        """The world's rows take the first ids of their sequences (row i has the i-th id); later ids follow them."""
        self.event.issued, self.payment.issued, self._settlement.issued = events, payments, lines

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
    index: int = 0  # position in the world's merchant list (the code stored in the tables)


def make_merchants(rng: Random, references: References) -> List[Merchant]:
    currency_cum = list(accumulate(_HOME_CURRENCY_WEIGHTS))
    processor_cum = list(accumulate(_PROCESSOR_WEIGHTS))
    merchants = []
    for index in range(MERCHANT_COUNT):
        merchants.append(Merchant(
            merchant_id=references.new_merchant_id(),
            home_currency=CURRENCIES[min(bisect(currency_cum, rng.random() * currency_cum[-1]), 4)],
            processor=PROCESSORS[min(bisect(processor_cum, rng.random() * processor_cum[-1]), 3)],
            fee_bp={p: 100 + rng.randrange(201) for p in PROCESSORS},
            index=index,
        ))
    return merchants


class World:
    """Simulates payments and their settlements into tables of codes and numbers.

    * `payments`: processor, merchant, currency (codes) and reference (a
      position in `references.issued`) of each payment, row p = the p-th
      payment id;
    * `events`: the ledger events, row i = the i-th event id: payment (row),
      event_type (code), amount, time;
    * `lines`: the settlement lines, row j = the j-th settlement id:
      processor, reference (-1 for a PAYOUT line, whose reference is its
      payout id), merchant, record_type, gross, fee, currency (codes), booked
      time; `line_payout` (after `add_account_lines`) the position of each
      line's payout id in `payout_ids`, or -1;
    * `keys`: one row per reconciliation key: its first ledger event and
      first settlement line (-1 for none); `duplicate_events` and
      `duplicate_lines` the (key, row) of its second ones.
    """

    def __init__(self, rng: Random, start_millis: int, days: int, rates: BreakRates, exact: bool = False):
        self.rng = rng
        self.start = start_millis
        self.end = start_millis + days * DAY_MS  # the snapshot instant: nothing later exists
        self.references = References(rng, exact)
        self.ids = Ids(rng)
        self.merchants = make_merchants(rng, self.references)
        self.merchant_ids = np.array([merchant.merchant_id for merchant in self.merchants], dtype=object)
        self.payments = Table(processor="b", merchant="b", currency="b", reference="q")
        self.events = Table(payment="q", event_type="b", amount="q", time="q")
        self.lines = Table(processor="b", reference="q", merchant="b", record_type="b", gross="q", fee="q",
                           currency="b", booked="q")
        self.keys = Table(event="q", line="q")
        self.duplicate_events = Table(key="q", event="q")
        self.duplicate_lines = Table(key="q", line="q")
        self.line_payout = np.empty(0, np.int32)
        self.payout_ids: List[str] = []
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

    def _flush(self) -> None:
        for table in (self.payments, self.events, self.lines, self.keys, self.duplicate_events,
                      self.duplicate_lines):
            table.flush()
        self.references.issued.flush()

    # -------------------------------------------------------------- payments

    def simulate(self, payments: int, tick: Optional[Callable[[int], None]] = None) -> None:
        rng = self.rng
        rnd = rng.random
        exp = math.exp
        span_seconds = (self.end - self.start) // 1000
        merchants, merchant_cum = self.merchants, self._merchant_cum
        processor_cum = self._processor_cum
        processor_total, merchant_total = processor_cum[-1], merchant_cum[-1]
        new_reference, add_payment, add_event = self.references.new_index, self.payments.add, self.events.add
        settle, amount_of = self._settle, self._amount
        processor_code, currency_code = PROCESSOR_CODE, CURRENCY_CODE
        authorized, failed, voided, captured, refunded, chargeback_type = (
            EVENT_TYPE_CODE[name] for name in ("AUTHORIZED", "FAILED", "VOIDED", "CAPTURED", "REFUNDED", "CHARGEBACK"))
        start, end = self.start, self.end
        void_log = _log_span(300, 86_400)
        capture_log = _log_span(60, 8 * 3600)
        refund_log = _log_span(2 * 3600, 12 * 86_400)
        dispute_log = _log_span(2 * 86_400, 20 * 86_400)
        for first in range(0, payments, _BATCH):
            batch = min(_BATCH, payments - first)
            for _ in range(batch):
                merchant = merchants[bisect(merchant_cum, rnd() * merchant_total)]
                processor = (merchant.processor if rnd() < 0.7
                             else PROCESSORS[bisect(processor_cum, rnd() * processor_total)])
                currency = merchant.home_currency if rnd() < 0.85 else CURRENCIES[int(rnd() * 5)]
                amount = amount_of(currency)
                t = start + int(rnd() * span_seconds) * 1000
                reference = new_reference(processor)
                payment = add_payment((processor_code[processor], merchant.index, currency_code[currency], reference))
                add_event((payment, authorized, amount, t))
                outcome = rnd()
                if outcome < P_FAILED:
                    failed_at = t + (1 + int(rnd() * 30)) * 1000
                    if failed_at <= end:
                        add_event((payment, failed, amount, failed_at))
                    continue
                if outcome < P_FAILED + P_VOIDED:
                    voided_at = t + int(exp(void_log[0] + rnd() * void_log[1])) * 1000
                    if voided_at <= end:
                        add_event((payment, voided, amount, voided_at))
                    continue
                captured_at = t + int(exp(capture_log[0] + rnd() * capture_log[1])) * 1000
                if captured_at > end:
                    continue
                after = rnd()
                refund = after < P_REFUND
                chargeback = P_REFUND <= after < P_REFUND + P_CHARGEBACK
                capture = add_event((payment, captured, amount, captured_at))
                settle(capture, payment, "CAPTURE", processor, reference, merchant, amount, currency, captured_at,
                       not refund)
                if refund:
                    refunded_at = captured_at + int(exp(refund_log[0] + rnd() * refund_log[1])) * 1000
                    refund_amount = (amount if rnd() >= P_PARTIAL_REFUND
                                     else max(1, int(amount * (0.1 + 0.8 * rnd()))))
                    if refunded_at <= end:
                        event = add_event((payment, refunded, refund_amount, refunded_at))
                        settle(event, payment, "REFUND", processor, reference, merchant, refund_amount, currency,
                               refunded_at)
                elif chargeback:
                    disputed_at = captured_at + int(exp(dispute_log[0] + rnd() * dispute_log[1])) * 1000
                    if disputed_at <= end:
                        event = add_event((payment, chargeback_type, amount, disputed_at))
                        settle(event, payment, "CHARGEBACK", processor, reference, merchant, amount, currency,
                               disputed_at)
            self._flush()
            if tick is not None:
                tick(batch)

    # -------------------------------------------------------------- settlement

    def _line(self, processor: str, reference: int, merchant: Merchant, record_type: str, gross: int,
              currency: str, booked: int) -> int:
        """Adds a settlement line unless it would be booked after the snapshot; its row, or -1."""
        if booked > self.end:
            return -1
        if record_type == "CAPTURE":
            fee = gross * merchant.fee_bp[processor] // 10_000 + _FIXED_FEE[currency]
            if fee >= gross:
                fee = gross * merchant.fee_bp[processor] // 10_000
        else:
            fee = 0
        return self.lines.add((PROCESSOR_CODE[processor], reference, merchant.index, RECORD_TYPE_CODE[record_type],
                               gross, fee, CURRENCY_CODE[currency], booked))

    def _add_key(self, event: int, lines: Sequence[int], twice: int = -1) -> None:
        key = self.keys.add((event, lines[0] if lines else -1))
        if len(lines) > 1:
            self.duplicate_lines.add((key, lines[1]))
        if twice >= 0:
            self.duplicate_events.add((key, twice))

    def _settle(self, event: int, payment: int, kind: str, processor: str, reference: int, merchant: Merchant,
                amount: int, currency: str, t: int, refund_free: bool = False) -> None:
        """Settles one ledger event (row `event`) under its key, after drawing its break scenario."""
        rnd = self.rng.random
        record_type = kind
        booked = (t + _DELAY_DAYS[bisect(_DELAY_CUMULATIVE, rnd() * _DELAY_CUMULATIVE[-1])] * DAY_MS
                  + (600 + int(rnd() * 85_800)) * 1000)
        draw = rnd()
        amount_th, currency_th, missing_th, dup_settlement_th, dup_ledger_th, unexpected_th = self.thresholds
        if draw >= unexpected_th:  # the common case: settles exactly
            line = self._line(processor, reference, merchant, record_type, amount, currency, booked)
            self.keys.add((event, line))
            return
        lines = []
        twice = -1
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
                twice = self.events.add((payment, EVENT_TYPE_CODE[_EVENT_TYPE_OF_KIND[kind]], amount, twice_at))
            lines.append(self._line(processor, reference, merchant, record_type, amount, currency, booked))
        else:  # unexpected_settlement: this one settles exactly, a stray line appears elsewhere
            lines.append(self._line(processor, reference, merchant, record_type, amount, currency, booked))
            self._unexpected(processor, reference, merchant, kind, amount, currency, t, refund_free)
        self._add_key(event, [line for line in lines if line >= 0], twice)

    def _unexpected(self, processor: str, reference: int, merchant: Merchant, kind: str, amount: int,
                    currency: str, t: int, refund_free: bool) -> None:
        """A settlement line under a key the ledger does not have."""
        rnd = self.rng.random
        if kind == "CAPTURE" and refund_free and rnd() < 0.5:
            # The processor refunded a payment the ledger never refunded.
            gross = amount if rnd() < 0.6 else max(1, int(amount * (0.1 + 0.8 * rnd())))
            booked = t + self._seconds(3600, 5 * 86_400) + self._booking_delay()
            line = self._line(processor, reference, merchant, "REFUND", gross, currency, booked)
        else:
            # A charge the ledger never recorded.
            stray = self.references.new_index(processor)
            booked = t + self._seconds(60, 86_400) + self._booking_delay()
            line = self._line(processor, stray, merchant, "CAPTURE", self._amount(currency), currency, booked)
        if line >= 0:
            self._add_key(-1, [line])

    # -------------------------------------------------------------- account-level lines

    def add_account_lines(self) -> None:
        """FEE and ADJUSTMENT lines, then one PAYOUT per (processor, merchant, currency, day); freezes the world.

        A day's lines share the payout id; the payout's gross is what the day
        paid out (credits minus debits). A day that nets to nothing has no
        payout, and its lines no payout id. Payouts are booked at the end of
        their day, so days cut by the snapshot have none yet. Days are taken
        in the order of their first line, as a dict of them would be.
        """
        rnd = self.rng.random
        groups = day_groups(self.lines)
        payout_of_group = np.full(groups.count, -1, np.int32)
        late: List[Tuple[int, int]] = []  # (line, payout) of the lines added here
        for group in groups.order.tolist():
            processor_code, merchant_index, currency_code, day = groups.decode(group)
            processor, currency = PROCESSORS[processor_code], CURRENCIES[currency_code]
            merchant = self.merchants[merchant_index]
            paid = int(groups.paid[group])
            added = []
            for record_type, chance, scale in (("FEE", P_FEE_LINE, 0.02), ("ADJUSTMENT", P_ADJUSTMENT_LINE, 0.01)):
                if rnd() < chance:
                    booked = day * DAY_MS + int(rnd() * 86_400) * 1000
                    gross = max(1, int(self._amount(currency) * scale * (1 + 9 * rnd())))
                    line = self._line(processor, self.references.new_index(processor), merchant, record_type,
                                      gross, currency, booked)
                    if line >= 0:
                        added.append(line)
                        paid += gross if record_type in CREDIT_RECORD_TYPES else -gross  # no fee: net == gross
            payout_at = day * DAY_MS + DAY_MS - 1000
            if paid <= 0 or payout_at > self.end:
                continue
            payout = len(self.payout_ids)
            self.payout_ids.append(self.ids.payout(processor))
            payout_of_group[group] = payout
            added.append(self._line(processor, -1, merchant, "PAYOUT", paid, currency, payout_at))
            late.extend((line, payout) for line in added)
        self._flush()
        self.line_payout = np.full(self.lines.count, -1, np.int32)
        self.line_payout[:len(groups.of_line)] = payout_of_group[groups.of_line]
        for line, payout in late:
            self.line_payout[line] = payout
        self.ids.number_rows(self.events.count, self.payments.count, self.lines.count)
        for table in (self.payments, self.events, self.lines, self.keys, self.duplicate_events,
                      self.duplicate_lines):
            table.freeze()


@dataclass(frozen=True)
class DayGroups:
    """The settlement lines by (processor, merchant, currency, booking day), as integer group numbers."""

    of_line: np.ndarray  # each line's group
    order: np.ndarray  # the groups that have lines, in the order of their first line
    paid: np.ndarray  # per group: credits minus debits of its lines' net amounts
    first_day: int
    days: int

    @property
    def count(self) -> int:
        return len(self.paid)

    def decode(self, group: int) -> Tuple[int, int, int, int]:
        """(processor code, merchant index, currency code, day number) of a group."""
        rest, day = divmod(group, self.days)
        rest, currency = divmod(rest, len(CURRENCIES))
        processor, merchant = divmod(rest, MERCHANT_COUNT)
        return processor, merchant, currency, self.first_day + day


def day_groups(lines: Table) -> DayGroups:
    booked = lines.column("booked")
    day = booked // DAY_MS
    del booked
    first_day = int(day.min()) if len(day) else 0
    days = int(day.max()) - first_day + 1 if len(day) else 1
    group = ((lines.column("processor").astype(np.int64) * MERCHANT_COUNT + lines.column("merchant"))
             * len(CURRENCIES) + lines.column("currency")) * days + (day - first_day)
    del day
    count = len(PROCESSORS) * MERCHANT_COUNT * len(CURRENCIES) * days
    first = np.full(count, len(group), np.int64)
    np.minimum.at(first, group, np.arange(len(group)))
    present = np.flatnonzero(first < len(group))
    order = present[np.argsort(first[present], kind="stable")]
    net = lines.column("gross") - lines.column("fee")
    credit = np.isin(lines.column("record_type"), [RECORD_TYPE_CODE[name] for name in CREDIT_RECORD_TYPES])
    paid = np.zeros(count, np.int64)
    np.add.at(paid, group, np.where(credit, net, -net))
    return DayGroups(group, order, paid, first_day, days)


def stable_order(sort_times: Sequence[int]) -> np.ndarray:
    """Positions that sort `sort_times` ascending, ties in position order (the order files are written in)."""
    return np.argsort(np.asarray(sort_times, dtype=np.int64), kind="stable")
