"""The state store, writing side (queries are in reader.py).

Invariants:
- The store package is the only place that imports sqlite_utils / sqlite3.
- Every state change goes through `transition()`: one IMMEDIATE transaction holding the
  compare-and-set on the job's current state, its new fields and its event row. A move
  not listed in `models.ALLOWED`, or from a state the caller did not expect, is refused.
- A job is committed as `submitting` (with a new attempt row) before its POST; its request
  id is committed the moment it is known (`record_submitted`).
- Migrations are append-only (`m001_…`, `m002_…`, `m003_…`), applied when the store opens.
- A file move in the output folder is recorded (`file_moves`) in the same transaction as
  the record change that needs it, and the record names the new path from then on; the
  rename follows (`outputs.finish_moves`), and only recorded moves are ever finished.
- A transaction commits or rolls back, whatever fails (the COMMIT too), and no sqlite3
  error leaves the store: each becomes a StateError subclass (see failures.py).
- The API token is never stored: nothing here receives it.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlite_utils

from batcher.errors import StateError, StateWriteFailed, UsageError
from batcher.models import ALLOWED, JobSpec, JobState, Money, OutputFile, Submitted
from batcher.store.access import read_only_connection, refuse_unwritable, why_unwritable
from batcher.store.failures import BUSY_TIMEOUT, busy_timeout_from, state_errors, translated
from batcher.store.placement import Placed, placements
from batcher.store.reader import Reader
from batcher.store.rows import MOVE_OUTCOMES, REMOVED, SETTABLE, Job, SyncResult
from batcher.store.schema import migrations


def _check_ours(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse (and leave untouched) an SQLite file that some other program made."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not tables:
        return  # new or empty: ours to set up
    ours = (
        "_sqlite_migrations" in tables
        and conn.execute(
            "SELECT 1 FROM _sqlite_migrations WHERE migration_set='batcher' LIMIT 1"
        ).fetchone()
    )
    if not ours:
        conn.close()
        shown = ", ".join(sorted(tables)[:5])
        raise StateError(
            f"{path}: not a batcher state database (it holds other tables: {shown}); "
            "it was left untouched: choose another --state"
        )


@contextmanager
def _opening(path: Path) -> Iterator[None]:
    """Serialise opening + migrating across processes (WAL switch and DDL race otherwise)."""
    lock = Path(f"{path}.locks") / "open.lock"
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fh = open(lock, "a")
    except OSError:  # read-only location: opening still works, just unserialised
        yield
        return
    with fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


KEEP_RENDER_TIMES = 500  # newest samples kept per group


class Store(Reader):
    """A handle on one state database (bound to the thread that opened it)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        clock: Callable[[], float],
        *,
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._conn = conn
        self._db = sqlite_utils.Database(conn)
        self._clock = clock
        self._wal: str | None = None  # the write-ahead log's file, in WAL mode

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        create: bool = True,
        read_only: bool = False,
        busy_timeout: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> Store:
        """Open (and migrate) the database; `create=False` refuses a missing file.

        A database batcher cannot write (a read-only file, folder or file system) is
        refused with StateWriteFailed, unless `read_only=True` (a caller that only reads:
        it then gets a read-only handle; it never creates a database either).
        `busy_timeout`: seconds to wait for a write lock another connection holds before
        StateBusy (None: $BATCHER_BUSY_TIMEOUT, read now, else 30). Any failure is a
        StateError subclass.
        """
        path = Path(path)
        if busy_timeout is None:
            busy_timeout = busy_timeout_from(os.environ)
        if path.is_dir():
            raise StateError(f"{path}: is a directory, not a state database")
        if not path.exists():
            if not create or read_only:
                raise StateError(f"{path}: no state database here (run `batcher run FILE` first)")
            refuse_unwritable(path, creating=True)
        elif why_unwritable(path) is not None:
            if not read_only:
                refuse_unwritable(path, creating=False)
            with translated(path, writing=False, busy_timeout=busy_timeout):
                return cls._read_only(path, clock, busy_timeout)
        with _opening(path), translated(path, writing=False, busy_timeout=busy_timeout):
            return cls._connect(path, clock, busy_timeout)

    @classmethod
    def _connect(cls, path: Path, clock: Callable[[], float], busy_timeout: float) -> Store:
        conn = sqlite3.connect(str(path), timeout=busy_timeout, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            _check_ours(conn, path)
            wal = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
            # WAL: NORMAL survives a killed process, `sync` makes commits survive a power
            # cut when it matters; without WAL (a file system that cannot share memory),
            # every commit is synced as it is made.
            conn.execute(f"PRAGMA synchronous={'NORMAL' if wal else 'FULL'}")
            conn.execute("PRAGMA foreign_keys=ON")
            store = cls(conn, path, clock, busy_timeout=busy_timeout)
            if wal:  # beside the real file, where SQLite puts it (the path may be a link)
                main = conn.execute("PRAGMA database_list").fetchone()["file"]
                store._wal = f"{main}-wal"
            migrations.apply(store._db)
        except BaseException:
            conn.close()
            raise
        return store

    @classmethod
    def _read_only(cls, path: Path, clock: Callable[[], float], busy_timeout: float) -> Store:
        conn = read_only_connection(path, busy_timeout)
        try:
            _check_ours(conn, path)
            store = cls(conn, path, clock, busy_timeout=busy_timeout)
            if migrations.pending(store._db):
                raise StateError(
                    f"{path}: cannot be read where it is: this version of batcher must first "
                    "upgrade it, which writes; copy it to a writable folder and use --state"
                )
        except BaseException:
            conn.close()
            raise
        return store

    @state_errors
    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed, or rolled back whatever failed (COMMIT too).

        A sqlite3 error inside is raised as StateBusy / StateWriteFailed: nothing was saved.
        """
        with translated(self.path, writing=True, busy_timeout=self.busy_timeout):
            # IMMEDIATE takes the write lock up front, so two processes doing a
            # read-then-write (a claim) serialise instead of failing on lock upgrade.
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                self._roll_back()
                raise

    def _roll_back(self) -> None:
        # A failed COMMIT can leave the transaction open (every later BEGIN would fail),
        # or SQLite may have rolled it back itself (disk full, I/O error).
        if not self._conn.in_transaction:
            return
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the error that brought us here is the one to report

    def _event(
        self,
        c: sqlite3.Connection,
        job_id: int | None,
        frm: str | None,
        to: str | None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        c.execute(
            "INSERT INTO events (job_id, at, from_state, to_state, detail) VALUES (?,?,?,?,?)",
            (job_id, self._clock(), frm, to, json.dumps(detail) if detail else None),
        )

    # -- runs -----------------------------------------------------------------

    @state_errors
    def upsert_run(
        self,
        name: str,
        *,
        model: str,
        job_file: str | None,
        out_dir: str,
        options: Mapping[str, Any],
    ) -> None:
        """Record (or update) a run's model, job file, output folder and options."""
        now = self._clock()
        with self._tx() as c:
            c.execute(
                "INSERT INTO runs (name, model, job_file, out_dir, options, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET model=excluded.model,"
                " job_file=excluded.job_file, out_dir=excluded.out_dir,"
                " options=excluded.options, updated_at=excluded.updated_at",
                (name, model, job_file, out_dir, json.dumps(dict(options)), now, now),
            )

    @state_errors
    def sync_jobs(self, run: str, specs: Sequence[JobSpec]) -> SyncResult:
        """Insert new jobs and new versions of edited ones, in one transaction.

        An edited job's old version stays in history (current=0); if it had not been sent
        yet it is cancelled, as it never will be. A pending job whose key left the file is
        cancelled too (and comes back to pending if the key returns unchanged).
        """
        now = self._clock()
        new: list[str] = []
        changed: list[str] = []
        same: list[str] = []
        with self._tx() as c:
            latest = {
                r["key"]: r
                for r in c.execute(
                    "SELECT id, key, version, fingerprint, state, error, rows_of FROM jobs"
                    " WHERE run=? AND current=1",
                    (run,),
                )
            }
            top = dict(
                c.execute("SELECT key, MAX(version) FROM jobs WHERE run=? GROUP BY key", (run,))
            )
            # Finished earlier versions, so an edit that goes back to one is not paid again.
            done_before = {
                (r["key"], r["fingerprint"]): r["id"]
                for r in c.execute(
                    "SELECT id, key, fingerprint FROM jobs WHERE run=? AND current=0"
                    " AND state='done' ORDER BY version",
                    (run,),
                )
            }
            for spec in specs:
                old = latest.get(spec.key)
                if old is not None and old["fingerprint"] == spec.fingerprint:
                    same.append(spec.key)
                    if old["rows_of"] != spec.rows_of:  # from a state older than m006
                        c.execute("UPDATE jobs SET rows_of=? WHERE id=?", (spec.rows_of, old["id"]))
                    if old["state"] == JobState.CANCELLED and old["error"] == REMOVED:
                        self._set_state(
                            c,
                            old["id"],
                            JobState.CANCELLED,
                            JobState.PENDING,
                            {"error": None},
                            "back in the job file",
                        )
                    continue
                version = top.get(spec.key, 0) + 1
                if old is not None:
                    changed.append(spec.key)
                    c.execute(
                        "UPDATE jobs SET current=0, updated_at=? WHERE id=?", (now, old["id"])
                    )
                    if old["state"] == JobState.PENDING:
                        self._set_state(
                            c,
                            old["id"],
                            JobState.PENDING,
                            JobState.CANCELLED,
                            {"error": "superseded by an edited version"},
                            "edited",
                        )
                else:
                    new.append(spec.key)
                restored = done_before.get((spec.key, spec.fingerprint))
                if restored is not None:
                    c.execute("UPDATE jobs SET current=1, updated_at=? WHERE id=?", (now, restored))
                    self._event(c, restored, None, None, {"reason": "restored: same payload"})
                    continue
                cur = c.execute(
                    "INSERT INTO jobs (run, key, version, current, name, model, fingerprint,"
                    " payload, sweep, repeat, output_name, cost_estimate, state, created_at,"
                    " updated_at, rows_of) VALUES (?,?,?,1,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        run,
                        spec.key,
                        version,
                        spec.name,
                        spec.model,
                        spec.fingerprint,
                        json.dumps(dict(spec.payload), ensure_ascii=False, sort_keys=True),
                        json.dumps(dict(spec.sweep), ensure_ascii=False),
                        spec.repeat,
                        spec.output_name,
                        spec.cost,
                        JobState.PENDING.value,
                        now,
                        now,
                        spec.rows_of,
                    ),
                )
                self._event(
                    c,
                    cur.lastrowid,
                    None,
                    JobState.PENDING.value,
                    {"version": version, "fingerprint": spec.fingerprint},
                )
            keys = {spec.key for spec in specs}
            removed = [r for k, r in latest.items() if k not in keys and r["state"] == "pending"]
            for r in removed:
                self._set_state(
                    c, r["id"], JobState.PENDING, JobState.CANCELLED, {"error": REMOVED}, "removed"
                )
            # A version that stopped (or became) current must leave (or take) the final
            # names: the moves are recorded with the change that needs them.
            self._plan_moves(c, run, None)
        return SyncResult(tuple(new), tuple(changed), tuple(same), tuple(r["key"] for r in removed))

    def _set_state(
        self,
        c: sqlite3.Connection,
        job_id: int,
        frm: JobState,
        to: JobState,
        fields: Mapping[str, Any],
        reason: str | None,
    ) -> bool:
        bad = set(fields) - SETTABLE
        if bad:
            raise ValueError(f"not settable: {sorted(bad)}")
        sets = ", ".join(f"{k}=?" for k in fields)
        vals = [_column(k, v) for k, v in fields.items()]
        extra = f", {sets}" if sets else ""
        sql = f"UPDATE jobs SET state=?, updated_at=?{extra} WHERE id=? AND state=?"
        cur = c.execute(sql, (to.value, self._clock(), *vals, job_id, frm.value))
        if cur.rowcount != 1:
            return False
        detail = {k: v for k, v in fields.items() if k in ("error", "request_id")}
        if reason:
            detail["reason"] = reason
        self._event(c, job_id, frm.value, to.value, detail)
        return True

    @state_errors
    def transition(
        self,
        job_id: int,
        frm: JobState,
        to: JobState,
        *,
        reason: str | None = None,
        attempt: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> bool:
        """Move a job from `frm` to `to` with its event (and optionally close its attempt).

        Returns False (and changes nothing) when the job is no longer in `frm`, e.g. because
        another process or a `cancel` moved it first.
        """
        if to not in ALLOWED[frm]:
            raise ValueError(f"transition {frm.value} -> {to.value} is not allowed")
        with self._tx() as c:
            if not self._set_state(c, job_id, frm, to, fields, reason):
                return False
            if attempt:
                self._update_attempt(c, job_id, attempt)
        return True

    def _update_attempt(
        self, c: sqlite3.Connection, job_id: int, attempt: Mapping[str, Any]
    ) -> None:
        sets = ", ".join(f"{k}=?" for k in attempt)
        c.execute(
            f"UPDATE attempts SET {sets} WHERE job_id=? AND number="
            "(SELECT MAX(number) FROM attempts WHERE job_id=?)",
            (*attempt.values(), job_id, job_id),
        )

    @state_errors
    def claim(self, runs: Iterable[str], limit: int, *, job_id: int | None = None) -> list[Job]:
        """Atomically move up to `limit` pending jobs to `submitting`, opening an attempt each
        (only job `job_id`, if given and still pending)."""
        names = list(runs)
        if not names or limit <= 0:
            return []
        marks = ",".join("?" * len(names))
        only = "" if job_id is None else f" AND id={int(job_id)}"
        claimed: list[Job] = []
        # This commit is what stops a job from being sent twice: it must be durable even
        # through a power cut before the job's POST. `sync` makes it so, from a worker
        # thread (the fsync's wait off the event loop); commits only need to survive a
        # killed process, which they do as they are.
        with self._tx() as c:
            rows = c.execute(
                "SELECT * FROM jobs WHERE state='pending' AND current=1"
                f" AND run IN ({marks}){only} ORDER BY id LIMIT ?",
                (*names, limit),
            ).fetchall()
            now = self._clock()
            for r in rows:
                number = r["attempts"] + 1
                c.execute(
                    "UPDATE jobs SET state='submitting', attempts=?, request_id=NULL,"
                    " status_url=NULL, result_url=NULL, cancel_url=NULL, updated_at=?"
                    " WHERE id=?",
                    (number, now, r["id"]),
                )
                c.execute(
                    "INSERT INTO attempts (job_id, number, submitted_at, outcome)"
                    " VALUES (?,?,?,'submitting')",
                    (r["id"], number, now),
                )
                self._event(c, r["id"], "pending", "submitting", {"attempt": number})
                claimed.append(
                    replace(
                        Job.from_row(r),
                        state=JobState.SUBMITTING,
                        attempts=number,
                        request_id=None,
                        handle=None,
                    )
                )
        return claimed

    @state_errors
    def sync(self) -> None:
        """Every commit so far made durable through a power cut: the write-ahead log, where
        WAL mode puts commits, fsynced (StateWriteFailed if it cannot be). Touches no
        connection: safe from a worker thread while the event loop's thread uses the store."""
        if self._wal is None:
            return  # not WAL mode: every commit was synced as it was made
        try:  # the log is always there while WAL mode is on: a missing one is an error too
            fd = os.open(self._wal, os.O_RDWR)  # for writing: some systems fsync only that
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StateWriteFailed(f"{self.path}: cannot sync the write-ahead log ({exc})") from exc

    @state_errors
    def record_submitted(self, job_id: int, sub: Submitted) -> bool:
        """Commit the request id the moment it is known (submitting -> queued)."""
        now = self._clock()
        return self.transition(
            job_id,
            JobState.SUBMITTING,
            JobState.QUEUED,
            request_id=sub.request_id,
            status_url=sub.status_url,
            result_url=sub.result_url,
            cancel_url=sub.cancel_url,
            submitted_at=now,
            attempt={"request_id": sub.request_id, "outcome": "queued", "submitted_at": now},
        )

    @state_errors
    def note(self, runs: Sequence[str], kind: str, detail: str) -> None:
        """Something that happened to whole runs (an outage), for `batcher log`."""
        with self._tx() as c:
            for run in runs:
                c.execute(
                    "INSERT INTO events (job_id, run, at, to_state, detail)"
                    " VALUES (NULL, ?, ?, ?, ?)",
                    (run, self._clock(), kind, detail),
                )

    @state_errors
    def forget_run(self, run: str) -> int:
        """Drop every record of `run` (jobs, attempts, events, file moves, the run); the
        render times it taught stay. Returns how many job versions were dropped.

        Refused (UsageError, nothing changed) while the run has paid work still out: a
        request in flight or held as unknown, a render whose download failed (`retry`
        fetches it), or a file move not yet made. Checked in the same transaction."""
        with self._tx() as c:
            ids = "SELECT id FROM jobs WHERE run = ?"
            out = c.execute(
                "SELECT j.state, COUNT(*) n FROM jobs j WHERE j.run = ? AND (j.state IN"
                " ('submitting', 'queued', 'running', 'downloading', 'unknown') OR"
                " (j.state = 'failed' AND (SELECT a.outcome FROM attempts a WHERE"
                " a.job_id = j.id ORDER BY a.number DESC LIMIT 1) = 'download_failed'))"
                " GROUP BY j.state",
                (run,),
            ).fetchall()
            moves = c.execute(
                f"SELECT COUNT(*) n FROM file_moves WHERE state = 'planned' AND job_id IN ({ids})",
                (run,),
            ).fetchone()["n"]
            if out or moves:
                what = [f"{r['n']} {r['state']}" for r in out]
                what += [f"{moves} file move(s) not yet made"] if moves else []
                raise UsageError(
                    f"run {run!r} still has paid work out ({', '.join(what)}): `batcher resume "
                    f"{run}` finishes it, `batcher retry {run}` fetches failed downloads, "
                    f"`batcher cancel {run}` stops what is queued; then forget it"
                )
            for table in ("file_moves", "attempts", "events"):
                c.execute(f"DELETE FROM {table} WHERE job_id IN ({ids})", (run,))
            c.execute("DELETE FROM events WHERE job_id IS NULL AND run = ?", (run,))
            dropped = c.execute("DELETE FROM jobs WHERE run = ?", (run,)).rowcount
            c.execute("DELETE FROM runs WHERE name = ?", (run,))
        return int(dropped)

    @state_errors
    def add_render_time(self, group: str, seconds: float) -> None:
        """What one render of `group` took (outside a job's move: history, tests)."""
        with self._tx() as c:
            self._add_render_time(c, group, seconds)

    @state_errors
    def rendered(self, job_id: int, frm: JobState, took: tuple[str, float] | None) -> bool:
        """frm -> downloading, and what the render took (group, seconds) kept with it: one
        transaction, so a crash can neither lose the move nor keep the sample twice."""
        with self._tx() as c:
            if not self._set_state(c, job_id, frm, JobState.DOWNLOADING, {}, None):
                return False
            if took is not None:
                self._add_render_time(c, *took)
        return True

    def _add_render_time(
        self, c: sqlite3.Connection, group: str, seconds: float, keep: int = KEEP_RENDER_TIMES
    ) -> None:
        c.execute(
            "INSERT INTO render_times (grp, seconds, at) VALUES (?, ?, ?)",
            (group, seconds, self._clock()),
        )
        c.execute(
            "DELETE FROM render_times WHERE grp = ? AND id NOT IN"
            " (SELECT id FROM render_times WHERE grp = ? ORDER BY at DESC, id DESC LIMIT ?)",
            (group, group, keep),
        )

    @state_errors
    def set_outputs(self, job_id: int, outputs: Sequence[OutputFile], *, reason: str) -> None:
        """Replace a job's recorded files (e.g. an old version's file moved aside)."""
        data = json.dumps([asdict(o) for o in outputs])
        with self._tx() as c:
            c.execute(
                "UPDATE jobs SET outputs=?, updated_at=? WHERE id=?", (data, self._clock(), job_id)
            )
            self._event(c, job_id, None, None, {"reason": reason, "outputs": data})

    @state_errors
    def plan_moves(self, run: str, *, keys: Iterable[str] | None = None) -> int:
        """Record the moves that put each version's files under its own names (see
        `placement`); each record names the new paths at once. Returns the moves planned.
        """
        with self._tx() as c:
            return self._plan_moves(c, run, None if keys is None else set(keys))

    def _plan_moves(self, c: sqlite3.Connection, run: str, keys: set[str] | None) -> int:
        sql = "SELECT * FROM jobs WHERE run=? AND outputs != '[]'"
        args: list[Any] = [run]
        if keys is not None:
            sql += f" AND key IN ({','.join('?' * len(keys))})"
            args += sorted(keys)
        versions = [
            Placed(
                r["id"],
                r["version"],
                bool(r["current"]),
                r["output_name"],
                tuple(OutputFile(**o) for o in json.loads(r["outputs"])),
            )
            for r in c.execute(sql + " ORDER BY id", args)
        ]
        now, planned = self._clock(), 0
        for p in placements(versions):
            data = _column("outputs", p.outputs)
            c.execute("UPDATE jobs SET outputs=?, updated_at=? WHERE id=?", (data, now, p.job_id))
            for m in p.moves:
                c.execute(
                    "INSERT INTO file_moves (job_id, kind, src, dst, size, sha256, planned_at)"
                    " VALUES (?,?,?,?,?,?,?)",
                    (m.job_id, m.kind, m.src, m.dst, m.size, m.sha256, now),
                )
            moves = [[m.src, m.dst] for m in p.moves]
            self._event(c, p.job_id, None, None, {"reason": "files to move", "moves": moves})
            planned += len(p.moves)
        return planned

    @state_errors
    def finish_move(self, move_id: int, outcome: str) -> None:
        """Close a recorded move: `done`, `missing` (no such file) or `mismatch` (other bytes)."""
        if outcome not in MOVE_OUTCOMES:
            raise ValueError(f"not a move outcome: {outcome}")
        with self._tx() as c:
            row = c.execute(
                "SELECT job_id, src, dst FROM file_moves WHERE id=? AND state='planned'",
                (move_id,),
            ).fetchone()
            if row is None:
                return
            c.execute(
                "UPDATE file_moves SET state=?, finished_at=? WHERE id=?",
                (outcome, self._clock(), move_id),
            )
            detail = {"reason": f"file move {outcome}", "from": row["src"], "to": row["dst"]}
            self._event(c, row["job_id"], None, None, detail)


def _column(name: str, value: Any) -> Any:
    if name == "outputs":
        return json.dumps([asdict(o) if isinstance(o, OutputFile) else o for o in value])
    return value


def plan_marks(state_path: Path, jobs: Sequence[JobSpec]) -> dict[str, str]:
    """Marks for `batcher plan`; never creates a database (no file: everything is new)."""
    if not Path(state_path).exists():
        return {j.key: "new" for j in jobs}
    with Store.open(Path(state_path), create=False, read_only=True) as store:
        return store.marks(jobs)


def plan_money(state_path: Path, run: str) -> Money | None:
    """What `run` has spent and sent so far, for `batcher plan`; None when the state holds
    no such run (never creates a database)."""
    if not Path(state_path).exists():
        return None
    with Store.open(Path(state_path), create=False, read_only=True) as store:
        return store.money([run]) if run in store.run_names() else None
