"""Whether a state database can be written where it is, and how to read it when it cannot.

Invariants:
- batcher writes beside its database (SQLite's -wal and -shm files, the `.locks` folder),
  so a writer needs the file and its folder writable. When they are not, the writer is
  refused before SQLite touches anything, with the cause and the remedy: never "not a
  usable state database", which would invite deleting a good file.
- A reader of a database it cannot write gets a read-only connection that creates
  nothing and changes nothing.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from batcher.errors import StateWriteFailed


def why_unwritable(path: Path) -> str | None:
    """Why batcher could not write the database at `path` (None: it can)."""
    folder = path.parent
    for target, what in ((folder, f"its folder {folder}"), (path, "the file")):
        if target.exists() and not os.access(target, os.W_OK):
            ro_fs = _on_read_only_fs(target)
            return f"{what} is {'on a read-only file system' if ro_fs else 'not writable'}"
    return None


def _on_read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def refuse_unwritable(path: Path, *, creating: bool) -> None:
    """StateWriteFailed unless batcher can write (or create) the database at `path`."""
    start = f"{path}: cannot create the state database" if creating else f"{path}: cannot write"
    if creating:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateWriteFailed(
                f"{start}: cannot make the folder {exc.filename} ({exc.strerror}); "
                "choose a writable --state"
            ) from exc
    why = why_unwritable(path)
    if why is None:
        return
    if creating:
        raise StateWriteFailed(f"{start}: {why}; choose a writable --state")
    raise StateWriteFailed(
        f"{start}: {why} (batcher keeps its journal and locks beside the state database); "
        f"make it writable, or copy {path.name} to a writable folder and use --state; "
        "the file was left untouched"
    )


def read_only_connection(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """A connection that only reads, creating no file beside the database."""
    # In a folder nobody can write, and with no -wal file, every change is in the main
    # file and none can come: open it immutable, so SQLite needs no -shm file either.
    # Otherwise read-only mode reads through the -wal file as any reader would.
    immutable = not Path(f"{path}-wal").exists() and not os.access(path.parent, os.W_OK)
    uri = f"{path.resolve().as_uri()}?mode=ro{'&immutable=1' if immutable else ''}"
    conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout, isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn
