"""Command-line arguments that batch and streaming pipelines share, and their conversion.

Every conversion error becomes a UsageError: the command runner (pipelines/command.py) prints it as one line.
"""
from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Optional, Tuple

from schemas.errors import UserError
from schemas.timestamps import TimestampError, parse_duration, parse_timestamp_millis
from schemas.vendors import STRIPE_LEDGER_REFERENCES, VendorOptions
from transforms.alerts import AlertPolicy
from transforms.bank.matching import BankPolicy
from transforms.bank.payouts import PayoutPolicy
from transforms.daily_totals import SettlementDay, TriggerPolicy
from transforms.matching import MatchPolicy

# The two engines (docs/DESIGN.md 9): Arrow batches for bounded input, one element per record for streams.
COLUMNAR, ELEMENTWISE = "columnar", "elementwise"
ENGINES = (COLUMNAR, ELEMENTWISE)


class UsageError(UserError):
    """A mistake in the command line's arguments; reported in one line, exit 2, no traceback."""


def add_policy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runner", default="DirectRunner", help="Beam runner (default: DirectRunner)")
    parser.add_argument("--as-of", metavar="TIME",
                        help="judge deadlines at this RFC 3339 instant (default: latest event time in the input)")
    parser.add_argument("--amount-tolerance-minor", type=int, default=0, metavar="N")
    parser.add_argument("--settlement-sla", default="3d", metavar="DURATION", help="default 3d")
    parser.add_argument("--ledger-grace", default="1d", metavar="DURATION", help="default 1d")
    parser.add_argument("--time-zone", default="UTC", help="settlement-day time zone (IANA name)")
    parser.add_argument("--cutoff-hour", type=int, default=0, help="local hour a settlement day starts")
    parser.add_argument("--allowed-lateness", default="7d", metavar="DURATION",
                        help="how late records may still correct a day's totals (default 7d)")


def add_vendor_arguments(parser: argparse.ArgumentParser) -> None:
    """How an account's Stripe reports relate to its ledger (docs/formats.md, vendor reports)."""
    parser.add_argument("--stripe-ledger-reference", choices=STRIPE_LEDGER_REFERENCES, default="charge",
                        help="the Stripe id the ledger keys payments by: charge (ch_..., default) or "
                             "payment_intent (pi_...); Stripe rows are matched on that column")
    parser.add_argument("--stripe-merchant-metadata-key", default="merchant_id", metavar="KEY",
                        help="Stripe rows take their merchant from the payment_metadata[KEY] column "
                             "(default merchant_id)")


def vendor_options(args: argparse.Namespace) -> VendorOptions:
    key = getattr(args, "stripe_merchant_metadata_key", None)
    key = "merchant_id" if key is None else key.strip()
    if not key or any(char in key for char in "[]\r\n"):
        raise UsageError(f"--stripe-merchant-metadata-key {key!r} is not a metadata key")
    return VendorOptions(getattr(args, "stripe_ledger_reference", None) or "charge", key)


def add_bank_arguments(parser: argparse.ArgumentParser) -> None:
    """Three-way reconciliation: bank statements and the deadlines of payouts and credits (docs/DESIGN.md 3.8)."""
    parser.add_argument("--bank-statements", action="append", default=[], metavar="GLOB",
                        help="bank statements (repeatable; camt.053 XML or BAI2, told apart by content, then "
                             "extension): adds payouts/ (each payout against its settlement lines) and "
                             "bank_matches/ (each payout against the bank credit that carries it)")
    add_bank_policy_arguments(parser)


def add_bank_policy_arguments(parser: argparse.ArgumentParser) -> None:
    """The deadlines of payouts and credits (`paybeam backfill` takes its statements as a template)."""
    parser.add_argument("--bank-sla-days", type=int, default=3, metavar="N",
                        help="business days (Monday to Friday) a payout's bank credit may take before the payout "
                             "is PAYOUT_NOT_RECEIVED (default 3)")
    parser.add_argument("--credit-grace-days", type=int, default=3, metavar="N",
                        help="days a bank credit no payout claims waits before UNEXPECTED_BANK_CREDIT (default 3)")
    parser.add_argument("--payout-grace", default="1d", metavar="DURATION",
                        help="how long after its last line a payout id waits for its PAYOUT line before "
                             "LINES_WITHOUT_PAYOUT (default 1d)")


def bank_policies(args: argparse.Namespace) -> Tuple[PayoutPolicy, BankPolicy]:
    return _converted(lambda: (PayoutPolicy(parse_duration(args.payout_grace)),
                               BankPolicy(args.bank_sla_days, timedelta(days=args.credit_grace_days))))


def add_alert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--alert-window", default="1h", metavar="DURATION", help="sliding window size (default 1h)")
    parser.add_argument("--alert-period", default="5m", metavar="DURATION", help="sliding window period (default 5m)")
    parser.add_argument("--alert-threshold-bps", type=int, default=500,
                        help="alert at this break rate, in basis points (default 500 = 5%%)")
    parser.add_argument("--alert-min-volume", type=int, default=20,
                        help="decided results a window needs before it can alert (default 20)")


def _converted(convert):
    try:
        return convert()
    except (TimestampError, ValueError) as error:
        raise UsageError(str(error)) from None
    except Exception as error:  # ZoneInfoNotFoundError and friends
        raise UsageError(f"invalid option: {error}") from None


def as_of_millis_argument(args: argparse.Namespace) -> Optional[int]:
    return _converted(lambda: parse_timestamp_millis(args.as_of, "--as-of") if args.as_of else None)


def match_policy(args: argparse.Namespace) -> MatchPolicy:
    return _converted(lambda: MatchPolicy(args.amount_tolerance_minor, parse_duration(args.settlement_sla),
                                          parse_duration(args.ledger_grace)))


def settlement_day(args: argparse.Namespace) -> SettlementDay:
    return _converted(lambda: SettlementDay(args.time_zone, args.cutoff_hour))


def trigger_policy(args: argparse.Namespace, early_firing: Optional[str] = None) -> TriggerPolicy:
    """Batch policy (event-time trigger only) unless an early firing interval is given."""
    def build():
        lateness = parse_duration(args.allowed_lateness)
        if early_firing is None:
            return TriggerPolicy.batch(lateness)
        return TriggerPolicy.streaming(parse_duration(early_firing), lateness)
    return _converted(build)


def alert_policy(args: argparse.Namespace, triggers: TriggerPolicy) -> AlertPolicy:
    return _converted(lambda: AlertPolicy(parse_duration(args.alert_window), parse_duration(args.alert_period),
                                          args.alert_threshold_bps, args.alert_min_volume, triggers))

