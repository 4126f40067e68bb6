"""Reports of a run, as text: an HTML gallery, JSONL/CSV manifests, a reproducing job file.

Invariants: every renderer is a pure function of `batcher.models.JobRecord`s (current and
superseded versions, in store order) and returns text, or yields it in pieces
(`jsonl_lines`, `csv_lines`: any iterable of records, in bounded memory); only
`batcher.cli` prints or writes files. Nothing here imports click, the store or the network.
"""

from __future__ import annotations

from batcher.report.html import html_pieces, render_html
from batcher.report.manifest import (
    CSV_COLUMNS,
    csv_lines,
    jsonl_lines,
    manifest_schema,
    render_csv,
    render_jsonl,
)
from batcher.report.recipe import NotReproducible, render_yaml

__all__ = [
    "CSV_COLUMNS",
    "NotReproducible",
    "csv_lines",
    "jsonl_lines",
    "manifest_schema",
    "render_csv",
    "html_pieces",
    "render_html",
    "render_jsonl",
    "render_yaml",
]
