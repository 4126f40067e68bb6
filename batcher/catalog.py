"""RunComfy's model catalog: every model the API serves, read page by page, kept in a local
copy for offline use, and each model's input fields described for people.

The API (runcomfy-api.md, "Catalog"): `GET /v1/models?limit=&offset=` answers a page,
`{"models": [...], "total": N}`; `GET /v1/models/{model_id}` one model's entry with its
`input_schema`. An entry carries `model_id`, `display_name`, `categories`,
`base_price_usd` and `price_unit`.

Invariants:
- The copy (`CatalogCache`) is written whole (a temporary file, then a rename), one file
  per API base URL, and holds only what the catalog said: never a token.
- A listing is read to its end (every page) before it replaces the copy; a partial one
  never does.
- Reading pages is bounded: at most MAX_PAGES pages, and a page that adds nothing ends it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batcher.client import RunComfyClient

__all__ = [
    "CatalogCache",
    "Field",
    "cache_dir",
    "fetch_entry",
    "fetch_models",
    "fields",
    "matches",
    "price_text",
]

PAGE = 100  # models asked for per page
MAX_PAGES = 200  # 20,000 models: far beyond the catalog's ~120, a bound on a looping server


async def fetch_models(client: RunComfyClient) -> list[dict[str, Any]]:
    """Every model of the catalog (without schemas), in the order the API lists them."""
    found: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        page, total = await client.list_models(limit=PAGE, offset=len(found))
        fresh = [m for m in page if m["model_id"] not in seen]
        seen.update(m["model_id"] for m in fresh)
        found.extend(fresh)
        if not fresh or (len(found) >= total if total is not None else len(page) < PAGE):
            break  # with a total, a short page is only a server's smaller page size
    return found


async def fetch_entry(client: RunComfyClient, model_id: str) -> dict[str, Any]:
    """One model's catalog entry, its input schema included."""
    entry = dict(await client.model_info(model_id))
    if not isinstance(entry.get("model_id"), str):
        entry["model_id"] = model_id
    return entry


def cache_dir(env: Mapping[str, str]) -> Path:
    """Where batcher keeps its copies: $BATCHER_CACHE, else $XDG_CACHE_HOME/batcher, else
    ~/.cache/batcher."""
    if env.get("BATCHER_CACHE"):
        return Path(env["BATCHER_CACHE"])
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]) / "batcher"
    return Path.home() / ".cache" / "batcher"


@dataclass
class CatalogCache:
    """The local copy of one API's catalog: the model list and the entries shown so far."""

    path: Path
    base_url: str
    fetched_at: float | None = None  # when the list was read from the API
    models: list[dict[str, Any]] | None = None
    entries: dict[str, dict[str, Any]] | None = None  # model id -> entry with its schema

    @classmethod
    def load(cls, folder: Path, base_url: str) -> CatalogCache:
        """The copy for `base_url` (empty when there is none or it cannot be read)."""
        name = hashlib.sha256(base_url.encode()).hexdigest()[:16]
        cache = cls(path=folder / f"catalog-{name}.json", base_url=base_url)
        try:
            data = json.loads(cache.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cache
        if not isinstance(data, dict) or data.get("base_url") != base_url:
            return cache
        models, entries, at = data.get("models"), data.get("entries"), data.get("fetched_at")
        cache.models = _entries(models) if isinstance(models, list) else None
        cache.entries = (
            {k: v for k, v in entries.items() if isinstance(v, dict)}
            if isinstance(entries, dict)
            else None
        )
        cache.fetched_at = float(at) if isinstance(at, int | float) else None
        return cache

    def keep_models(self, models: list[dict[str, Any]]) -> None:
        self.models, self.fetched_at = models, time.time()
        self._write()

    def keep_entry(self, entry: dict[str, Any]) -> None:
        self.entries = {**(self.entries or {}), str(entry["model_id"]): entry}
        self._write()

    def _write(self) -> None:
        """Written whole; a copy that cannot be written is only a copy (never an error)."""
        body = {
            "base_url": self.base_url,
            "fetched_at": self.fetched_at,
            "models": self.models,
            "entries": self.entries or {},
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".catalog-", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(body, fh, ensure_ascii=False)
            os.replace(tmp, self.path)
        except OSError:
            try:
                Path(tmp).unlink(missing_ok=True)
            except (OSError, UnboundLocalError):
                pass


def _entries(raw: Sequence[Any]) -> list[dict[str, Any]]:
    return [m for m in raw if isinstance(m, dict) and isinstance(m.get("model_id"), str)]


def matches(entry: Mapping[str, Any], search: str = "", category: str = "") -> bool:
    """Whether `entry` is found by `search` (words, each in its id or name, any case) and
    is in `category` (any case)."""
    text = f"{entry.get('model_id', '')} {entry.get('display_name', '')}".lower()
    if any(word not in text for word in search.lower().split()):
        return False
    if category:
        cats = entry.get("categories")
        names = [str(c).lower() for c in cats] if isinstance(cats, list) else []
        return category.lower() in names
    return True


def price_text(entry: Mapping[str, Any]) -> str:
    """`$0.112/second`, `$0.04/image`, or `-` when the entry has no price."""
    usd, unit = entry.get("base_price_usd"), entry.get("price_unit")
    if not isinstance(usd, int | float) or isinstance(usd, bool):
        return "-"
    amount = f"${usd:g}"
    return f"{amount}/{unit}" if isinstance(unit, str) and unit else amount


@dataclass(frozen=True)
class Field:
    """One input field of a model, as a person reads it."""

    name: str
    type: str
    allowed: str  # range, length or choices; "" when free
    default: str  # "" when none
    required: bool
    description: str


def fields(entry: Mapping[str, Any]) -> list[Field]:
    """The input fields of a catalog entry's `input_schema`, required ones first."""
    schema = entry.get("input_schema")
    if not isinstance(schema, Mapping):
        return []
    props = schema.get("properties")
    if not isinstance(props, Mapping):
        return []
    required = schema.get("required")
    needed = {str(r) for r in required} if isinstance(required, list) else set()
    found = [
        Field(
            name=str(name),
            type=_type(spec),
            allowed=_allowed(spec),
            default=json.dumps(spec["default"], ensure_ascii=False) if "default" in spec else "",
            required=str(name) in needed,
            description=" ".join(str(spec.get("description", "")).split()),
        )
        for name, spec in props.items()
        if isinstance(spec, Mapping)
    ]
    return sorted(found, key=lambda f: not f.required)


def _type(spec: Mapping[str, Any]) -> str:
    kind = spec.get("type")
    text = "/".join(map(str, kind)) if isinstance(kind, list) else str(kind or "any")
    if kind == "array" and isinstance(spec.get("items"), Mapping):
        text = f"array of {_type(spec['items'])}"
    if isinstance(spec.get("format"), str):
        text += f" ({spec['format']})"
    return text


def _allowed(spec: Mapping[str, Any]) -> str:
    if isinstance(spec.get("enum"), list):
        return ", ".join(json.dumps(v, ensure_ascii=False) for v in spec["enum"])
    for low, high, unit in (
        ("minimum", "maximum", ""),
        ("minLength", "maxLength", " characters"),
        ("minItems", "maxItems", " items"),
    ):
        lo, hi = spec.get(low), spec.get(high)
        if lo is not None and hi is not None:
            return f"{lo}-{hi}{unit}"
        if lo is not None:
            return f">= {lo}{unit}"
        if hi is not None:
            return f"<= {hi}{unit}"
    return ""
