"""What lands in a run's output folder: each job's files under their names, the sidecar
JSON next to them, and room made for a new version's file.

Invariants: a sidecar is written atomically and never contains the API token (it is
built only from the job record, which never holds it). File names come from
`store.placement`: `NAME.mp4`, `NAME~2.mp4`... (`~` never appears in an output name, so
no job's own file can have such a name). A newer version never overwrites an older
version's file: the old file is moved to `NAME~vN.EXT` and its record updated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batcher.download import download, part_path, suffix_for, write_json_atomic
from batcher.models import Attempt, JobRecord, OutputFile
from batcher.store import Job, Store, output_path, version_stem

if TYPE_CHECKING:  # the client is passed through to download()
    import httpx


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
        "attempts": [_attempt(a, a is rec.attempts[-1], finished_at) for a in rec.attempts],
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


def _attempt(a: Attempt, last: bool, finished_at: float) -> dict[str, Any]:
    # The sidecar is written just before the `done` commit that closes the last attempt:
    # say here what that commit will say.
    data = a.__dict__ | {"submitted_at": iso(a.submitted_at), "finished_at": iso(a.finished_at)}
    if last:
        data |= {"outcome": "succeeded", "finished_at": iso(finished_at)}
    return data


def write_sidecar(
    rec: JobRecord,
    folder: Path,
    files: list[OutputFile],
    finished_at: float,
    cost: float | None = None,
    *,
    stem: str | None = None,
) -> Path:
    """Write `<stem>.json` (default: the output name) next to the job's first file."""
    path = folder / f"{stem or rec.output_name}.json"
    data = sidecar_data(rec, files, finished_at, cost)
    text = json.dumps(data, indent=2, ensure_ascii=False)
    write_json_atomic(path, text + "\n")
    return path


async def land_files(
    store: Store,
    http: httpx.AsyncClient,
    job: Job,
    folder: Path,
    urls: Sequence[str],
    *,
    max_bytes: int,
) -> list[OutputFile]:
    """Download every output of a job version under its names (NAME.mp4, NAME~2.mp4...)."""
    files: list[OutputFile] = []
    stem = file_stem(job)
    for i, url in enumerate(urls):
        rel = output_path(stem, i, suffix_for(url))
        if job.current:
            make_room(store, job, folder, rel)
        got = await download(http, url, folder / rel, max_bytes=max_bytes, tag=job.request_id or "")
        files.append(OutputFile(url=strip_query(url), path=rel, size=got.size, sha256=got.sha256))
        if job.attempts > 1:  # bytes of earlier renders of this job are no use now
            for a in store.attempts(job.id):
                if a.request_id and a.request_id != job.request_id:
                    part_path(folder / rel, a.request_id).unlink(missing_ok=True)
    return files


def strip_query(url: str) -> str:
    """Signed URLs carry short-lived credentials: keep only the stable part."""
    return url.split("?", 1)[0]


def file_stem(job: Job) -> str:
    """The file name stem of a job version: superseded versions carry `~vN`."""
    return version_stem(job.output_name, job.version, current=job.current)


def make_room(store: Store, job: Job, folder: Path, rel: str) -> None:
    """If an older version of this key owns `rel`, move its file (and sidecar) aside.

    The record is updated before the file moves, and a move found half done (record
    says `~vN`, the file is still at `rel`) is finished, so a crash at any point here
    leaves every file findable from its record.
    """
    dest = folder / rel
    if not dest.exists():
        return
    stem, ext = os.path.splitext(rel)
    for old in store.records(job.run):
        if old.key != job.key or old.id == job.id:
            continue
        moved = f"{stem}~v{old.version}{ext}"
        owns = any(o.path == rel for o in old.outputs)
        half_done = any(o.path == moved for o in old.outputs) and not (folder / moved).exists()
        if not (owns or half_done):
            continue
        if owns:
            outputs = [replace(o, path=moved) if o.path == rel else o for o in old.outputs]
            store.set_outputs(old.id, outputs, reason=f"moved aside for version {job.version}")
        os.replace(dest, folder / moved)
        side = folder / f"{old.output_name}.json"
        if side.exists():
            _archive_sidecar(side, folder / f"{old.output_name}~v{old.version}.json", rel, moved)
        return


def _archive_sidecar(side: Path, target: Path, rel: str, moved: str) -> None:
    """Move an old version's sidecar aside, pointing it at the file's new name."""
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
        for out in data.get("outputs", []):
            if out.get("path") == rel:
                out["path"] = moved
        write_json_atomic(target, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        side.unlink()
    except (OSError, ValueError, AttributeError):
        os.replace(side, target)  # unreadable: keep it as it is, under the archive name
