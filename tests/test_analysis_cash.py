"""analysis/cash.py: the cash position adds up to the outputs it reads, per leg, and never across currencies."""
from __future__ import annotations

import pandas as pd

from analysis import cash
from analysis.results import Outputs
from schemas.payouts import BankMatch, PayoutBalance
from schemas.records import DailyTotal

T = 1_767_571_200_000  # 2026-01-05T00:00Z


def _total(day: str, currency: str, captured: int, net: int, breaks: int, pane: int = 0) -> dict:
    return DailyTotal("m1", currency, day, T, T, captured, 0, 0, 1, net, 0, net, 0, 0, 1, breaks, "ON_TIME", pane,
                      True)._asdict()


def _payout(payout_id: str, day, amount, status: str, currency: str = "EUR") -> dict:
    return PayoutBalance("stripe", payout_id, "m1", currency, amount, amount, 0, 1, 1, day, status)._asdict()


def _match(payout_id, day, credit, value_date, status: str, currency: str = "EUR") -> dict:
    return BankMatch("stripe" if payout_id else None, payout_id, "m1" if payout_id else None,
                     currency if payout_id else None, 100 if payout_id else None, day, "r1" if credit else None,
                     "NL00" if credit else None, currency if credit is not None else None, credit, value_date,
                     None, 1, None, status)._asdict()


def _outputs():
    daily = pd.DataFrame([_total("2026-01-05", "EUR", 500, 400, 1), _total("2026-01-05", "EUR", 999, 999, 9, -1),
                          _total("2026-01-05", "USD", 70, 60, 0)])
    outputs = Outputs(results=pd.DataFrame(), daily_totals=daily, dead_letters=pd.DataFrame())
    bank = cash.BankOutputs(
        payouts=cash._frame([_payout("po_1", "2026-01-05", 100, "PAYOUT_BALANCED"),
                             _payout("po_2", "2026-01-05", 50, "PAYOUT_LINES_DIFFER"),
                             _payout("po_3", None, None, "LINES_WITHOUT_PAYOUT")], PayoutBalance),
        bank_matches=cash._frame([_match("po_1", "2026-01-05", 100, "2026-01-06", "PAYOUT_RECEIVED"),
                                  _match("po_2", "2026-01-05", 40, "2026-01-06", "PAYOUT_AMOUNT_DIFFERS"),
                                  _match(None, None, 7, "2026-01-06", "UNEXPECTED_BANK_CREDIT", "USD")], BankMatch))
    return outputs, bank


def test_each_leg_sums_its_own_output_on_its_own_day():
    position = cash.cash_position(*_outputs()).set_index(["day", "currency"])
    eur5, eur6, usd6 = position.loc[("2026-01-05", "EUR")], position.loc[("2026-01-06", "EUR")], \
        position.loc[("2026-01-06", "USD")]
    # The last pane only; payouts by payout day; credits by value day.
    assert (eur5["ledger_captured_minor"], eur5["processor_settled_minor"], eur5["ledger_processor_breaks"]) == \
        (500, 400, 1)
    assert (eur5["processor_paid_out_minor"], eur5["payout_line_breaks"], eur5["payout_bank_breaks"]) == (150, 1, 1)
    assert (eur6["bank_received_minor"], usd6["bank_received_minor"], usd6["payout_bank_breaks"]) == (140, 7, 1)
    assert position.loc[("2026-01-05", "USD")]["ledger_captured_minor"] == 70
    assert all(str(dtype) == "int64" for dtype in position.dtypes)


def test_cash_received_counts_only_credits_a_payout_took():
    table = cash.cash_received(_outputs()[1])
    assert table.to_dict("records") == [{"merchant_id": "m1", "credit_currency": "EUR", "value_date": "2026-01-06",
                                         "received_minor": 140, "credits": 2}]
