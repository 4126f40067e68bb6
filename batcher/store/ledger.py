"""The Ledger on SQLite: each write named for what happened to a job, on top of `Store`.

Invariants:
- Each write is one `Store.transition` (one transaction with its event row and, where an
  attempt ends, its attempt row); it returns False when the job was moved meanwhile.
- Attempt outcomes are `AttemptOutcome` values, never bare strings.
- A request id that cannot be committed (`rescue`) is appended and fsynced to
  `<state>.rescued.jsonl`, a plain file that needs no working database; `reconcile`
  (run under the runs' locks) attaches it to its job, which is then followed, not resent.
  A job whose POST reached nothing but whose `not_sent` could not be committed is rescued
  without an id, and goes back to pending. The file is written under a flock.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio

from batcher.models import (
    UNSENT,
    AttemptOutcome,
    Job,
    JobRecord,
    JobState,
    Money,
    OutputFile,
    Submitted,
)
from batcher.store.db import Store

S = JobState
O = AttemptOutcome  # noqa: E741 - short and read often below


def rescue_path(state_path: Path) -> Path:
    """Where request ids that could not be committed are kept."""
    return Path(f"{state_path}.rescued.jsonl")


def rescued_entries(state_path: Path) -> list[dict[str, Any]]:
    """What the rescue file holds (for `status`): each job id, key, request id, why."""
    try:
        lines = rescue_path(state_path).read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line torn by a crash mid-write
        if isinstance(entry, dict):
            found.append(entry)
    return found


class SqliteLedger:
    """`ports.Ledger` over one `Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._clock = store._clock

    # -- admission ----------------------------------------------------------------
    def claim(self, runs: Sequence[str], *, job_id: int | None = None) -> Job | None:
        jobs = self.store.claim(runs, 1, job_id=job_id)
        return jobs[0] if jobs else None

    def peek_pending(self, runs: Sequence[str]) -> Job | None:
        return self.store.peek_pending(runs)

    async def settle(self) -> None:
        await anyio.to_thread.run_sync(self.store.sync)

    def money(self, runs: Sequence[str]) -> Money:
        return self.store.money(runs)

    def billed(self, runs: Sequence[str]) -> tuple[float, float]:
        return self.store.billed(runs)

    def in_states(self, runs: Sequence[str], states: Sequence[JobState]) -> list[Job]:
        return self.store.jobs(runs, states, current_only=False)

    def reconcile(self, runs: Sequence[str]) -> list[Job]:
        with self._rescue_lock():
            rescued = self._rescued()
            unknown = self._reconcile(runs, rescued)
            self._forget_rescued()
        return unknown

    def _reconcile(
        self, runs: Sequence[str], rescued: dict[tuple[int, int], dict[str, Any]]
    ) -> list[Job]:
        unknown: list[Job] = []
        for job in self.store.jobs(runs, [S.SUBMITTING], current_only=False):
            entry = rescued.get((job.id, job.attempts))
            if entry is not None and self._settle_rescued(job, entry):
                continue
            if self.store.transition(
                job.id,
                S.SUBMITTING,
                S.UNKNOWN,
                error="the process stopped during submit; the request may have been accepted",
                reason="orphaned",
                attempt=self._closing(O.UNKNOWN),
            ):
                unknown.append(job)
        return unknown

    def release_unknown(self, job: Job, why: str) -> bool:
        return self.store.transition(job.id, S.UNKNOWN, S.PENDING, reason=why)

    # -- reads ----------------------------------------------------------------------
    def job(self, job_id: int) -> Job:
        return self.store.job(job_id)

    def record(self, job_id: int) -> JobRecord:
        return self.store.record(job_id)

    def sent_attempts(self, job: Job) -> int:
        return sum(
            1
            for a in self.store.attempts(job.id)
            if a.number > job.attempt_floor and a.outcome not in UNSENT
        )

    # -- one job's life ---------------------------------------------------------------
    def not_sent(self, job: Job, why: str) -> bool:
        return self.store.transition(
            job.id, S.SUBMITTING, S.PENDING, reason=why, attempt=self._closing(O.NOT_SENT, why)
        )

    def accepted(self, job: Job, sub: Submitted) -> bool:
        return self.store.record_submitted(job.id, sub)

    def rejected(self, job: Job, why: str) -> bool:
        now = self._clock()
        return self.store.transition(
            job.id,
            S.SUBMITTING,
            S.FAILED,
            error=why,
            finished_at=now,
            attempt=self._closing(O.REJECTED, why),
        )

    def doubtful(self, job: Job, why: str, *, request_id: str | None = None) -> bool:
        attempt = self._closing(O.UNKNOWN, why)
        fields: dict[str, Any] = {"error": why}
        if request_id is not None:
            attempt["request_id"] = fields["request_id"] = request_id
        return self.store.transition(job.id, S.SUBMITTING, S.UNKNOWN, attempt=attempt, **fields)

    def rescue(self, job: Job, sub: Submitted | None, why: str) -> None:
        line: dict[str, Any] = {
            "job_id": job.id,
            "attempt": job.attempts,
            "key": job.key,
            "request_id": None,  # None: the POST was not sent (or accepted nothing)
            "at": self._clock(),
            "why": why,
        }
        if sub is not None:
            line |= {
                "request_id": sub.request_id,
                "status_url": sub.status_url,
                "result_url": sub.result_url,
                "cancel_url": sub.cancel_url,
            }
        with self._rescue_lock():
            with open(rescue_path(self.store.path), "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line) + "\n")
                fh.flush()
                os.fsync(fh.fileno())

    def note(self, runs: Sequence[str], kind: str, detail: str) -> None:
        self.store.note(runs, kind, detail)

    def render_times(self, groups: Sequence[str]) -> dict[str, list[tuple[float, float]]]:
        return self.store.render_times(groups)

    def started(self, job: Job) -> bool:
        return self.store.transition(job.id, S.QUEUED, S.RUNNING)

    def rendered(self, job: Job, state: JobState, *, took: tuple[str, float] | None = None) -> bool:
        return self.store.rendered(job.id, state, took)

    def requeued(self, job: Job, state: JobState, why: str, *, cost: float | None = None) -> bool:
        return self.store.transition(
            job.id, state, S.PENDING, error=why, attempt=self._closing(O.FAILED, why, cost)
        )

    def failed(
        self, job: Job, state: JobState, why: str, *, outcome: str, cost: float | None = None
    ) -> bool:
        return self.store.transition(
            job.id,
            state,
            S.FAILED,
            error=why,
            finished_at=self._clock(),
            attempt=self._closing(AttemptOutcome(outcome), why, cost),
        )

    def cancelled(self, job: Job, state: JobState, why: str) -> bool:
        return self.store.transition(
            job.id,
            state,
            S.CANCELLED,
            error=why,
            finished_at=self._clock(),
            attempt=self._closing(O.CANCELLED, why),
        )

    def done(self, job: Job, files: Sequence[OutputFile], cost: float | None) -> bool:
        now = self._clock()
        fields: dict[str, Any] = {"outputs": list(files), "finished_at": now, "error": None}
        attempt = self._closing(O.SUCCEEDED, cost=cost)
        if cost is not None:
            fields["cost"] = cost
        return self.store.transition(job.id, S.DOWNLOADING, S.DONE, attempt=attempt, **fields)

    # -- helpers --------------------------------------------------------------------------
    def _closing(
        self, outcome: AttemptOutcome, why: str | None = None, cost: float | None = None
    ) -> dict[str, Any]:
        attempt: dict[str, Any] = {"outcome": outcome.value, "finished_at": self._clock()}
        if why is not None:
            attempt["error"] = why
        if cost is not None:
            attempt["cost"] = cost
        return attempt

    def _rescued(self) -> dict[tuple[int, int], dict[str, Any]]:
        path = rescue_path(self.store.path)
        found: dict[tuple[int, int], dict[str, Any]] = {}
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return found
        for line in lines:
            try:
                entry = json.loads(line)
                found[(int(entry["job_id"]), int(entry["attempt"]))] = entry
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a crash mid-write: the rest still count
        return found

    def _settle_rescued(self, job: Job, entry: dict[str, Any]) -> bool:
        if not entry.get("request_id"):  # never sent: simply pending again
            return self.not_sent(job, str(entry.get("why") or "not sent"))
        sub = Submitted(
            str(entry["request_id"]),
            str(entry.get("status_url") or ""),
            str(entry.get("result_url") or ""),
            str(entry.get("cancel_url") or ""),
        )
        return self.store.record_submitted(job.id, sub)

    def _forget_rescued(self) -> None:
        """Drop rescued ids whose job no longer waits for them (rescue lock held)."""
        path = rescue_path(self.store.path)
        rescued = self._rescued()
        if not rescued:
            return
        waiting = {
            (j.id, j.attempts) for j in self.store.jobs(None, [S.SUBMITTING], current_only=False)
        }
        keep = [e for k, e in rescued.items() if k in waiting]
        if not keep:
            path.unlink(missing_ok=True)
            return
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text("".join(json.dumps(e) + "\n" for e in keep), encoding="utf-8")
        os.replace(tmp, path)

    @contextmanager
    def _rescue_lock(self) -> Iterator[None]:
        """One writer of the rescue file at a time, across processes sharing the state."""
        lock = Path(f"{self.store.path}.locks") / "rescued.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
