"""Stable Beam schema ids for paybeam's NamedTuple records (docs/DESIGN.md 7).

Beam gives each NamedTuple a random schema id (uuid4) the first time it builds its RowCoder, per
process. A remote SDK worker (Flink, any portable runner) decodes a row into the user's class only
if its own schema registry maps the pipeline's id to that class; otherwise it makes a generated
`BeamSchema_<id>` tuple, and every `isinstance(record, PaymentEvent)` in the transforms is False.
So each record class gets an id derived from its name (a name-based UUID) and is registered when its module is
imported; remote workers import `schemas.worker_plugin` at start-up (`--beam_plugins`, set by
runners/options.py) before they decode anything. Stable ids also keep a Flink savepoint's state
coders equal to those of the job that restores it.
"""
import uuid
from typing import Callable, Optional, TypeVar, Union

from apache_beam.typehints.row_type import _BEAM_SCHEMA_ID
from apache_beam.typehints.schemas import named_tuple_to_schema

T = TypeVar("T", bound=type)
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "paybeam.schemas")


def stable_schema(cls: Optional[T] = None, *, name: Optional[str] = None) -> Union[T, Callable[[T], T]]:
    """Class decorator: a name-derived schema id, registered with Beam's schema registry now.

    `name` is the dotted name the id derives from, by default the class's own. A class that moves
    to another module keeps the name it had (`@stable_schema(name="old.module.Class")`), so its id,
    and with it every Flink savepoint holding its state, stays valid.
    """
    def register(record_class: T) -> T:
        dotted = name or f"{record_class.__module__}.{record_class.__qualname__}"
        # A UUID, because Java runners parse schema ids as UUIDs; version 5 is derived from the name.
        setattr(record_class, _BEAM_SCHEMA_ID, str(uuid.uuid5(_NAMESPACE, f"{dotted}:v1")))
        named_tuple_to_schema(record_class)
        return record_class

    return register if cls is None else register(cls)
