"""Records the engines pass between their own steps: not a data contract of docs/DESIGN.md 3, but
encoded by Beam's RowCoder across workers and held in a Flink savepoint's state, so each keeps a
stable schema id (schemas/stable_schema.py) under the dotted name it was first defined with.

Every `@stable_schema` class lives in `schemas/`, the floor that `schemas.worker_plugin` imports
whole; tests/test_stable_schema.py fails on one defined anywhere else.
"""
from typing import NamedTuple, Optional, Tuple, Union

from schemas.records import DeadLetter, PaymentEvent, SettlementLine
from schemas.stable_schema import stable_schema


@stable_schema(name="transforms.matching.Candidate")
class Candidate(NamedTuple):
    """What the matcher needs of one side's record (ledger event or settlement line)."""

    side: str  # LEDGER | SETTLEMENT
    record_id: str  # event_id | settlement_id
    merchant_id: str
    amount_minor: int  # ledger amount | settlement gross
    currency: str
    time: int  # event_time | booked_time, epoch millis


@stable_schema(name="transforms.daily_totals.Contribution")
class Contribution(NamedTuple):
    """What one record adds to its day's totals."""

    sums: Tuple[int, ...]
    result_key: Optional[str] = None  # for results: whose break count this is
    revision: int = 0
    breaks: int = 0


@stable_schema(name="transforms.validate.Judged")
class Judged(NamedTuple):
    outcome: Union[PaymentEvent, SettlementLine, DeadLetter]
    pans_masked: int  # card numbers masked in the dead letter's reason and raw payload


@stable_schema(name="pipelines.io.kafka_config.PartitionDescriptor")
class PartitionDescriptor(NamedTuple):
    """One partition to read and its resolved offsets: the SDF's element."""

    topic: str
    partition: int
    start_offset: int
    stop_offset: int  # exclusive; UNBOUNDED_STOP when no end is known


@stable_schema(name="pipelines.io.kafka_commit.PartitionOffset")
class PartitionOffset(NamedTuple):
    """The next offset to read of a partition, after a read call."""

    topic: str
    partition: int
    next_offset: int


@stable_schema(name="pipelines.io.open_items.OpenItem")
class OpenItem(NamedTuple):
    """One store entry (the message value's fields; `key` is also the message key)."""

    key: str
    revision: int  # of the key's latest rows
    closed: bool  # expired: deleted once the run's offsets are committed
    records: Tuple[Tuple[str, str, str], ...]  # (input, source, JSON value) per unique valid record
    signature: str  # rows_signature of the latest rows
