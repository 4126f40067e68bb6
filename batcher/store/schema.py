"""Migrations of the state database: append-only, applied when the store opens.

Invariant: a released migration never changes; a new need is a new `mNNN_` function.
"""

from __future__ import annotations

import sqlite_utils
from sqlite_utils import Migrations

migrations = Migrations("batcher")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE runs (
            name TEXT PRIMARY KEY, model TEXT NOT NULL, job_file TEXT, out_dir TEXT NOT NULL,
            options TEXT NOT NULL DEFAULT '{}', created_at REAL NOT NULL, updated_at REAL NOT NULL
        );
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY, run TEXT NOT NULL REFERENCES runs(name), key TEXT NOT NULL,
            version INTEGER NOT NULL, current INTEGER NOT NULL DEFAULT 1, name TEXT NOT NULL,
            model TEXT NOT NULL, fingerprint TEXT NOT NULL, payload TEXT NOT NULL,
            sweep TEXT NOT NULL DEFAULT '{}', repeat INTEGER NOT NULL DEFAULT 0,
            output_name TEXT NOT NULL, cost_estimate REAL NOT NULL DEFAULT 0,
            state TEXT NOT NULL, request_id TEXT, status_url TEXT, result_url TEXT,
            cancel_url TEXT, attempts INTEGER NOT NULL DEFAULT 0, error TEXT,
            outputs TEXT NOT NULL DEFAULT '[]', cost REAL, created_at REAL NOT NULL,
            submitted_at REAL, finished_at REAL, updated_at REAL NOT NULL,
            UNIQUE (run, key, version)
        );
        CREATE INDEX jobs_state ON jobs(state);
        CREATE INDEX jobs_run_key ON jobs(run, key, current);
        CREATE TABLE attempts (
            id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL REFERENCES jobs(id),
            number INTEGER NOT NULL, request_id TEXT, submitted_at REAL, finished_at REAL,
            outcome TEXT NOT NULL, error TEXT, cost REAL, UNIQUE (job_id, number)
        );
        CREATE INDEX attempts_request ON attempts(request_id);
        CREATE TABLE events (
            id INTEGER PRIMARY KEY, job_id INTEGER REFERENCES jobs(id), at REAL NOT NULL,
            from_state TEXT, to_state TEXT, detail TEXT
        );
        CREATE INDEX events_job ON events(job_id);
        """
    )


@migrations()
def m002_attempt_floor(db: sqlite_utils.Database) -> None:
    # Attempts numbered at or below the floor were used before a manual `retry`; the
    # attempt limit counts only the ones after it.
    db.execute("ALTER TABLE jobs ADD COLUMN attempt_floor INTEGER NOT NULL DEFAULT 0")


@migrations()
def m003_file_moves(db: sqlite_utils.Database) -> None:
    # Renames in the output folder, written down (with the record change that needs them)
    # before they are made, so a crash between the two is finished, not guessed at.
    # kind: 'output' (size + sha256 of the bytes to move) or 'sidecar'; state: 'planned'
    # until carried out, then 'done', 'missing' (no such file) or 'mismatch' (other bytes).
    db.executescript(
        """
        CREATE TABLE file_moves (
            id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL REFERENCES jobs(id),
            kind TEXT NOT NULL, src TEXT NOT NULL, dst TEXT NOT NULL, size INTEGER,
            sha256 TEXT, state TEXT NOT NULL DEFAULT 'planned', planned_at REAL NOT NULL,
            finished_at REAL
        );
        CREATE INDEX file_moves_planned ON file_moves(state) WHERE state = 'planned';
        """
    )


@migrations()
def m004_render_times(db: sqlite_utils.Database) -> None:
    # What renders took, per group of renders that share a render-time distribution (a
    # model and the parameters that drive it), so a later run polls knowing them.
    db.executescript(
        """
        CREATE TABLE render_times (
            id INTEGER PRIMARY KEY, grp TEXT NOT NULL, seconds REAL NOT NULL, at REAL NOT NULL
        );
        CREATE INDEX render_times_grp ON render_times(grp, at);
        """
    )


@migrations()
def m005_run_notes(db: sqlite_utils.Database) -> None:
    # Events of a run rather than of one job (an API outage, its end): job_id is NULL and
    # `run` names the run, so `batcher log` tells them in their place.
    db.execute("ALTER TABLE events ADD COLUMN run TEXT")


@migrations()
def m006_rows_of(db: sqlite_utils.Database) -> None:
    # The rows entry (its name, or its file's stem) a job was made from, NULL for a job
    # written out in the file: the report draws one rows entry's sweep as one grid.
    db.execute("ALTER TABLE jobs ADD COLUMN rows_of TEXT")
