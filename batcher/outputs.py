"""What lands in a run's output folder: each job version's files under its names, the
sidecar JSON next to them, and the file moves the store has recorded, made.

Invariants:
- A sidecar is written atomically and never contains the API token (it is built only
  from the job record, which never holds it).
- File names come from `store.placement`: `NAME.mp4`, `NAME~2.mp4`... for the current
  version, `NAME~vN.mp4`... for version N (`~` never appears in an output name, so no
  job's own file can have such a name).
- A file is moved only by `finish_moves`, only as a recorded move says, and only if it
  holds the bytes the move is about (an output's size and sha256, a sidecar's key and
  version); so a crash anywhere is finished by the next call, and no record ever comes
  to name another version's bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from batcher.crashpoints import crash_point
from batcher.download import download, part_path, suffix_for, write_error, write_json_atomic
from batcher.errors import ConfigError
from batcher.models import Attempt, JobRecord, OutputFile
from batcher.store import FileMove, Job, Store, output_path, version_stem

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
        "outputs": [asdict(f) for f in files],
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
    data = asdict(a) | {"submitted_at": iso(a.submitted_at), "finished_at": iso(a.finished_at)}
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
    time_for: Callable[[int], float] | None = None,
    settle: bool = True,
) -> list[OutputFile]:
    """Download every output of a job version under its names (NAME.mp4, NAME~2.mp4...).

    Other versions of the key leave these names first, through recorded moves (`settle`
    plans and makes them here; a caller that already did so for the run may skip it).
    """
    if settle:
        store.plan_moves(job.run, keys=[job.key])  # nothing, unless records predate moves
        finish_moves(store, job.run, folder)
    files: list[OutputFile] = []
    stem = file_stem(job)
    for i, url in enumerate(urls):
        rel = output_path(stem, i, suffix_for(url))
        tag = job.request_id or ""
        got = await download(
            http, url, folder / rel, max_bytes=max_bytes, tag=tag, time_for=time_for
        )
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


def finish_moves(store: Store, run: str, folder: Path) -> list[tuple[FileMove, str]]:
    """Carry out a run's recorded file moves, oldest first; returns each with its outcome.

    Safe to repeat after a crash at any point: a move already made is recognised by its
    bytes (an output) or its content (a sidecar), and is only closed.
    """
    finished = []
    for move in store.pending_moves(run):
        crash_point("before_move")
        make = _move_output if move.kind == "output" else _move_sidecar
        try:
            outcome = make(folder / move.src, folder / move.dst, move)
        except OSError as exc:
            raise ConfigError(
                f"cannot move {move.src} to {move.dst} in {folder}: {exc.strerror or exc}; "
                "the move stays recorded and is made by the next run"
            ) from exc
        crash_point("after_move")
        store.finish_move(move.id, outcome)
        finished.append((move, outcome))
    return finished


def _move_output(src: Path, dst: Path, move: FileMove) -> str:
    if _holds(src, move):
        os.replace(src, dst)
        return "done"
    if _holds(dst, move):  # moved before a crash
        return "done"
    return "mismatch" if src.exists() else "missing"


def _holds(path: Path, move: FileMove) -> bool:
    """True if `path` is a file with exactly the bytes the move is about."""
    try:
        if path.stat().st_size != move.size:
            return False
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return False
    return digest.hexdigest() == move.sha256


def _move_sidecar(src: Path, dst: Path, move: FileMove) -> str:
    """Write the version's sidecar under its new name, pointing at its files' new names."""
    data = _sidecar_of(src, move)
    if data is None:
        return "done" if _sidecar_of(dst, move) is not None else _absent_or_other(src)
    stem = dst.name.removesuffix(".json")
    for i, out in enumerate(data.get("outputs") or []):
        if isinstance(out, dict) and isinstance(out.get("path"), str):
            out["path"] = output_path(stem, i, os.path.splitext(out["path"])[1])
    write_json_atomic(dst, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    if src != dst:
        src.unlink(missing_ok=True)
    return "done"


def _sidecar_of(path: Path, move: FileMove) -> dict[str, Any] | None:
    """The sidecar at `path` if it is the moving version's own, else None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ours = isinstance(data, dict) and (data.get("key"), data.get("version")) == (
        move.key,
        move.version,
    )
    return data if ours else None


def _absent_or_other(path: Path) -> str:
    return "mismatch" if path.exists() else "missing"


class LocalFolder:
    """`ports.Sink` on local folders: each run's files under `out_dirs[run]`."""

    def __init__(
        self,
        store: Store,
        http: httpx.AsyncClient,
        out_dirs: Mapping[str, Path],
        *,
        max_bytes: int,
        concurrency: int = 4,
        time_for: Callable[[int], float] | None = None,
    ) -> None:
        self._store, self._http, self._dirs = store, http, dict(out_dirs)
        self._max_bytes, self._time_for = max_bytes, time_for
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._settled: set[str] = set()  # runs whose moves were planned and made here

    def free_bytes(self, run: str) -> int:
        folder = self._dirs[run]
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        return shutil.disk_usage(folder).free

    async def land(self, job: Job, urls: Sequence[str]) -> list[OutputFile]:
        if job.run not in self._settled:  # once per run: no new moves are planned mid-run
            self._store.plan_moves(job.run)
            finish_moves(self._store, job.run, self._dirs[job.run])
            self._settled.add(job.run)
        async with self._limiter:
            return await land_files(
                self._store,
                self._http,
                job,
                self._dirs[job.run],
                urls,
                max_bytes=self._max_bytes,
                time_for=self._time_for,
                settle=False,
            )

    async def seal(
        self, record: JobRecord, files: Sequence[OutputFile], finished_at: float, cost: float | None
    ) -> None:
        folder = self._dirs[record.run]
        stem = version_stem(record.output_name, record.version, current=record.current)
        try:
            await anyio.to_thread.run_sync(
                lambda: write_sidecar(record, folder, list(files), finished_at, cost, stem=stem)
            )
        except OSError as exc:  # a download failure of this job (DiskFull: of the run)
            raise write_error(folder / f"{stem}.json", exc) from exc
