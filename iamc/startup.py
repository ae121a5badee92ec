"""A step command's start: importing Prefect and the flow stack without the cyclic GC walking it."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def imports_without_gc() -> Iterator[None]:
    """Import the block's modules with the cyclic garbage collector paused, then freeze them.

    A step command imports Prefect, pydantic, SQLAlchemy and boto3: over a million objects,
    all alive until the process ends. With the collector on, those imports trigger hundreds of
    collections that walk the growing heap and free nothing (about 0.3 s of a step command's
    CPU time). When the block imported something, ``gc.freeze()`` then moves everything
    allocated so far to the permanent generation, so the flow's own full collections skip it
    too (Python docs, ``gc.freeze``). In a process that already ran flows (the demo) that also
    keeps whatever cyclic garbage they left uncollected; a block that imports nothing new
    freezes nothing. A collector the caller paused stays paused.
    """
    if not gc.isenabled():
        yield
        return
    modules = len(sys.modules)
    gc.disable()
    try:
        yield
    finally:
        if len(sys.modules) > modules:
            gc.freeze()
        gc.enable()
