"""Read-only queries of the state store (`db.Store` adds the writes).

Invariant: nothing here writes; every method is one or a few SELECTs, and a sqlite3
error in one is raised as a StateError (`@state_errors`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from batcher.errors import StateError
from batcher.models import (
    Attempt,
    AttemptOutcome,
    JobRecord,
    JobSpec,
    JobState,
    Money,
    OutputFile,
)
from batcher.store.failures import state_errors, state_errors_streamed
from batcher.store.rows import FileMove, Job, RunInfo


class Reader:
    """Queries over runs, jobs, attempts and events."""

    path: Path
    busy_timeout: float
    _conn: sqlite3.Connection

    @state_errors
    def run_names(self) -> list[str]:
        """Every run, oldest first (newest last)."""
        rows = self._conn.execute("SELECT name FROM runs ORDER BY updated_at, name")
        return [r["name"] for r in rows]

    @state_errors
    def run_info(self, name: str) -> RunInfo:
        """A run's recorded settings; StateError naming the known runs if absent."""
        row = self._conn.execute("SELECT * FROM runs WHERE name=?", (name,)).fetchone()
        if row is None:
            known = ", ".join(self.run_names()) or "none yet"
            raise StateError(f"no run named {name!r} in {self.path} (runs: {known})")
        return RunInfo(
            row["name"], row["model"], row["job_file"], row["out_dir"], json.loads(row["options"])
        )

    # -- jobs -----------------------------------------------------------------

    @state_errors
    def marks(self, specs: Sequence[JobSpec]) -> dict[str, str]:
        """key -> new | changed | <state of the current version> for a planned file."""
        out: dict[str, str] = {}
        runs = {s.run for s in specs}
        latest: dict[tuple[str, str], sqlite3.Row] = {}
        done_before: set[tuple[str, str, str]] = set()
        for run in runs:
            for r in self._conn.execute(
                "SELECT key, fingerprint, state, current FROM jobs WHERE run=?", (run,)
            ):
                if r["current"]:
                    latest[(run, r["key"])] = r
                elif r["state"] == "done":
                    done_before.add((run, r["key"], r["fingerprint"]))
        for s in specs:
            row = latest.get((s.run, s.key))
            if row is None:
                out[s.key] = "new"
            elif row["fingerprint"] != s.fingerprint:
                # Back to a payload an earlier version already rendered: nothing to pay.
                back = (s.run, s.key, s.fingerprint) in done_before
                out[s.key] = "done" if back else "changed"
            else:
                out[s.key] = row["state"]
        return out

    @state_errors
    def peek_pending(self, runs: Iterable[str]) -> Job | None:
        """The pending job `claim` would take next, if any."""
        names = list(runs)
        row = self._conn.execute(
            "SELECT * FROM jobs WHERE state='pending' AND current=1"
            f" AND run IN ({','.join('?' * len(names))}) ORDER BY id LIMIT 1",
            names,
        ).fetchone()
        return Job.from_row(row) if row else None

    @state_errors
    def job(self, job_id: int) -> Job:
        row = self._conn.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise StateError(f"no job with id {job_id}")
        return Job.from_row(row)

    @state_errors
    def jobs(
        self,
        runs: Iterable[str] | None = None,
        states: Iterable[JobState] | None = None,
        *,
        current_only: bool = True,
    ) -> list[Job]:
        """Jobs filtered by run and state, in creation order."""
        sql, args = self._where(runs, states, current_only)
        return [
            Job.from_row(r)
            for r in self._conn.execute(f"SELECT * FROM jobs{sql} ORDER BY id", args)
        ]

    @staticmethod
    def _where(
        runs: Iterable[str] | None, states: Iterable[JobState] | None, current_only: bool
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if runs is not None:
            names = list(runs)
            clauses.append(f"run IN ({','.join('?' * len(names))})")
            args.extend(names)
        if states is not None:
            vals = [s.value for s in states]
            clauses.append(f"state IN ({','.join('?' * len(vals))})")
            args.extend(vals)
        if current_only:
            clauses.append("current=1")
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args

    @state_errors
    def counts(self, runs: Iterable[str] | None = None) -> dict[str, int]:
        """Current job versions by state."""
        sql, args = self._where(runs, None, True)
        rows = self._conn.execute(f"SELECT state, COUNT(*) n FROM jobs{sql} GROUP BY state", args)
        return {r["state"]: r["n"] for r in rows}

    @state_errors
    def money(self, runs: Iterable[str]) -> Money:
        """The runs' one account of money (see `models.Money`), in one pass."""
        names = list(runs)
        marks = ",".join("?" * len(names))
        rendered = "(a.outcome IN ('succeeded', 'download_failed') OR a.cost > 0)"
        row = self._conn.execute(
            "SELECT"
            f" COALESCE(SUM(CASE WHEN {rendered} THEN"
            "   CASE WHEN a.cost > 0 THEN a.cost ELSE j.cost_estimate END END), 0) spent,"
            f" COALESCE(SUM(CASE WHEN {rendered} AND a.cost > 0 THEN a.cost END), 0) reported,"
            " COALESCE(SUM(CASE WHEN (a.outcome IN ('submitting', 'queued', 'unknown',"
            "   'abandoned') AND NOT COALESCE(a.cost > 0, 0))"
            "   OR (a.outcome = 'failed' AND a.cost IS NULL) THEN j.cost_estimate END), 0) sent,"
            " COALESCE(SUM(CASE WHEN a.outcome = 'failed' AND a.cost <= 0"
            "   THEN j.cost_estimate END), 0) failed"
            f" FROM attempts a JOIN jobs j ON j.id=a.job_id WHERE j.run IN ({marks})",
            names,
        ).fetchone()
        estimated = self._conn.execute(
            "SELECT COALESCE(SUM(cost_estimate), 0) e FROM jobs"
            f" WHERE current=1 AND run IN ({marks})",
            names,
        ).fetchone()["e"]
        return Money(float(estimated), row["spent"], row["reported"], row["sent"], row["failed"])

    @state_errors
    def billed(self, runs: Iterable[str]) -> tuple[float, float]:
        """USD reported billed for attempts that say so, and their jobs' estimates."""
        names = list(runs)
        marks = ",".join("?" * len(names))
        row = self._conn.execute(
            "SELECT COALESCE(SUM(a.cost), 0) b, COALESCE(SUM(j.cost_estimate), 0) e"
            f" FROM attempts a JOIN jobs j ON j.id=a.job_id WHERE j.run IN ({marks})"
            " AND a.cost IS NOT NULL AND a.cost > 0",
            names,
        ).fetchone()
        return float(row["b"]), float(row["e"])

    @state_errors
    def attempts(self, job_id: int) -> list[Attempt]:
        rows = self._tuples(
            f"SELECT job_id, {_ATTEMPT_COLUMNS} FROM attempts WHERE job_id=? ORDER BY number",
            (job_id,),
        )
        return [_attempt(r) for r in rows]

    @state_errors_streamed
    def done_files(self, run: str) -> Iterator[tuple[int, str]]:
        """(job id, path in the output folder) of every file of the run's done jobs
        (current versions), one row at a time."""
        yield from self._paths("run = ? AND current = 1 AND state = 'done'", (run,))

    def _paths(self, where: str, args: Sequence[Any]) -> Iterator[tuple[int, str]]:
        """(job id, file path) of the jobs `where` selects: the first file of each from SQL
        (most have one), the rest parsed only for jobs that have more."""
        for job_id, first, n in self._conn.execute(
            "SELECT id, json_extract(outputs, '$[0].path'), json_array_length(outputs)"
            f" FROM jobs WHERE {where}",
            args,
        ):
            if first is not None:
                yield job_id, first
            if n > 1:
                row = self._conn.execute("SELECT outputs FROM jobs WHERE id=?", (job_id,))
                for extra in json.loads(row.fetchone()[0])[1:]:
                    yield job_id, extra["path"]

    @state_errors
    def render_times(
        self, groups: Iterable[str] | None = None
    ) -> dict[str, list[tuple[float, float]]]:
        """(seconds, when seen) of the renders seen, by group (every group when None)."""
        if groups is None:
            rows = self._conn.execute("SELECT grp, seconds, at FROM render_times ORDER BY id")
        else:
            wanted = sorted(set(groups))
            marks = ",".join("?" * len(wanted))
            rows = self._conn.execute(
                f"SELECT grp, seconds, at FROM render_times WHERE grp IN ({marks}) ORDER BY id",
                wanted,
            )
        found: dict[str, list[tuple[float, float]]] = {}
        for r in rows:
            found.setdefault(r["grp"], []).append((r["seconds"], r["at"]))
        return found

    @state_errors
    def pending_moves(self, run: str) -> list[FileMove]:
        """Recorded file moves of a run not carried out yet, in the order they were planned."""
        rows = self._conn.execute(
            "SELECT m.*, j.key, j.version FROM file_moves m JOIN jobs j ON j.id = m.job_id"
            " WHERE m.state = 'planned' AND j.run = ? ORDER BY m.id",
            (run,),
        )
        return [FileMove.from_row(r) for r in rows]

    @state_errors
    def last_activity(self, run: str) -> float | None:
        """When anything last happened to the run (its record, or one of its jobs)."""
        row = self._conn.execute(
            "SELECT MAX(at) at FROM (SELECT updated_at at FROM runs WHERE name = ?"
            " UNION ALL SELECT MAX(updated_at) FROM jobs WHERE run = ?)",
            (run, run),
        ).fetchone()
        return None if row["at"] is None else float(row["at"])

    @state_errors
    def api_trouble(self, run: str) -> str | None:
        """The outage the run's driver last told of, if it has not told of its end."""
        row = self._conn.execute(
            "SELECT to_state, detail FROM events WHERE job_id IS NULL AND run = ?"
            " AND to_state IN ('start', 'outage', 'recovered') ORDER BY id DESC LIMIT 1",
            (run,),
        ).fetchone()
        return row["detail"] if row is not None and row["to_state"] == "outage" else None

    @state_errors
    def refused_hosts(self, run: str) -> list[str]:
        """Hosts the run's output files came from and were refused (`hosts.py`)."""
        rows = self._conn.execute(
            "SELECT DISTINCT detail FROM events WHERE job_id IS NULL AND run = ?"
            " AND to_state = 'refused' ORDER BY detail",
            (run,),
        )
        return [r["detail"] for r in rows if r["detail"]]

    @state_errors
    def warnings_since_start(self, run: str, *, most: int = 20) -> list[str]:
        """The run's warning notes (statuses the API gave that batcher does not know...)
        since its latest start, oldest first, at most `most`."""
        rows = self._conn.execute(
            "SELECT detail FROM events WHERE job_id IS NULL AND run = ? AND to_state = 'warn'"
            " AND id > COALESCE((SELECT MAX(id) FROM events WHERE job_id IS NULL AND run = ?"
            " AND to_state = 'start'), 0) ORDER BY id LIMIT ?",
            (run, run, most),
        )
        return [r["detail"] for r in rows]

    @state_errors
    def run_events(self, run: str, *, after: int = 0) -> list[dict[str, Any]]:
        """A run's events after event id `after`, oldest first: its jobs' moves (with each
        job's key and version) and notes about the whole run (job_id, key and version None):
        id, at, key, version, job_id, from_state, to_state, detail."""
        rows = self._conn.execute(
            "SELECT e.id, e.at, e.job_id, e.from_state, e.to_state, e.detail, j.key, j.version"
            " FROM events e JOIN jobs j ON j.id = e.job_id WHERE j.run = ? AND e.id > ?"
            " UNION ALL SELECT e.id, e.at, NULL, NULL, e.to_state, e.detail, NULL, NULL"
            " FROM events e WHERE e.job_id IS NULL AND e.run = ? AND e.id > ?"
            " ORDER BY 1",
            (run, after, run, after),
        )
        return [dict(r) for r in rows]

    @state_errors
    def events(self, job_id: int) -> list[dict[str, Any]]:
        rows = self._conn.execute("SELECT * FROM events WHERE job_id=? ORDER BY id", (job_id,))
        return [dict(r) for r in rows]

    @state_errors
    def records(self, run: str) -> list[JobRecord]:
        """Every job version of a run, as reports read them."""
        return list(self.iter_records(run))

    @state_errors_streamed
    def iter_records(self, run: str, *, lean: bool = False) -> Iterator[JobRecord]:
        """`records(run)`, one at a time, in bounded memory: the jobs and their attempts
        read by two cursors in job-id order, merged as they go (reports stream this).
        `lean`: without attempts, files and errors (what grouping and summaries need)."""
        row = self._conn.execute("SELECT out_dir FROM runs WHERE name=?", (run,)).fetchone()
        out_dir = row["out_dir"] if row else ""
        if lean:
            sql = f"SELECT {_LEAN_COLUMNS} FROM jobs WHERE run=? ORDER BY id"
            for r in self._tuples(sql, (run,)):
                yield _record(r, out_dir, ())
            return
        attempts = self._tuples(
            f"SELECT job_id, {_ATTEMPT_COLUMNS} FROM attempts WHERE job_id IN"
            " (SELECT id FROM jobs WHERE run = ?) ORDER BY job_id, number",
            (run,),
        )
        pending = next(attempts, None)
        for r in self._tuples(
            f"SELECT {_RECORD_COLUMNS} FROM jobs WHERE run=? ORDER BY id", (run,)
        ):
            job_id, mine = r[0], []
            while pending is not None and pending[0] <= job_id:
                if pending[0] == job_id:
                    mine.append(_attempt(pending))
                pending = next(attempts, None)
            yield _record(r, out_dir, mine)

    @state_errors
    def completed(self, lean: Sequence[JobRecord]) -> dict[int, JobRecord]:
        """Job id -> full record of each of the `lean` ones (`iter_records(lean=True)`):
        their attempts, files and errors read by id (a report's page at a time)."""
        found: dict[int, JobRecord] = {}
        for at in range(0, len(lean), 500):
            chunk = {r.id: r for r in lean[at : at + 500]}
            marks = ",".join("?" * len(chunk))
            attempts: dict[int, list[Attempt]] = {}
            for a in self._tuples(
                f"SELECT job_id, {_ATTEMPT_COLUMNS} FROM attempts WHERE job_id IN ({marks})"
                " ORDER BY job_id, number",
                list(chunk),
            ):
                attempts.setdefault(a[0], []).append(_attempt(a))
            for job_id, error, outputs in self._tuples(
                f"SELECT id, error, outputs FROM jobs WHERE id IN ({marks})", list(chunk)
            ):
                r = chunk[job_id]
                found[job_id] = JobRecord(  # as `replace` would, at a third of its cost
                    id=r.id, run=r.run, key=r.key, name=r.name, version=r.version,
                    current=r.current, model=r.model, fingerprint=r.fingerprint,
                    payload=r.payload, sweep=r.sweep, repeat=r.repeat,
                    output_name=r.output_name, out_dir=r.out_dir, state=r.state,
                    request_id=r.request_id, attempts=tuple(attempts.get(job_id, ())),
                    error=error, outputs=_files(outputs), cost=r.cost,
                    created_at=r.created_at, submitted_at=r.submitted_at,
                    finished_at=r.finished_at, rows_of=r.rows_of,
                )  # fmt: skip
        return found

    @state_errors_streamed
    def output_paths(self, run: str) -> Iterator[str]:
        """The path (in the run's folder) of every file any version of the run landed."""
        for _, path in self._paths("run = ? AND outputs != '[]'", (run,)):
            yield path

    def _tuples(self, sql: str, args: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        """Rows as plain tuples (no sqlite3.Row: a name lookup per field costs, at scale)."""
        cursor = self._conn.cursor()
        cursor.row_factory = None
        return iter(cursor.execute(sql, args))

    @state_errors
    def record(self, job_id: int) -> JobRecord:
        """One job version as reports read it."""
        r = next(self._tuples(f"SELECT {_RECORD_COLUMNS} FROM jobs WHERE id=?", (job_id,)), None)
        if r is None:
            raise StateError(f"no job with id {job_id}")
        row = self._conn.execute("SELECT out_dir FROM runs WHERE name=?", (r[1],)).fetchone()
        return _record(r, row["out_dir"] if row else "", self.attempts(job_id))


_RECORD_COLUMNS = (
    "id, run, key, name, version, current, model, fingerprint, payload, sweep, repeat,"
    " output_name, state, request_id, error, outputs, cost, cost_estimate, created_at,"
    " submitted_at, finished_at, rows_of"
)
_LEAN_COLUMNS = _RECORD_COLUMNS.replace(" error,", " NULL,").replace(" outputs,", " '[]',")
_ATTEMPT_COLUMNS = "number, request_id, submitted_at, finished_at, outcome, error"
_decode = json.JSONDecoder().decode
_STATES = {s.value: s for s in JobState}
_OUTCOMES = {o.value: o for o in AttemptOutcome}


def _record(r: tuple[Any, ...], out_dir: str, attempts: Sequence[Attempt]) -> JobRecord:
    """A JobRecord from a `_RECORD_COLUMNS` row (plain values, each decoded once)."""
    (job_id, run, key, name, version, current, model, fingerprint, payload, sweep, repeat,
     output_name, state, request_id, error, outputs, cost, estimate, created_at,
     submitted_at, finished_at, rows_of) = r  # fmt: skip
    return JobRecord(
        id=job_id,
        run=run,
        key=key,
        name=name,
        version=version,
        current=bool(current),
        model=model,
        fingerprint=fingerprint,
        payload=_decode(payload),
        sweep=_decode(sweep) if sweep != "{}" else {},
        repeat=repeat,
        output_name=output_name,
        out_dir=out_dir,
        state=_STATES[state],
        request_id=request_id,
        attempts=tuple(attempts),
        error=error,
        outputs=_files(outputs),
        cost=cost if cost is not None else estimate,
        created_at=created_at,
        submitted_at=submitted_at,
        finished_at=finished_at,
        rows_of=rows_of,
    )


def _files(outputs: str) -> tuple[OutputFile, ...]:
    """The `outputs` column as OutputFiles."""
    if outputs == "[]":
        return ()
    return tuple(
        OutputFile(url=o["url"], path=o["path"], size=o["size"], sha256=o["sha256"])
        for o in _decode(outputs)
    )


def _attempt(r: tuple[Any, ...]) -> Attempt:
    """An Attempt from a `job_id, _ATTEMPT_COLUMNS` row."""
    return Attempt(
        number=r[1],
        request_id=r[2],
        submitted_at=r[3],
        finished_at=r[4],
        outcome=_OUTCOMES[r[5]],
        error=r[6],
    )
