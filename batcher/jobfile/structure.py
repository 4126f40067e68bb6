"""Shape checks of a parsed job file: top-level keys, run options, prices, vars, defaults,
job entries, sweeps and repeats. Input *values* are checked later (rules.py), on the
expanded payloads; here only the structure around them is.

Invariants: every problem found is collected (never raised one at a time) and located at
the offending key or value; the result is best-effort, so a file with a bad sweep still
has its other jobs checked. `Reader.header()` needs no schema; `Reader.body()` does (it
must know the model's input fields).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batcher.errors import JobFileInvalid, Problem
from batcher.jobfile import names
from batcher.jobfile.spec import Body, Entry, Origin, Value
from batcher.jobfile.yamlpos import Doc, YPath
from batcher.models import DEFAULT_MODEL, RunOptions

OPTION_KEYS = (
    "concurrency",
    "max_cost",
    "max_attempts",
    "on_unknown",
    "output_dir",
    "deadline",
    "notify",
)
TOP_KEYS = ("model", "schema", "name", "defaults", "vars", "jobs", "prices", *OPTION_KEYS)
ENTRY_KEYS = ("name", "sweep", "repeat", "rows")
DEFAULTS_KEYS = ("sweep", "repeat")
PRICE_KEYS = ("usd_per_second", "usd_per_second_with_sound")
ON_UNKNOWN = ("hold", "resubmit")
ALIASES = {
    "generate_audio": "sound",
    "audio": "sound",
    "negative": "negative_prompt",
    "ratio": "aspect_ratio",
    "aspect": "aspect_ratio",
    "cfg": "cfg_scale",
    "shots": "multi_prompt",
    "repeats": "repeat",
    "job": "jobs",
    "default": "defaults",
    "variables": "vars",
    "price": "prices",
    "run": "name",
    "seconds": "duration",
    "length": "duration",
    "text": "prompt",
}
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def did_you_mean(key: str, known: tuple[str, ...] | list[str]) -> str:
    """` (did you mean 'sound'?)` for a misspelt or aliased key, else ``."""
    alias = ALIASES.get(key) or ALIASES.get(key.lower())
    if alias in known:
        return f" (did you mean {alias!r}?)"
    lowered = {k.lower(): k for k in known}
    if key.lower() in lowered:
        return f" (did you mean {lowered[key.lower()]!r}?)"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def kind(value: Any) -> str:
    """A YAML-flavoured name for a value's type, for messages."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


@dataclass
class Header:
    """The top-level settings: model, schema file, run name, run options, price overrides."""

    model: str = DEFAULT_MODEL
    model_origin: Origin | None = None
    schema_file: Value | None = None
    run: str = ""
    options: RunOptions = field(default_factory=RunOptions)
    prices: dict[str, float] = field(default_factory=dict)


class Reader:
    """Collects shape problems of one parsed document."""

    def __init__(self, doc: Doc) -> None:
        self.doc = doc
        self.problems: list[Problem] = list(doc.problems)
        self.root: dict[str, Any] = {}

    # -- helpers -------------------------------------------------------------------------
    def error(self, path: YPath, what: str, *, at_key: bool = False, warning: bool = False) -> None:
        origin = Origin.at(self.doc, path, at_key=at_key)
        self.problems.append(origin.problem(what, warning=warning))

    def unknown(self, path: YPath, known: tuple[str, ...] | list[str], extra: str = "") -> None:
        self.error(path, f"unknown key{did_you_mean(str(path[-1]), known)}{extra}", at_key=True)

    def mapping(self, path: YPath, value: Any, what: str) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        self.error(path, f"{what} must be a mapping (key: value lines), not {kind(value)}")
        return None

    def number(self, path: YPath, value: Any, *, integer: bool, minimum: float) -> float | None:
        ok = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok:
            self.error(
                path, f"must be {'an integer' if integer else 'a number'}, not {kind(value)}"
            )
            return None
        if not math.isfinite(value) or value < minimum:
            self.error(path, f"must be at least {minimum:g}, not {value!r}")
            return None
        return float(value)

    # -- header --------------------------------------------------------------------------
    def header(self, path: Path) -> Header:
        """Top-level shape, model, schema file, run name, run options and prices."""
        if not isinstance(self.doc.data, dict):
            what = "the top level must be a mapping with a `jobs:` list"
            what = f"{what}, not {kind(self.doc.data)}"
            if self.doc.data is None:
                what = "no YAML content (only comments or blank lines): add a `jobs:` list"
            self.problems.append(Origin.at(self.doc, ()).problem(what))
            raise JobFileInvalid(self.problems)
        self.root = self.doc.data
        h = Header()
        model = self.root.get("model", DEFAULT_MODEL)
        if "model" in self.root:
            h.model_origin = Origin.at(self.doc, ("model",))
            if not isinstance(model, str) or not model.strip():
                self.error(("model",), f"model must be a model id (text), not {kind(model)}")
                model = DEFAULT_MODEL
        h.model = model.strip()
        if "schema" in self.root:
            s = self.root["schema"]
            if isinstance(s, str) and s.strip():
                h.schema_file = (s, Origin.at(self.doc, ("schema",)))
            else:
                self.error(("schema",), f"schema must be a path to a JSON file, not {kind(s)}")
        h.run = self.run_name(path)
        h.options = self.options()
        h.prices = self.prices()
        return h

    def run_name(self, path: Path) -> str:
        raw = self.root.get("name", path.stem)
        if not isinstance(raw, str) or not raw.strip():
            self.error(("name",), f"the run name must be non-empty text, not {kind(raw)}")
            raw = path.stem
        run = names.slug(raw.strip(), fallback="run")
        if run != raw and "name" in self.root:
            self.error(("name",), f"run name {raw!r} is used as {run!r}", warning=True)
        return run

    def options(self) -> RunOptions:
        r = self.root
        got: dict[str, Any] = {}
        for key, integer, minimum in (
            ("concurrency", True, 1),
            ("max_attempts", True, 1),
            ("max_cost", False, 0),
        ):
            if key in r:
                n = self.number((key,), r[key], integer=integer, minimum=minimum)
                if n is not None:
                    got[key] = int(n) if integer else n
        if "deadline" in r:
            n = self.number(("deadline",), r["deadline"], integer=False, minimum=0)
            if n == 0:
                self.error(("deadline",), "must be more than 0 seconds")
            elif n is not None:
                got["deadline_s"] = n
        if "on_unknown" in r:
            v = r["on_unknown"]
            if v in ON_UNKNOWN:
                got["on_unknown"] = v
            else:
                self.error(("on_unknown",), f"must be one of 'hold', 'resubmit', not {v!r}")
        for key, what in (("notify", "a shell command"), ("output_dir", "a folder path")):
            if key in r:
                v = r[key]
                if isinstance(v, str) and v.strip() and "\x00" not in v:
                    got[key] = v
                else:
                    self.error((key,), f"must be {what} (text), not {v!r}")
        return RunOptions(**got)

    def prices(self) -> dict[str, float]:
        if self.root.get("prices") is None:
            return {}
        table = self.mapping(("prices",), self.root["prices"], "prices")
        out: dict[str, float] = {}
        for key, value in (table or {}).items():
            if key not in PRICE_KEYS:
                self.unknown(("prices", key), PRICE_KEYS)
                continue
            n = self.number(("prices", key), value, integer=False, minimum=0)
            if n is not None:
                out[key] = n
        return out

    # -- body ----------------------------------------------------------------------------
    def body(self, inputs: tuple[str, ...]) -> Body:
        """vars, defaults and every entry of `jobs:` (needs the model's input fields)."""
        for key in self.root:
            if key in TOP_KEYS:
                continue
            extra = " (input fields go under `defaults:` or in a job)" if key in inputs else ""
            self.unknown((key,), TOP_KEYS, extra)
        body = Body(vars=self.vars())
        defaults = self.section(("defaults",), inputs, DEFAULTS_KEYS, what="defaults")
        jobs = self.root.get("jobs")
        if "jobs" not in self.root or jobs is None:
            self.problems.append(
                Origin.at(self.doc, ("jobs",) if "jobs" in self.root else ()).problem(
                    "no jobs: add a `jobs:` list with at least one job", where=""
                )
            )
            return body
        if not isinstance(jobs, list):
            self.error(("jobs",), f"must be a list (lines starting with '- '), not {kind(jobs)}")
            return body
        if not jobs:
            self.error(("jobs",), "is an empty list: add at least one job")
        body.entries = self.entries(jobs, inputs, defaults)
        return body

    def entries(self, jobs: list[Any], inputs: tuple[str, ...], defaults: Entry) -> Iterator[Entry]:
        """Each job entry, read as it is asked for (its problems added as it is read)."""
        for i, item in enumerate(jobs):
            jobs[i] = None  # the entry holds what is needed: the document's copy can go
            entry = self.entry(i, item, inputs, defaults)
            if entry is not None:
                yield entry

    def vars(self) -> dict[str, Value]:
        raw = self.root.get("vars")
        table = {} if raw is None else self.mapping(("vars",), raw, "vars") or {}
        out: dict[str, Value] = {}
        for name, value in table.items():
            path: YPath = ("vars", name)
            if not _VAR_NAME.match(name):
                self.error(path, "a var name must be letters, digits and _", at_key=True)
            elif isinstance(value, bool) or not isinstance(value, str | int | float):
                self.error(path, f"a var must be text or a number, not {kind(value)}")
            else:
                out[name] = (str(value), Origin.at(self.doc, path))
        return out

    def section(
        self,
        path: YPath,
        inputs: tuple[str, ...],
        extra: tuple[str, ...],
        *,
        what: str,
        node: Any = None,
        origin: Origin | None = None,
    ) -> Entry:
        """`defaults:` or one job mapping (`node`, else read at `path`): input fields, sweep,
        repeat (+ name, rows)."""
        node = self.doc_get(path) if node is None else node
        origin = Origin.at(self.doc, path) if origin is None else origin
        entry = Entry(index=-1, origin=origin, name=None, name_origin=origin, repeat=0)
        table = (self.mapping(path, node, what) if node is not None else None) or {}
        for key, value in table.items():
            sub = (*path, key)
            if key in inputs:
                entry.fields[key] = (value, Origin.at(self.doc, sub))
            elif key not in extra:
                self.unknown(sub, (*inputs, *extra))
        if "repeat" in table:
            entry.repeat = self.repeat((*path, "repeat"), table["repeat"])
        if "sweep" in table:
            entry.sweep = self.sweep((*path, "sweep"), table["sweep"], inputs, entry)
        return entry

    def raw(self, path: YPath) -> str:
        """The source text of a scalar, as written."""
        start, end = self.doc.span(path) or (0, 0)
        return self.doc.text[start:end]

    def doc_get(self, path: YPath) -> Any:
        node: Any = self.root
        for part in path:
            if isinstance(node, dict) and isinstance(part, str) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                return None
        return node

    def repeat(self, path: YPath, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            hint = " (remove the quotes)" if isinstance(value, str) and value.isdigit() else ""
            self.error(path, f"repeat must be a whole number (1 or more), not {kind(value)}{hint}")
            return 0
        if value < 1:
            self.error(path, f"repeat must be at least 1, not {value}")
            return 0
        return value

    def sweep(
        self, path: YPath, value: Any, inputs: tuple[str, ...], entry: Entry
    ) -> dict[str, list[Value]]:
        table = self.mapping(path, value, "sweep")
        out: dict[str, list[Value]] = {}
        for key, values in (table or {}).items():
            sub = (*path, key)
            if key not in inputs:
                if key in ENTRY_KEYS:
                    self.error(
                        sub, f"cannot sweep {key!r}: only input fields can be swept", at_key=True
                    )
                else:
                    self.unknown(sub, inputs)
                continue
            if key in entry.fields:
                line = entry.fields[key][1].line
                self.error(sub, f"{key} is both set (line {line}) and swept: keep one", at_key=True)
            if not isinstance(values, list):
                self.error(sub, f"sweep values must be a list, e.g. {key}: [{_example(values)}]")
                continue
            if not values:
                self.error(sub, "sweep of an empty list makes no jobs")
                continue
            out[key] = self.sweep_values(sub, values)
        return out

    def sweep_values(self, path: YPath, values: list[Any]) -> list[Value]:
        seen: dict[str, int] = {}
        out: list[Value] = []
        for i, v in enumerate(values):
            origin = Origin.at(self.doc, (*path, i))
            canon = names.canonical_json(names.normalize(v))
            if canon in seen:
                self.problems.append(
                    origin.problem(f"duplicate sweep value {_example(v)} (same as [{seen[canon]}])")
                )
                continue
            seen[canon] = i
            out.append((v, origin))
        return out

    def entry(self, i: int, item: Any, inputs: tuple[str, ...], defaults: Entry) -> Entry | None:
        path: YPath = ("jobs", i)
        origin = Origin.at(self.doc, path)
        if isinstance(item, str):  # shorthand: a bare prompt
            e = Entry(index=i, origin=origin, name=None, name_origin=origin, repeat=0)
            e.fields["prompt"] = (item, origin)
            item = {}
        elif isinstance(item, dict):
            e = self.section(path, inputs, ENTRY_KEYS, what="a job", node=item, origin=origin)
            e.index = i
        else:
            self.error(path, f"a job must be a mapping (or a prompt text), not {kind(item)}")
            return None
        if "name" in item:
            e.name_origin = Origin.at(self.doc, (*path, "name"))
            n = item["name"]
            if isinstance(n, str) and n.strip():
                e.name = n.strip()
            else:
                hint = ""
                if isinstance(n, int | float):
                    hint = f' (quote it: name: "{self.raw((*path, "name"))}")'
                self.error(
                    (*path, "name"), f"a job name must be non-empty text, not {kind(n)}{hint}"
                )
        if "rows" in item:
            r = item["rows"]
            if isinstance(r, str) and r.strip():
                e.rows = (r.strip(), Origin.at(self.doc, (*path, "rows")))
            else:
                what = f"rows must be the path of a .csv, .tsv or .jsonl file, not {kind(r)}"
                self.error((*path, "rows"), what)
        # The job's own fields and sweep over the defaults (a field the job sets is not
        # swept by the defaults).
        if defaults.sweep:
            swept = {k: v for k, v in defaults.sweep.items() if k not in e.fields}
            e.sweep = {**swept, **e.sweep}
        if defaults.fields:
            e.fields = {**defaults.fields, **e.fields}
        e.repeat = e.repeat or defaults.repeat or 1
        return e


def _example(value: Any) -> str:
    return names.canonical_json(value) if not isinstance(value, str) else f'"{value}"'
