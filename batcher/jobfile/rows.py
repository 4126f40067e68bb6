"""Bulk prompts from a spreadsheet: a CSV/TSV (header row = field names) or JSONL file.

Invariants:
- Each data row becomes one `Row` whose every value carries the Origin of its own cell
  (`rows.csv:LINE:COL`), so schema errors on row values point into the rows file.
- CSV cells are text; a cell is turned into the field's schema type when it reads as one
  ("5" -> 5 for an integer field, "yes" -> true for a boolean, JSON for arrays/objects)
  and left as text otherwise, so the schema check reports it like any other bad value.
- An empty cell (or a JSON null) means "not set here": defaults and the job's own fields
  apply. A `name` column names the job; it is never sent.
- Problems are collected, never raised; a file that cannot be read is one problem located
  at the `rows:` value in the job file.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batcher.errors import JobFileError, Problem
from batcher.jobfile.source import MAX_ROWS_BYTES, read_text
from batcher.jobfile.spec import Origin, Value
from batcher.jobfile.structure import did_you_mean

MAX_ROWS = 100_000
_INT = re.compile(r"[+-]?\d+\Z")
_TRUE = {"true", "yes", "on", "1", "y"}
_FALSE = {"false", "no", "off", "0", "n"}


@dataclass
class Row:
    """One data row: its number (1-based), where it starts, its name and its fields."""

    number: int
    origin: Origin
    name: Value | None = None
    fields: dict[str, Value] = field(default_factory=dict)


def read_rows(
    path: Path,
    *,
    display: str,
    where: str,
    at: Origin,
    props: Mapping[str, Any],
) -> tuple[list[Row], list[Problem]]:
    """Rows of a .csv/.tsv/.jsonl file; `at` is the `rows:` value in the job file."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".jsonl", ".ndjson"):
        return [], [at.problem(f"{display}: rows file must end in .csv, .tsv or .jsonl")]
    try:
        text = read_text(path, display=display, max_bytes=MAX_ROWS_BYTES)
    except JobFileError as exc:
        return [], [at.problem(str(exc))]
    reader = _Jsonl if suffix in (".jsonl", ".ndjson") else _Csv
    r = reader(display, where, props)
    r.read(text, "\t" if suffix == ".tsv" else ",")
    if not r.rows and not r.problems:
        r.problems.append(at.problem(f"{display}: no data rows"))
    return r.rows, r.problems


class _Reader:
    def __init__(self, display: str, where: str, props: Mapping[str, Any]) -> None:
        self.display = display
        self.where = where
        self.props = props
        self.known = ("name", *props)
        self.rows: list[Row] = []
        self.problems: list[Problem] = []
        self.too_many = False
        self.seen = 0  # data records met, readable or not: rows[i] counts them all

    def origin(self, line: int, col: int, where: str) -> Origin:
        return Origin(self.display, line, col, where)

    def add(self, line: int, values: list[tuple[str, Any, int, int]]) -> None:
        """values: (column, value, line, col) of one data row."""
        if len(self.rows) >= MAX_ROWS:
            if not self.too_many:
                o = self.origin(line, 1, self.where)
                self.problems.append(o.problem(f"more than {MAX_ROWS} rows: split the file"))
            self.too_many = True
            return
        n = self.seen - 1
        row = Row(number=n + 1, origin=Origin.cell(self.display, line, 1, self.where, n, ""))
        for column, value, vline, vcol in values:
            origin = Origin.cell(self.display, vline, vcol, self.where, n, column)
            if column == "name":
                if value is not None and str(value).strip():
                    row.name = (str(value).strip(), origin)
            elif value is not None:
                row.fields[column] = (value, origin)
        self.rows.append(row)

    def unknown(self, line: int, col: int, column: str) -> None:
        hint = did_you_mean(column, self.known)
        for sep in (";", "\t", "|"):
            if sep in column and all(p.strip() in self.known for p in column.split(sep)):
                hint = f" (columns are separated by {sep!r} here; use commas, or a .tsv for tabs)"
        o = self.origin(line, col, f"{self.where}.{column}" if column else self.where)
        what = f"unknown column {column!r}{hint}" if column else "empty column name"
        self.problems.append(o.problem(what))


class _Csv(_Reader):
    def read(self, text: str, delimiter: str) -> None:
        lines = io.StringIO(text, newline="").readlines()
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        header: list[str] | None = None
        start = 1
        try:
            for record in reader:
                cells = _cell_positions(
                    "".join(lines[start - 1 : reader.line_num]), start, delimiter
                )
                if any(c.strip() for c in record):
                    if header is None:
                        header = self.header(record, cells)
                    else:
                        self.seen += 1
                        self.row(header, record, cells)
                start = reader.line_num + 1
        except csv.Error as exc:
            o = self.origin(reader.line_num or 1, 1, self.where)
            self.problems.append(o.problem(f"CSV syntax error: {exc}"))

    def header(self, record: list[str], cells: list[tuple[int, int]]) -> list[str]:
        header = [c.strip() for c in record]
        seen: set[str] = set()
        for i, column in enumerate(header):
            line, col = cells[i] if i < len(cells) else cells[-1]
            if column in seen:
                o = self.origin(line, col, f"{self.where}.{column}")
                self.problems.append(o.problem(f"duplicate column {column!r}"))
            elif column not in self.known:
                self.unknown(line, col, column)
            seen.add(column)
        return header

    def row(self, header: list[str], record: list[str], cells: list[tuple[int, int]]) -> None:
        line = cells[0][0]
        if len(record) > len(header):
            o = self.origin(*cells[len(header)], self.where)
            self.problems.append(
                o.problem(f"row has {len(record)} cells but the header has {len(header)} columns")
            )
            return
        values: list[tuple[str, Any, int, int]] = []
        for i, cell in enumerate(record):
            column = header[i]
            if column != "name" and column not in self.props:
                continue  # reported once, at the header
            value = None if cell.strip() == "" else _coerce(cell, self.props.get(column, {}))
            values.append((column, value, *cells[i]))
        self.add(line, values)


class _Jsonl(_Reader):
    def read(self, text: str, delimiter: str) -> None:
        for number, raw in enumerate(text.split("\n"), start=1):
            if not raw.strip():
                continue
            self.seen += 1
            try:
                data = json.loads(raw)
            except json.JSONDecodeError as exc:
                o = self.origin(number, exc.colno, self.where)
                self.problems.append(o.problem(f"not valid JSON: {exc.msg}"))
                continue
            if not isinstance(data, dict):
                o = self.origin(number, 1, self.where)
                self.problems.append(o.problem("each line must be a JSON object {...}"))
                continue
            values: list[tuple[str, Any, int, int]] = []
            for column, value in data.items():
                kcol, vcol = _json_cols(raw, column)
                if column not in self.known:
                    self.unknown(number, kcol, column)
                    continue
                values.append((column, value, number, vcol))
            self.add(number, values)


def _json_cols(line: str, key: str) -> tuple[int, int]:
    """1-based columns of a key and of its value on a JSONL line (best effort)."""
    at = line.find(json.dumps(key, ensure_ascii=False))
    if at < 0:
        at = line.find(json.dumps(key))
    if at < 0:
        return 1, 1
    colon = line.find(":", at + len(key) + 2)
    v = colon + 1
    while v < len(line) and line[v] in " \t":
        v += 1
    return at + 1, (v + 1 if colon >= 0 else at + 1)


def _cell_positions(chunk: str, line: int, delimiter: str) -> list[tuple[int, int]]:
    """(line, col) where each cell of one CSV record starts."""
    if '"' not in chunk and "\n" not in chunk.rstrip("\r\n"):  # one plain line: by lengths
        out, col = [], 1
        for cell in chunk.rstrip("\r\n").split(delimiter):
            out.append((line, col))
            col += len(cell) + 1
        return out
    return _scanned_positions(chunk, line, delimiter)


def _scanned_positions(chunk: str, line: int, delimiter: str) -> list[tuple[int, int]]:
    """`_cell_positions` the long way: character by character, quotes and newlines kept."""
    out = [(line, 1)]
    col = 1
    quoted = False
    for ch in chunk:
        if ch == '"':
            quoted = not quoted
        elif ch == delimiter and not quoted:
            out.append((line, col + 1))
        if ch == "\n":
            line, col = line + 1, 1
        else:
            col += 1
    return out


def _types(prop: Mapping[str, Any]) -> list[str]:
    t = prop.get("type")
    if isinstance(t, str):
        return [t]
    return [x for x in t if isinstance(x, str)] if isinstance(t, list) else []


def _coerce(cell: str, prop: Mapping[str, Any]) -> Any:
    """A CSV cell in the field's type when it reads as one, else the text as written."""
    text = cell.strip()
    for t in _types(prop):
        if t == "integer" and _INT.match(text):
            return int(text)
        if t == "number":
            try:
                f = float(text)
            except ValueError:
                continue
            if f == f and abs(f) != float("inf"):
                return int(text) if _INT.match(text) else f
        if t == "boolean" and text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        if t in ("array", "object"):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                continue
        if t == "string":
            return cell
    return cell
