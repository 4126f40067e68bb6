"""Validation of expanded payloads: the model's JSON Schema plus the semantic rules.

Invariants:
- Each distinct payload is checked once (findings are cached by its canonical JSON) and
  the findings are then located per job through that job's origins, so a value from
  `defaults:` or from a sweep is reported where it was written; identical problems from
  many expanded jobs collapse into one.
- Findings are (path inside the payload, message, severity, at_key). An empty path means
  the job as a whole (e.g. a missing required field).
- Semantic rules: shot durations sum to `duration` (the schema default when absent),
  `multi_prompt` needs `shot_type: customize`, prompts are not blank, numbers are finite,
  unknown keys in nested objects (shots) are named with a hint. Upstream Kling limits are
  warnings: prompt > 2500 characters, more than 6 shots, shot prompt > 512 characters,
  shot shorter than 1 s.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from batcher.errors import Problem
from batcher.jobfile.expand import Draft
from batcher.jobfile.spec import Origin, nested
from batcher.jobfile.structure import did_you_mean
from batcher.jobfile.yamlpos import Doc, YPath, bare_value
from batcher.schema import ModelSchema

MAX_PROMPT = 2500
MAX_SHOTS = 6
MAX_SHOT_PROMPT = 512
MIN_SHOT_SECONDS = 1
_TOP_SAFE = {
    "$schema",
    "$id",
    "$comment",
    "type",
    "title",
    "description",
    "required",
    "properties",
    "additionalProperties",
    "default",
    "examples",
}
_TYPE_NAMES = {
    "integer": "an integer",
    "number": "a number",
    "string": "text",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "null",
}


class Finding(NamedTuple):
    path: YPath
    what: str
    severity: str = "error"
    at_key: bool = False


def short(value: Any, limit: int = 40) -> str:
    """A value as it reads in a message, cut to `limit` characters."""
    text = repr(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Checker:
    """Checks drafts against one model schema; `problems()` gives every finding located."""

    def __init__(self, doc: Doc, schema: ModelSchema) -> None:
        self.doc = doc
        self.schema = schema
        self.validator = schema.validator
        self.cache: dict[str, tuple[Finding, ...]] = {}
        self.seen: dict[Problem, None] = {}
        default = schema.default("duration")
        self.default_duration = default if isinstance(default, int) else None
        self.has_shot_type = "shot_type" in schema.schema.get("properties", {})
        self.fields = _fieldwise(schema.schema)
        self.required = [r for r in schema.schema.get("required", []) if isinstance(r, str)]
        self.quick = _quick_checks(schema.schema)
        self.field_cache: dict[tuple[Any, ...], tuple[Any, list[Finding]]] = {}

    def check(self, drafts: Iterable[Draft]) -> list[Problem]:
        for d in drafts:
            self.add(d)
        return self.problems()

    def add(self, d: Draft) -> None:
        """Check one draft (its problems are kept, each once)."""
        findings = self.cache.get(d.canon)
        if findings is None:
            findings = self.cache[d.canon] = tuple(self.findings(d.payload))
        for f in findings:
            self.seen.setdefault(self.locate(d, f), None)

    def problems(self) -> list[Problem]:
        return list(self.seen)

    def locate(self, d: Draft, f: Finding) -> Problem:
        origin = d.origin_of(str(f.path[0])) if f.path else None
        if origin is None:
            o: Origin = d.origin
        else:
            o = nested(self.doc, origin, f.path[1:])
        line, col = o.line, o.col
        if f.at_key and o.path is not None:
            line, col = self.doc.key_pos(o.path)
        return Problem(o.file, line, col, o.where, f.what, f.severity)

    # -- findings ------------------------------------------------------------------------
    def findings(self, payload: Mapping[str, Any]) -> Iterator[Finding]:
        if self.fields is None:
            for error in self.validator.iter_errors(payload):
                yield from _describe(error, ())
            yield from self.unknown_keys(payload, self.schema.schema, ())
            yield from _non_finite(payload, ())
            yield from self.prompt_findings(payload.get("prompt"))
        else:
            for name in self.required:
                if name not in payload:
                    yield Finding((), f"missing required field {name!r}")
            for k, v in payload.items():
                yield from self.field_findings(k, v)
        shots = payload.get("multi_prompt")
        if isinstance(shots, list):
            yield from self.shot_findings(payload, shots)

    def field_findings(self, k: str, v: Any) -> list[Finding]:
        """What is wrong with one field's value on its own (field by field, when exact).

        A value its field's quick check accepts is valid; any other is checked by the
        validator, once per distinct value (tests hold this equal to the whole-object check).
        """
        quick = self.quick.get(k)
        if quick is not None and quick(v):
            return list(self.prompt_findings(v)) if k == "prompt" else []
        if isinstance(v, str | int | float | bool | None):
            cache_key: tuple[Any, ...] = (k, type(v), v)
        else:
            cache_key = (k, id(v))
        hit = self.field_cache.get(cache_key)
        if hit is None:
            found: list[Finding] = []
            validator = self.fields.get(k) if self.fields is not None else None
            if validator is not None:  # else an unknown key: structure.py drops them
                found += [f for e in validator.iter_errors(v) for f in _describe(e, (k,))]
                found += self.unknown_keys(v, self.schema.schema["properties"][k], (k,))
                found += _non_finite(v, (k,))
                if k == "prompt":
                    found += self.prompt_findings(v)
            hit = self.field_cache[cache_key] = (v, found)  # v kept alive: its id stays valid
        return hit[1]

    def unknown_keys(self, value: Any, schema: Any, path: YPath) -> Iterator[Finding]:
        if not isinstance(schema, dict):
            return
        props = schema.get("properties")
        if isinstance(value, dict) and isinstance(props, dict):
            closed = schema.get("additionalProperties") is False
            for k, v in value.items():
                if k in props:
                    yield from self.unknown_keys(v, props[k], (*path, k))
                elif closed and path and "patternProperties" not in schema:
                    what = f"unknown key {k!r}{did_you_mean(k, list(props))}"
                    yield Finding((*path, k), what, at_key=True)
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for i, v in enumerate(value):
                yield from self.unknown_keys(v, schema["items"], (*path, i))

    def prompt_findings(self, prompt: Any) -> Iterator[Finding]:
        if isinstance(prompt, str):
            if not prompt.strip():
                yield Finding(("prompt",), "prompt is empty")
            elif len(prompt) > MAX_PROMPT:
                what = f"prompt is {len(prompt)} characters; Kling's limit is {MAX_PROMPT}"
                yield Finding(("prompt",), what, "warning")

    def shot_findings(self, payload: Mapping[str, Any], shots: list[Any]) -> Iterator[Finding]:
        at: YPath = ("multi_prompt",)
        if not shots:
            yield Finding(at, "multi_prompt is empty: list the shots, or remove it", at_key=True)
            return
        if len(shots) > MAX_SHOTS:
            what = f"{len(shots)} shots; Kling accepts at most {MAX_SHOTS}"
            yield Finding(at, what, "warning", at_key=True)
        seconds: list[int] = []
        for i, shot in enumerate(shots):
            if not isinstance(shot, dict):
                continue
            p, d = shot.get("prompt"), shot.get("duration")
            if isinstance(p, str) and not p.strip():
                yield Finding((*at, i, "prompt"), "shot prompt is empty")
            elif isinstance(p, str) and len(p) > MAX_SHOT_PROMPT:
                what = f"shot prompt is {len(p)} characters; Kling's limit is {MAX_SHOT_PROMPT}"
                yield Finding((*at, i, "prompt"), what, "warning")
            if isinstance(d, int) and not isinstance(d, bool):
                seconds.append(d)
                if d < MIN_SHOT_SECONDS:
                    what = f"shot is {d} s; Kling needs at least {MIN_SHOT_SECONDS} s"
                    yield Finding((*at, i, "duration"), what, "warning")
        yield from self.sum_rule(payload, shots, seconds)
        shot_type = payload.get("shot_type", "customize")
        if self.has_shot_type and shot_type != "customize" and self.enum_allows(shot_type):
            what = f"multi_prompt needs shot_type: customize, not {short(shot_type)}"
            yield Finding(("shot_type",), what)

    def sum_rule(
        self, payload: Mapping[str, Any], shots: list[Any], seconds: list[int]
    ) -> Iterator[Finding]:
        if len(seconds) != len(shots):
            return  # a shot without a whole-number duration is a schema error already
        duration = payload.get("duration", self.default_duration)
        if not _is_int(duration) or sum(seconds) == duration:
            return
        note = " (the default)" if "duration" not in payload else ""
        what = f"shot durations sum to {sum(seconds)} s but duration is {duration} s{note}"
        yield Finding(("multi_prompt",), what, at_key=True)

    def enum_allows(self, value: Any) -> bool:
        prop = self.schema.schema["properties"]["shot_type"]
        return "enum" not in prop or value in prop["enum"]


def _unquote_hint(value: Any, types: list[str]) -> str:
    """` (remove the quotes)` when the text, unquoted, would be the wanted type."""
    if not isinstance(value, str):
        return ""
    bare = bare_value(value)
    wanted = {
        "integer": isinstance(bare, int) and not isinstance(bare, bool),
        "number": isinstance(bare, int | float) and not isinstance(bare, bool),
        "boolean": isinstance(bare, bool),
    }
    return " (remove the quotes)" if any(wanted.get(t, False) for t in types) else ""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _non_finite(value: Any, path: YPath) -> Iterator[Finding]:
    if isinstance(value, float) and not math.isfinite(value):
        yield Finding(path, f"must be a finite number, not {value}")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _non_finite(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _non_finite(v, (*path, i))


def _fieldwise(schema: Mapping[str, Any]) -> dict[str, Draft202012Validator] | None:
    """One validator per top-level field, when checking fields apart is exact; else None."""
    keywords = {k for k in schema if not k.startswith("x-")}
    props = schema.get("properties")
    if (
        not keywords <= _TOP_SAFE
        or schema.get("type", "object") != "object"
        or not isinstance(props, dict)
        or not isinstance(schema.get("additionalProperties", False), bool)
        or any(k in json.dumps(schema) for k in ('"$ref"', '"$dynamicRef"', '"$defs"'))
    ):
        return None
    return {k: Draft202012Validator(sub) for k, sub in props.items()}


_ANNOTATIONS = {"title", "description", "default", "examples", "$comment", "format"}
_QUICK_TYPES: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: type(v) is int,
    "number": lambda v: type(v) is int or (type(v) is float and math.isfinite(v)),
    "boolean": lambda v: type(v) is bool,
}


def _quick_checks(schema: Mapping[str, Any]) -> dict[str, Any]:
    """field -> a quick check that accepts only values the field's schema accepts (for the
    fields whose schema is simple enough); a value it does not accept goes to jsonschema."""
    props = schema.get("properties")
    if not isinstance(props, dict):
        return {}
    checks = {k: _quick(sub) for k, sub in props.items()}
    return {k: check for k, check in checks.items() if check is not None}


def _quick(sub: Any) -> Any:
    if not isinstance(sub, dict) or not isinstance(sub.get("type"), str):
        return None
    rest = {k for k in sub if not k.startswith("x-")} - _ANNOTATIONS - {"type"}
    if not rest <= {"enum", "minimum", "maximum", "minLength", "maxLength"}:
        return None
    of_type = _QUICK_TYPES.get(sub["type"])
    enum, lo, hi = sub.get("enum"), sub.get("minimum"), sub.get("maximum")
    short, long = sub.get("minLength"), sub.get("maxLength")
    if of_type is None or any(
        x is not None and (isinstance(x, bool) or not isinstance(x, int | float))
        for x in (lo, hi, short, long)
    ):
        return None
    if enum is not None and not isinstance(enum, list):
        return None
    if (lo, hi) != (None, None) and sub["type"] not in ("integer", "number"):
        return None
    if (short, long) != (None, None) and sub["type"] != "string":
        return None

    def check(v: Any) -> bool:
        if not of_type(v):
            return False
        if enum is not None and not any(type(e) is type(v) and e == v for e in enum):
            return False
        if lo is not None and not v >= lo or hi is not None and not v <= hi:
            return False
        if short is not None and not len(v) >= short or long is not None and not len(v) <= long:
            return False
        return True

    return check


def _describe(error: ValidationError, prefix: YPath) -> Iterator[Finding]:
    """jsonschema's error in plain words, at the offending value's path."""
    path: YPath = (*prefix, *error.absolute_path)
    kind = error.validator
    value, limit = error.instance, error.validator_value
    if kind == "additionalProperties":
        return  # reported with a did-you-mean hint by Checker.unknown_keys
    if kind == "required" and isinstance(value, dict) and isinstance(limit, list):
        for name in limit:
            if name not in value:
                yield Finding(path, f"missing required field {name!r}")
        return
    if isinstance(value, float) and not math.isfinite(value):
        return  # reported once, as "must be a finite number"
    yield Finding(path, _message(str(kind), value, limit, error.message))


def _message(kind: str, value: Any, limit: Any, fallback: str) -> str:
    if kind == "type":
        names = [limit] if isinstance(limit, str) else list(limit)
        wanted = " or ".join(_TYPE_NAMES.get(n, n) for n in names)
        return f"must be {wanted}, not {short(value)}{_unquote_hint(value, names)}"
    if kind == "enum":
        return f"{short(value)} is not one of {', '.join(short(v) for v in limit)}"
    if kind == "const":
        return f"must be {short(limit)}, not {short(value)}"
    if kind == "minimum":
        return f"{short(value)} is less than the minimum of {short(limit)}"
    if kind == "maximum":
        return f"{short(value)} is greater than the maximum of {short(limit)}"
    if kind == "exclusiveMinimum":
        return f"{short(value)} must be more than {short(limit)}"
    if kind == "exclusiveMaximum":
        return f"{short(value)} must be less than {short(limit)}"
    if kind == "maxItems":
        return f"has {len(value)} items; at most {limit} allowed"
    if kind == "minItems":
        return f"has {len(value)} items; at least {limit} needed"
    if kind == "maxLength":
        return f"is {len(value)} characters long; at most {limit} allowed"
    if kind == "minLength":
        return f"is {len(value)} characters long; at least {limit} needed"
    if kind == "pattern":
        return f"{short(value)} does not match {limit!r}"
    return fallback if len(fallback) <= 200 else fallback[:199] + "…"
