"""Charts of a backfill output directory (from `analysis.backfill.per_date_table`), in the style of
`analysis.charts`: each returns a `matplotlib.figure.Figure` (no pyplot state), which Jupyter displays
when it is a cell's value. Counts only: no amounts, so no currencies to keep apart.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from analysis.backfill import break_status_columns
from analysis.charts import STATUS_COLORS


def break_trend_chart(dates: pd.DataFrame) -> Figure:
    """Break rows per backfill date, stacked by status (the date's own keys, from its manifest)."""
    statuses = break_status_columns(dates)
    figure = Figure(figsize=(10, 3.5), layout="constrained")
    axis = figure.subplots()
    days = list(dates["date"])
    if not days:
        raise ValueError("no backfill dates to chart")
    bottom = [0] * len(days)
    for status in statuses:
        counts = [int(v) for v in dates[status]]
        axis.bar(days, counts, bottom=bottom, label=status, color=STATUS_COLORS.get(status))
        bottom = [b + c for b, c in zip(bottom, counts)]
    if not any(bottom):
        axis.text(0.5, 0.5, "no breaks", ha="center", va="center", transform=axis.transAxes)
    else:
        axis.set_ylim(0, max(bottom) * 1.35)  # room for the legend above the bars
        axis.legend(fontsize="small", ncols=2, loc="upper right")
    axis.set_ylabel("break rows")
    axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    axis.tick_params(axis="x", labelrotation=45)
    axis.set_title("Breaks per backfill date, by status")
    return figure


def rows_per_date_chart(dates: pd.DataFrame,
                        columns: Sequence[str] = ("results_rows", "daily_totals_rows", "dead_letters")) -> Figure:
    """Rows each date published, one group of bars per date (one bar per data file)."""
    days = list(dates["date"])
    if not days:
        raise ValueError("no backfill dates to chart")
    figure = Figure(figsize=(10, 3.5), layout="constrained")
    axis = figure.subplots()
    width = 0.8 / len(columns)
    for index, column in enumerate(columns):
        positions = [day + (index - (len(columns) - 1) / 2) * width for day in range(len(days))]
        bars = axis.bar(positions, [int(v) for v in dates[column]], width=width, label=column)
        axis.bar_label(bars, fontsize="x-small")
    axis.set_xticks(range(len(days)), days)
    axis.set_ylabel("rows")
    axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    axis.tick_params(axis="x", labelrotation=45)
    axis.legend(fontsize="small")
    axis.set_title("Rows published per backfill date")
    return figure
