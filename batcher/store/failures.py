"""sqlite3 errors, turned into the store's own at its boundary.

Invariants:
- No sqlite3.Error leaves the store: `Store.open` translates its own, every public
  `Store` method carries `@state_errors`, and a transaction translates what fails inside
  it as a failed write. httpx's `map_httpcore_exceptions`, for SQLite.
- Each message is one line naming the file, the cause (SQLite's words and error name) and
  what to do. The sqlite3 error stays reachable as `__cause__`.

    SQLITE_BUSY / SQLITE_LOCKED        StateBusy         another program holds the lock
    SQLITE_FULL, SQLITE_READONLY,      StateWriteFailed  the change was not saved
      SQLITE_PERM, anything in a write
    SQLITE_CORRUPT / SQLITE_NOTADB     StateError        not a usable state database
    anything else (a read)             StateError
"""

from __future__ import annotations

import functools
import math
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

from batcher.errors import ConfigError, StateBusy, StateError, StateWriteFailed

BUSY_TIMEOUT = 30.0  # seconds to wait for another connection's write lock
BUSY_TIMEOUT_ENV = "BATCHER_BUSY_TIMEOUT"

F = TypeVar("F", bound=Callable[..., Any])
G = TypeVar("G", bound=Callable[..., Iterator[Any]])


class Located(Protocol):
    """What a translated method needs of its store: the file and the lock wait."""

    path: Path
    busy_timeout: float


def busy_timeout_from(env: Mapping[str, str]) -> float:
    """The lock wait in seconds: `BATCHER_BUSY_TIMEOUT` if set (tests shorten it), else 30."""
    raw = env.get(BUSY_TIMEOUT_ENV, "").strip()
    if not raw:
        return BUSY_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ConfigError(f"{BUSY_TIMEOUT_ENV}={raw!r}: expected a number of seconds (0 or more)")
    return seconds


def state_error(
    exc: sqlite3.Error, path: Path, *, writing: bool, busy_timeout: float
) -> StateError:
    """The store's own error for a sqlite3 error met on the database at `path`."""
    name = getattr(exc, "sqlite_errorname", None)
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None  # extended codes keep it low
    cause = f"{exc} [{name}]" if name else str(exc)
    lost = "; nothing of this change was saved" if writing else ""
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StateBusy(
            f"{path}: locked by another program (still locked after {busy_timeout:g} s: "
            f"{cause}){lost}; close the program holding it (an sqlite3 shell, a database "
            "browser, a backup or sync tool), then run the command again"
        )
    if primary == sqlite3.SQLITE_FULL:
        return StateWriteFailed(
            f"{path}: the disk is full ({cause}){lost}; free some space, then run the command again"
        )
    if primary in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM):
        return StateWriteFailed(
            f"{path}: cannot be written ({cause}){lost}; make the file and its folder "
            "writable, or copy it to a writable folder and use --state"
        )
    if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return StateError(
            f"{path}: not a usable state database ({cause}); restore a copy, "
            "or choose another --state"
        )
    if writing:
        return StateWriteFailed(f"{path}: a write failed ({cause}){lost}")
    return StateError(f"{path}: the state database failed ({cause})")


@contextmanager
def translated(path: Path, *, writing: bool, busy_timeout: float) -> Iterator[None]:
    """Raise any sqlite3.Error met inside as the store's own error (see `state_error`)."""
    try:
        yield
    except sqlite3.Error as exc:
        raise state_error(exc, path, writing=writing, busy_timeout=busy_timeout) from exc


def state_errors(method: F) -> F:
    """Decorate a public store method: no sqlite3.Error leaves it (a StateError does)."""

    @functools.wraps(method)
    def wrapper(self: Located, /, *args: Any, **kwargs: Any) -> Any:
        with translated(self.path, writing=False, busy_timeout=self.busy_timeout):
            return method(self, *args, **kwargs)

    wrapper.maps_sqlite = True  # type: ignore[attr-defined]  # checked by the tests
    return cast(F, wrapper)


def state_errors_streamed(method: G) -> G:
    """`state_errors` for a method that yields: the errors met while it is iterated too."""

    @functools.wraps(method)
    def wrapper(self: Located, /, *args: Any, **kwargs: Any) -> Iterator[Any]:
        with translated(self.path, writing=False, busy_timeout=self.busy_timeout):
            yield from method(self, *args, **kwargs)

    wrapper.maps_sqlite = True  # type: ignore[attr-defined]  # checked by the tests
    return cast(G, wrapper)
