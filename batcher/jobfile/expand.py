"""Expansion: entries (defaults merged) x rows x sweep x repeat -> drafts -> JobSpecs.

Invariants:
- Deterministic: the same file gives the same drafts in the same order, whatever order
  mapping keys were written in (sweeps are expanded by sorted field name).
- A payload holds exactly what the file says (defaults, the job's fields, the row, the
  sweep point, vars substituted, integral floats as ints); schema defaults are never
  injected, with one exception: `shot_type: customize` is added to a payload with a
  `multi_prompt` when the model has a `shot_type` field and the file leaves it out.
- Copy 0 of a repeat has no suffix in its key or output name, so raising `repeat`
  later adds copies without renaming the ones already rendered.
- Keys are unique (checked); output names are unique case-insensitively (made so).
- Nested payload values (e.g. a `multi_prompt` list) may be shared between JobSpecs:
  treat payloads as read-only.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from batcher.errors import Problem
from batcher.jobfile import names
from batcher.jobfile.rows import Row, read_rows
from batcher.jobfile.spec import Body, Entry, Origin, Value, nested
from batcher.jobfile.structure import did_you_mean
from batcher.jobfile.yamlpos import Doc
from batcher.models import JobSpec
from batcher.schema import ModelSchema, Price

MAX_JOBS = 100_000
TEMPLATED = ("prompt", "negative_prompt")  # plus multi_prompt[].prompt
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}")


@dataclass(slots=True)
class Draft:
    """One expanded job before its output name, fingerprint and cost are settled."""

    name: str
    key: str
    origin: Origin  # the job entry, or its row in a rows file
    payload: dict[str, Any]
    fields: dict[str, Value]  # payload field -> (value as written, where it was written)
    sweep: tuple[tuple[str, Any], ...]
    name_parts: tuple[str, ...]  # output-name pieces of the sweep point
    repeat: int  # 0-based
    canon: str  # canonical JSON of the payload
    rows_of: str | None = None  # the rows entry (name or file stem) of a job from a row

    def origin_of(self, field: str) -> Origin | None:
        """Where the payload's `field` was written (None when the payload has no such field)."""
        value = self.fields.get(field)
        return None if value is None else value[1]


class _Point(NamedTuple):
    """One value of one swept field, with its key and output-name pieces."""

    field: str
    value: Any
    origin: Origin
    key_part: str
    name_part: str


class Expander:
    """Expands the entries of one file; collects problems instead of raising."""

    def __init__(self, doc: Doc, schema: ModelSchema, run: str, base_dir: Path) -> None:
        self.doc = doc
        self.schema = schema
        self.run = run
        self.run_key = names.key_text(run)
        self.base_dir = base_dir
        self.props: Mapping[str, Any] = schema.schema.get("properties", {})
        self.order = {k: i for i, k in enumerate(self.props)}
        self.orders: dict[tuple[str, ...], tuple[str, ...]] = {}
        self.problems: list[Problem] = []
        self.vars: dict[str, Value] = {}
        self.used_vars: set[str] = set()
        self.names: dict[str, Origin] = {}
        self.total = 0

    def expand(self, body: Body) -> Iterator[Draft]:
        """Every job of the file, in file order, made as it is asked for."""
        self.vars = body.vars
        for entry in body.entries:
            rows_of = None if entry.rows is None else entry.name or Path(entry.rows[0]).stem
            for name, name_origin, origin, fields, sweep in self.variants(entry):
                if not self.claim_name(name, name_origin):
                    # Already an error; still expand it (under a name no job can have) so
                    # its other problems are reported too.
                    name = f"{name}~duplicate-{name_origin.line}-{name_origin.col}"
                count = entry.repeat * _product(len(v) for v in sweep.values())
                self.total += count
                if self.total > MAX_JOBS:
                    what = f"the file expands to more than {MAX_JOBS} jobs; split it"
                    self.problems.append(entry.origin.problem(what))
                    return
                yield from self.jobs(name, origin, fields, sweep, entry.repeat, rows_of)
        for var, (_, origin) in self.vars.items():
            if var not in self.used_vars:
                self.problems.append(origin.problem(f"var {var!r} is never used", warning=True))

    def variants(
        self, entry: Entry
    ) -> Iterator[tuple[str, Origin, Origin, dict[str, Value], dict[str, list[Value]]]]:
        """(name, name origin, job origin, fields, sweep) per row (one when no rows)."""
        if entry.rows is None:
            name = entry.name or f"job-{entry.index + 1}"
            yield (name, entry.name_origin, entry.origin, entry.fields, entry.sweep)
            return
        rel, at = entry.rows
        path = self.base_dir / rel
        display = str(Path(at.file).parent / rel)
        rows, problems = read_rows(
            path, display=display, where=f"{entry.origin.where}.rows", at=at, props=self.props
        )
        self.problems.extend(problems)
        base = entry.name or Path(rel).stem
        seen: Counter[str] = Counter()
        rows.reverse()
        while rows:  # each row let go once it is a job
            yield self.row_variant(entry, rows.pop(), base, seen)

    def row_variant(
        self, entry: Entry, row: Row, base: str, seen: Counter[str]
    ) -> tuple[str, Origin, Origin, dict[str, Value], dict[str, list[Value]]]:
        name, name_origin = row.name or (row_name(base, row, seen), row.origin)
        fields = {**entry.fields, **row.fields} if entry.fields else row.fields
        sweep = {k: v for k, v in entry.sweep.items() if k not in row.fields}
        return name, name_origin, row.origin, fields, sweep

    def claim_name(self, name: str, origin: Origin) -> bool:
        first = self.names.get(name)
        if first is None:
            self.names[name] = origin
            return True
        at = f"line {first.line}, col {first.col}"
        if first.file != origin.file:
            at = f"{first.file}:{first.line}:{first.col}"
        self.problems.append(origin.problem(f"duplicate job name {name!r} (first at {at})"))
        return False

    def jobs(
        self,
        name: str,
        origin: Origin,
        fields: dict[str, Value],
        sweep: dict[str, list[Value]],
        repeat: int,
        rows_of: str | None = None,
    ) -> Iterator[Draft]:
        base = {k: self.prepare(k, v) for k, v in fields.items()}
        order = self.field_order((*base, *sweep))
        head = f"{self.run_key}/{names.key_text(name)}"  # job_key(run, name, (), 0)
        axes = [[self.axis_value(k, v) for v in sweep[k]] for k in sorted(sweep)]
        for point in itertools.product(*axes):
            merged: dict[str, Value] = base
            swept: tuple[tuple[str, Any], ...] = ()
            key_parts: list[str] = []
            name_parts: tuple[str, ...] = ()
            if point:  # a swept job (a plain one, most of a big file, skips all this)
                merged = dict(base)
                for p in point:
                    merged[p.field] = (p.value, p.origin)
                swept = tuple((p.field, p.value) for p in point)
                key_parts = [p.key_part for p in point]
                name_parts = tuple(p.name_part for p in point)
            payload = {k: merged[k][0] for k in order}
            fields_of = self.add_shot_type(payload, merged)
            canon = names.canonical_json(payload)
            for r in range(repeat):
                key = names.job_key_after(head, key_parts, r)
                yield Draft(
                    name, key, origin, payload, fields_of, swept, name_parts, r, canon, rows_of
                )

    def axis_value(self, field: str, value: Value) -> _Point:
        v, origin = self.prepare(field, value)
        return _Point(field, v, origin, names.key_part(field, v), names.name_part(field, v))

    def field_order(self, fields: tuple[str, ...]) -> tuple[str, ...]:
        """The payload's fields in the schema's order (then by name), worked out once per set."""
        known = self.orders.get(fields)
        if known is None:
            known = self.orders[fields] = tuple(sorted(set(fields), key=self._rank))
        return known

    def _rank(self, field: str) -> tuple[int, str]:
        return (self.order.get(field, len(self.order)), field)

    def add_shot_type(self, payload: dict[str, Any], fields: dict[str, Value]) -> dict[str, Value]:
        """`shot_type: customize` added (see the module invariants); the fields with it."""
        prop = self.props.get("shot_type")
        if "multi_prompt" not in payload or "shot_type" in payload or not prop:
            return fields
        if "customize" not in prop.get("enum", ["customize"]):
            return fields
        payload["shot_type"] = "customize"
        return {**fields, "shot_type": ("customize", fields["multi_prompt"][1])}

    # -- values --------------------------------------------------------------------------
    def prepare(self, field: str, value: Value) -> Value:
        """Vars substituted into prompt texts, numbers normalized."""
        v, origin = value
        if field in TEMPLATED and isinstance(v, str):
            v = self.substitute(v, origin)
        elif field == "multi_prompt" and isinstance(v, list):
            v = [self.shot(i, shot, origin) for i, shot in enumerate(v)]
        v = names.normalize(v)
        return value if v is value[0] else (v, origin)

    def shot(self, i: int, shot: Any, origin: Origin) -> Any:
        if isinstance(shot, dict) and isinstance(shot.get("prompt"), str):
            at = nested(self.doc, origin, (i, "prompt"))
            return {**shot, "prompt": self.substitute(shot["prompt"], at)}
        return shot

    def substitute(self, text: str, origin: Origin) -> str:
        if "{" not in text and "}" not in text:
            return text

        def repl(m: re.Match[str]) -> str:
            token = m.group(0)
            if token in ("{{", "}}"):
                return token[0]
            var = m.group(1)
            if var in self.vars:
                self.used_vars.add(var)
                return str(self.vars[var][0])
            self.undefined(var, token, origin)
            return token

        return _PLACEHOLDER.sub(repl, text)

    def undefined(self, var: str, token: str, origin: Origin) -> None:
        hint = did_you_mean(var, list(self.vars))
        if not self.vars:
            hint = " (no `vars:` are defined; write {{ and }} for literal braces)"
        line, col = self.placeholder_pos(token, origin)
        what = f"undefined var {var!r}{hint}"
        self.problems.append(Problem(origin.file, line, col, origin.where, what))

    def placeholder_pos(self, token: str, origin: Origin) -> tuple[int, int]:
        """Where `{var}` itself was written, when it can be found in the source text."""
        span = self.doc.span(origin.path) if origin.path is not None else None
        if span is None:
            return origin.line, origin.col
        text = self.doc.text
        at = text.find(token, span[0], span[1])
        if at < 0:
            return origin.line, origin.col
        line = text.count("\n", 0, at) + 1
        return line, at - text.rfind("\n", 0, at)


def _product(sizes: Any) -> int:
    n = 1
    for s in sizes:
        n *= s
    return n


class KeyCheck:
    """A second line of defence: two drafts with one key is an error at the second."""

    def __init__(self) -> None:
        self.seen: dict[str, Origin] = {}  # key -> where its first job was written
        self.problems: list[Problem] = []

    def add(self, d: Draft) -> None:
        first = self.seen.get(d.key)
        if first is None:
            self.seen[d.key] = d.origin
        else:
            what = f"duplicate job key {d.key!r} (first at {first.source})"
            self.problems.append(d.origin.problem(what))


class Finisher:
    """JobSpecs, one per draft in file order: unique output names, fingerprints, costs."""

    def __init__(self, *, run: str, model: str, price: Price, schema: ModelSchema) -> None:
        self.run, self.model, self.price = run, model, price
        duration = schema.default("duration")
        self.default_duration = duration if isinstance(duration, int) else 5
        sound = schema.default("sound")
        self.default_sound = True if sound is None else sound
        self.stems = names.UniqueStems()
        self.fingerprints: dict[str, str] = {}
        self.costs: dict[tuple[Any, Any], float] = {}

    def add(self, d: Draft) -> JobSpec:
        fp = self.fingerprints.get(d.canon)
        if fp is None:
            fp = self.fingerprints[d.canon] = names.fingerprint(self.model, d.canon)
        seconds = d.payload.get("duration")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            seconds = self.default_duration  # a user schema may type it otherwise
        billed = (seconds, bool(d.payload.get("sound", self.default_sound)))  # as estimated
        cost = self.costs.get(billed)
        if cost is None:
            cost = self.costs[billed] = self.price.estimate(
                {"duration": billed[0], "sound": billed[1]}, default_duration=self.default_duration
            )
        return JobSpec(
            run=self.run,
            key=d.key,
            name=d.name,
            model=self.model,
            payload=d.payload,
            fingerprint=fp,
            output_name=self.stems.add(d.key, names.output_stem(d.name, d.name_parts, d.repeat)),
            sweep=dict(d.sweep),
            repeat=d.repeat,
            cost=cost,
            source=d.origin.source,
            rows_of=d.rows_of,
        )


def row_name(base: str, row: Row, seen: Counter[str]) -> str:
    """A default name for a row without a `name` cell, from what the row says.

    Not from its position: inserting or sorting rows must not rename (and so re-render)
    the others. Identical rows are told apart by their order among themselves.
    """
    cells = {k: v for k, (v, _) in row.fields.items()}
    digest = hashlib.sha256(names.canonical_json(cells).encode()).hexdigest()[:6]
    words = re.findall(r"[A-Za-z0-9]+", str(cells.get("prompt", "")))[:4]
    name = "-".join([base, *(w.lower() for w in words), digest])
    seen[name] += 1
    return name if seen[name] == 1 else f"{name}-{seen[name]}"
