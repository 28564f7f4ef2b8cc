"""How far a stateful key's next timer may run ahead of its earliest due time while a stream catches up
(docs/DESIGN.md 9.5): shared by the live matcher (transforms/columnar/live_flow.py) and the bank matcher of
the third leg (transforms/bank/live_flow.py)."""
from __future__ import annotations

import time
from typing import Dict, Optional, Tuple


class CatchUpStride:
    """How far past its earliest due time a shard's next timer is set.

    A timer judges everything due up to its time. While the watermark is far ahead (a catch-up over
    days of backlog), a shard's timer chain is what moves its stage's watermark: Prism holds a key's
    later records behind its pending timer, and each firing is a runner round trip. So the stride to
    the next timer grows when a catch-up shows, by either of two signs:
    * a firing that follows the last within `QUICK_SECONDS` (a runner with time to spare fires back to
      back): the stride doubles, up to `MAX_STRIDE_MILLIS` of event time;
    * a firing more than `BEHIND_MILLIS` behind the wall clock (a backlog of days; a loaded Prism takes
      seconds per round trip, which the first sign misses): the stride becomes at least 1/`BEHIND_SHARE`
      of that distance, so days of backlog take a few dozen firings whatever a round trip costs.
    Any other firing resets it to the tick. Verdicts are the same, judged at a later instant: at most
    one stride later than the watermark allows. The live matcher's stride grows to an hour; the bank
    matcher's (transforms/bank/live_flow.py, whose tick is a day) to `max_stride_millis` of its own.
    """

    MAX_STRIDE_MILLIS = 3_600_000
    QUICK_SECONDS = 0.5
    BEHIND_MILLIS = 86_400_000
    BEHIND_SHARE = 16

    def __init__(self, tick_millis: int, clock=time.monotonic, wall_millis=lambda: int(time.time() * 1000),
                 max_stride_millis: int = MAX_STRIDE_MILLIS):
        self._tick = tick_millis
        self._max_stride = max_stride_millis
        self._clock = clock
        self._wall_millis = wall_millis
        self._strides: Dict[int, Tuple[float, int]] = {}

    def fired(self, shard: int, fired_at_millis: int) -> None:
        now = self._clock()
        last, stride = self._strides.get(shard, (None, self._tick))
        behind = self._wall_millis() - fired_at_millis
        if behind > self.BEHIND_MILLIS:
            stride = max(min(stride * 2, self._max_stride), behind // self.BEHIND_SHARE)
        elif last is not None and now - last < self.QUICK_SECONDS:
            stride = min(stride * 2, self._max_stride)
        else:
            stride = self._tick
        self._strides[shard] = (now, stride)

    def next_timer(self, shard: int, due: Optional[int], clock_millis: int) -> Optional[int]:
        if due is None:
            return None
        _, stride = self._strides.get(shard, (None, self._tick))
        return max(due, clock_millis + stride) if stride > self._tick else due
