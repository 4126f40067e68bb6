"""Position-carrying intermediate forms between the YAML document and the JobSpecs.

Invariants: every value that can end up in a payload travels with an `Origin` saying
where it was written (the job file, or a cell of a rows file) and how to name that place
(`where`, e.g. `jobs[2].sweep.cfg_scale[1]`); a problem about that value is reported
there, so a value from `defaults:` or from a sweep is blamed where it was written.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from batcher.errors import Problem
from batcher.jobfile.yamlpos import Doc, YPath, fmt_path


class Origin:
    """Where a value was written: file, 1-based line/col, display path, YAML path.

    An origin in the job file is worked out from the document only when asked (a 100,000-job
    file makes half a million origins and reports, usually, none of them).
    """

    __slots__ = ("file", "path", "_doc", "_at_key", "_line", "_col", "_where")

    def __init__(
        self, file: str, line: int, col: int, where: str, path: YPath | None = None
    ) -> None:
        self.file = file
        self.path = path
        self._doc: Doc | None = None
        self._at_key = False
        self._line, self._col, self._where = line, col, where

    @classmethod
    def at(cls, doc: Doc, path: YPath, *, at_key: bool = False) -> Origin:
        """The value (or key) at `path` in the job file, located when first asked."""
        origin = cls.__new__(cls)
        origin.file, origin.path, origin._doc, origin._at_key = doc.file, path, doc, at_key
        origin._where = None  # type: ignore[assignment]
        return origin

    def _locate(self) -> None:
        doc, path = self._doc, self.path
        assert doc is not None and path is not None
        self._line, self._col = doc.key_pos(path) if self._at_key else doc.pos(path)
        self._doc = None

    @property
    def line(self) -> int:
        if self._doc is not None:
            self._locate()
        return self._line

    @property
    def col(self) -> int:
        if self._doc is not None:
            self._locate()
        return self._col

    @classmethod
    def cell(cls, file: str, line: int, col: int, table: str, row: int, column: str) -> Origin:
        """A cell of a rows file: `where` is `TABLE[ROW].COLUMN` (the row itself without
        a column), put together only when asked."""
        origin = cls(file, line, col, "")
        origin._where = (table, row, column)  # type: ignore[assignment]
        return origin

    @property
    def where(self) -> str:
        where: Any = self._where
        if where is None:
            assert self.path is not None
            where = self._where = fmt_path(self.path)
        elif isinstance(where, tuple):
            table, row, column = where
            where = self._where = f"{table}[{row}].{column}" if column else f"{table}[{row}]"
        text: str = where
        return text

    def _fields(self) -> tuple[Any, ...]:
        return (self.file, self.line, self.col, self.where, self.path)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Origin) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"Origin({self.file!r}, {self.line}, {self.col}, {self.where!r}, {self.path!r})"

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


@dataclass(slots=True)
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
    """Everything below the header: vars and the entries (read once, as they are asked for)."""

    vars: dict[str, Value] = field(default_factory=dict)
    entries: Iterator[Entry] = field(default_factory=lambda: iter(()))
