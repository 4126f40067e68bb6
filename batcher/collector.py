"""Python's cyclic garbage collector, paused while a command builds many objects that all
live until it is done (a job file's jobs, a report's records): it would walk them again
and again, finding nothing to free (a third of loading a 100,000-job file, a seventh of
its HTML report).

Invariants: the collector is on again after the block if, and only if, it was on before;
objects are still freed by reference counting while it is paused.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused"]


@contextmanager
def paused() -> Iterator[None]:
    """The collector off for the block, then back as it was."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
