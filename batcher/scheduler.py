"""The durable scheduler (anyio): submit within limits, poll, fetch results, download.

Invariants:
- Every state change goes through the store before anything else happens to the job: a
  job is `submitting` (committed) before its POST and its request id is committed the
  moment the answer arrives. If a transition is refused (someone else moved the job, e.g.
  `batcher cancel`), this scheduler stops touching that job.
- At most `concurrency` jobs are remote at once (submitting, queued or running).
- A POST is repeated only when nothing reached the server or the server said 429; any
  other doubtful outcome makes the job `unknown` (resubmitted only by policy).
- One shared back-off (`Breaker`) pauses submits and polls when the API rate-limits or
  fails, so an outage does not turn many jobs into unknown outcomes.
- Stopping (first Ctrl-C) lets POSTs in flight finish and record their request ids;
  everything else simply stops: `resume` continues from the store.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from batcher import errors
from batcher.client import RunComfyClient
from batcher.crashpoints import crash_point
from batcher.download import DEFAULT_MAX_BYTES
from batcher.models import Cancelled, Failed, JobState, OutputFile, Queued, Succeeded
from batcher.outputs import file_stem, land_files, write_sidecar
from batcher.pacing import Breaker, PollPlanner
from batcher.retry import Action, Backoff, classify
from batcher.store import Job, Store

if TYPE_CHECKING:  # the scheduler passes the files client through; it makes no HTTP calls
    import httpx

S = JobState
UNSENT = ("not_sent", "rejected")
# Where a job goes when its task meets an unexpected error: a POST that may have gone out
# is an unknown outcome; a download can be retried as a download.
AFTER_CRASH = {S.SUBMITTING: (S.UNKNOWN, "unknown"), S.DOWNLOADING: (S.FAILED, "download_failed")}
MAX_HICCUPS = 50  # API errors tolerated while fetching one result


@dataclass(frozen=True, kw_only=True)
class SchedulerConfig:
    """Limits and pacing of one scheduler run."""

    concurrency: int = 8
    submit_interval: float = 0.0  # minimum seconds between two POSTs
    max_attempts: int = 3  # remote attempts per job (failed generations, expiries)
    on_unknown: str = "hold"  # or "resubmit"
    max_cost: float | None = None
    deadline: float | None = None  # seconds from submit
    poll_min: float = 1.0
    poll_max: float = 30.0
    download_concurrency: int = 4
    download_attempts: int = 8
    max_download_bytes: int = DEFAULT_MAX_BYTES
    backoff: Backoff = field(default_factory=Backoff)


@dataclass(frozen=True)
class Event:
    """Something worth showing the user."""

    kind: str  # submitted, running, downloaded, done, failed, unknown, retry, warn, stop
    key: str
    message: str = ""


@dataclass
class Summary:
    """How a scheduler run ended."""

    stop_reason: str | None = None  # budget, balance, auth, interrupted
    fatal: errors.BatcherError | None = None
    submitted: int = 0


class Scheduler:
    """Drives every unfinished job of the given runs to a final state."""

    def __init__(
        self,
        store: Store,
        client: RunComfyClient,
        files: httpx.AsyncClient,
        *,
        runs: Sequence[str],
        out_dirs: dict[str, Path],
        config: SchedulerConfig,
        on_event: Callable[[Event], None] = lambda e: None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.store, self.client, self.files = store, client, files
        self.runs, self.out_dirs, self.cfg = list(runs), out_dirs, config
        self.emit, self.clock, self.sleep = on_event, clock, sleep
        self.rng = rng or random.Random()
        self.breaker = Breaker(clock, sleep, config.backoff, self.rng)
        self.planner = PollPlanner(
            fast=config.poll_min, maximum=config.poll_max, concurrency=config.concurrency
        )
        self.summary = Summary()
        self._remote = 0  # jobs holding a remote slot
        self._changed = anyio.Event()
        self._downloads = anyio.CapacityLimiter(config.download_concurrency)
        self._tg: anyio.abc.TaskGroup | None = None
        self._stopping = False  # interrupted or fatal: stop everything
        self._closed = False  # budget or balance: no new submissions, the rest goes on
        self._last_submit = 0.0
        self._spend: float | None = None  # committed USD, loaded once, then kept here

    # -- top level -------------------------------------------------------------

    async def run(self) -> Summary:
        """Reconcile, then submit and follow until nothing is left or a stop is asked."""
        for job in self.store.reconcile_orphans(self.runs):
            self.emit(Event("unknown", job.key, "left submitting by a stopped process"))
        self._apply_unknown_policy()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            # Every version still remote is followed, superseded ones included: they
            # were paid for, so they are downloaded (under NAME~vN) and reported.
            for job in self.store.jobs(self.runs, [S.QUEUED, S.RUNNING], current_only=False):
                self._remote += 1
                tg.start_soon(self._guarded, job, self._follow_then_release)
            for job in self.store.jobs(self.runs, [S.DOWNLOADING], current_only=False):
                tg.start_soon(self._guarded, job, self._fetch_result)
            tg.start_soon(self._submit_loop)
        return self.summary

    async def _guarded(self, job: Job, step: Callable[[Job], Awaitable[None]]) -> None:
        """Run one job's task; an unexpected error ends that job's part, not the run."""
        try:
            await step(job)
        except Exception as exc:  # noqa: BLE001 - the boundary that keeps the batch alive
            self._crashed(job, exc)

    def _crashed(self, job: Job, exc: Exception) -> None:
        why = f"internal error: {type(exc).__name__}: {exc}"
        self.emit(Event("warn", job.key, why))
        try:
            state = self.store.job(job.id).state
            if state in AFTER_CRASH:  # queued / running: left as they are; resume follows them
                to, outcome = AFTER_CRASH[state]
                attempt = {"outcome": outcome, "error": why}
                self.store.transition(job.id, state, to, error=why, attempt=attempt)
        except Exception as again:  # noqa: BLE001 - the store itself may be what failed
            self.emit(Event("warn", job.key, f"could not record the error: {again}"))

    def stop(self, reason: str = "interrupted") -> None:
        """Stop submitting and following; POSTs in flight still record their answer."""
        if self._stopping:
            return
        self._stopping = True
        self.summary.stop_reason = self.summary.stop_reason or reason
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    def _fatal(self, exc: errors.BatcherError) -> None:
        self.summary.fatal = exc
        self.stop("auth")

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _apply_unknown_policy(self) -> None:
        if self.cfg.on_unknown != "resubmit":
            return
        for job in self.store.jobs(self.runs, [S.UNKNOWN]):
            if self._sent(job) >= self.cfg.max_attempts:
                continue
            if self.store.transition(job.id, S.UNKNOWN, S.PENDING, reason="on_unknown: resubmit"):
                self.emit(Event("retry", job.key, "unknown outcome: resubmitting by policy"))

    # -- submitting ------------------------------------------------------------

    async def _submit_loop(self) -> None:
        while not (self._stopping or self._closed):
            if self._remote >= self.cfg.concurrency:
                await self._changed.wait()
                continue
            await self.breaker.wait()
            if not self._within_budget():
                return
            # One job per claim: claiming many at once sends bursts that cost more in
            # the connection pool than the commits they save (measured).
            jobs = self.store.claim(self.runs, 1)
            if not jobs:
                if self._remote == 0:
                    return
                await self._changed.wait()
                continue
            assert self._tg is not None
            for job in jobs:
                self._remote += 1
                self._tg.start_soon(self._guarded, job, self._lifecycle)
            await self._pace()

    def _within_budget(self) -> bool:
        if self.cfg.max_cost is None:
            return True
        nxt = self.store.peek_pending(self.runs)
        if nxt is None:
            return True
        if self._spend is None:
            self._spend = self.store.committed_spend(self.runs)
        if self._spend + nxt.cost_estimate <= self.cfg.max_cost + 1e-9:
            self._spend += nxt.cost_estimate
            return True
        self.summary.stop_reason = "budget"
        self._closed = True
        self.emit(
            Event(
                "stop",
                "",
                f"budget: ${self._spend:.2f} committed of "
                f"${self.cfg.max_cost:.2f}; no new submissions",
            )
        )
        return False

    async def _pace(self) -> None:
        if self.cfg.submit_interval > 0:
            wait = self._last_submit + self.cfg.submit_interval - self.clock()
            if wait > 0:
                await self.sleep(wait)
        self._last_submit = self.clock()

    async def _lifecycle(self, job: Job) -> None:
        try:
            submitted = await self._submit(job)
            if submitted is not None and not self._stopping:
                await self._follow(submitted)
        finally:
            self._release()

    async def _submit(self, job: Job) -> Job | None:
        """POST until accepted or a decision is made; None when the job left `submitting`.

        Only the POST and the commit of its answer are shielded from cancellation; a stop
        while waiting on the back-off puts the job back to pending (nothing was sent).
        """
        while True:
            try:
                await self.breaker.wait()
            except anyio.get_cancelled_exc_class():
                with anyio.CancelScope(shield=True):
                    self._unclaim(job, "stopped before sending")
                raise
            if self._stopping:
                self._unclaim(job, "stopped before sending")
                return None
            with anyio.CancelScope(shield=True):
                try:
                    crash_point("before_post")
                    sub = await self.client.submit(job.model, job.payload)
                    crash_point("after_post")
                except errors.BatcherError as exc:
                    action = classify(exc, is_submit=True)
                    if action is Action.RETRY:
                        self.breaker.failure(getattr(exc, "retry_after", None))
                        self.emit(Event("retry", job.key, f"submit not accepted, retrying: {exc}"))
                        continue
                    self._submit_failed(job, exc, action)
                    return None
                self.breaker.success()
                if not self.store.record_submitted(job.id, sub):
                    return None
                crash_point("after_commit")
            self.summary.submitted += 1
            self.emit(Event("submitted", job.key, sub.request_id))
            return replace(
                job,
                state=S.QUEUED,
                request_id=sub.request_id,
                handle=sub,
                submitted_at=self.clock(),
            )

    def _release(self) -> None:
        self._remote -= 1
        self._wake()

    def _unclaim(self, job: Job, why: str) -> None:
        self.store.transition(
            job.id,
            S.SUBMITTING,
            S.PENDING,
            reason=why,
            attempt={"outcome": "not_sent", "error": why, "finished_at": self.clock()},
        )

    def _submit_failed(self, job: Job, exc: errors.BatcherError, action: Action) -> None:
        now = self.clock()
        if action is Action.UNKNOWN:
            self.breaker.failure(getattr(exc, "retry_after", None))
            self.store.transition(
                job.id,
                S.SUBMITTING,
                S.UNKNOWN,
                error=str(exc)
                if isinstance(exc, errors.UnknownOutcome)
                else f"submit outcome unknown: {exc}",
                attempt={"outcome": "unknown", "error": str(exc), "finished_at": now},
            )
            self.emit(Event("unknown", job.key, str(exc)))
            if self.cfg.on_unknown == "resubmit" and self._sent(job) < self.cfg.max_attempts:
                self.store.transition(job.id, S.UNKNOWN, S.PENDING, reason="on_unknown: resubmit")
            return
        if action is Action.FAIL_JOB:
            self.store.transition(
                job.id,
                S.SUBMITTING,
                S.FAILED,
                error=str(exc),
                finished_at=now,
                attempt={"outcome": "rejected", "error": str(exc), "finished_at": now},
            )
            self.emit(Event("failed", job.key, str(exc)))
            return
        # Not sent (balance, auth, or stopping during a retry): back to pending.
        self.store.transition(
            job.id,
            S.SUBMITTING,
            S.PENDING,
            error=str(exc),
            attempt={"outcome": "not_sent", "error": str(exc), "finished_at": now},
        )
        if action is Action.FATAL:
            self._fatal(exc)
        elif action is Action.STOP_SUBMITTING:
            self.summary.stop_reason = "balance"
            self.emit(Event("stop", job.key, f"insufficient balance: {exc}"))
            self._closed = True
            self._wake()

    # -- following -------------------------------------------------------------

    async def _follow_then_release(self, job: Job) -> None:
        try:
            await self._follow(job)
        finally:
            self._release()

    async def _follow(self, job: Job) -> None:
        """Poll one remote job until it leaves the remote states."""
        state, position = job.state, None
        started = job.submitted_at or self.clock()
        # When the render began is not reported: it lies between the last poll that saw
        # the job queued (or its submit) and the first that saw it running. The earlier
        # bound keeps polling early rather than late.
        queued_until = started
        running_since: float | None = None
        video = float(job.payload.get("duration", 5))
        polled = False  # the deadline applies only once a poll has seen it unfinished
        while True:
            now = self.clock()
            elapsed = now - started
            if polled and self.cfg.deadline is not None and elapsed > self.cfg.deadline:
                await self._deadline(job, state)
                return
            running_for = now - running_since if running_since is not None else None
            wait = self.planner.interval(
                elapsed=elapsed, video_seconds=video, position=position, running_for=running_for
            )
            if not polled and elapsed > self.planner.maximum:
                wait = 0.0  # resumed long after its submit: ask at once
            await self.sleep(wait)
            await self.breaker.wait()
            assert job.handle is not None
            try:
                st = await self.client.status(job.handle)
            except errors.BatcherError as exc:
                if not await self._poll_error(job, state, exc):
                    return
                continue
            self.breaker.success()
            polled = True
            if isinstance(st, Queued):
                position, queued_until = st.position, self.clock()
            elif isinstance(st, Succeeded):
                self.planner.observe(self.clock() - (running_since or started), video)
                if self.store.transition(job.id, state, S.DOWNLOADING):
                    await self._fetch_result(replace(job, state=S.DOWNLOADING))
                return
            elif isinstance(st, Failed):
                self._remote_failed(job, state, st.error or await self._failure_text(job))
                return
            elif isinstance(st, Cancelled):
                self._finish(job, state, S.CANCELLED, "cancelled remotely", "cancelled")
                return
            else:
                position = None
                if running_since is None:
                    running_since = queued_until
                if state is S.QUEUED:
                    if not self.store.transition(job.id, S.QUEUED, S.RUNNING):
                        return
                    state = S.RUNNING
                    self.emit(Event("running", job.key, job.request_id or ""))

    async def _failure_text(self, job: Job) -> str:
        """The status said failed without a reason: the result usually carries it."""
        assert job.handle is not None
        try:
            res = await self.client.result(job.handle, include_cost=False)
        except errors.BatcherError as exc:
            return f"generation failed (no reason given; result: {exc})"
        if isinstance(res, Failed) and res.error:
            return res.error
        return "generation failed (no reason given)"

    async def _poll_error(self, job: Job, state: JobState, exc: errors.BatcherError) -> bool:
        """Handle a failed poll; True to keep polling."""
        action = classify(exc, is_submit=False)
        if action is Action.RETRY:
            self.breaker.failure(getattr(exc, "retry_after", None))
            return True
        if action is Action.FATAL:
            self._fatal(exc)
            return False
        if action is Action.EXPIRED:
            # Never resubmitted on our own: it may have rendered (and been billed) before
            # it expired, or the base URL may be the wrong one.
            why = (
                f"the API does not know this request any more ({exc}); "
                "`batcher retry` renders it again"
            )
            self._finish(job, state, S.FAILED, why, "failed")
            return False
        self._finish(job, state, S.FAILED, str(exc), "failed")
        return False

    def _sent(self, job: Job) -> int:
        """Remote attempts that reached (or may have reached) the API."""
        return sum(
            1
            for a in self.store.attempts(job.id)
            if a.number > job.attempt_floor and a.outcome not in UNSENT
        )

    def _remote_failed(self, job: Job, state: JobState, error: str) -> None:
        """A failed attempt: back to pending while attempts remain, else failed for good."""
        now = self.clock()
        attempt = {"outcome": "failed", "error": error, "finished_at": now}
        sent = self._sent(job)
        if sent < self.cfg.max_attempts and not self._stopping:
            if self.store.transition(job.id, state, S.PENDING, error=error, attempt=attempt):
                self.emit(Event("retry", job.key, f"attempt {sent} failed: {error}"))
            return
        if self.store.transition(
            job.id, state, S.FAILED, error=error, finished_at=now, attempt=attempt
        ):
            self.emit(Event("failed", job.key, error))

    def _finish(self, job: Job, state: JobState, to: JobState, error: str, outcome: str) -> None:
        now = self.clock()
        if self.store.transition(
            job.id,
            state,
            to,
            error=error,
            finished_at=now,
            attempt={"outcome": outcome, "error": error, "finished_at": now},
        ):
            self.emit(Event(to.value, job.key, error))

    async def _deadline(self, job: Job, state: JobState) -> None:
        assert job.handle is not None
        note = f"deadline of {self.cfg.deadline:g} s passed"
        if state is S.QUEUED:
            try:
                outcome = await self.client.cancel(job.handle)
            except errors.BatcherError as exc:
                note += f"; cancel failed: {exc}"
            else:
                if outcome.cancelled:
                    self._finish(
                        job, state, S.CANCELLED, note + "; cancelled while queued", "cancelled"
                    )
                    return
                note += f"; cancel answered {outcome.outcome}"
        self._finish(
            job, state, S.FAILED, note + " (the request may still finish and be billed)", "failed"
        )

    # -- results and downloads ---------------------------------------------------

    async def _fetch_result(self, job: Job) -> None:
        """downloading -> done: fetch fresh output URLs and download every file.

        API hiccups (429, 5xx, dropped answers) wait on the shared back-off; only download
        failures use up the job's download attempts. A failure here is recorded as
        `download_failed`, so `batcher retry` downloads again instead of re-rendering.
        """
        assert job.handle is not None
        failures = hiccups = 0
        while True:
            await self.breaker.wait()
            try:
                res = await self.client.result(job.handle)
            except errors.BatcherError as exc:
                action = classify(exc, is_submit=False)
                if action is Action.RETRY and hiccups < MAX_HICCUPS:
                    hiccups += 1
                    self.breaker.failure(getattr(exc, "retry_after", None))
                    continue
                if action is Action.FATAL:
                    self._fatal(exc)
                    return
                outcome = "failed" if action is Action.EXPIRED else "download_failed"
                self._finish(job, S.DOWNLOADING, S.FAILED, f"result: {exc}", outcome)
                return
            self.breaker.success()
            try:
                if not isinstance(res, Succeeded) or not res.outputs:
                    raise errors.DownloadError(f"result is not a success with outputs: {res}")
                async with self._downloads:
                    files = await land_files(
                        self.store,
                        self.files,
                        job,
                        self.out_dirs[job.run],
                        res.outputs,
                        max_bytes=self.cfg.max_download_bytes,
                    )
            except errors.DownloadError as exc:
                failures += 1
                if failures >= self.cfg.download_attempts:
                    self._finish(
                        job, S.DOWNLOADING, S.FAILED, f"download failed: {exc}", "download_failed"
                    )
                    return
                self.emit(Event("retry", job.key, f"download: {exc}"))
                if not isinstance(exc, errors.UrlExpired):
                    await self.sleep(self.cfg.backoff.delay(failures, rng=self.rng))
                continue
            await self._done(job, files, res.cost)
            return

    async def _done(self, job: Job, files: list[OutputFile], cost: float | None) -> None:
        now = self.clock()
        fields: dict[str, Any] = {"outputs": files, "finished_at": now, "error": None}
        attempt: dict[str, Any] = {"outcome": "succeeded", "finished_at": now}
        if cost is not None:
            fields["cost"] = attempt["cost"] = cost
        record = self.store.record(job.id)
        await anyio.to_thread.run_sync(
            partial(write_sidecar, stem=file_stem(job)),
            record,
            self.out_dirs[job.run],
            files,
            now,
            cost,
        )
        crash_point("before_done")
        if self.store.transition(job.id, S.DOWNLOADING, S.DONE, attempt=attempt, **fields):
            self.emit(Event("done", job.key, ", ".join(f.path for f in files)))
