"""Streaming, verified, resumable downloads of output files.

Invariants:
- Bytes land in `NAME.part`; only a complete, verified file is renamed (atomically) to its
  final name, so a half-written file never carries the final name.
- A failure keeps the `.part` file; the next try resumes it with an HTTP Range request.
  Its bytes are the raw bytes received, in order, so keeping them is always safe.
- Every failure is a `DownloadError` (the cause chained): httpx's errors, h11's and
  codecs' that slip past httpx, a URL httpx refuses, odd headers. Only cancellation and
  other `BaseException`s pass through.
- The bytes hashed and checked are the file's own: files are asked for with
  `Accept-Encoding: identity`, and an answer encoded anyway is refused (never decoded
  into a `.part` that a Range request could not resume).
- Output hosts never receive the API token: the http client given here must carry no
  auth, and this module adds none.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import anyio
import httpx
from httpx._client import UseClientDefault

from batcher.crashpoints import crash_point
from batcher.errors import DiskFull, DownloadError, HostRefused, UrlExpired
from batcher.hosts import HostPolicy

SPILL = 8 << 20  # bytes held in memory before a download goes to its .part file
DEFAULT_MAX_BYTES = 2 * 1024**3
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v")
KNOWN_SUFFIXES = (*VIDEO_SUFFIXES, ".webm", ".png", ".jpg", ".jpeg", ".webp", ".gif")


@dataclass(frozen=True)
class Downloaded:
    """A verified file under its final name."""

    path: Path
    size: int
    sha256: str


def host_guard(policy: HostPolicy) -> dict[str, list[Callable[[httpx.Request], Any]]]:
    """httpx event hooks that refuse (HostRefused) any request, a redirect included, to a
    host `policy` does not allow, before it is sent."""

    async def check(request: httpx.Request) -> None:
        why = policy.refusal(str(request.url))
        if why is not None:
            raise HostRefused(why, host=request.url.host)

    return {"request": [check]}


def suffix_for(url: str) -> str:
    """A safe file suffix from the URL path (default .mp4)."""
    suffix = Path(urlsplit(url).path).suffix.lower()
    return suffix if suffix in KNOWN_SUFFIXES else ".mp4"


def part_path(dest: Path, tag: str = "") -> Path:
    """Where the bytes of `dest` gather; `tag` (the request id) keeps renders apart."""
    safe = "".join(ch for ch in tag if ch.isalnum() or ch in "-_")[:40]
    return dest.with_name(f"{dest.name}.{safe}.part" if safe else f"{dest.name}.part")


async def download(
    http: httpx.AsyncClient,
    url: str,
    dest: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: httpx.Timeout | UseClientDefault = httpx.USE_CLIENT_DEFAULT,
    tag: str = "",
    time_for: Callable[[int], float] | None = None,
) -> Downloaded:
    """Fetch `url` into `dest` (resuming a `.part` left by an earlier try) and verify it.

    `tag` names the render the bytes belong to (its request id), so a partial file is
    only ever resumed with bytes of the same render. `time_for(size)` bounds the whole
    transfer once its size is known (httpx's read timeout restarts on every chunk, so a
    trickling server would otherwise hold the download forever).
    """
    part = part_path(dest, tag)
    have = part.stat().st_size if part.exists() else 0
    got: Downloaded | None = None
    allowed: list[float] = []
    with anyio.CancelScope() as scope:
        got = await _fetch(
            http, url, dest, part, have, max_bytes, timeout, scope, time_for, allowed
        )
    if got is None:  # the whole-file deadline passed; the bytes so far stay in `.part`
        raise DownloadError(f"download too slow: not complete after {allowed[0]:.0f} s")
    return got


async def _fetch(
    http: httpx.AsyncClient,
    url: str,
    dest: Path,
    part: Path,
    have: int,
    max_bytes: int,
    timeout: httpx.Timeout | UseClientDefault,
    scope: anyio.CancelScope,
    time_for: Callable[[int], float] | None,
    allowed: list[float],
) -> Downloaded:
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    sink: _Sink | None = None
    started = anyio.current_time()
    try:
        async with http.stream("GET", url, headers=headers, timeout=timeout) as resp:
            if resp.status_code in (403, 404, 410):
                raise UrlExpired(f"output URL answered {resp.status_code} (expired?)")
            if resp.status_code == 416 and have:
                part.unlink()  # our partial file does not fit what the server has: restart
                raise DownloadError("range not satisfiable; restarting the download")
            if resp.status_code not in (200, 206):
                raise DownloadError(f"output URL answered HTTP {resp.status_code}")
            encoding = resp.headers.get("content-encoding", "").strip().lower()
            if encoding not in ("", "identity"):
                raise DownloadError(
                    f"the file host sent Content-Encoding: {encoding[:40]} although identity "
                    "was asked for"
                )
            append = resp.status_code == 206 and have > 0
            if append and _range_start(resp) != have:
                part.unlink(missing_ok=True)
                raise DownloadError("the server resumed at another offset; restarting")
            sink = _Sink(part, start=have if append else 0)
            total = _expected_total(resp, sink.size)
            if total is not None and total > max_bytes:
                raise DownloadError(f"file is {total} bytes, over the {max_bytes}-byte cap")
            if time_for is not None:
                allowed.append(time_for(total if total is not None else max_bytes))
                scope.deadline = started + allowed[0]
            async for chunk in resp.aiter_raw():  # as received: a drop loses nothing
                await sink.write(chunk, max_bytes)
                crash_point("mid_download")
        if total is not None and sink.size != total:
            raise DownloadError(f"download truncated: {sink.size} of {total} bytes")
        with anyio.CancelScope(shield=True):  # the deadline never tears a rename
            landed = await anyio.to_thread.run_sync(sink.commit, dest)
        return landed
    except anyio.get_cancelled_exc_class():
        _keep(sink)  # what arrived is resumed next time
        raise
    except httpx.TransportError as exc:
        _keep(sink)
        raise DownloadError(f"download interrupted: {type(exc).__name__}: {exc}") from exc
    except DownloadError:
        _keep(sink)
        raise
    except OSError as exc:
        mapped = write_error(part, exc)
        if sink is not None:
            sink.close()
            if isinstance(mapped, DiskFull):  # give the space back; nothing more fits
                part.unlink(missing_ok=True)
        raise mapped from exc
    except Exception as exc:  # InvalidURL, StreamError, h11's or a codec's own errors, ...
        _keep(sink)
        raise DownloadError(f"download failed: {type(exc).__name__}: {exc}") from exc


# No space, no quota, read-only: no file of this run can be stored.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def write_error(path: Path, exc: OSError) -> DownloadError:
    """The error for a failed local write: `DiskFull` when no file could be stored."""
    why = f"cannot write {path}: {exc.strerror or exc}"
    return DiskFull(why) if exc.errno in DISK_ERRNOS else DownloadError(why)


def _range_start(resp: httpx.Response) -> int | None:
    """The first byte of a 206 answer, from `Content-Range: bytes START-END/TOTAL`."""
    value = resp.headers.get("content-range", "")
    unit, _, spec = value.partition(" ")
    return _number(spec.split("-", 1)[0]) if unit == "bytes" else None


def _expected_total(resp: httpx.Response, start: int) -> int | None:
    length = _number(resp.headers.get("content-length", ""))
    return None if length is None else start + length


def _number(text: str) -> int | None:
    """A non-negative decimal integer in ASCII digits ("²".isdigit() is true), else None."""
    return int(text) if text.isascii() and text.isdigit() else None


def _keep(sink: _Sink | None) -> None:
    """After a failure, keep what arrived in `.part` so the next try resumes it."""
    if sink is not None and not sink.finished:
        try:
            sink.spill()
            sink.close()
        except OSError:
            pass


class _Sink:
    """The bytes of one download: held in memory up to SPILL, then in `NAME.part`.

    Small files (most videos of a few seconds) thus cost one trip to a worker thread,
    which writes, fsyncs, checks and renames them at once.
    """

    def __init__(self, part: Path, *, start: int) -> None:
        self.part = part
        self.start = start  # bytes already in .part (resumed with Range)
        self.size = start
        self.buf = bytearray()
        self.fh: BinaryIO | None = None
        self.digest = hashlib.sha256()
        self.head = b""  # the first 12 bytes (the MP4 `ftyp` box header)
        self.finished = False  # committed or discarded: nothing more to keep

    async def write(self, chunk: bytes, max_bytes: int) -> None:
        self.size += len(chunk)
        if self.size > max_bytes:
            self.close()
            self.finished = True
            self.part.unlink(missing_ok=True)
            raise DownloadError(f"file exceeds the {max_bytes}-byte cap")
        self.digest.update(chunk)
        if len(self.head) < 12:
            self.head += chunk[: 12 - len(self.head)]
        if self.fh is None:
            self.buf += chunk
            if len(self.buf) >= SPILL:
                await anyio.to_thread.run_sync(self.spill)
        else:
            self.fh.write(chunk)

    def spill(self) -> None:
        """Move the buffered bytes to `.part` (opening it) and write further chunks there."""
        if self.fh is None:
            self.part.parent.mkdir(parents=True, exist_ok=True)
            self.fh = open(self.part, "ab" if self.start else "wb")  # noqa: SIM115
        self.fh.write(self.buf)
        self.buf.clear()
        self.fh.flush()

    def close(self) -> None:
        if self.fh is not None:
            fh, self.fh = self.fh, None
            try:
                fh.close()
            except OSError:
                pass  # its flush failed (disk full): the write error is already reported

    def commit(self, dest: Path) -> Downloaded:
        """Worker thread: write, fsync, check the MP4 header, rename to the final name."""
        self.spill()
        assert self.fh is not None
        # Bytes reach the disk before the final name does (power loss included); the
        # rename itself needs no directory fsync: if it is lost, `.part` is fetched again.
        os.fsync(self.fh.fileno())
        self.close()
        self.finished = True
        head = self.head
        if self.start:  # resumed: the hash must cover the bytes of earlier tries too
            with open(self.part, "rb") as fh:
                head = fh.read(12)
                self.digest = hashlib.sha256(head)
                for block in iter(lambda: fh.read(1 << 20), b""):
                    self.digest.update(block)
        if dest.suffix.lower() in VIDEO_SUFFIXES and head[4:8] != b"ftyp":
            self.part.unlink(missing_ok=True)
            raise DownloadError("downloaded file is not an MP4 (no ISO BMFF 'ftyp' box)")
        crash_point("before_rename")
        # No directory fsync: the next durable commit (a claim) flushes the filesystem
        # journal that holds this rename on ext4/xfs, and a lost rename only means the
        # `.part` is fetched again.
        os.replace(self.part, dest)
        return Downloaded(dest, self.size, self.digest.hexdigest())


def write_json_atomic(path: Path, text: str) -> None:
    """Write a small text file so it is either absent, old, or complete."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
