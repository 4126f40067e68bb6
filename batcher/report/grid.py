"""Sweep grids: which jobs belong together and which swept fields make rows and columns.

Invariants:
- Pure functions of `JobRecord` lists; input order is kept wherever no rule says otherwise.
- Jobs are grouped by job name; a group is a *sweep group* when any of its jobs has a
  non-empty `sweep`. Jobs without any sweep all go to one plain gallery.
- Jobs made from the rows of one rows entry (a CSV/JSONL file) with a sweep make one
  group, not one per row: its first axis is the row (`ROW`, labelled by job name, in file
  order), on rows by default, and the sweep's axes follow (the first on columns).
- A swept value is shown by its *label*: strings as written, anything else as compact JSON
  (`0.3`, `true`, `[1, 2]`); a job missing a field that its group sweeps gets `MISSING`.
- Axis labels are ordered numerically when every value is a number, else by first
  appearance; axes are ordered by distinct-value count (most first), ties by first
  appearance. The default layout puts the first axis on rows and the second on columns;
  a single axis goes on columns (one row); no axis gives a single cell.
- Within a cell, jobs are ordered by repeat index, then by input order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from batcher.models import JobRecord

MISSING = "\u2014"  # label of a field a job does not sweep (an em dash)
ROW = "row"  # the axis of a rows group that tells its rows apart (labels: job names)


@dataclass(frozen=True)
class Axis:
    """One swept field of a group and its distinct value labels, in display order."""

    field: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Group:
    """The jobs sharing one job name that were expanded from a sweep."""

    name: str
    records: tuple[JobRecord, ...]
    axes: tuple[Axis, ...]
    row_axis: str | None = None  # a rows group: the field name of its row axis
    fixed: tuple[str | None, str | None] | None = None  # a part: its whole group's layout

    @property
    def default_layout(self) -> tuple[str | None, str | None]:
        """(row field, column field) chosen automatically: a rows group puts its rows
        down the side and the sweep's first axis across (a part keeps its group's)."""
        if self.fixed is not None:
            return self.fixed
        if self.row_axis is not None:
            rest = [a for a in self.axes if a.field != self.row_axis]
            return self.row_axis, (rest[0].field if rest else None)
        return choose_axes(self.axes)

    @property
    def shared(self) -> dict[str, Any]:
        """Payload fields every job of the group has, with the same value."""
        first, *rest = self.records
        return {
            k: v
            for k, v in first.payload.items()
            if all(k in r.payload and r.payload[k] == v for r in rest)
        }

    def label(self, record: JobRecord, field: str) -> str:
        """The label of `record`'s value for a swept `field` (its name on the row axis)."""
        if field == self.row_axis:
            return record.name
        return value_label(record.sweep[field]) if field in record.sweep else MISSING


@dataclass(frozen=True)
class Cell:
    """The jobs at one (row label, column label) crossing, in display order."""

    row: str | None
    col: str | None
    records: tuple[JobRecord, ...]


def value_label(value: Any) -> str:
    """How a swept value reads in a grid header: strings as-is, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and len(_LABELS) < 4096:  # numbers and booleans:
        key = (type(value), value)  # a few distinct ones, read in every card of a report
        found = _LABELS.get(key)
        if found is None:
            found = _LABELS[key] = _LABEL(value)
        return found
    return _LABEL(value)


_LABEL = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode  # one coder for all
_LABELS: dict[tuple[type, Any], str] = {}  # (type, number) -> its label (True == 1 == 1.0)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _ordered_labels(values: Sequence[Any]) -> tuple[str, ...]:
    present = [v for v in values if v is not _ABSENT]
    if present and all(_is_number(v) for v in present):
        present = sorted(present, key=float)
    labels = list(dict.fromkeys(value_label(v) for v in present))
    if len(present) < len(values) and MISSING not in labels:
        labels.append(MISSING)
    return tuple(labels)


_ABSENT = object()


def sweep_axes(records: Sequence[JobRecord]) -> tuple[Axis, ...]:
    """The swept fields of `records`, most distinct values first."""
    fields: dict[str, None] = {}
    for record in records:
        fields.update(dict.fromkeys(record.sweep))
    axes = [
        Axis(name, _ordered_labels([r.sweep.get(name, _ABSENT) for r in records]))
        for name in fields
    ]
    axes.sort(key=lambda axis: -len(axis.labels))  # stable: ties keep first appearance
    return tuple(axes)


def choose_axes(axes: Sequence[Axis]) -> tuple[str | None, str | None]:
    """The default (row, column) fields: two axes -> rows x columns, one -> one row."""
    if not axes:
        return None, None
    if len(axes) == 1:
        return None, axes[0].field
    return axes[0].field, axes[1].field


def group_records(records: Iterable[JobRecord]) -> tuple[list[Group], list[JobRecord]]:
    """Split jobs into sweep groups (by job name, or by rows entry for jobs made from
    rows; first-seen order) and plain jobs."""
    by_name: dict[tuple[bool, str], list[JobRecord]] = {}
    for record in records:
        if record.rows_of is not None and record.sweep:
            by_name.setdefault((True, record.rows_of), []).append(record)
        else:
            by_name.setdefault((False, record.name), []).append(record)
    groups: list[Group] = []
    plain: list[JobRecord] = []
    for (rows, name), members in by_name.items():
        if rows:
            groups.append(_rows_group(name, members))
        elif any(r.sweep for r in members):
            groups.append(Group(name, tuple(members), sweep_axes(members)))
        else:
            plain.extend(members)
    return groups, plain


def regroup(group: Group, members: Sequence[JobRecord]) -> Group:
    """The part of `group` that `members` (rows of its grid, or a piece of a row) make:
    the same layout, each axis with the values those jobs have, in the group's order."""
    shown = {a.field: {group.label(r, a.field) for r in members} for a in group.axes}
    axes = tuple(
        Axis(a.field, tuple(x for x in a.labels if x in shown[a.field])) for a in group.axes
    )
    return Group(group.name, tuple(members), axes, group.row_axis, fixed=group.default_layout)


def grid_rows(group: Group) -> list[list[JobRecord]]:
    """The jobs of each row of `group`'s grid (its default layout), cell by cell."""
    rows, cols = group.default_layout
    return [[r for cell in line for r in cell.records] for line in layout(group, rows, cols)]


def _rows_group(name: str, members: Sequence[JobRecord]) -> Group:
    swept = sweep_axes(members)
    field = ROW
    while any(a.field == field for a in swept):  # a swept field already called "row"
        field = f"({field})"
    rows = Axis(field, tuple(dict.fromkeys(r.name for r in members)))
    return Group(name, tuple(members), (rows, *swept), row_axis=field)


def layout(group: Group, rows: str | None, cols: str | None) -> list[list[Cell]]:
    """The grid of `group` with `rows` x `cols` (either may be None: a single row/column)."""
    axes: Mapping[str, Axis] = {axis.field: axis for axis in group.axes}
    row_labels: Sequence[str | None] = axes[rows].labels if rows else [None]
    col_labels: Sequence[str | None] = axes[cols].labels if cols else [None]
    buckets: dict[tuple[str | None, str | None], list[JobRecord]] = {}
    for record in sorted(group.records, key=lambda r: r.repeat):  # stable: input order next
        row = group.label(record, rows) if rows else None
        col = group.label(record, cols) if cols else None
        buckets.setdefault((row, col), []).append(record)
    return [
        [Cell(row, col, tuple(buckets.get((row, col), ()))) for col in col_labels]
        for row in row_labels
    ]
