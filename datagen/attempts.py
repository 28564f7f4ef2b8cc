"""Authorization attempts with injected attacks, and the truth of each attempt from intent (issue 20).

`generate_attempts(AttemptsConfig(...))` returns attempts in event-time order
and, per attempt id, the attack it belongs to ("" for ordinary traffic). The
truth is what the generator *meant*, never a run of paybeam's rules: a rule
catches an attack when it acts on that attack's attempts and on nothing else.

Ordinary traffic: customers with one card, one device, one IP and one
billing country each, a few attempts a day around their own typical amount,
about 5% declined; one in a hundred attempts is a refund, one per customer at most. Each attack uses fresh entities, so its
attempts are told apart by construction:

* card_testing: one IP tries many small amounts on a few cards of one BIN
  within minutes, most declined;
* velocity: one card used at many merchants within half an hour, approved;
* decline_spike: one merchant's declines jump to most of its attempts for an
  hour, against its own ordinary rate;
* amount_spike: a customer with a history of small payments attempts one far
  above it;
* geo_velocity: one card attempts from two billing countries within an hour;
* refund_abuse: a customer asks for several refunds within days.

Same config, same attempts (one `random.Random(seed)`, no wall clock).
"""
from __future__ import annotations

from dataclasses import dataclass
from random import Random
from typing import Dict, List, Tuple

from schemas.attempts import APPROVED, AUTHORIZATION, DECLINED, REFUND, AuthorizationAttempt

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
ATTACKS = ("card_testing", "velocity", "decline_spike", "amount_spike", "geo_velocity", "refund_abuse")
COUNTRIES = ("US", "GB", "DE", "FR", "NL", "CA")
DECLINE_CODES = ("05", "51", "14", "54")


@dataclass(frozen=True)
class AttemptsConfig:
    customers: int = 1500
    merchants: int = 4
    days: int = 3
    attempts_per_customer_day: float = 1.5
    seed: int = 7
    start_millis: int = 1_793_491_200_000  # 2026-11-01T00:00:00Z
    attacks: Tuple[str, ...] = ATTACKS


@dataclass
class _Customer:
    number: int
    card: str
    bin: str
    device: str
    ip: str
    country: str
    typical_minor: int


def _attempt(rng_id: str, time: int, merchant: str, amount: int, customer: _Customer, outcome: str,
             attempt_type: str = AUTHORIZATION, country: str = "", currency: str = "USD",
             ip: str = "") -> AuthorizationAttempt:
    return AuthorizationAttempt(
        attempt_id=rng_id, attempt_type=attempt_type, event_time=time, merchant_id=merchant, amount_minor=amount,
        currency=currency, card_fingerprint=customer.card, card_bin=customer.bin, customer_id=f"cus_{customer.number}",
        ip=ip or customer.ip, device_id=customer.device, billing_country=country or customer.country,
        issuing_country=customer.country, outcome=outcome,
        decline_code=DECLINE_CODES[time % len(DECLINE_CODES)] if outcome == DECLINED else None,
        three_ds="NOT_REQUESTED", payment_id=None)


class _World:
    def __init__(self, config: AttemptsConfig):
        self.config, self.rng = config, Random(config.seed)
        self.attempts: List[AuthorizationAttempt] = []
        self.truth: Dict[str, str] = {}
        self._next_customer = 0
        self.merchants = [f"m_{n}" for n in range(1, config.merchants + 1)]

    def customer(self) -> _Customer:
        self._next_customer += 1
        n = self._next_customer
        return _Customer(n, f"fp_{n:06d}", f"4{self.rng.randrange(10_000, 99_999)}", f"dev_{n:06d}",
                         f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}", self.rng.choice(COUNTRIES),
                         self.rng.randrange(1_000, 20_000))

    def add(self, attempt: AuthorizationAttempt, attack: str = "") -> None:
        self.attempts.append(attempt)
        self.truth[attempt.attempt_id] = attack

    def attempt_id(self) -> str:
        return f"att_{len(self.attempts):07d}_{self.rng.randrange(16 ** 6):06x}"


def _ordinary(world: _World) -> None:
    config, rng = world.config, world.rng
    span = config.days * DAY_MS
    for _ in range(config.customers):
        customer = world.customer()
        count = max(1, round(rng.expovariate(1 / (config.attempts_per_customer_day * config.days))))
        refunded = False
        for time in sorted(rng.randrange(span) for _ in range(count)):
            amount = max(100, int(customer.typical_minor * rng.uniform(0.5, 1.5)))
            outcome = DECLINED if rng.random() < 0.05 else APPROVED
            kind = REFUND if rng.random() < 0.01 and not refunded else AUTHORIZATION  # one refund at most
            refunded = refunded or kind == REFUND
            world.add(_attempt(world.attempt_id(), config.start_millis + time, rng.choice(world.merchants), amount,
                               customer, APPROVED if kind == REFUND else outcome, kind))


def _card_testing(world: _World, start: int) -> None:
    rng, ip = world.rng, "203.0.113.7"
    cards = [world.customer() for _ in range(3)]
    for card in cards[1:]:
        card.bin = cards[0].bin
    for step in range(30):
        outcome = DECLINED if rng.random() < 0.85 else APPROVED
        world.add(_attempt(world.attempt_id(), start + step * 10_000, world.merchants[0], rng.randrange(100, 300),
                           cards[step % 3], outcome, ip=ip), "card_testing")


def _velocity(world: _World, start: int) -> None:
    stolen = world.customer()
    for step in range(12):
        world.add(_attempt(world.attempt_id(), start + step * 2 * MINUTE_MS, world.merchants[step % len(world.merchants)],
                           world.rng.randrange(2_000, 9_000), stolen, APPROVED), "velocity")


def _decline_spike(world: _World, start: int) -> None:
    merchant = world.merchants[-1]
    for step in range(80):
        buyer = world.customer()
        world.add(_attempt(world.attempt_id(), start + step * 45_000, merchant, world.rng.randrange(500, 5_000), buyer,
                           DECLINED if world.rng.random() < 0.7 else APPROVED), "decline_spike")


def _amount_spike(world: _World, start: int) -> None:
    buyer = world.customer()
    buyer.typical_minor = 1_500
    for step in range(4):  # an ordinary history first: part of the scenario, not of the attack
        world.add(_attempt(world.attempt_id(), start - (5 - step) * DAY_MS // 2, world.merchants[1],
                           world.rng.randrange(1_200, 1_800), buyer, APPROVED), "")
    world.add(_attempt(world.attempt_id(), start, world.merchants[1], 95_000, buyer, APPROVED), "amount_spike")


def _geo_velocity(world: _World, start: int) -> None:
    card = world.customer()
    world.add(_attempt(world.attempt_id(), start, world.merchants[0], 4_000, card, APPROVED, country="US"), "")
    abroad = "GB" if card.country != "GB" else "DE"
    world.add(_attempt(world.attempt_id(), start + 25 * MINUTE_MS, world.merchants[2], 6_000, card, APPROVED,
                       country=abroad, ip="198.51.100.9"), "geo_velocity")


def _refund_abuse(world: _World, start: int) -> None:
    buyer = world.customer()
    for step in range(5):
        world.add(_attempt(world.attempt_id(), start + step * 9 * HOUR_MS, world.merchants[step % 2],
                           world.rng.randrange(2_000, 6_000), buyer, APPROVED, REFUND), "refund_abuse")


_INJECT = {"card_testing": _card_testing, "velocity": _velocity, "decline_spike": _decline_spike,
           "amount_spike": _amount_spike, "geo_velocity": _geo_velocity, "refund_abuse": _refund_abuse}


def generate_attempts(config: AttemptsConfig) -> Tuple[List[AuthorizationAttempt], Dict[str, str]]:
    """(attempts sorted by (event_time, attempt_id), attack per attempt id; "" for ordinary traffic)."""
    unknown = set(config.attacks) - set(ATTACKS)
    if unknown:
        raise ValueError(f"unknown attack(s) {sorted(unknown)}; known: {', '.join(ATTACKS)}")
    world = _World(config)
    _ordinary(world)
    # Attacks start in the last day, so the baselines before them are ordinary traffic.
    last_day = config.start_millis + (config.days - 1) * DAY_MS
    for number, attack in enumerate(config.attacks):
        _INJECT[attack](world, last_day + (2 + 3 * number) * HOUR_MS)
    ordered = sorted(world.attempts, key=lambda attempt: (attempt.event_time, attempt.attempt_id))
    return ordered, world.truth
