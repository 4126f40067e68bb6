"""Files next to each video: the sidecar JSON, and room for a new version's file.

Invariants: a sidecar is written atomically and never contains the API token (it is
built only from the job record, which never holds it). A newer version never overwrites
an older version's file: the old file is moved to `NAME.vN.EXT` and its record updated.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batcher.download import write_json_atomic
from batcher.models import JobRecord, OutputFile
from batcher.store import Job, Store


def iso(ts: float | None) -> str | None:
    """ISO 8601 UTC, or None."""
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts is not None else None


def sidecar_data(
    rec: JobRecord, files: list[OutputFile], finished_at: float, cost: float | None = None
) -> dict[str, Any]:
    """What a sidecar says: enough to report, compare and re-run the job."""
    return {
        "key": rec.key,
        "run": rec.run,
        "name": rec.name,
        "version": rec.version,
        "model": rec.model,
        "payload": dict(rec.payload),
        "fingerprint": rec.fingerprint,
        "sweep": dict(rec.sweep),
        "repeat": rec.repeat,
        "request_id": rec.request_id,
        "outputs": [f.__dict__ for f in files],
        "attempts": [
            a.__dict__ | {"submitted_at": iso(a.submitted_at), "finished_at": iso(a.finished_at)}
            for a in rec.attempts
        ],
        "timings": {
            "created_at": iso(rec.created_at),
            "submitted_at": iso(rec.submitted_at),
            "finished_at": iso(finished_at),
            "render_seconds": round(finished_at - rec.submitted_at, 3)
            if rec.submitted_at
            else None,
        },
        "cost_usd": cost if cost is not None else rec.cost,
        "cost_is_estimate": cost is None,
    }


def write_sidecar(
    rec: JobRecord,
    folder: Path,
    files: list[OutputFile],
    finished_at: float,
    cost: float | None = None,
) -> Path:
    """Write `<output_name>.json` next to the job's first file."""
    path = folder / f"{rec.output_name}.json"
    data = sidecar_data(rec, files, finished_at, cost)
    text = json.dumps(data, indent=2, ensure_ascii=False)
    write_json_atomic(path, text + "\n")
    return path


def make_room(store: Store, job: Job, folder: Path, rel: str) -> None:
    """If an older version of this key owns `rel`, move its file (and sidecar) aside."""
    dest = folder / rel
    if not dest.exists():
        return
    for old in store.records(job.run):
        if old.key != job.key or old.id == job.id:
            continue
        owned = [o for o in old.outputs if o.path == rel]
        if not owned:
            continue
        stem, ext = os.path.splitext(rel)
        moved = f"{stem}.v{old.version}{ext}"
        os.replace(dest, folder / moved)
        side = folder / f"{old.output_name}.json"
        if side.exists():
            os.replace(side, folder / f"{old.output_name}.v{old.version}.json")
        outputs = [
            OutputFile(
                url=o.url, path=moved if o.path == rel else o.path, size=o.size, sha256=o.sha256
            )
            for o in old.outputs
        ]
        store.set_outputs(old.id, outputs, reason=f"moved aside for version {job.version}")
        return
