"""Per-run process locks, so two batcher processes never drive the same run at once.

Invariants: a lock is an OS advisory lock (flock) on a file in `<state>.locks/`; the OS
drops it when the process dies, even by kill -9, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from pathlib import Path
from types import TracebackType
from typing import IO

from batcher.errors import StateLocked


def _lock_file(state_path: Path, run: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", run)[:80]
    digest = hashlib.sha256(run.encode()).hexdigest()[:8]
    return Path(f"{state_path}.locks") / f"{safe}-{digest}.lock"


class RunLock:
    """An exclusive, non-blocking lock on one run of one state database."""

    def __init__(self, state_path: Path, run: str) -> None:
        self.run = run
        self.path = _lock_file(state_path, run)
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock or raise StateLocked naming the holder's pid."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            fh.close()
            raise StateLocked(
                f"run {self.run!r} is being driven by another batcher process (pid {holder}) "
                "on this state file; wait for it, watch it with `batcher status`, "
                "or use another --state"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
