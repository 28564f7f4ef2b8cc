"""Split a generated dataset into daily partitions, the layout `paybeam backfill` reads.

    split_by_date("data", "in")  ->  ["2026-01-05", "2026-01-06", ...]

    in/payments/2026-01-05/part.csv      payment events whose event_time falls on that day
    in/settlements/2026-01-05/part.csv   settlement lines whose booked_time falls on that day

so that `--payments 'in/payments/{date}/*.csv' --settlements 'in/settlements/{date}/*.csv'`
match one partition per date. The day is the UTC calendar day of the parsed
instant (backfill's default settlement day: `--time-zone UTC --cutoff-hour 0`).
A row whose time does not parse (the generator's malformed rows: "yesterday",
a timestamp without offset, a missing value) goes to the first date, so it
still reaches the pipeline's validation and dead letters exactly once.

Every returned date gets both a payments and a settlements partition (only the
header when nothing happened on that side that day): backfill requires a date's
own partition to exist for both inputs.
"""
from __future__ import annotations

import csv
import glob
import os
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

from schemas.records import PAYMENT_FIELDS, PAYMENTS, SETTLEMENT_FIELDS, SETTLEMENTS
from schemas.timestamps import TimestampError, format_timestamp, parse_timestamp_millis

PART_FILE = "part.csv"

# input name -> (the canonical header, the column that decides the partition)
_INPUTS = {
    PAYMENTS: (tuple(PAYMENT_FIELDS), "event_time"),
    SETTLEMENTS: (tuple(SETTLEMENT_FIELDS), "booked_time"),
}


def _day_of(text: str) -> Optional[str]:
    try:
        return format_timestamp(parse_timestamp_millis(text))[:10]
    except (TimestampError, ValueError, OverflowError):
        return None


def _read_canonical(dataset_dir: str, name: str) -> List[List[str]]:
    header, _ = _INPUTS[name]
    paths = sorted(glob.glob(os.path.join(glob.escape(dataset_dir), name, "*.csv")))
    if not paths:
        raise ValueError(f"no {name} CSV files in {os.path.join(dataset_dir, name)} "
                         f"(split_by_date needs a dataset generated with fmt='csv')")
    rows: List[List[str]] = []
    for path in paths:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            found = next(reader, None)
            if found is None or tuple(found) != header:
                raise ValueError(f"{path} is not a canonical {name} CSV file (header {found!r}); "
                                 f"vendor reports cannot be split by date")
            rows.extend(reader)
    return rows


def split_by_date(dataset_dir: str, out_dir: str) -> List[str]:
    """Writes `out_dir/{payments,settlements}/<date>/part.csv` from the dataset's canonical CSV files.

    Returns the sorted dates. Rows keep their order within a partition (file
    order, files in name order); the header is repeated in every part. Raises
    ValueError when the dataset has no canonical CSV files, a CSV file is not
    canonical (e.g. a vendor report), or no row has a parseable time.
    """
    tagged: Dict[str, List[tuple]] = {}
    for name, (header, time_column) in _INPUTS.items():
        column = header.index(time_column)
        tagged[name] = [(_day_of(row[column]) if len(row) > column else None, row)
                        for row in _read_canonical(dataset_dir, name)]
    dates = sorted({day for rows in tagged.values() for day, _ in rows if day is not None})
    if not dates:
        raise ValueError(f"no row of {dataset_dir} has a parseable time; nothing to partition by")
    for name, (header, _) in _INPUTS.items():
        by_day: Dict[str, List[Sequence[str]]] = defaultdict(list)
        for day, row in tagged[name]:
            by_day[day or dates[0]].append(row)  # a time that does not parse: the first date
        for day in dates:
            folder = os.path.join(out_dir, name, day)
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, PART_FILE), "w", encoding="utf-8", newline="") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(header)
                writer.writerows(by_day[day])
    return dates
