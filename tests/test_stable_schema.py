"""Record schemas that a Java runner can decode and a remote worker maps back to paybeam's classes
(schemas/stable_schema.py; docs/DESIGN.md 7, Flink)."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid

from apache_beam.coders import RowCoder
from apache_beam.typehints.schemas import PYTHON_ANY_URN, named_tuple_to_schema

import schemas.worker_plugin  # noqa: F401  (registers every record class)
from apache_beam.typehints.schema_registry import SCHEMA_REGISTRY
from schemas.records import DailyTotal, PaymentEvent, ReconciliationResult, SettlementLine
from tests.stream_helpers import REPO

# Judged.outcome is a union of record types: no schema type expresses it, so it stays opaque.
OPAQUE_FIELDS = {("Judged", "outcome")}


def _paybeam_classes():
    return [typing for typing, _ in SCHEMA_REGISTRY.by_id.values()
            if typing.__module__.split(".")[0] in ("schemas", "transforms", "pipelines")]


def test_every_record_field_has_a_real_schema_type():
    classes = _paybeam_classes()
    assert {PaymentEvent, SettlementLine, ReconciliationResult, DailyTotal} <= set(classes)
    for cls in classes:
        for field in named_tuple_to_schema(cls).fields:
            opaque = field.type.WhichOneof("type_info") == "logical_type" and field.type.logical_type.urn == PYTHON_ANY_URN
            assert not opaque or (cls.__name__, field.name) in OPAQUE_FIELDS, f"{cls.__name__}.{field.name} is opaque"


def test_schema_ids_are_name_based_uuids_the_same_in_every_process():
    ids = {cls.__qualname__: named_tuple_to_schema(cls).id for cls in _paybeam_classes()}
    for schema_id in ids.values():
        assert uuid.UUID(schema_id).version == 5  # Java runners parse schema ids as UUIDs
    script = ("import json, schemas.worker_plugin; from apache_beam.typehints.schema_registry import SCHEMA_REGISTRY; "
              "print(json.dumps({t.__qualname__: i for i, (t, _) in SCHEMA_REGISTRY.by_id.items()}))")
    other = json.loads(subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, capture_output=True,
                                      text=True).stdout)
    assert {name: other[name] for name in ids} == ids


def test_a_row_decodes_into_the_record_class_from_the_schema_alone():
    """What a remote worker does: build the coder from the pipeline's schema proto, decode."""
    event = PaymentEvent("e1", "p1", "CAPTURED", "stripe", "ch_1", "m1", 1250, "EUR", 1_700_000_000_000)
    coder = RowCoder(named_tuple_to_schema(PaymentEvent))
    decoded = RowCoder.from_payload(coder.schema.SerializeToString()).decode(coder.encode(event))
    assert type(decoded) is PaymentEvent and decoded == event
