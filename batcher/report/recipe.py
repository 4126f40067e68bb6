"""A job file that reproduces a run: same model, same payloads, same stable keys.

Invariants:
- `render_yaml` is a pure function of `JobRecord`s; it exports the *current* version of
  every job, one `jobs:` entry per job name (the job-file format forbids duplicate
  names), each written with its full payload, so no `defaults:` or schema default can
  change it on the way back.
- A job name's records are exported only as one entry `fields + sweep + repeat`, which
  the loader expands to the cartesian product of the sweep values times copies
  `0..repeat-1`. A group that is not such a product (e.g. a sweep was narrowed after a
  run, leaving older keys current; repeats of one sweep point with different payloads)
  cannot be written exactly: `NotReproducible` names those keys, or, with
  `partial=True`, they are left out and listed in the file's header comment.
- Literal braces in prompt texts are doubled (`{{`, `}}`), as the loader substitutes
  `{var}` placeholders there.
- Sweep values are listed in the order the records were given (the store keeps
  expansion order), so a re-expansion lists the jobs in the same order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

from batcher.errors import UsageError
from batcher.models import JobRecord
from batcher.report.manifest import plain

TEMPLATED = ("prompt", "negative_prompt")  # plus multi_prompt[].prompt (see jobfile.expand)


class NotReproducible(UsageError):
    """Some current jobs of a run cannot be written as a job file that re-creates them."""

    def __init__(self, reasons: Mapping[str, str]) -> None:
        self.reasons = dict(reasons)  # key -> why
        sample = "; ".join(f"{k}: {why}" for k, why in list(self.reasons.items())[:5])
        more = f" (and {len(self.reasons) - 5} more)" if len(self.reasons) > 5 else ""
        super().__init__(
            f"{len(self.reasons)} job(s) cannot be reproduced by one job file: {sample}{more}"
        )


class _Dumper(yaml.SafeDumper):
    """SafeDumper that double-quotes text holding a YAML 1.1 line break other than \\n.

    PyYAML writes NEL/LS/PS raw inside single-quoted scalars, and a reader then folds
    them into spaces; in double quotes they are escaped (\\N, \\L, \\P) and survive."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if any(ch in value for ch in "\x85\u2028\u2029") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _canon(value: Any) -> str:
    return json.dumps(plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _braces(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def escape_templates(field: str, value: Any) -> Any:
    """`value` of payload `field` as it must be written so the loader gives it back."""
    if field in TEMPLATED and isinstance(value, str):
        return _braces(value)
    if field == "multi_prompt" and isinstance(value, list):
        return [
            {**shot, "prompt": _braces(shot["prompt"])}
            if isinstance(shot, dict) and isinstance(shot.get("prompt"), str)
            else shot
            for shot in value
        ]
    return value


def _entry(name: str, records: Sequence[JobRecord]) -> tuple[dict[str, Any] | None, str]:
    """The one job entry expanding to exactly `records`, or None and the reason."""
    fields = list(records[0].sweep)
    if any(set(r.sweep) != set(fields) for r in records):
        return None, "its sweep points do not all sweep the same fields"
    values: dict[str, dict[str, Any]] = {f: {} for f in fields}
    points: dict[str, set[int]] = {}
    base_canon: str | None = None
    for r in records:
        payload = plain(r.payload)
        if any(f not in payload or _canon(payload[f]) != _canon(r.sweep[f]) for f in fields):
            return None, "its payload does not hold its sweep values"
        base = {k: v for k, v in payload.items() if k not in fields}
        if base_canon is None:
            base_canon = _canon(base)
        elif _canon(base) != base_canon:
            return None, "its jobs differ in fields that are not swept"
        for f in fields:
            values[f].setdefault(_canon(r.sweep[f]), plain(r.sweep[f]))
        point = _canon([r.sweep[f] for f in fields])
        points.setdefault(point, set()).add(r.repeat)
    n_points = 1
    for f in fields:
        n_points *= len(values[f])
    if len(points) != n_points:
        return None, "its sweep points are not a full product of the swept values"
    copies = {frozenset(c) for c in points.values()}
    if len(copies) != 1:
        return None, "its sweep points have different numbers of copies"
    (repeats,) = copies
    if repeats != frozenset(range(len(repeats))):
        return None, "its copies are not numbered 1..n (some are missing)"
    payload = plain(records[0].payload)
    entry: dict[str, Any] = {"name": name}
    entry.update({k: escape_templates(k, v) for k, v in payload.items() if k not in fields})
    if fields:
        entry["sweep"] = {f: [escape_templates(f, v) for v in values[f].values()] for f in fields}
    if len(repeats) > 1:
        entry["repeat"] = len(repeats)
    return entry, ""


def _by_name(records: Iterable[JobRecord]) -> dict[str, list[JobRecord]]:
    groups: dict[str, list[JobRecord]] = {}
    for r in records:
        groups.setdefault(r.name, []).append(r)
    return groups


def recipe(
    records: Iterable[JobRecord], *, partial: bool = False
) -> tuple[dict[str, Any], dict[str, str]]:
    """The job-file document (plain data) reproducing the current jobs of one run, and
    the keys left out (with why; empty unless `partial`)."""
    current = [r for r in records if r.current]
    if not current:
        raise UsageError("no current jobs to export")
    for attr in ("run", "model"):
        seen = sorted({getattr(r, attr) for r in current})
        if len(seen) > 1:
            raise UsageError(f"jobs of several {attr}s ({', '.join(seen)}): export one run")
    jobs: list[dict[str, Any]] = []
    left_out: dict[str, str] = {}
    for name, members in _by_name(current).items():
        entry, why = _entry(name, members)
        if entry is None:
            left_out.update({r.key: why for r in members})
        else:
            jobs.append(entry)
    if left_out and not partial:
        raise NotReproducible(left_out)
    return {"name": current[0].run, "model": current[0].model, "jobs": jobs}, left_out


def render_yaml(records: Iterable[JobRecord], *, partial: bool = False) -> str:
    """A YAML job file re-creating the run's current jobs (same keys, payloads, model)."""
    doc, left_out = recipe(records, partial=partial)
    n = len(doc["jobs"])
    lines = [
        f"# Reproduces run {doc['name']!r}: {n} job entr{'y' if n == 1 else 'ies'} with their",
        "# exact payloads (written by `batcher report --format yaml`).",
    ]
    if left_out:
        lines.append(f"# Left out: {len(left_out)} job(s) no single entry can re-create:")
        lines += [f"#   {json.dumps(k, ensure_ascii=True)}: {why}" for k, why in left_out.items()]
    body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return "\n".join(lines) + "\n" + body
