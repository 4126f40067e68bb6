"""Value types shared by every layer: job specs, job states, remote statuses.

Invariants: every type here is immutable; JobState transitions are listed in one table
(`ALLOWED`), and the store refuses any other move.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

DEFAULT_MODEL = "kling/kling-3.0/pro/text-to-video"


class JobState(StrEnum):
    """Local life cycle of one job version."""

    PENDING = "pending"  # known, nothing sent yet
    SUBMITTING = "submitting"  # committed before its POST
    QUEUED = "queued"  # request id known, waiting in the remote queue
    RUNNING = "running"  # remote says in progress
    DOWNLOADING = "downloading"  # remote succeeded, files being fetched
    DONE = "done"  # every output on disk, verified
    FAILED = "failed"  # failed for good (attempts used up or permanent error)
    UNKNOWN = "unknown"  # a POST whose outcome is unknown: held for a human
    CANCELLED = "cancelled"  # cancelled locally or remotely

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def remote(self) -> bool:
        """True when a request id exists and the remote side may still be working."""
        return self in (JobState.QUEUED, JobState.RUNNING)


TERMINAL = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})
# Work a run still has to do (unknown outcomes wait for a person, so they are not here).
UNFINISHED = (
    JobState.PENDING,
    JobState.SUBMITTING,
    JobState.QUEUED,
    JobState.RUNNING,
    JobState.DOWNLOADING,
)
S = JobState
ALLOWED: Mapping[JobState, frozenset[JobState]] = {
    S.PENDING: frozenset({S.SUBMITTING, S.CANCELLED, S.FAILED}),
    S.SUBMITTING: frozenset({S.QUEUED, S.PENDING, S.FAILED, S.UNKNOWN}),
    S.QUEUED: frozenset({S.QUEUED, S.RUNNING, S.DOWNLOADING, S.PENDING, S.FAILED, S.CANCELLED}),
    S.RUNNING: frozenset({S.RUNNING, S.DOWNLOADING, S.PENDING, S.FAILED, S.CANCELLED}),
    S.DOWNLOADING: frozenset({S.DOWNLOADING, S.DONE, S.PENDING, S.FAILED}),
    S.DONE: frozenset({S.DOWNLOADING}),  # a file went missing: fetch it again
    S.FAILED: frozenset({S.PENDING, S.DOWNLOADING}),
    S.UNKNOWN: frozenset({S.PENDING, S.CANCELLED, S.QUEUED}),
    S.CANCELLED: frozenset({S.PENDING}),
}


class AttemptOutcome(StrEnum):
    """How one remote attempt of a job ended (or where it stands while open)."""

    SUBMITTING = "submitting"  # claimed; its one POST is under way
    QUEUED = "queued"  # accepted: the request id is known
    SUCCEEDED = "succeeded"  # rendered and every file landed
    FAILED = "failed"  # the server said the generation failed
    REJECTED = "rejected"  # the API refused the payload (400/422): never accepted
    NOT_SENT = "not_sent"  # nothing reached the API (connect error, 429, stop, balance)
    UNKNOWN = "unknown"  # the POST may have been accepted: held by policy
    CANCELLED = "cancelled"  # cancelled while queued (not billed)
    DOWNLOAD_FAILED = "download_failed"  # rendered, but the files could not be stored
    # No longer followed (its deadline passed, the API forgot it, or polling it failed for
    # good): it may have rendered and been billed.
    ABANDONED = "abandoned"


# Attempts that never reached the API: they count neither as tries nor as spend.
UNSENT = frozenset({AttemptOutcome.NOT_SENT, AttemptOutcome.REJECTED})
# Attempts that are not billed.
UNBILLED = UNSENT | {AttemptOutcome.CANCELLED}


@dataclass(frozen=True)
class Event:
    """Something worth showing the user, emitted while runs are driven."""

    kind: str  # submitted, running, downloaded, done, failed, unknown, retry, warn, stop
    key: str
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """Run options a job file may set; command-line flags override them."""

    concurrency: int | None = None  # remote in-flight limit
    max_cost: float | None = None  # USD budget for new submissions
    max_attempts: int | None = None  # remote attempts per job
    on_unknown: str | None = None  # "hold" (default) or "resubmit"
    output_dir: str | None = None  # output folder (relative to the job file's folder)
    deadline_s: float | None = None  # per-job deadline, seconds since first submit
    notify: str | None = None  # shell command run once when the run ends (summary on stdin)


@dataclass(frozen=True, kw_only=True, slots=True)
class JobSpec:
    """One expanded job: what to send, under which stable key, to which file name."""

    run: str  # run name
    key: str  # stable key: run/job[/field=value...][#repeat]
    name: str  # job name as written in the file
    model: str  # model id
    payload: Mapping[str, Any]  # the exact input object sent to the API
    fingerprint: str  # sha256 hex of model + canonical payload
    output_name: str  # filesystem-safe file stem, unique within the run
    sweep: Mapping[str, Any] = field(default_factory=dict)  # swept field -> value
    repeat: int = 0  # repeat index (0-based)
    cost: float = 0.0  # estimated USD for one render
    source: str = ""  # FILE:LINE where the job was written
    rows_of: str | None = None  # the rows entry (its name or file stem) of a job from a row


@dataclass(frozen=True, kw_only=True, slots=True)
class OutputFile:
    """One downloaded output: where it came from and what landed on disk."""

    url: str
    path: str  # relative to the run's output folder
    size: int
    sha256: str


@dataclass(frozen=True)
class Job:
    """A job version as a job's life needs it (one row of the state's `jobs`)."""

    id: int
    run: str
    key: str
    version: int
    model: str
    payload: Mapping[str, Any]
    output_name: str
    cost_estimate: float
    state: JobState
    request_id: str | None
    handle: Submitted | None
    attempts: int
    submitted_at: float | None
    attempt_floor: int = 0  # attempts up to this number were used before a manual retry
    current: bool = True  # False for a version superseded by an edit of the job file

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        rid = row["request_id"]
        handle = (
            Submitted(rid, row["status_url"], row["result_url"], row["cancel_url"])
            if rid and row["status_url"]
            else None
        )
        return cls(
            id=row["id"],
            run=row["run"],
            key=row["key"],
            version=row["version"],
            model=row["model"],
            payload=json.loads(row["payload"]),
            output_name=row["output_name"],
            cost_estimate=row["cost_estimate"],
            state=JobState(row["state"]),
            request_id=rid,
            handle=handle,
            attempts=row["attempts"],
            submitted_at=row["submitted_at"],
            attempt_floor=row["attempt_floor"],
            current=bool(row["current"]),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Attempt:
    """One remote attempt of a job (history is never overwritten)."""

    number: int
    request_id: str | None
    submitted_at: float | None
    finished_at: float | None
    outcome: AttemptOutcome
    error: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class JobRecord:
    """A job version as the state store knows it (what reports are made of)."""

    id: int
    run: str
    key: str
    name: str
    version: int  # 1 for the first payload of a key, +1 each time it was edited
    current: bool  # False for versions superseded by an edit
    model: str
    fingerprint: str
    payload: Mapping[str, Any]
    sweep: Mapping[str, Any]
    repeat: int
    output_name: str
    out_dir: str  # the run's output folder (absolute)
    state: JobState
    request_id: str | None
    attempts: tuple[Attempt, ...]
    error: str | None
    outputs: tuple[OutputFile, ...]
    cost: float  # estimated USD (actual when the server reported it)
    created_at: float
    submitted_at: float | None
    finished_at: float | None
    rows_of: str | None = None  # the rows entry a job came from (see JobSpec)


@dataclass(frozen=True)
class Submitted:
    """A request the API accepted: its id and the server-given URLs."""

    request_id: str
    status_url: str
    result_url: str
    cancel_url: str


@dataclass(frozen=True)
class Queued:
    """Waiting in the remote queue."""

    position: int | None = None


@dataclass(frozen=True)
class InProgress:
    """Being generated; `said` is the status the API gave when it is not one batcher
    knows (followed as still running, and told: see `Lifecycle.follow`)."""

    said: str | None = None


@dataclass(frozen=True)
class Succeeded:
    """Finished; `outputs` holds every output URL found (video first)."""

    outputs: tuple[str, ...] = ()
    cost: float | None = None
    elapsed: float | None = None  # the server's finished_at - created_at, when both given


@dataclass(frozen=True)
class Failed:
    """Finished with an error (the server's text kept as given); `cost` if the API said
    it billed one (failed generations are normally not billed)."""

    error: str = ""
    cost: float | None = None


@dataclass(frozen=True)
class Cancelled:
    """Cancelled remotely."""


RemoteStatus = Queued | InProgress | Succeeded | Failed | Cancelled


@dataclass(frozen=True)
class CancelOutcome:
    """Answer to a cancel request: cancelled, or it will run to completion."""

    cancelled: bool
    outcome: str


@dataclass(frozen=True)
class Money:
    """One account of a run's (or several runs') money, in USD, told the same way by
    `plan`, `run`, `status`, `runs` and the report.

    - estimated: the plan: every current job at its estimate.
    - spent: rendered attempts, at the API's reported cost where it said one (`reported`
      is that part), else at the estimate.
    - sent: attempts sent whose outcome is not known (queued, running, outcome unknown,
      or no longer followed), and failed generations whose cost the API did not say:
      they may be billed, counted at their estimates.
    - failed: generations that failed and that the API said cost nothing (`cost: 0`), at
      their estimates: apart, not billed. (One it said cost more counts as spent. The
      contract does not promise failures are free: without the API's word, a failure
      stays in `sent`.)

    `--max-cost` holds `spent + sent` (what is or may be billed) under the budget."""

    estimated: float = 0.0
    spent: float = 0.0
    reported: float = 0.0
    sent: float = 0.0
    failed: float = 0.0

    @property
    def at_most(self) -> float:
        """What is or may be billed: what a budget counts."""
        return self.spent + self.sent

    def __add__(self, other: Money) -> Money:
        return Money(
            self.estimated + other.estimated,
            self.spent + other.spent,
            self.reported + other.reported,
            self.sent + other.sent,
            self.failed + other.failed,
        )

    def as_json(self) -> dict[str, float]:
        return {  # always floats: 0.0, not 0, whatever SQL summed them as
            "estimated_usd": round(float(self.estimated), 4),
            "spent_usd": round(float(self.spent), 4),
            "reported_usd": round(float(self.reported), 4),
            "sent_usd": round(float(self.sent), 4),
            "failed_usd": round(float(self.failed), 4),
        }

    @classmethod
    def of_json(cls, data: dict[str, float]) -> Money:
        return cls(
            data["estimated_usd"],
            data["spent_usd"],
            data["reported_usd"],
            data["sent_usd"],
            data["failed_usd"],
        )

    def text(self, *, emulated: bool = False) -> str:
        """`$4.20 spent ($3.36 of it reported by the API), $0.84 sent, may be billed;
        estimated $8.40; failed generations $0.84 (not billed)`: zero parts are left out."""
        spent = f"${self.spent:.2f} spent"
        if self.reported and abs(self.reported - self.spent) > 0.005:
            spent += f" (${self.reported:.2f} of it reported by the API)"
        elif self.reported:
            spent += " (reported by the API)"
        parts = [spent]
        if self.sent > 0.005:
            parts.append(f"${self.sent:.2f} sent, may be billed")
        out = ", ".join(parts) + f"; estimated ${self.estimated:.2f}"
        if self.failed > 0.005:
            out += f"; failed generations ${self.failed:.2f} (not billed)"
        return out + (" (emulated: nothing billed)" if emulated else "")


def bill_ratio(billed: float, estimated: float) -> float:
    """How much more the API billed than was estimated, for the same renders (at least 1:
    a budget never trusts a cheaper bill to pay for more)."""
    return max(1.0, billed / estimated) if estimated > 0 else 1.0
