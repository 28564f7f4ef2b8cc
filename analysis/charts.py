"""Matplotlib chart builders. Each returns a `matplotlib.figure.Figure` (no pyplot state),
which Jupyter displays when it is a cell's value.

Amounts are plotted in major units of their own currency (a display conversion
only); each currency gets its own panel, so currencies are never mixed on one axis.
"""
from __future__ import annotations

from typing import Optional, Sequence

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from analysis.results import breaks_per_day, totals_per_day
from schemas.money import currency_exponent
from transforms.daily_totals import SettlementDay

STATUS_COLORS = {
    "AMOUNT_MISMATCH": "#d62728",
    "CURRENCY_MISMATCH": "#9467bd",
    "MISSING_SETTLEMENT": "#ff7f0e",
    "UNEXPECTED_SETTLEMENT": "#8c564b",
    "DUPLICATE_SETTLEMENT": "#e377c2",
    "DUPLICATE_LEDGER_EVENT": "#7f7f7f",
}


def _major(values, currency: str) -> list:
    scale = 10 ** currency_exponent(currency)
    return [int(v) / scale for v in values]


def daily_totals_chart(daily_totals: pd.DataFrame,
                       columns: Sequence[str] = ("captured_minor", "settled_gross_minor", "settled_net_minor"),
                       currencies: Optional[Sequence[str]] = None) -> Figure:
    """Per settlement day, the last panes' totals summed over merchants; one panel per currency."""
    return _lines_per_currency(totals_per_day(daily_totals), "settlement_day", columns, currencies,
                               "Daily totals per settlement day (major units, last pane)", "no daily totals to chart")


def _lines_per_currency(table: pd.DataFrame, day_column: str, columns: Sequence[str],
                        currencies: Optional[Sequence[str]], title: str, when_empty: str) -> Figure:
    """One line per column over the days, one panel per currency, in major units of that currency."""
    currencies = list(currencies) if currencies is not None else sorted(table["currency"].unique())
    if not currencies:
        raise ValueError(when_empty)
    figure = Figure(figsize=(10, 2.6 * len(currencies)), layout="constrained")
    axes = figure.subplots(len(currencies), 1, sharex=True, squeeze=False)[:, 0]
    days = sorted(table[day_column].unique())
    for axis, currency in zip(axes, currencies):
        rows = table[table["currency"] == currency].set_index(day_column).reindex(days, fill_value=0)
        for column in columns:
            axis.plot(days, _major(rows[column], currency), marker="o", label=column.replace("_minor", ""))
        axis.set_ylabel(currency)
        axis.grid(alpha=0.3)
        axis.legend(loc="upper left", fontsize="small")
    axes[-1].tick_params(axis="x", labelrotation=45)
    figure.suptitle(title)
    return figure


def break_counts_chart(results: pd.DataFrame, settlement_day: SettlementDay = SettlementDay()) -> Figure:
    """Break rows per settlement day, stacked by status."""
    table = breaks_per_day(results, settlement_day)
    figure = Figure(figsize=(10, 3.5), layout="constrained")
    axis = figure.subplots()
    if table.empty:
        axis.text(0.5, 0.5, "no breaks", ha="center", va="center", transform=axis.transAxes)
        return figure
    bottom = [0] * len(table)
    for status in table.columns:
        counts = [int(v) for v in table[status]]
        axis.bar(list(table.index), counts, bottom=bottom, label=status, color=STATUS_COLORS.get(status))
        bottom = [b + c for b, c in zip(bottom, counts)]
    axis.set_ylabel("break rows")
    axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    axis.tick_params(axis="x", labelrotation=45)
    axis.legend(fontsize="small", ncols=2)
    axis.set_title("Breaks per settlement day (day of the ledger event, else of the settlement line)")
    return figure


def pane_evolution_chart(panes: pd.DataFrame, currency: str,
                         columns: Sequence[str] = ("captured_minor", "settled_gross_minor", "settled_net_minor"),
                         title: str = "One settlement day, pane by pane") -> Figure:
    """How a day's totals evolve over its panes (a `panes.pane_table`); break count on a second axis."""
    figure = Figure(figsize=(10, 3.8), layout="constrained")
    axis = figure.subplots()
    labels = [f"{index}\n{timing}" for index, timing in zip(panes["pane_index"], panes["pane_timing"])]
    positions = list(range(len(panes)))
    for column in columns:
        axis.step(positions, _major(panes[column], currency), where="mid", marker="o",
                  label=column.replace("_minor", ""))
    axis.set_xticks(positions, labels)
    axis.set_ylabel(f"{currency} (major units)")
    axis.grid(alpha=0.3)
    if "break_count" in panes.columns:
        other = axis.twinx()
        other.bar(positions, [int(v) for v in panes["break_count"]], alpha=0.2, color="red", label="break_count")
        other.set_ylabel("break_count")
        other.yaxis.set_major_locator(MaxNLocator(integer=True))
        other.set_ylim(0, max([int(v) for v in panes["break_count"]] + [1]) + 1)
        other.legend(loc="lower right", fontsize="small")
    axis.legend(loc="upper left", fontsize="small")
    axis.set_title(title)
    return figure


CASH_LEGS = ("ledger_captured_minor", "processor_settled_minor", "processor_paid_out_minor", "bank_received_minor")


def cash_position_chart(table: pd.DataFrame, currencies: Optional[Sequence[str]] = None) -> Figure:
    """`analysis.cash.cash_position`: the four legs per day, one panel per currency (major units)."""
    return _lines_per_currency(table, "day", CASH_LEGS, currencies,
                               "Cash position per day: ledger, processor, bank (major units)",
                               "no cash position to chart")
