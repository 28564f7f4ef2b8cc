"""LiveRows (transforms/columnar/live_rows.py): a take returns exactly the rows asked for, in the order asked,
across the tables appends leave and after compaction, as a take on one table of every row would."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.columnar.live_rows import CONCATENATED_TAKE_ROWS, LiveRows

SCHEMA = pa.schema([("id", pa.string()), ("n", pa.int64())])


def _table(start: int, count: int) -> pa.Table:
    return pa.table({"id": [f"r{n}" for n in range(start, start + count)], "n": list(range(start, start + count))},
                    schema=SCHEMA)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=12), st.sampled_from([0, CONCATENATED_TAKE_ROWS]),
       st.data())
def test_a_take_equals_a_take_on_one_table_of_every_row(appends, concatenated_up_to, data):
    """Both ways of taking: over every table at once (small shards) and table by table (large ones)."""
    rows, everything, start = LiveRows(SCHEMA, concatenated_up_to), [], 0
    for count in appends:
        assert rows.append(_table(start, count)) == start
        everything.append(_table(start, count))
        start += count
    whole = pa.concat_tables(everything).combine_chunks()
    if data.draw(st.booleans()):  # compacted to a sorted subset, renumbered
        live = np.asarray(sorted(data.draw(st.sets(st.integers(0, start - 1), min_size=1))), dtype=np.int64)
        rows.compact(live)
        whole = whole.take(pa.array(live))
    asked = np.asarray(data.draw(st.lists(st.integers(0, whole.num_rows - 1), max_size=60)), dtype=np.int64)
    expected = whole.take(pa.array(asked, pa.int64()))
    assert rows.take(asked).to_pylist() == expected.to_pylist()
    assert rows.take(asked, ["n"]).to_pylist() == expected.select(["n"]).to_pylist()


@pytest.mark.parametrize("concatenated_up_to", [0, CONCATENATED_TAKE_ROWS])
def test_a_row_number_outside_the_rows_is_refused(concatenated_up_to):
    rows = LiveRows(SCHEMA, concatenated_up_to)
    rows.append(_table(0, 5))
    rows.append(_table(5, 3))
    with pytest.raises(IndexError):
        rows.take(np.asarray([2, 8]))
    assert rows.take(np.asarray([], dtype=np.int64)).num_rows == 0
