"""The Kafka source's Splittable DoFn parts: one OffsetRange per partition, checkpoint-only
splitting, and a per-partition watermark estimator with an idle clock.
"""
from __future__ import annotations

from typing import Optional, Tuple

from apache_beam.io.iobase import WatermarkEstimator
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.transforms.core import RestrictionProvider, WatermarkEstimatorProvider
from apache_beam.utils.timestamp import Timestamp

UNBOUNDED_STOP = 2**63 - 1  # the end of an unbounded partition's offset range (KafkaIO: Long.MAX_VALUE)


class CheckpointOnlyOffsetTracker(OffsetRestrictionTracker):
    """OffsetRestrictionTracker that only splits to checkpoint (fraction 0).

    Like KafkaIO's UnsplittableRestrictionTracker: a partition is read by one worker at a time,
    so commits of one partition never race. (Beam Python's UnsplittableRestrictionTracker refuses
    checkpoints too, which `defer_remainder` needs.)
    """

    def try_split(self, fraction_of_remainder):
        if fraction_of_remainder != 0:
            return None
        return super().try_split(0)

    def is_bounded(self):
        return self._range.stop < UNBOUNDED_STOP


class _PartitionRestrictionProvider(RestrictionProvider):
    def initial_restriction(self, descriptor) -> OffsetRange:
        return OffsetRange(descriptor.start_offset, max(descriptor.start_offset, descriptor.stop_offset))

    def create_tracker(self, restriction: OffsetRange) -> CheckpointOnlyOffsetTracker:
        return CheckpointOnlyOffsetTracker(restriction)

    def split(self, descriptor, restriction):
        yield restriction  # no initial splitting: one reader per partition

    def restriction_size(self, descriptor, restriction: OffsetRange) -> float:
        if restriction.stop >= UNBOUNDED_STOP:
            return 1.0  # backlog unknown without a broker round trip
        return float(max(0, restriction.stop - restriction.start))

    def truncate(self, descriptor, restriction: OffsetRange):
        # On drain an unbounded partition stops; a bounded one finishes its range.
        return None if restriction.stop >= UNBOUNDED_STOP else restriction


class PartitionWatermarkEstimator(WatermarkEstimator):
    """Manual, monotonic watermark plus the partition's idle clock; state = (watermark micros, idle since)."""

    def __init__(self, state: Optional[Tuple[Optional[int], Optional[float]]]):
        watermark_micros, idle_since = state if state is not None else (None, None)
        self._watermark = None if watermark_micros is None else Timestamp(micros=watermark_micros)
        self._idle_since = idle_since

    def observe_timestamp(self, timestamp) -> None:
        pass

    def current_watermark(self) -> Optional[Timestamp]:
        return self._watermark

    def get_estimator_state(self) -> Tuple[Optional[int], Optional[float]]:
        return (None if self._watermark is None else self._watermark.micros, self._idle_since)

    def advance_to(self, timestamp: Timestamp) -> None:
        """Moves the watermark to `timestamp` unless that would move it backwards."""
        if self._watermark is None or timestamp > self._watermark:
            self._watermark = timestamp

    def mark_active(self) -> None:
        self._idle_since = None

    def idle_seconds(self, now: float) -> float:
        """Starts the idle clock if it is not running; returns how long the partition has been idle."""
        if self._idle_since is None:
            self._idle_since = now
        return now - self._idle_since


class _PartitionWatermarkEstimatorProvider(WatermarkEstimatorProvider):
    def initial_estimator_state(self, element, restriction):
        return None

    def create_watermark_estimator(self, estimator_state):
        return PartitionWatermarkEstimator(estimator_state)


RESTRICTIONS = _PartitionRestrictionProvider()
WATERMARKS = _PartitionWatermarkEstimatorProvider()
