"""One job's life, top to bottom: submit -> follow -> settle -> fetch -> land -> done.

It talks only to the ports (Ledger, Api, Sink) and to what admission hands it (`Control`,
a `Slot`, the shared back-off); it never imports the scheduler.

Invariants:
- `submitting` spans exactly one POST: a job is claimed just before it, and a POST that
  reached nothing (connect error, 429, a back-off or a stop in the way) puts it straight
  back to pending (`not_sent`); admission claims it again after the back-off.
- A POST is repeated only when nothing reached the server or it said 429; every other
  doubtful outcome is `unknown` (resubmitted only by policy).
- A request id, once known, is committed before anything else happens to the job; when
  the database refuses, the commit is retried under the shield and the id is rescued to a
  plain file (`Ledger.rescue`) whatever happens, and new submissions stop.
- How a render ended comes from `/result`, never from `/status` (where a failed render may
  say `completed`). A failed render is a failed attempt, rendered again while attempts
  remain; a `/result` still running after `/status` finished is waited out.
- The remote slot is given back the moment the job leaves the remote states, so a slow
  download never holds a submission slot.
- Files that cannot be stored at all (`DiskFull`) stop new submissions at once; the job
  is left `download_failed` for `batcher retry`.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Protocol

import anyio

from batcher import errors
from batcher.crashpoints import crash_point
from batcher.models import (
    AttemptOutcome,
    Cancelled,
    Event,
    Failed,
    InProgress,
    Job,
    JobState,
    OutputFile,
    Queued,
    RemoteStatus,
    Submitted,
    Succeeded,
)
from batcher.pacing import Breaker, PollPlanner
from batcher.ports import Api, Ledger, Sink
from batcher.retry import Action, classify
from batcher.schema import for_model
from batcher.settings import RunSettings

S = JobState
O = AttemptOutcome  # noqa: E741 - short and read often below
MAX_HICCUPS = 50  # API errors tolerated while fetching one result
ACCEPT_TRIES = 6  # commits of a request id tried before it is rescued to a file


class Control(Protocol):
    """What admission lends a job's life: whether to stop, and how to stop things."""

    @property
    def stopping(self) -> bool:
        """Interrupted or fatal: leave every job as it is (the store has it)."""

    def stop_submitting(self, reason: str, message: str) -> None:
        """No new submissions (budget, balance, disk, state); jobs in flight go on."""

    def fatal(self, exc: errors.BatcherError) -> None:
        """The API refused the token: stop the whole run."""

    def returned(self, job: Job) -> None:
        """A claimed job went back to pending without being sent."""


class Slot:
    """A remote slot held by one job; given back once, when the job leaves remote states."""

    def __init__(self, give_back: Callable[[], None] | None = None) -> None:
        self._give_back = give_back

    def release(self) -> None:
        if self._give_back is not None:
            give_back, self._give_back = self._give_back, None
            give_back()


@dataclass(frozen=True)
class Timing:
    """What is known of a render's timing while it is followed."""

    started: float  # submit time
    render_from: float  # the earliest moment the render can have begun


class Lifecycle:
    """Drives single jobs; shared by every job task of one scheduler."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        api: Api,
        sink: Sink,
        settings: RunSettings,
        breaker: Breaker,
        planner: PollPlanner,
        control: Control,
        emit: Callable[[Event], None],
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        rng: random.Random,
    ) -> None:
        self.ledger, self.api, self.sink, self.cfg = ledger, api, sink, settings
        self.breaker, self.planner, self.control = breaker, planner, control
        self.emit, self.clock, self.sleep, self.rng = emit, clock, sleep, rng
        self.submitted = 0

    # -- the whole life ------------------------------------------------------------
    async def live(self, job: Job, slot: Slot) -> None:
        """A freshly claimed job: its one POST, then follow it to the end."""
        accepted = await self.submit(job, slot)
        if accepted is not None and not self.control.stopping:
            await self.follow(accepted, slot)

    async def carry_on(self, job: Job, slot: Slot, *, why: str = "") -> None:
        """After the unexpected: read where the job stands now and take it from there."""
        now = self.ledger.job(job.id)
        if now.state in (S.QUEUED, S.RUNNING):
            await self.follow(now, slot)
        elif now.state is S.DOWNLOADING:
            await self.fetch(now, slot)
        elif now.state is S.SUBMITTING:  # its task is gone and its POST may have gone out
            slot.release()
            if self.ledger.doubtful(now, f"submit outcome unknown: {why}"):
                self.emit(Event("unknown", job.key, why))
        else:
            slot.release()

    # -- submit -----------------------------------------------------------------------
    async def submit(self, job: Job, slot: Slot) -> Job | None:
        """One POST and the commit of its answer, shielded; None when not accepted."""
        with anyio.CancelScope(shield=True):
            if self.control.stopping or self.breaker.is_open:
                await self._unsent(job, slot, "not sent: stopping or backing off")
                return None
            try:
                sub = await self._post(job)
            except errors.BatcherError as exc:
                await self._refused(job, slot, exc)
                return None
            self.breaker.success()
            if not await self._commit_accepted(job, sub):
                slot.release()
                return None
            crash_point("after_commit")
        self.submitted += 1
        self.emit(Event("submitted", job.key, sub.request_id))
        return replace(
            job, state=S.QUEUED, request_id=sub.request_id, handle=sub, submitted_at=self.clock()
        )

    async def _post(self, job: Job) -> Submitted:
        """The paid POST, under an overall time limit (a read timeout restarts per chunk)."""
        limit = self.cfg.connect_timeout + 2 * self.cfg.read_timeout
        crash_point("before_post")
        with anyio.move_on_after(limit):
            sub = await self.api.submit(job.model, job.payload)
            crash_point("after_post")
            return sub
        raise errors.UnknownOutcome(f"submit outcome unknown: no answer within {limit:g} s")

    async def _unsent(self, job: Job, slot: Slot, why: str) -> None:
        await self._record_unsent(job, why, lambda: self.ledger.not_sent(job, why))
        self.control.returned(job)
        slot.release()

    async def _refused(self, job: Job, slot: Slot, exc: errors.BatcherError) -> None:
        action = classify(exc, is_submit=True)
        if action is Action.RETRY:
            self.breaker.failure(getattr(exc, "retry_after", None))
            await self._unsent(job, slot, f"not accepted, sent again after the back-off: {exc}")
            self.emit(Event("retry", job.key, f"submit not accepted, will retry: {exc}"))
            return
        if action is Action.UNKNOWN:
            self.breaker.failure(getattr(exc, "retry_after", None))
            await self._doubtful(job, exc)
        elif action is Action.FAIL_JOB:
            await self._record_unsent(job, str(exc), lambda: self.ledger.rejected(job, str(exc)))
            self.control.returned(job)  # nothing was accepted, nothing is owed
            self.emit(Event("failed", job.key, str(exc)))
        else:
            await self._record_unsent(job, str(exc), lambda: self.ledger.not_sent(job, str(exc)))
            self.control.returned(job)
            if action is Action.FATAL:
                self.control.fatal(exc)
            else:  # insufficient balance
                self.control.stop_submitting("balance", f"insufficient balance: {exc}")
        slot.release()

    async def _doubtful(self, job: Job, exc: errors.BatcherError) -> None:
        why = str(exc)
        if not isinstance(exc, errors.UnknownOutcome):
            why = f"submit outcome unknown: {exc}"
        # If even this cannot be committed, the job stays `submitting`, which the next
        # start reads as exactly this: an unknown outcome.
        await self._commit(lambda: self.ledger.doubtful(job, why))
        self.emit(Event("unknown", job.key, why))
        tries_left = self.ledger.sent_attempts(job) < self.cfg.max_attempts
        if self.cfg.on_unknown == "resubmit" and tries_left:
            self.ledger.release_unknown(job, "on_unknown: resubmit")

    async def _record_unsent(self, job: Job, why: str, write: Callable[[], bool]) -> None:
        """Commit that a POST reached nothing (or was refused); if the database will not
        take it, keep that fact aside, so the next start puts the job back to pending
        instead of holding it as an unknown outcome."""
        try:
            await self._commit(write)
        except Exception as exc:  # noqa: BLE001 - recorded aside, and the run stops
            self._keep_aside(job, None, f"{why}; the state database refused it: {exc}")

    async def _commit(self, write: Callable[[], bool]) -> bool:
        """A ledger write after a POST's answer, tried again (shielded) when it fails."""
        for attempt in range(1, ACCEPT_TRIES + 1):
            try:
                return write()
            except Exception:  # noqa: BLE001 - the answer must reach the store if it can
                if attempt == ACCEPT_TRIES:
                    raise
                await self.sleep(min(0.1 * 2**attempt, 5.0))
        raise AssertionError("unreachable")

    async def _commit_accepted(self, job: Job, sub: Submitted) -> bool:
        """Commit the request id, trying hard; rescue it to a file if the database refuses."""
        try:
            moved = await self._commit(lambda: self.ledger.accepted(job, sub))
        except Exception as exc:  # noqa: BLE001 - the id must outlive any failure here
            why = f"accepted as {sub.request_id}, but the state database refused it: {exc}"
            self._keep_aside(job, sub, why)
            return False
        if not moved:  # someone else moved the job meanwhile: say loudly what was paid for
            self.emit(
                Event("warn", job.key, f"accepted as {sub.request_id}, but the job had moved")
            )
        return moved

    def _keep_aside(self, job: Job, sub: Submitted | None, why: str) -> None:
        try:
            self.ledger.rescue(job, sub, why)
            kept = "kept aside; `batcher resume` takes it from there"
        except OSError as exc:
            kept = f"could not be kept aside either ({exc}): note it"
        named = f"; request id {sub.request_id}" if sub is not None else ""
        self.emit(Event("warn", job.key, f"{why}{named} {kept}"))
        self.control.stop_submitting(
            "state", f"the state database cannot record requests ({why}); no new submissions"
        )

    # -- follow -----------------------------------------------------------------------
    async def follow(self, job: Job, slot: Slot) -> None:
        """Poll a remote job until it leaves the remote states, then hand it on."""
        handle = job.handle or self.api.handle(job.request_id or "")
        job = replace(job, handle=handle)
        state, position = job.state, None
        start = job.submitted_at or self.clock()
        timing = Timing(start, start)
        running_since: float | None = None
        video = for_model(job.model).video_seconds(job.payload)
        polled = False  # the deadline applies only once a poll has seen it unfinished
        while True:
            elapsed = self.clock() - start
            if polled and elapsed > self.cfg.deadline:
                await self._deadline(job, state, slot)
                return
            running_for = self.clock() - running_since if running_since is not None else None
            wait = self.planner.interval(
                elapsed=elapsed, video_seconds=video, position=position, running_for=running_for
            )
            if not polled and elapsed > self.planner.maximum:
                wait = 0.0  # resumed long after its submit: ask at once
            await self.sleep(wait)
            await self.breaker.wait()
            try:
                st = await self.api.status(handle)
            except errors.BatcherError as exc:
                if not self._poll_error(job, state, exc, slot):
                    return
                continue
            self.breaker.success()
            polled = True
            if isinstance(st, Queued):
                position, timing = st.position, Timing(start, self.clock())
            elif isinstance(st, InProgress):
                position = None
                if running_since is None:
                    running_since = timing.render_from
                if state is S.QUEUED:
                    if not self.ledger.started(job):  # moved meanwhile (a cancel): let go
                        slot.release()
                        return
                    state = S.RUNNING
                    self.emit(Event("running", job.key, job.request_id or ""))
            else:  # finished: only /result says how
                await self._settle(job, state, slot, running_since or start, video)
                return

    async def _settle(
        self, job: Job, state: JobState, slot: Slot, render_from: float, video: float
    ) -> None:
        """/status says finished: ask /result how it ended, and act on that.

        The submit deadline no longer applies (the render is over, and may be billed): a
        `/result` that keeps saying running, or keeps failing, is given `result_wait`
        seconds and then left `download_failed`, so `batcher retry` asks /result again.
        """
        assert job.handle is not None
        finished_seen = self.clock()
        hiccups = 0
        while True:
            behind = self.clock() - finished_seen
            if behind > self.cfg.result_wait or hiccups > MAX_HICCUPS:
                self._result_gave_up(job, state, behind)
                slot.release()
                return
            await self.breaker.wait()
            try:
                res = await self.api.result(job.handle)
            except errors.BatcherError as exc:
                hiccups += 1
                if not self._poll_error(job, state, exc, slot):
                    return
                continue
            self.breaker.success()
            if isinstance(res, Succeeded):
                self.planner.observe(self.clock() - render_from, video)
                moved = self.ledger.rendered(job, state)
                slot.release()  # files are not the API's work: free the slot for the next
                if moved:
                    await self.fetch(replace(job, state=S.DOWNLOADING), slot, first=res)
                return
            if isinstance(res, Failed | Cancelled):
                self._ended(job, state, res)
                slot.release()
                return
            # /result still says queued or running: the status ran ahead; wait it out.
            await self.sleep(min(self.cfg.poll_max, max(self.cfg.poll_min, 0.25 * behind)))

    def _result_gave_up(self, job: Job, state: JobState, behind: float) -> None:
        why = (
            f"/status said finished {behind:.0f} s ago but /result never said how; "
            "`batcher retry` asks /result again (no new render)"
        )
        if self.ledger.rendered(job, state):
            self._fail(job, S.DOWNLOADING, why, O.DOWNLOAD_FAILED)

    def _ended(self, job: Job, state: JobState, res: Failed | Cancelled) -> None:
        if isinstance(res, Failed):
            self._remote_failed(job, state, res.error or "generation failed (no reason given)")
        elif self.ledger.cancelled(job, state, "cancelled remotely"):
            self.control.returned(job)  # cancelled while queued: not billed
            self.emit(Event("cancelled", job.key, "cancelled remotely"))

    def _poll_error(self, job: Job, state: JobState, exc: errors.BatcherError, slot: Slot) -> bool:
        """Handle a failed poll; True to keep polling. The slot is given back only once
        the job's new state is committed (a failed write keeps it, for the retry)."""
        action = classify(exc, is_submit=False)
        if action is Action.RETRY:
            self.breaker.failure(getattr(exc, "retry_after", None))
            return True
        if action is Action.FATAL:
            self.control.fatal(exc)
        elif action is Action.EXPIRED:
            # Never resubmitted on our own: it may have rendered (and been billed) before
            # it expired, or the base URL may be the wrong one.
            why = (
                f"the API does not know this request any more ({exc}); "
                "`batcher retry` renders it again"
            )
            self._fail(job, state, why, O.FAILED)
        else:
            self._fail(job, state, str(exc), O.FAILED)
        slot.release()
        return False

    def _remote_failed(self, job: Job, state: JobState, error: str) -> None:
        """A failed attempt: back to pending while attempts remain, else failed for good.

        A superseded version is never claimed again, so it fails for good at once.
        """
        sent = self.ledger.sent_attempts(job)
        if job.current and sent < self.cfg.max_attempts:
            if self.ledger.requeued(job, state, error):
                self.emit(Event("retry", job.key, f"attempt {sent} failed: {error}"))
            return
        self._fail(job, state, error, O.FAILED)

    def _fail(self, job: Job, state: JobState, why: str, outcome: AttemptOutcome) -> None:
        if self.ledger.failed(job, state, why, outcome=outcome):
            self.emit(Event("failed", job.key, why))

    async def _deadline(self, job: Job, state: JobState, slot: Slot) -> None:
        assert job.handle is not None
        note = f"deadline of {self.cfg.deadline:g} s passed"
        if state is S.QUEUED:
            try:
                outcome = await self.api.cancel(job.handle)
            except errors.BatcherError as exc:
                note += f"; cancel failed: {exc}"
            else:
                if outcome.cancelled:
                    note += "; cancelled while queued"
                    if self.ledger.cancelled(job, state, note):
                        self.control.returned(job)
                        self.emit(Event("cancelled", job.key, note))
                    slot.release()
                    return
                note += f"; cancel answered {outcome.outcome}"
        self._fail(job, state, note + " (the request may still finish and be billed)", O.FAILED)
        slot.release()

    # -- fetch and land -------------------------------------------------------------------
    async def fetch(self, job: Job, slot: Slot, *, first: RemoteStatus | None = None) -> None:
        """downloading -> done: fresh output URLs from /result, every file landed.

        API hiccups wait on the shared back-off; only download failures use up the job's
        download attempts, and end as `download_failed` (so `retry` downloads again).
        """
        slot.release()
        handle = job.handle or self.api.handle(job.request_id or "")
        job = replace(job, handle=handle)
        failures = hiccups = 0
        res = first
        while True:
            if res is None:
                res = await self._result(job)
                if res is None:
                    return
            if isinstance(res, Failed):  # the render failed after all: render again
                self._remote_failed(job, S.DOWNLOADING, res.error or "generation failed")
                return
            if not isinstance(res, Succeeded) or not res.outputs:
                hiccups += 1
                if hiccups > MAX_HICCUPS:
                    why = f"result is not a success with outputs: {res}"
                    self._fail(job, S.DOWNLOADING, why, O.DOWNLOAD_FAILED)
                    return
                await self.sleep(min(self.cfg.poll_max, self.cfg.poll_min * hiccups))
                res = None
                continue
            try:
                files = await self.sink.land(job, res.outputs)
                await self._done(job, files, res.cost)
                return
            except errors.DiskFull as exc:
                self.control.stop_submitting(  # first: the state may be on the same disk
                    "disk",
                    f"{exc}: no new submissions (they could not be stored); renders in flight "
                    "are followed; free space, then `batcher retry` downloads them",
                )
                self._fail(job, S.DOWNLOADING, f"cannot store the files: {exc}", O.DOWNLOAD_FAILED)
                return
            except errors.DownloadError as exc:
                failures += 1
                if failures >= self.cfg.download_attempts:
                    self._fail(job, S.DOWNLOADING, f"download failed: {exc}", O.DOWNLOAD_FAILED)
                    return
                self.emit(Event("retry", job.key, f"download: {exc}"))
                if not isinstance(exc, errors.UrlExpired):
                    await self.sleep(self.cfg.backoff.delay(failures, rng=self.rng))
                res = None

    async def _result(self, job: Job) -> RemoteStatus | None:
        """/result of a rendered job, through API hiccups; None when the job was settled."""
        assert job.handle is not None
        hiccups = 0
        while True:
            await self.breaker.wait()
            try:
                res = await self.api.result(job.handle)
            except errors.BatcherError as exc:
                action = classify(exc, is_submit=False)
                if action is Action.RETRY and hiccups < MAX_HICCUPS:
                    hiccups += 1
                    self.breaker.failure(getattr(exc, "retry_after", None))
                    continue
                if action is Action.FATAL:
                    self.control.fatal(exc)
                    return None
                outcome = O.FAILED if action is Action.EXPIRED else O.DOWNLOAD_FAILED
                self._fail(job, S.DOWNLOADING, f"result: {exc}", outcome)
                return None
            self.breaker.success()
            return res

    async def _done(self, job: Job, files: list[OutputFile], cost: float | None) -> None:
        now = self.clock()
        await self.sink.seal(self.ledger.record(job.id), files, now, cost)
        crash_point("before_done")
        if self.ledger.done(job, files, cost):
            self.emit(Event("done", job.key, ", ".join(f.path for f in files)))
