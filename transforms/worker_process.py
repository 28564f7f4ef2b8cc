"""Steps that ask for a Python worker process of their own (docs/DESIGN.md 10.13).

A runner fuses steps into a stage only within one SDK environment, and starts a worker (harness) per
environment. A resource hint gives the steps it marks an environment of their own (Beam clones the default
one with the hint added), so a runner whose workers are processes (EXTERNAL, PROCESS, DOCKER; paybeam's
local pool, runners/worker_pool.py) runs them in a second process: the live risk stream's deciding step
uses the second core instead of sharing the reader's (one Python process runs one core at a time).
The hint means nothing else: no runner reads it, and LOOPBACK workers (threads of one process) gain
nothing from it, so the pipelines mark steps only when their workers are processes.
"""
from __future__ import annotations

from typing import Optional

import apache_beam as beam
from apache_beam.transforms.resources import ResourceHint

DECIDING = "deciding"  # the live risk stream's deciding step, its decision messages and their sink


class WorkerProcessHint(ResourceHint):
    urn = "paybeam:resource_hint:worker_process:v1"


_HINT = "paybeam_worker_process"
ResourceHint.register_resource_hint(_HINT, WorkerProcessHint)


def in_worker_process(transform: beam.PTransform, process: Optional[str]) -> beam.PTransform:
    """`transform` (and every step inside it) in the worker process named `process`; None: where it would be."""
    return transform if process is None else transform.with_resource_hints(**{_HINT: process})
