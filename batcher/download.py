"""Streaming, verified, resumable downloads of output files.

Invariants:
- Bytes land in `NAME.part`; only a complete, verified file is renamed (atomically) to its
  final name, so a half-written file never carries the final name.
- A failure keeps the `.part` file; the next try resumes it with an HTTP Range request.
- Output hosts never receive the API token: the http client given here must carry no
  auth, and this module adds none.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import httpx

from batcher.crashpoints import crash_point
from batcher.errors import DownloadError, UrlExpired

CHUNK = 1 << 16
DEFAULT_MAX_BYTES = 2 * 1024**3
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v")
KNOWN_SUFFIXES = (*VIDEO_SUFFIXES, ".webm", ".png", ".jpg", ".jpeg", ".webp", ".gif")


@dataclass(frozen=True)
class Downloaded:
    """A verified file under its final name."""

    path: Path
    size: int
    sha256: str


def suffix_for(url: str) -> str:
    """A safe file suffix from the URL path (default .mp4)."""
    suffix = Path(urlsplit(url).path).suffix.lower()
    return suffix if suffix in KNOWN_SUFFIXES else ".mp4"


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


async def download(
    http: httpx.AsyncClient,
    url: str,
    dest: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: httpx.Timeout | None = None,
) -> Downloaded:
    """Fetch `url` into `dest` (resuming a `.part` left by an earlier try) and verify it."""
    part = part_path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        async with http.stream("GET", url, headers=headers, timeout=timeout) as resp:
            if resp.status_code in (403, 404, 410):
                raise UrlExpired(f"output URL answered {resp.status_code} (expired?)")
            if resp.status_code == 416 and have:
                part.unlink()  # our partial file does not fit what the server has: restart
                raise DownloadError("range not satisfiable; restarting the download")
            if resp.status_code not in (200, 206):
                raise DownloadError(f"output URL answered HTTP {resp.status_code}")
            append = resp.status_code == 206 and have > 0
            start = have if append else 0
            total = _expected_total(resp, start)
            if total is not None and total > max_bytes:
                raise DownloadError(f"file is {total} bytes, over the {max_bytes}-byte cap")
            await _stream_to(resp, part, append=append, start=start, max_bytes=max_bytes)
    except httpx.TransportError as exc:
        raise DownloadError(f"download interrupted: {type(exc).__name__}: {exc}") from exc
    except OSError as exc:  # disk full, permissions: fail this file, not the whole run
        raise DownloadError(f"cannot write {part}: {exc.strerror or exc}") from exc
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(f"download truncated: {size} of {total} bytes")
    return await anyio.to_thread.run_sync(_verify_and_commit, part, dest, size)


def _expected_total(resp: httpx.Response, start: int) -> int | None:
    length = resp.headers.get("content-length")
    if length is None or not length.isdigit():
        return None
    return start + int(length)


async def _stream_to(
    resp: httpx.Response, part: Path, *, append: bool, start: int, max_bytes: int
) -> None:
    written = start
    # Opening (creating) a file can take a millisecond on some filesystems: off the loop.
    fh = await anyio.to_thread.run_sync(open, part, "ab" if append else "wb")
    with fh:
        async for chunk in resp.aiter_raw(CHUNK):
            written += len(chunk)
            if written > max_bytes:
                fh.close()
                part.unlink(missing_ok=True)
                raise DownloadError(f"file exceeds the {max_bytes}-byte cap")
            fh.write(chunk)
            fh.flush()
            crash_point("mid_download")


def _verify_and_commit(part: Path, dest: Path, size: int) -> Downloaded:
    digest = hashlib.sha256()
    with open(part, "rb") as fh:
        head = fh.read(12)
        digest.update(head)
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
        # Bytes reach the disk before the final name does (power loss included); the
        # rename itself needs no directory fsync: if it is lost, `.part` is fetched again.
        os.fsync(fh.fileno())
    if dest.suffix.lower() in VIDEO_SUFFIXES and head[4:8] != b"ftyp":
        part.unlink(missing_ok=True)
        raise DownloadError("downloaded file is not an MP4 (no ISO BMFF 'ftyp' box)")
    crash_point("before_rename")
    os.replace(part, dest)
    return Downloaded(dest, size, digest.hexdigest())


def write_json_atomic(path: Path, text: str) -> None:
    """Write a small text file so it is either absent, old, or complete."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
