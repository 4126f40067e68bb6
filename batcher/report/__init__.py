"""Reports of a run, as text: an HTML gallery, JSONL/CSV manifests, a reproducing job file.

Invariants: every renderer is a pure function of a list of `batcher.models.JobRecord`
(current and superseded versions, in store order) and returns text; only `batcher.cli`
prints or writes files. Nothing here imports click, the store or the network.
"""

from __future__ import annotations

from batcher.report.html import render_html
from batcher.report.manifest import CSV_COLUMNS, manifest_schema, render_csv, render_jsonl
from batcher.report.recipe import NotReproducible, render_yaml

__all__ = [
    "CSV_COLUMNS",
    "NotReproducible",
    "manifest_schema",
    "render_csv",
    "render_html",
    "render_jsonl",
    "render_yaml",
]
