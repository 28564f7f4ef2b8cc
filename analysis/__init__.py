"""Analysis helpers for the notebooks: outputs as pandas DataFrames, breaks,
money at risk, drill-downs, streaming pane replays and matplotlib charts.

Money stays in integer minor units (pandas nullable ``Int64``); it becomes
major units only as display text (`schemas.money.to_major_units`), and amounts
of different currencies are never added together.
"""
