"""Sweep grids: which jobs belong together and which swept fields make rows and columns.

Invariants:
- Pure functions of `JobRecord` lists; input order is kept wherever no rule says otherwise.
- Jobs are grouped by job name; a group is a *sweep group* when any of its jobs has a
  non-empty `sweep`. Jobs without any sweep all go to one plain gallery.
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

    @property
    def default_layout(self) -> tuple[str | None, str | None]:
        """(row field, column field) chosen automatically."""
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
        """The label of `record`'s value for a swept `field`."""
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
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _ordered_labels(values: Sequence[Any]) -> tuple[str, ...]:
    present = [v for v in values if v is not _ABSENT]
    if present and all(_is_number(v) for v in present):
        present = sorted(present, key=float)
    labels = list(dict.fromkeys(value_label(v) for v in present))
    if len(present) < len(values):
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
    """Split jobs into sweep groups (by job name, first-seen order) and plain jobs."""
    by_name: dict[str, list[JobRecord]] = {}
    for record in records:
        by_name.setdefault(record.name, []).append(record)
    groups: list[Group] = []
    plain: list[JobRecord] = []
    for name, members in by_name.items():
        if any(r.sweep for r in members):
            groups.append(Group(name, tuple(members), sweep_axes(members)))
        else:
            plain.extend(members)
    return groups, plain


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
