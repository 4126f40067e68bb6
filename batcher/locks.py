"""Per-run process locks, so two batcher processes never drive the same run at once.

Invariants: a lock is an OS advisory lock (flock) on a file in `<state>.locks/`; the OS
drops it when the process dies, even by kill -9, so a crash never leaves a stale lock.
Within one process a lock is re-entrant (counted): a command that syncs a run and then
drives it takes the same lock twice, and flock would otherwise refuse its own holder.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, ClassVar

from batcher.errors import StateLocked


def _lock_file(state_path: Path, run: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", run)[:80]
    digest = hashlib.sha256(run.encode()).hexdigest()[:8]
    return Path(f"{state_path}.locks") / f"{safe}-{digest}.lock"


class RunLock:
    """An exclusive, non-blocking lock on one run of one state database."""

    # Locks this process holds: path -> (open file, times taken).
    _held: ClassVar[dict[Path, tuple[IO[str], int]]] = {}

    def __init__(self, state_path: Path, run: str) -> None:
        self.run = run
        self.path = _lock_file(state_path, run).absolute()
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock or raise StateLocked naming the holder's pid."""
        if self.path in RunLock._held:
            fh, count = RunLock._held[self.path]
            RunLock._held[self.path] = (fh, count + 1)
            self._fh = fh
            return
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
        RunLock._held[self.path] = (fh, 1)

    def release(self) -> None:
        if self._fh is None:
            return
        fh, count = RunLock._held.pop(self.path, (self._fh, 1))
        self._fh = None
        if count > 1:
            RunLock._held[self.path] = (fh, count - 1)
            return
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def holder(state_path: Path, run: str, *, proc_locks: Path = Path("/proc/locks")) -> int | None:
    """The pid of the process driving `run` (holding its lock), or None: read from the
    kernel's lock table, so asking never takes the lock a starting run may want."""
    try:
        st = _lock_file(state_path, run).stat()
        table = proc_locks.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # "1: FLOCK  ADVISORY  WRITE 19595 fe:00:2163853 0 EOF": major:minor:inode of the file
    ours = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in table.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == ours:
            try:
                return int(parts[4])  # 0: a holder in another pid namespace (a container)
            except ValueError:
                return None
    return None


@contextmanager
def hold_runs(state_path: Path, runs: Sequence[str]) -> Iterator[None]:
    """Hold every run's lock (another process driving one of them: StateLocked)."""
    taken: list[RunLock] = []
    try:
        for run_name in runs:
            lock = RunLock(state_path, run_name)
            lock.acquire()
            taken.append(lock)
        yield
    finally:
        for lock in reversed(taken):
            lock.release()
