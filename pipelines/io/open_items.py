"""The open-items store's entries (docs/DESIGN.md 5): what a bounded stream run carries to the next.

The judging (which rows a run writes, which entries it stores, when a key closes) is
`transforms/open_items.py`; this module is only the store's encoding:

* Store: a compacted topic next to the group's committed offsets (default
  `<group>.open-items`), one entry per reconciliation key, value = JSON {revision, closed,
  records: [[input, source, value]], signature} (the key's unique valid records as JSON values,
  and a hash of its latest rows).
* At start the launcher reads the store (latest entry per key; a tombstone deletes) and the
  carried records join the topics' records as input.
* Before the offsets are committed (the store is one more output the commit waits for)
  every key of the run gets its entry; expired keys are deleted (a tombstone) after the commit.
  If a run fails before committing, the next run re-reads its input and the entries hold
  what they held.
"""

import json
from typing import Dict, Iterable, List, Optional, Tuple

from schemas.internal_records import OpenItem
from schemas.kafka_values import raw_record_from_message
from schemas.records import PAYMENTS, SETTLEMENTS, RawRecord

__all__ = ["carried_records", "decode_item", "encode_item", "latest_items"]


def encode_item(item: OpenItem) -> bytes:
    return json.dumps({"key": item.key, "revision": item.revision, "closed": item.closed,
                       "records": [list(record) for record in item.records], "signature": item.signature},
                      separators=(",", ":")).encode()


def decode_item(value: bytes) -> OpenItem:
    fields = json.loads(value)
    return OpenItem(fields["key"], int(fields["revision"]), bool(fields["closed"]),
                    tuple(tuple(record) for record in fields["records"]), str(fields["signature"]))


def latest_items(messages: Iterable[Tuple[Optional[bytes], Optional[bytes]]]) -> Dict[str, OpenItem]:
    """The store as of its last message per key, from (key, value) pairs in offset order per partition."""
    items: Dict[str, OpenItem] = {}
    for key, value in messages:
        if key is None:
            continue
        if value is None:
            items.pop(key.decode(), None)  # a tombstone: the key was decided and committed
        else:
            items[key.decode()] = decode_item(value)
    return items


def carried_records(items: Dict[str, OpenItem]) -> Dict[str, List[RawRecord]]:
    """The records of the carried keys, per input, as RawRecords like the topics' own."""
    carried: Dict[str, List[RawRecord]] = {PAYMENTS: [], SETTLEMENTS: []}
    for item in items.values():
        for input_name, source, value in item.records:
            carried[input_name].append(raw_record_from_message(input_name, source, value.encode(), "json"))
    return carried
