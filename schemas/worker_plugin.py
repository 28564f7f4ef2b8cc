"""Imported by remote SDK workers at start-up (`--beam_plugins=schemas.worker_plugin`, set by
runners/options.py): registers every record class's stable schema id (schemas/stable_schema.py)
before the worker decodes its first row.

It imports every module of `schemas/`, where every `@stable_schema` class lives (a test fails on
one defined elsewhere), so a record type in a new module is registered without being listed here.
"""
import importlib
import pkgutil

import schemas


def _import_every_schemas_module() -> None:
    for module in pkgutil.walk_packages(schemas.__path__, prefix="schemas."):
        if module.name != __name__:
            importlib.import_module(module.name)


_import_every_schemas_module()
