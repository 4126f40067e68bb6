"""Row types of the state store and the constants its writers share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batcher.models import Job as Job  # re-exported: the row type of `jobs`

# Columns a caller may set through transition(); anything else is refused.
SETTABLE = frozenset(
    {
        "request_id",
        "status_url",
        "result_url",
        "cancel_url",
        "error",
        "outputs",
        "cost",
        "submitted_at",
        "finished_at",
        "attempt_floor",
    }
)
REMOVED = "removed from the job file before it was sent"
# How a recorded file move ended: carried out, no such file, or the file held other bytes.
MOVE_OUTCOMES = frozenset({"done", "missing", "mismatch"})


@dataclass(frozen=True)
class RunInfo:
    """A run's settings as recorded when it was last started."""

    name: str
    model: str
    job_file: str | None
    out_dir: str
    options: Mapping[str, Any]


@dataclass(frozen=True)
class SyncResult:
    """What syncing a job file into the store did, by job key."""

    new: tuple[str, ...]
    changed: tuple[str, ...]
    unchanged: tuple[str, ...]
    removed: tuple[str, ...] = ()  # pending jobs cancelled because the file dropped them


@dataclass(frozen=True)
class FileMove:
    """A recorded rename in a run's output folder, not yet carried out."""

    id: int
    job_id: int
    key: str  # of the job version whose file moves (a sidecar must name it)
    version: int
    kind: str  # "output" or "sidecar"
    src: str  # relative to the run's output folder
    dst: str
    size: int | None  # an output's expected bytes
    sha256: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> FileMove:
        return cls(
            **{k: row[k] for k in ("id", "job_id", "key", "version", "kind", "src", "dst")},
            size=row["size"],
            sha256=row["sha256"],
        )
