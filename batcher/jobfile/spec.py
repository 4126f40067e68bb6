"""Position-carrying intermediate forms between the YAML document and the JobSpecs.

Invariants: every value that can end up in a payload travels with an `Origin` saying
where it was written (the job file, or a cell of a rows file) and how to name that place
(`where`, e.g. `jobs[2].sweep.cfg_scale[1]`); a problem about that value is reported
there, so a value from `defaults:` or from a sweep is blamed where it was written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from batcher.errors import Problem
from batcher.jobfile.yamlpos import Doc, YPath, fmt_path


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a value was written: file, 1-based line/col, display path, YAML path."""

    file: str
    line: int
    col: int
    where: str
    path: YPath | None = None  # set when the value is in the job file (nested lookups)

    def problem(self, what: str, *, warning: bool = False, where: str | None = None) -> Problem:
        return Problem(
            self.file,
            self.line,
            self.col,
            self.where if where is None else where,
            what,
            "warning" if warning else "error",
        )

    @property
    def source(self) -> str:
        return f"{self.file}:{self.line}"


def yaml_origin(doc: Doc, path: YPath, *, at_key: bool = False) -> Origin:
    """The origin of the value (or of its key) at `path` in the job file."""
    line, col = doc.key_pos(path) if at_key else doc.pos(path)
    return Origin(doc.file, line, col, fmt_path(path), path)


def nested(doc: Doc, origin: Origin, rest: YPath) -> Origin:
    """Origin of a part inside a value (e.g. `multi_prompt[1].duration`)."""
    if not rest:
        return origin
    where = origin.where + fmt_path(("", *rest))  # the "" root keeps a leading "."
    if origin.path is None:
        return Origin(origin.file, origin.line, origin.col, where)
    full = (*origin.path, *rest)
    line, col = doc.pos(full)
    return Origin(origin.file, line, col, where, full)


Value = tuple[Any, Origin]


@dataclass
class Entry:
    """One item of `jobs:` after shape checks, with `defaults:` merged in."""

    index: int
    origin: Origin  # the entry itself
    name: str | None  # as written; None when the name is to be derived
    name_origin: Origin
    fields: dict[str, Value] = field(default_factory=dict)
    sweep: dict[str, list[Value]] = field(default_factory=dict)
    repeat: int = 1
    rows: Value | None = None  # (relative path, origin of the `rows:` value)


@dataclass
class Body:
    """Everything below the header: vars and the entries."""

    vars: dict[str, Value] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)
