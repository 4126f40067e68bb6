"""Machine-readable manifests of a run: JSONL (one line per job version) and CSV.

Invariants:
- Pure functions of `JobRecord` lists; they return text and never touch the disk.
- JSONL: one JSON object (one physical line) per job *version* (superseded versions
  included, `current` tells them apart), in input order; each line validates against
  `manifest.schema.json` (package data, see `manifest_schema`). Times are ISO 8601 UTC
  strings ending in `Z`.
- CSV: one row per *current* job, columns `CSV_COLUMNS`, RFC 4180 quoting (prompts with
  commas, quotes and newlines read back exactly with `csv.DictReader`); non-string
  payload values are written as JSON (`true`, `0.3`), missing ones as empty cells.
- Output paths are as stored: relative to the run's output folder (`out_dir`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from batcher.models import Attempt, JobRecord, OutputFile

CSV_COLUMNS: tuple[str, ...] = (
    "key",
    "name",
    "version",
    "repeat",
    "state",
    "request_id",
    "prompt",
    "duration",
    "aspect_ratio",
    "cfg_scale",
    "sound",
    "negative_prompt",
    "shots",
    "other_params",
    "output_path",
    "sha256",
    "size",
    "cost",
    "error",
    "submitted_at",
    "finished_at",
    "render_seconds",
)
_PAYLOAD_COLUMNS = ("prompt", "duration", "aspect_ratio", "cfg_scale", "sound", "negative_prompt")
_NOT_OTHER = frozenset(_PAYLOAD_COLUMNS) | {"multi_prompt"}


def iso(ts: float | None) -> str | None:
    """An epoch timestamp as ISO 8601 UTC with milliseconds (`...Z`), or None."""
    if ts is None:
        return None
    # What datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds") says (its
    # rounding to microseconds, then cut to milliseconds), at a third of the cost: a
    # manifest of 100,000 jobs holds half a million of these.
    frac, whole = math.modf(ts)
    us = round(frac * 1e6)
    if us >= 1_000_000:
        whole, us = whole + 1, us - 1_000_000
    elif us < 0:
        whole, us = whole - 1, us + 1_000_000
    return f"{_second(int(whole))}.{us // 1000:03d}Z"


@lru_cache(maxsize=4096)
def _second(whole: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))


def render_seconds(record: JobRecord) -> float | None:
    """Seconds from submission to finish, when both are known."""
    if record.submitted_at is None or record.finished_at is None:
        return None
    return round(record.finished_at - record.submitted_at, 3)


def plain(value: Any) -> Any:
    """A JSON-ready copy: mappings become dicts, sequences lists (strings untouched)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def _plain(value: Mapping[str, Any]) -> Any:
    """`plain`, skipped for what is plain already (a dict read from JSON)."""
    return value if type(value) is dict else plain(value)


def _output(out: OutputFile) -> dict[str, Any]:
    return {"path": out.path, "url": out.url, "size": out.size, "sha256": out.sha256}


def _attempt(attempt: Attempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "request_id": attempt.request_id,
        "submitted_at": iso(attempt.submitted_at),
        "finished_at": iso(attempt.finished_at),
        "outcome": attempt.outcome,
        "error": attempt.error,
    }


def manifest_line(record: JobRecord) -> dict[str, Any]:
    """The manifest object of one job version (what one JSONL line holds)."""
    return {
        "key": record.key,
        "run": record.run,
        "name": record.name,
        "version": record.version,
        "current": record.current,
        "state": record.state.value,
        "model": record.model,
        "request_id": record.request_id,
        "fingerprint": record.fingerprint,
        "payload": _plain(record.payload),
        "sweep": _plain(record.sweep),
        "repeat": record.repeat,
        "output_name": record.output_name,
        "out_dir": record.out_dir,
        "outputs": [_output(o) for o in record.outputs],
        "error": record.error,
        "attempts": [_attempt(a) for a in record.attempts],
        "timings": {
            "created_at": iso(record.created_at),
            "submitted_at": iso(record.submitted_at),
            "finished_at": iso(record.finished_at),
            "render_seconds": render_seconds(record),
        },
        "cost": record.cost,
    }


# Line breaks to Python's str.splitlines() (and to JavaScript) that JSON leaves raw.
_RAW_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})
_encode = json.JSONEncoder(ensure_ascii=False).encode


def jsonl_lines(records: Iterable[JobRecord]) -> Iterator[str]:
    """One JSON object per line per job version, keyed by `key`, one line at a time.

    Text stays readable UTF-8, but every character any common reader takes for a line
    break is escaped, so one line is always one job."""
    for r in records:
        line = _encode(manifest_line(r))
        if "\x85" in line or "\u2028" in line or "\u2029" in line:  # rare: scans are cheap
            line = line.translate(_RAW_BREAKS)
        yield line + "\n"


def render_jsonl(records: Iterable[JobRecord]) -> str:
    """`jsonl_lines` as one text (empty for no jobs)."""
    return "".join(jsonl_lines(records))


@cache
def manifest_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one JSONL manifest line."""
    text = resources.files("batcher.report").joinpath("manifest.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _cell(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if value is None:
        return ""
    if kind is int or (kind is float and math.isfinite(value)):
        return repr(value)  # what JSON says of them, without an encoder call each
    return _encode(plain(value))


def csv_row(record: JobRecord) -> dict[str, str]:
    """The flat CSV row of one job (first output file only; JSONL lists them all)."""
    payload = record.payload
    first = record.outputs[0] if record.outputs else None
    other = {k: v for k, v in payload.items() if k not in _NOT_OTHER}
    row = {
        "key": record.key,
        "name": record.name,
        "version": _cell(record.version),
        "repeat": _cell(record.repeat),
        "state": record.state.value,
        "request_id": _cell(record.request_id),
        **{name: _cell(payload.get(name)) for name in _PAYLOAD_COLUMNS},
        "shots": _cell(payload.get("multi_prompt")),
        "other_params": _cell(other or None),
        "output_path": first.path if first else "",
        "sha256": first.sha256 if first else "",
        "size": _cell(first.size if first else None),
        "cost": _cell(record.cost),
        "error": _cell(record.error),
        "submitted_at": _cell(iso(record.submitted_at)),
        "finished_at": _cell(iso(record.finished_at)),
        "render_seconds": _cell(render_seconds(record)),
    }
    return row


def csv_lines(records: Iterable[JobRecord]) -> Iterator[str]:
    """A spreadsheet of the current jobs, a row at a time: header `CSV_COLUMNS`, then one
    row per job."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL)
    writer.writerow(CSV_COLUMNS)
    for record in records:
        if record.current:
            writer.writerow(csv_row(record).values())  # built in CSV_COLUMNS order
        if buffer.tell() > 1 << 16:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def render_csv(records: Iterable[JobRecord]) -> str:
    """`csv_lines` as one text."""
    return "".join(csv_lines(records))
