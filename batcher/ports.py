"""The three narrow interfaces a job's life talks through: Ledger, Api and Sink.

Invariants:
- `lifecycle` and `scheduler` know only these Protocols, never SQLite, httpx or a folder:
  a second Ledger (PostgreSQL) or a second Sink (object storage) is an addition.
- Every Ledger write is named for what happened to the job and is one transaction with
  its event row; each takes the state the caller believes the job is in and returns False
  (changing nothing) when the job was moved meanwhile (compare-and-set).
- Ledger writes raise only `errors.StateError` subclasses; Api calls only
  `errors.BatcherError` subclasses; Sink calls only `errors.DownloadError` subclasses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from batcher.models import (
    CancelOutcome,
    Job,
    JobRecord,
    JobState,
    Money,
    OutputFile,
    RemoteStatus,
    Submitted,
)


class Ledger(Protocol):
    """The state of every job, written as named events (see store/ledger.py)."""

    # -- admission ----------------------------------------------------------------
    def claim(self, runs: Sequence[str], *, job_id: int | None = None) -> Job | None:
        """The next pending job (or job `job_id`, if still pending), moved to `submitting`
        with a new attempt; None when there is none."""

    def peek_pending(self, runs: Sequence[str]) -> Job | None:
        """The job `claim` would take next."""

    async def settle(self) -> None:
        """Every commit so far (a claim above all) made durable through a power cut, without
        holding up the event loop: awaited between a claim and its POST."""

    def money(self, runs: Sequence[str]) -> Money:
        """The runs' account of money; its `at_most` (spent + sent) is what a budget holds."""

    def billed(self, runs: Sequence[str]) -> tuple[float, float]:
        """USD the API reported billing for finished attempts, and what those were
        estimated at (their ratio scales the estimates of what is still to come)."""

    def in_states(self, runs: Sequence[str], states: Sequence[JobState]) -> list[Job]:
        """Every version (current or superseded) of the runs' jobs in these states."""

    def reconcile(self, runs: Sequence[str]) -> list[Job]:
        """Jobs a dead process left `submitting`: queued again when their request id was
        rescued, else `unknown`. Returns the jobs made unknown."""

    def release_unknown(self, job: Job, why: str) -> bool:
        """unknown -> pending: resubmitted on purpose (the `on_unknown` policy)."""

    # -- one job's life -----------------------------------------------------------
    def job(self, job_id: int) -> Job:
        """The job as stored now."""

    def record(self, job_id: int) -> JobRecord:
        """The job as reports (and sidecars) read it."""

    def sent_attempts(self, job: Job) -> int:
        """Attempts since the last manual retry that reached (or may have reached) the API."""

    def not_sent(self, job: Job, why: str) -> bool:
        """submitting -> pending: the POST did not reach the API; claim it again later."""

    def accepted(self, job: Job, sub: Submitted) -> bool:
        """submitting -> queued: the request id, committed the moment it is known."""

    def rejected(self, job: Job, why: str) -> bool:
        """submitting -> failed: the API refused the payload; nothing was accepted."""

    def doubtful(self, job: Job, why: str, *, request_id: str | None = None) -> bool:
        """submitting -> unknown: the POST may have been accepted (held for a person)."""

    def rescue(self, job: Job, sub: Submitted | None, why: str) -> None:
        """Keep an accepted request id (or, with None, the fact that nothing was sent) when
        the database refuses it, somewhere that survives a failing database; `reconcile`
        brings it back."""

    def note(self, runs: Sequence[str], kind: str, detail: str) -> None:
        """Something that happened to whole runs (an API outage, its end), for the log."""

    def render_times(self, groups: Sequence[str]) -> dict[str, list[tuple[float, float]]]:
        """(seconds, when seen) of earlier renders of these groups (polling learns)."""

    def started(self, job: Job) -> bool:
        """queued -> running."""

    def rendered(self, job: Job, state: JobState, *, took: tuple[str, float] | None = None) -> bool:
        """queued/running -> downloading: the render succeeded, its files are to fetch;
        `took` (group, seconds) is kept with the move for later runs' polling."""

    def requeued(self, job: Job, state: JobState, why: str, *, cost: float | None = None) -> bool:
        """A failed generation with attempts left: back to pending for a new render
        (`cost`: what the API reported billing for the failed one, if it said)."""

    def failed(
        self, job: Job, state: JobState, why: str, *, outcome: str, cost: float | None = None
    ) -> bool:
        """Failed for good (`outcome` says how the attempt ended)."""

    def cancelled(self, job: Job, state: JobState, why: str) -> bool:
        """Cancelled remotely or while queued."""

    def done(self, job: Job, files: Sequence[OutputFile], cost: float | None) -> bool:
        """downloading -> done: every file landed."""


class Api(Protocol):
    """The RunComfy Model API (client.RunComfyClient)."""

    @property
    def base_url(self) -> str:
        """Where the API is (render times learnt on one API say nothing of another's)."""

    def handle(self, request_id: str) -> Submitted:
        """Canonical URLs of a request id (when none were stored)."""

    async def submit(self, model_id: str, payload: Mapping[str, Any]) -> Submitted:
        """POST one request (paid)."""

    async def status(self, req: Submitted) -> RemoteStatus:
        """The request's state; `completed` here means finished, not succeeded."""

    async def result(self, req: Submitted, *, include_cost: bool = True) -> RemoteStatus:
        """The outcome of a finished request (or its current state)."""

    async def cancel(self, req: Submitted) -> CancelOutcome:
        """Ask to cancel; only queued requests can be."""


class Sink(Protocol):
    """Where a job's files land (outputs.LocalFolder)."""

    def free_bytes(self, run: str) -> int:
        """Space left where the run's files land."""

    async def land(self, job: Job, urls: Sequence[str]) -> list[OutputFile]:
        """Download every output under its final name (verified, atomic)."""

    async def seal(
        self, record: JobRecord, files: Sequence[OutputFile], finished_at: float, cost: float | None
    ) -> None:
        """Write what describes the files (the sidecar) before the job is marked done."""
