"""The cash position of a `paybeam reconcile --bank-statements` run (issue 21, docs/DESIGN.md 3.8).

Per day and currency, the three legs side by side: what the ledger captured (daily totals, by settlement
day), what the processor settled and paid out (daily totals; payouts/ by payout day) and what reached the
bank (bank_matches/ by value day), with the breaks between each pair; cash received per merchant, currency
and day (the credits a payout took: a credit names no merchant, its payout does); and drill-downs from a
bank break to its payout and the payout's settlement lines, read back through paybeam's own readers and
validation. Money stays in integer minor units (nullable Int64) and is never added across currencies.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, List

import pandas as pd

from analysis.results import Outputs, final_panes, parquet_rows
from schemas.codecs import detect_format, read_records
from schemas.payouts import BankMatch, PayoutBalance
from schemas.records import SETTLEMENTS, SettlementLine
from schemas.rules import (
    AMBIGUOUS_BANK_MATCH,
    BALANCE_SIGN,
    PAYOUT_AMOUNT_DIFFERS,
    PAYOUT_BALANCED,
    PAYOUT_NOT_RECEIVED,
    PAYOUT_RECEIVED,
    PAYOUT_RECORD_TYPE,
    PENDING,
    UNEXPECTED_BANK_CREDIT,
)
from transforms.validate import judge_raw_record

_MONEY = {PayoutBalance: ("payout_minor", "lines_minor", "difference_minor", "line_count", "payout_line_count"),
          BankMatch: ("payout_minor", "credit_minor", "candidate_count", "difference_minor")}
# A payout's credit arrived (in full or not): its amount is cash received, on the credit's value day.
TAKEN = (PAYOUT_RECEIVED, PAYOUT_AMOUNT_DIFFERS)
BANK_BREAKS = (PAYOUT_AMOUNT_DIFFERS, PAYOUT_NOT_RECEIVED, UNEXPECTED_BANK_CREDIT, AMBIGUOUS_BANK_MATCH)


@dataclass
class BankOutputs:
    payouts: pd.DataFrame
    bank_matches: pd.DataFrame


def _frame(rows: List[dict], record_type) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(record_type._fields))
    for column in _MONEY[record_type]:
        frame[column] = frame[column].astype("Int64")
    return frame


def load_bank_outputs(output_dir: str) -> BankOutputs:
    """payouts/ and bank_matches/ of a run (empty frames when the run had no bank statements)."""
    return BankOutputs(
        payouts=_frame(parquet_rows(os.path.join(output_dir, "payouts", "*.parquet")), PayoutBalance),
        bank_matches=_frame(parquet_rows(os.path.join(output_dir, "bank_matches", "*.parquet")), BankMatch))


def _per_day(frame: pd.DataFrame, day: str, currency: str, values: dict) -> pd.DataFrame:
    """{output column: Series aligned with frame} summed per (day, currency) of frame's rows."""
    if frame.empty:
        return pd.DataFrame(columns=["day", "currency", *values])
    table = pd.DataFrame({"day": frame[day], "currency": frame[currency], **values}).dropna(subset=["day"])
    return table.groupby(["day", "currency"], as_index=False).sum()


def cash_position(outputs: Outputs, bank: BankOutputs) -> pd.DataFrame:
    """Per day and currency: ledger captured, processor settled (net) and paid out, bank received, and the
    break rows between each pair of legs (ledger-processor: results; processor-payout: payouts against their
    lines; payout-bank: bank matches). Days are each leg's own: settlement day, payout day, value day."""
    panes = final_panes(outputs.daily_totals)
    ledger = _per_day(panes, "settlement_day", "currency", {
        "ledger_captured_minor": panes["captured_minor"], "processor_settled_minor": panes["settled_net_minor"],
        "ledger_processor_breaks": panes["break_count"]})
    payouts = bank.payouts
    paid = payouts["payout_minor"].notna()
    payout_side = _per_day(payouts, "payout_date", "currency", {
        "processor_paid_out_minor": payouts["payout_minor"].where(paid, 0),
        "payout_line_breaks": (~payouts["status"].isin([PAYOUT_BALANCED, PENDING])).astype(int)})
    matches = bank.bank_matches
    with_credit = matches["credit_minor"].notna()
    received = _per_day(matches[with_credit], "value_date", "credit_currency", {
        "bank_received_minor": matches.loc[with_credit, "credit_minor"]})
    breaks = matches[matches["status"].isin(BANK_BREAKS)]
    # A payout's break counts on its payout day, a credit's own row on its value day.
    break_day = breaks["payout_date"].where(breaks["payout_id"].notna(), breaks["value_date"])
    break_currency = breaks["payout_currency"].where(breaks["payout_id"].notna(), breaks["credit_currency"])
    bank_breaks = _per_day(pd.DataFrame({"day": break_day, "currency": break_currency}), "day", "currency",
                           {"payout_bank_breaks": pd.Series(1, index=breaks.index)})
    table = ledger
    for part in (payout_side, received, bank_breaks):
        table = table.merge(part, on=["day", "currency"], how="outer")
    columns = ["ledger_captured_minor", "processor_settled_minor", "processor_paid_out_minor", "bank_received_minor",
               "ledger_processor_breaks", "payout_line_breaks", "payout_bank_breaks"]
    for column in columns:
        if column not in table:
            table[column] = 0
        table[column] = table[column].fillna(0).astype("int64")
    return table[["day", "currency", *columns]].sort_values(["day", "currency"]).reset_index(drop=True)


def cash_received(bank: BankOutputs) -> pd.DataFrame:
    """Per merchant, currency and value day: the money of the credits a payout took, and how many. Credits no
    payout took name no merchant (UNEXPECTED_BANK_CREDIT, ambiguous ones) and are left out."""
    matches = bank.bank_matches
    taken = matches[matches["status"].isin(TAKEN)]
    if taken.empty:
        return pd.DataFrame(columns=["merchant_id", "credit_currency", "value_date", "received_minor", "credits"])
    table = (taken.groupby(["merchant_id", "credit_currency", "value_date"])
             .agg(received_minor=("credit_minor", "sum"), credits=("credit_minor", "size")).reset_index())
    table["received_minor"] = table["received_minor"].astype("int64")
    return table.sort_values(["value_date", "merchant_id", "credit_currency"]).reset_index(drop=True)


def settlement_lines(paths: Iterable[str]) -> pd.DataFrame:
    """The accepted settlement lines of these files, read and validated by paybeam's own rules (the first
    copy of a re-delivered line)."""
    lines, seen = [], set()
    for path in sorted(paths):
        with open(path, "rb") as handle:
            for raw in read_records(handle, path, detect_format(path, None), SETTLEMENTS):
                outcome, _ = judge_raw_record(raw)
                if isinstance(outcome, SettlementLine) and outcome.settlement_id not in seen:
                    seen.add(outcome.settlement_id)
                    lines.append(outcome._asdict())
    frame = pd.DataFrame(lines, columns=list(SettlementLine._fields))
    for column in ("gross_minor", "fee_minor", "net_minor", "booked_time"):
        frame[column] = frame[column].astype("Int64")
    return frame


def pick_bank_break(bank: BankOutputs, status: str, index: int = 0) -> pd.Series:
    """The index-th payout row of a status, by processor and payout id."""
    rows = bank.bank_matches[(bank.bank_matches["status"] == status) & bank.bank_matches["payout_id"].notna()]
    if len(rows) <= index:
        raise LookupError(f"no payout row number {index} with status {status}")
    return rows.sort_values(["processor", "payout_id"]).iloc[index]


def payout_drill_down(row: pd.Series, bank: BankOutputs, lines: pd.DataFrame) -> pd.DataFrame:
    """A payout's settlement lines with each one's balance movement (BALANCE_SIGN x net; the PAYOUT line's
    own amount as `paid_out_minor`), then the payout's and its credit's rows for comparison."""
    mine = lines[(lines["processor"] == row["processor"]) & (lines["payout_id"] == row["payout_id"])].copy()
    is_payout = mine["record_type"] == PAYOUT_RECORD_TYPE
    mine["movement_minor"] = [pd.NA if payout else BALANCE_SIGN[kind] * int(net)
                              for kind, net, payout in zip(mine["record_type"], mine["net_minor"], is_payout)]
    mine["paid_out_minor"] = mine["gross_minor"].where(is_payout)
    columns = ["settlement_id", "record_type", "processor_reference", "gross_minor", "fee_minor", "net_minor",
               "movement_minor", "paid_out_minor", "settlement_date"]
    return mine[columns].astype({"movement_minor": "Int64", "paid_out_minor": "Int64"}).sort_values(
        ["record_type", "settlement_id"]).reset_index(drop=True)


def payout_summary(row: pd.Series, bank: BankOutputs) -> pd.DataFrame:
    """The payout against its lines (payouts/) beside its bank match, one column each."""
    payouts = bank.payouts
    balance = payouts[(payouts["processor"] == row["processor"]) & (payouts["payout_id"] == row["payout_id"])]
    return pd.DataFrame({"payout vs lines": balance.iloc[0] if len(balance) else pd.Series(dtype=object),
                         "payout vs bank": row})
