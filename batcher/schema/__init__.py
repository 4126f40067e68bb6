"""Model input schemas, keyed by model id (package data), and their price tables.

Invariants: every bundled file is a valid draft 2020-12 schema carrying `x-model-id`;
adding a model means dropping one more `*.json` file in this folder. A job file may also
name a schema file of its own (`load_schema_file`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError as JsonSchemaError

from batcher.errors import SchemaError

DEFAULT_SECONDS = 5.0
# Kling 3.0 Pro at 1080p is about 1 MB per second of video; a guess errs on the large side.
DEFAULT_BYTES_PER_SECOND = 2_000_000


@dataclass(frozen=True)
class Price:
    """USD per unit of output (only `second` is known today)."""

    unit: str = "second"
    usd: float = 0.0
    usd_with_sound: float | None = None

    def estimate(self, payload: dict[str, Any] | Any, default_duration: int = 5) -> float:
        """Estimated cost of one request with this payload."""
        seconds = float(payload.get("duration", default_duration))
        with_sound = bool(payload.get("sound", True))
        rate = self.usd_with_sound if (with_sound and self.usd_with_sound is not None) else self.usd
        return round(seconds * rate, 6)


@dataclass(frozen=True)
class ModelSchema:
    """A model's input schema, its validator and its price."""

    model_id: str
    schema: dict[str, Any]
    price: Price
    origin: str  # where it came from (package file or user path)

    @property
    def validator(self) -> Draft202012Validator:
        return _validator_for(self.origin, json.dumps(self.schema, sort_keys=True))

    def video_seconds(self, payload: Mapping[str, Any]) -> float:
        """Seconds of video one request makes (what render time and file size scale with)."""
        value = payload.get("duration", self.default("duration"))
        return float(value) if isinstance(value, int | float) else DEFAULT_SECONDS

    def render_group(self, payload: Mapping[str, Any]) -> str:
        """Which renders share a render-time distribution: this model at this length of
        video (the parameters named by `x-render-time-by`, default the duration)."""
        names = self.schema.get("x-render-time-by", ["duration"])
        parts = [self.model_id]
        for name in names if isinstance(names, list) else []:
            value = payload.get(name, self.default(name))
            if value is not None:
                parts.append(f"{name}={value}")
        return " ".join(parts)

    def expected_bytes(self, payload: Mapping[str, Any]) -> int:
        """A generous guess of the bytes one request's files take on disk."""
        rate = self.schema.get("x-output-bytes-per-second", DEFAULT_BYTES_PER_SECOND)
        return int(self.video_seconds(payload) * float(rate))

    def default(self, field: str) -> Any:
        """The schema's default for a top-level field, or None."""
        return self.schema.get("properties", {}).get(field, {}).get("default")


@cache
def _validator_for(origin: str, text: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(text))


def _parse(text: str, origin: str) -> ModelSchema:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{origin}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(data, dict):
        raise SchemaError(f"{origin}: a schema must be a JSON object")
    try:
        Draft202012Validator.check_schema(data)
    except JsonSchemaError as exc:
        raise SchemaError(f"{origin}: not a valid JSON Schema: {exc.message}") from exc
    model_id = data.get("x-model-id")
    if not isinstance(model_id, str) or not model_id:
        raise SchemaError(f'{origin}: missing "x-model-id" (the model id this schema is for)')
    p = data.get("x-price") or {}
    price = Price(
        unit=str(p.get("unit", "second")),
        usd=float(p.get("usd", 0.0)),
        usd_with_sound=float(p["usd_with_sound"]) if "usd_with_sound" in p else None,
    )
    return ModelSchema(model_id=model_id, schema=data, price=price, origin=origin)


@cache
def bundled() -> dict[str, ModelSchema]:
    """Every schema shipped with batcher, keyed by model id."""
    found: dict[str, ModelSchema] = {}
    for entry in resources.files(__package__).iterdir():
        if entry.name.endswith(".json"):
            ms = _parse(entry.read_text(encoding="utf-8"), f"batcher/schema/{entry.name}")
            found[ms.model_id] = ms
    return found


def for_model(model_id: str) -> ModelSchema:
    """The bundled schema of `model_id`, or a stand-in carrying only the defaults (for a
    model validated against a user's schema file, whose specifics are not kept)."""
    known = bundled()
    if model_id in known:
        return known[model_id]
    return ModelSchema(model_id=model_id, schema={}, price=Price(), origin="(none)")


def load_schema(model_id: str) -> ModelSchema:
    """The bundled schema for `model_id`; a clear error listing the known ids otherwise."""
    known = bundled()
    if model_id not in known:
        ids = ", ".join(sorted(known))
        raise SchemaError(
            f"no bundled schema for model {model_id!r} (bundled: {ids}); "
            "name a schema file of your own with `schema: PATH` in the job file"
        )
    return known[model_id]


def load_schema_file(path: Path, *, model_id: str | None = None) -> ModelSchema:
    """A user's schema file; `model_id` fills in a missing `x-model-id`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{path}: cannot read schema file ({exc})") from exc
    if model_id is not None:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SchemaError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
        if isinstance(data, dict) and "x-model-id" not in data:
            data["x-model-id"] = model_id
            text = json.dumps(data)
    return _parse(text, str(path))
