"""Named crash points for fault-injection tests: `BATCHER_CRASH_AT=NAME[:N]` kills the
process with SIGKILL the N-th time (default 1st) execution reaches `crash_point(NAME)`.

Invariants: without the variable this is a no-op costing one dict lookup; the variable is
read on first use, not at import time. Points: before_post, after_post (answer received,
not yet committed), after_commit, mid_download (bytes written, file not complete),
before_rename, before_done, before_move (a file move recorded, not made), after_move
(made, not yet recorded as made).
"""

from __future__ import annotations

import os
import signal

_plan: tuple[str, int] | None | bool = False  # False: not read yet
_seen: dict[str, int] = {}


def _load() -> tuple[str, int] | None:
    raw = os.environ.get("BATCHER_CRASH_AT", "").strip()
    if not raw:
        return None
    name, _, count = raw.partition(":")
    return name, int(count) if count.isdigit() else 1


def crash_point(name: str) -> None:
    """Die here (SIGKILL, no cleanup) if the test asked for it."""
    global _plan
    if _plan is False:
        _plan = _load()
    if _plan is None or _plan is True or _plan[0] != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] >= _plan[1]:
        os.kill(os.getpid(), signal.SIGKILL)
