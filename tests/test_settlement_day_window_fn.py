"""settlement_day_window_fn: Beam's standard FixedWindows wherever it gives the same settlement days
(zones with a fixed UTC offset), the custom SettlementDayWindows elsewhere (docs/DESIGN.md 7: the
Flink runner's Java side rejects Python-defined WindowFns)."""
from __future__ import annotations

import random

import pytest
from apache_beam.transforms.window import FixedWindows
from apache_beam.utils.timestamp import Timestamp

from transforms.daily_totals import SettlementDay, SettlementDayWindows, settlement_day_window_fn


class _Context:
    def __init__(self, millis: int):
        self.timestamp = Timestamp(micros=millis * 1000)


@pytest.mark.parametrize("zone,cutoff", [("UTC", 0), ("UTC", 6), ("GMT", 23), ("Etc/GMT-2", 6),
                                         ("Etc/GMT+5", 0), ("Etc/GMT+12", 13)])
def test_fixed_offset_zones_get_fixed_windows_with_the_same_days(zone, cutoff):
    settlement_day = SettlementDay(zone, cutoff)
    window_fn = settlement_day_window_fn(settlement_day)
    assert isinstance(window_fn, FixedWindows)
    moments = random.Random(7).sample(range(0, 4_102_444_800_000), 3000)  # 1970..2100
    for millis in moments:
        start, end, _ = settlement_day.bounds(millis)
        (window,) = window_fn.assign(_Context(millis))
        assert (window.start, window.end) == (Timestamp(micros=start * 1000), Timestamp(micros=end * 1000)), millis


@pytest.mark.parametrize("zone", ["Europe/Amsterdam", "America/New_York", "Australia/Sydney"])
def test_zones_with_dst_keep_the_custom_window_fn(zone):
    window_fn = settlement_day_window_fn(SettlementDay(zone, 6))
    assert isinstance(window_fn, SettlementDayWindows)
