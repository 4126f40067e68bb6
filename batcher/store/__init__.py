"""The state store: every run, job version, remote attempt and state change, in SQLite.

`db.Store` (transactions, writes, migrations on open) builds on `reader.Reader`
(queries); `rows` holds the row types, `schema` the append-only migrations, `placement` the
file names of each job version in the output folder. This package
is the only user of sqlite3 and sqlite_utils.
"""

from __future__ import annotations

from batcher.store.db import Store, plan_marks, plan_money
from batcher.store.ledger import SqliteLedger, rescue_path, rescued_entries
from batcher.store.placement import output_path, sidecar_path, version_stem
from batcher.store.rows import REMOVED, FileMove, Job, RunInfo, SyncResult
from batcher.store.schema import (
    m001_initial,
    m002_attempt_floor,
    m003_file_moves,
    m004_render_times,
    m005_run_notes,
    m006_rows_of,
    migrations,
)

__all__ = [
    "REMOVED",
    "FileMove",
    "Job",
    "RunInfo",
    "SqliteLedger",
    "Store",
    "SyncResult",
    "m001_initial",
    "m002_attempt_floor",
    "m003_file_moves",
    "m004_render_times",
    "m005_run_notes",
    "m006_rows_of",
    "migrations",
    "output_path",
    "plan_marks",
    "plan_money",
    "rescue_path",
    "rescued_entries",
    "sidecar_path",
    "version_stem",
]
