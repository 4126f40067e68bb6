"""What `batcher plan` shows: per-job rows, totals and the JSON document (pure data).

Invariants: nothing here prints or reads the state database; marks come in as a
key -> mark mapping (a key without a mark is "new"). A job still "to render" is one whose
mark is new, changed or pending: the money not yet spent if the run goes on.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from batcher.jobfile import JobFile
from batcher.models import JobSpec

TO_RENDER = frozenset({"new", "changed", "pending"})
COLUMNS = ("key", "output", "seconds", "sound", "cost", "mark")


@dataclass(frozen=True)
class PlanRow:
    """One job as the plan shows it."""

    job: JobSpec
    seconds: int
    sound: bool
    mark: str


@dataclass(frozen=True)
class Totals:
    """Counts, seconds of video and estimated USD: all jobs, and those still to render."""

    jobs: int
    seconds: int
    cost: float
    render_jobs: int
    render_seconds: int
    render_cost: float
    by_mark: dict[str, int]


def plan_rows(jf: JobFile, marks: Mapping[str, str]) -> list[PlanRow]:
    """Every job with its effective duration and sound (schema defaults when unset)."""
    duration = jf.schema.default("duration")
    sound = jf.schema.default("sound")
    rows = []
    for job in jf.jobs:
        seconds = job.payload.get("duration", duration)
        rows.append(
            PlanRow(
                job=job,
                seconds=seconds if isinstance(seconds, int) else 0,
                sound=bool(job.payload.get("sound", True if sound is None else sound)),
                mark=marks.get(job.key, "new"),
            )
        )
    return rows


def totals(rows: list[PlanRow]) -> Totals:
    """Sums over the rows (costs rounded to the cent's hundredth)."""
    todo = [r for r in rows if r.mark in TO_RENDER]
    return Totals(
        jobs=len(rows),
        seconds=sum(r.seconds for r in rows),
        cost=round(sum(r.job.cost for r in rows), 4),
        render_jobs=len(todo),
        render_seconds=sum(r.seconds for r in todo),
        render_cost=round(sum(r.job.cost for r in todo), 4),
        by_mark=dict(sorted(Counter(r.mark for r in rows).items())),
    )


def plan_document(
    jf: JobFile, rows: list[PlanRow], extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The `plan --json` document: file, run, model, price, options, jobs, totals,
    warnings (and `extra` fields at the end)."""
    doc = _envelope(jf, rows, extra)
    doc["jobs"] = [job_entry(r) for r in rows]
    return doc


def plan_json(
    jf: JobFile,
    rows: list[PlanRow],
    extra: Mapping[str, Any] | None = None,
    sums: Totals | None = None,
) -> Iterator[str]:
    """`plan_document` as JSON text, in pieces: the jobs one per line as they are
    written, never the whole document in memory (100,000 jobs at scale). `sums`:
    `totals(rows)`, when the caller has them already."""
    text = json.dumps(_envelope(jf, rows, extra, sums), ensure_ascii=False, indent=1)
    head, tail = text.split(json.dumps(_JOBS), 1)
    yield head + "["
    for i, r in enumerate(rows):
        yield ("\n  " if i == 0 else ",\n  ") + job_line(r)
    yield ("\n ]" if rows else "]") + tail + "\n"


_JOBS = "\x00jobs\x00"  # where the jobs go in the envelope's text
_ENCODER = json.JSONEncoder(ensure_ascii=False)  # one coder for every job line
_TEXT = json.encoder.encode_basestring  # a JSON string, non-ASCII kept (as _ENCODER does)


def job_line(r: PlanRow) -> str:
    """`job_entry(r)` as `_ENCODER` writes it, put together directly: a dict per job and its
    encoding cost twice as much, at 100,000 jobs (tests hold the two texts equal)."""
    j, code = r.job, _ENCODER.encode
    sweep = code(j.sweep if type(j.sweep) is dict else dict(j.sweep)) if j.sweep else "{}"
    return (
        f'{{"key": {_TEXT(j.key)}, "name": {_TEXT(j.name)}, '
        f'"output_name": {_TEXT(j.output_name)}, "mark": {_TEXT(r.mark)}, '
        f'"seconds": {_number(r.seconds)}, "sound": {"true" if r.sound else "false"}, '
        f'"cost": {_number(j.cost)}, "fingerprint": {_TEXT(j.fingerprint)}, '
        f'"sweep": {sweep}, "repeat": {_number(j.repeat)}, "source": {_TEXT(j.source)}, '
        f'"payload": {code(j.payload if type(j.payload) is dict else dict(j.payload))}}}'
    )


def _number(value: Any) -> str:
    """A number as `_ENCODER` writes it (ints and finite floats by repr: what it does)."""
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return repr(value)
    return _ENCODER.encode(value)


def job_entry(r: PlanRow) -> dict[str, Any]:
    """One job as `plan --json` lists it."""
    return {
        "key": r.job.key,
        "name": r.job.name,
        "output_name": r.job.output_name,
        "mark": r.mark,
        "seconds": r.seconds,
        "sound": r.sound,
        "cost": r.job.cost,
        "fingerprint": r.job.fingerprint,
        "sweep": r.job.sweep if type(r.job.sweep) is dict else dict(r.job.sweep),
        "repeat": r.job.repeat,
        "source": r.job.source,
        "payload": r.job.payload if type(r.job.payload) is dict else dict(r.job.payload),
    }


def _envelope(
    jf: JobFile,
    rows: list[PlanRow],
    extra: Mapping[str, Any] | None,
    sums: Totals | None = None,
) -> dict[str, Any]:
    t = totals(rows) if sums is None else sums
    return {
        "file": str(jf.path),
        "run": jf.run,
        "model": jf.model,
        "price": {
            "unit": jf.price.unit,
            "usd_per_second": jf.price.usd,
            "usd_per_second_with_sound": jf.price.usd_with_sound,
        },
        "options": {k: v for k, v in asdict(jf.options).items() if v is not None},
        "jobs": _JOBS,
        "totals": {
            "jobs": t.jobs,
            "seconds": t.seconds,
            "cost": t.cost,
            "by_mark": t.by_mark,
            "to_render": {
                "jobs": t.render_jobs,
                "seconds": t.render_seconds,
                "cost": t.render_cost,
            },
        },
        "warnings": [str(w) for w in jf.warnings],
        **(extra or {}),
    }


def cells(row: PlanRow) -> tuple[str, ...]:
    """One table row as text, in COLUMNS order."""
    return (
        row.job.key,
        row.job.output_name,
        str(row.seconds),
        "yes" if row.sound else "no",
        f"${row.job.cost:.3f}",
        row.mark,
    )


def summary(t: Totals) -> list[str]:
    """The lines under the table."""
    marks = ", ".join(f"{n} {m}" for m, n in t.by_mark.items())
    return [
        f"{t.jobs} jobs ({marks}), {t.seconds} s of video, estimated ${t.cost:.2f}",
        f"to render: {t.render_jobs} jobs, {t.render_seconds} s, estimated ${t.render_cost:.2f}",
    ]


def plain_table(rows: list[PlanRow]) -> list[str]:
    """Aligned plain-text table lines (for pipes and files), header first."""
    table = [tuple(c.upper() for c in COLUMNS), *(cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    right = {2, 4}
    out = []
    for line in table:
        parts = [
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(line)
        ]
        out.append("  ".join(parts).rstrip())
    return out
