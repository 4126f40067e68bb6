"""Output files: bundled sample clips, signed expiring URLs, HTTP Range parsing.

Invariants:
- A file URL is `/files/{request_id}/{clip}?n=N&exp=T&sig=S`, where N counts the URLs
  issued for that request, T is the expiry (emulator clock, seconds) and S an HMAC-SHA256
  over path, N and T with a secret derived from the seed (so URLs survive a restart of a
  persisted emulator and runs are reproducible). Anything else answers 403 like a CDN.
- The clip served for a request depends only on its aspect ratio and prompt, so a gallery
  shows variety and a re-run shows the same picture.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

_ASPECT_PREFIX = {"16:9": "landscape-", "9:16": "portrait-", "1:1": "square-"}


@dataclass(frozen=True)
class Clip:
    """One bundled MP4."""

    name: str
    data: bytes

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.data).hexdigest()[:32] + '"'


@cache
def clips() -> dict[str, Clip]:
    """Every bundled clip, by file name."""
    found: dict[str, Clip] = {}
    for entry in resources.files(__package__).joinpath("clips").iterdir():
        if entry.name.endswith(".mp4"):
            found[entry.name] = Clip(entry.name, entry.read_bytes())
    if not found:
        raise RuntimeError("the emulator's sample clips are missing from the package")
    return found


def pick_clip(payload: Mapping[str, Any]) -> str:
    """The clip for a payload: by aspect ratio, then by a hash of the prompt."""
    prefix = _ASPECT_PREFIX.get(str(payload.get("aspect_ratio", "16:9")), "landscape-")
    names = sorted(n for n in clips() if n.startswith(prefix)) or sorted(clips())
    digest = hashlib.sha256(str(payload.get("prompt", "")).encode("utf-8")).digest()
    return names[int.from_bytes(digest[:4], "big") % len(names)]


class Signer:
    """Signs and checks file URLs with one secret."""

    def __init__(self, seed: int) -> None:
        self._key = hashlib.sha256(f"batcher-emulator-files\x00{seed}".encode()).digest()

    def _mac(self, path: str, n: str, exp: str) -> str:
        msg = f"{path}\n{n}\n{exp}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:32]

    def query(self, path: str, n: int, exp: float) -> str:
        """The query string of a signed URL for `path`."""
        exp_text = f"{exp:.3f}"
        return f"n={n}&exp={exp_text}&sig={self._mac(path, str(n), exp_text)}"

    def check(self, path: str, query: Mapping[str, str], now: float) -> tuple[int | None, str]:
        """(N, "") when valid; (N or None, reason) when not."""
        n, exp, sig = query.get("n", ""), query.get("exp", ""), query.get("sig", "")
        if not (n.isdigit() and exp and sig):
            return None, "missing or malformed signature"
        if not hmac.compare_digest(sig, self._mac(path, n, exp)):
            return int(n), "signature does not match"
        try:
            expires = float(exp)
        except ValueError:
            return int(n), "malformed expiry"
        if now > expires:
            return int(n), "request has expired"
        return int(n), ""


@dataclass(frozen=True)
class ByteRange:
    """An inclusive byte range within a file of `total` bytes."""

    start: int
    end: int
    total: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.total}"


class Unsatisfiable(Exception):
    """The Range header names no byte of the file (answer 416)."""


def parse_range(header: str | None, total: int) -> ByteRange | None:
    """The single range asked for, None to send the whole file.

    Malformed headers and multi-range requests are ignored (the whole file is a valid
    answer to both, RFC 9110 14.2); a well-formed range past the end is Unsatisfiable.
    """
    if header is None:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, sep, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not sep or not (first.isdigit() or last.isdigit()):
        return None
    if (first and not first.isdigit()) or (last and not last.isdigit()):
        return None
    if not first:  # suffix range: the last N bytes
        n = int(last)
        if n == 0 or total == 0:
            raise Unsatisfiable
        return ByteRange(max(0, total - n), total - 1, total)
    start = int(first)
    end = int(last) if last else total - 1
    if last and end < start:
        return None  # invalid, so ignored
    if start >= total:
        raise Unsatisfiable
    return ByteRange(start, min(end, total - 1), total)
