"""Names derived from a job: stable key, output file stem, canonical payload, fingerprint.

Invariants:
- `slug()` returns a non-empty name of [A-Za-z0-9._-] only, at most `MAX_STEM` characters,
  never starting with "." or "-", never ending with ".", never containing "..", never a
  reserved Windows device name (CON, NUL, COM1, ...): it can only name a file directly
  inside the output folder. Whenever it must drop information (truncation, characters
  with no ASCII form), a short hash of the original text keeps distinct inputs distinct.
- So an output name (`output_stem`, `UniqueStems`) never contains `~`: the file names
  batcher derives from one use it (`NAME~2.mp4` for a second output, `NAME~v3.mp4` for
  an earlier version, see `store.placement`), and no job's own name can be one of them.
- `job_key()` is injective: the separators "/", ",", "=", "#" (and "%") are
  percent-escaped inside names and values, so two different jobs never share a key.
- `canonical_json()` is the one text the fingerprint is taken of: sorted keys, no
  spaces, UTF-8 as is, integral floats written as integers (5.0 == 5, 0.50 == 0.5).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

MAX_STEM = 100  # file stem; leaves room for ".mp4", ".json" and temp suffixes
MAX_KEY_VALUE = 64  # a swept value longer than this is shortened (with a hash) in keys
MAX_NAME_VALUE = 24  # ... and past this in output names

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DOTS = re.compile(r"\.{2,}")
_DASHES = re.compile(r"-{2,}")
_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"COM{i}" for i in "0123456789"}
    | {f"LPT{i}" for i in "0123456789"}
)
_KEY_ESCAPES = {c: f"%{ord(c):02X}" for c in "%/,=#"}


def short_hash(text: str, n: int = 8) -> str:
    """First `n` hex digits of the text's sha256."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:n]


_ALREADY_SAFE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_]|\.(?!\.)|-(?!-))*(?<![.-])\Z")


def slug(text: str, *, fallback: str = "job", max_len: int = MAX_STEM) -> str:
    """A filesystem-safe rendering of `text` (see the module invariants)."""
    if (
        len(text) <= max_len
        and _ALREADY_SAFE.match(text)
        and text.split(".", 1)[0].upper() not in _RESERVED
    ):
        return text  # what the steps below would return, only sooner
    return _slug(text, fallback=fallback, max_len=max_len)


def _slug(text: str, *, fallback: str, max_len: int) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    s = _UNSAFE.sub("-", ascii_text)
    s = _DASHES.sub("-", _DOTS.sub(".", s)).lstrip(".-").rstrip(".-")
    lossy = ascii_text != text or not s
    if not s:
        s = fallback
    if s.split(".", 1)[0].upper() in _RESERVED:
        s = "_" + s
    if len(s) > max_len or (lossy and s == fallback):
        s = f"{s[: max_len - 9].rstrip('.-')}-{short_hash(text)}"
    return s


def normalize(value: Any) -> Any:
    """JSON-equal numbers made identical: integral floats become ints (bools untouched)."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 2**53:
            return int(value)
        return value
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, non-ASCII kept (call on `normalize`d data)."""
    return _CANONICAL.encode(value)


def fingerprint(model: str, payload_json: str) -> str:
    """sha256 hex of the model id, a newline and the canonical payload."""
    return hashlib.sha256(f"{model}\n{payload_json}".encode()).hexdigest()


def value_text(value: Any) -> str:
    """A value as written in keys: strings bare, everything else as canonical JSON."""
    if isinstance(value, str):
        return value
    return canonical_json(value)


_KEY_TABLE = str.maketrans(_KEY_ESCAPES)


def _escape(text: str) -> str:
    out = text.translate(_KEY_TABLE)
    if out.isprintable():
        return out
    return "".join(c if c.isprintable() else f"%{ord(c):02X}" for c in out)


def key_part(field: str, value: Any) -> str:
    """`field=value` as it appears in a key (long values shortened with a hash)."""
    text = value_text(value)
    if len(text) > MAX_KEY_VALUE:
        text = f"{text[:40]}…{short_hash(text)}"
    return f"{_escape(field)}={_escape(text)}"


def name_part(field: str, value: Any) -> str:
    """`field-value` as it appears in an output name (slugged, bounded)."""
    if isinstance(value, dict | list):
        v = "v" + short_hash(canonical_json(value))
    else:
        text = value_text(value).replace(":", "x")
        v = slug(text, fallback="v", max_len=10_000)
        if len(v) > MAX_NAME_VALUE:
            v = f"{v[:16].rstrip('.-')}-{short_hash(text, 6)}"
    return f"{slug(field, fallback='f', max_len=10_000)}-{v}"


def job_key(run: str, name: str, parts: Sequence[str], repeat: int) -> str:
    """`run/job[/field=value,...][#n]` from `key_part`s; copy 0 of a repeat has no suffix."""
    return job_key_after(f"{_escape(run)}/{_escape(name)}", parts, repeat)


def key_text(text: str) -> str:
    """A run or job name as keys write it (separators escaped): `job_key(run, name, (), 0)`
    is `f"{key_text(run)}/{key_text(name)}"`."""
    return _escape(text)


def job_key_after(head: str, parts: Sequence[str], repeat: int) -> str:
    """`job_key` from its head (`job_key(run, name, (), 0)`), for many keys of one job."""
    key = head
    if parts:
        key += "/" + ",".join(parts)
    if repeat:
        key += f"#{repeat + 1}"
    return key


def output_stem(name: str, parts: Sequence[str], repeat: int) -> str:
    """`fox__aspect_ratio-16x9__cfg_scale-0.3__r2` from `name_part`s, bounded."""
    stem = "__".join([slug(name, max_len=10_000), *parts])
    if repeat:
        stem += f"__r{repeat + 1}"
    if len(stem) > MAX_STEM:
        stem = f"{stem[: MAX_STEM - 9].rstrip('.-')}-{short_hash(stem)}"
    return stem


class UniqueStems:
    """Stems made unique case-insensitively, in the order they come: a later collision gets
    a hash of its key."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def add(self, key: str, stem: str) -> str:
        candidate = stem
        tries = 0
        while candidate.casefold() in self.taken:
            salt = key if tries == 0 else f"{key}#{tries}"
            candidate = f"{stem[: MAX_STEM - 9].rstrip('.-')}-{short_hash(salt)}"
            tries += 1
        self.taken.add(candidate.casefold())
        return candidate


def sweep_items(sweep: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Swept fields in the order used by keys and names: sorted by field name."""
    return sorted(sweep.items())
