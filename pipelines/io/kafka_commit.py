"""Committing read offsets to the consumer group (docs/DESIGN.md 5)."""
from __future__ import annotations

import logging

_LOGGER = logging.getLogger("pipelines.io.kafka_source")


class _CommitOnFinalize:
    """A bundle-finalization callback; a failed commit is logged (the records are re-read: at-least-once)."""

    def __init__(self, reader, topic: str, partition: int, next_offset: int):
        self._reader, self._topic, self._partition, self._next_offset = reader, topic, partition, next_offset

    def __call__(self) -> None:
        try:
            self._reader.commit(self._topic, self._partition, self._next_offset)
        except Exception:  # pylint: disable=broad-except
            _LOGGER.warning("could not commit %s/%s@%s to group %s; those records will be read again",
                            self._topic, self._partition, self._next_offset, self._reader._config.group_id,
                            exc_info=True)

