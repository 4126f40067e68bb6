"""One job's life, top to bottom: submit -> follow -> fetch -> land -> done.

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
- A render is followed on `/result` alone, which answers the current state until it ends
  and then how it ended (never `/status`, where a failed render may say `completed`). A
  failed render is a failed attempt, rendered again while attempts remain. When to poll
  next is `polling.Planner`'s: it learns what renders of the same kind take.
- The remote slot is given back the moment the job leaves the remote states, so a slow
  download never holds a submission slot.
- Files that cannot be stored at all (`DiskFull`) stop new submissions at once; the job
  is left `download_failed` for `batcher retry`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Protocol
from urllib.parse import urlsplit

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
from batcher.pacing import Breaker
from batcher.polling import Planner, RenderTimes
from batcher.ports import Api, Ledger, Sink
from batcher.retry import Action, classify
from batcher.schema import for_model
from batcher.settings import EMULATOR_BASE_URL, RunSettings

S = JobState
O = AttemptOutcome  # noqa: E741 - short and read often below
MAX_HICCUPS = 50  # API errors tolerated while fetching one result
ACCEPT_TRIES = 6  # commits of a request id tried before it is rescued to a file


def _where(base_url: str) -> str:
    """The API's host[:port], never its credentials: it names render-time groups."""
    if base_url == EMULATOR_BASE_URL:
        return "emulator"
    parts = urlsplit(base_url)
    host = parts.hostname or "api"
    return f"{host}:{parts.port}" if parts.port else host


def trouble(exc: errors.BatcherError) -> str:
    """How an API failure reads in an outage line."""
    if isinstance(exc, errors.RateLimited):
        return "rate-limited (429)"
    if isinstance(exc, errors.TransportError):
        return f"API unreachable ({exc})"
    return f"API failing ({exc})"


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

    def billed(self, job: Job, cost: float | None) -> None:
        """A render is done; `cost` is what the API reported it billed (None: not said)."""


class Slot:
    """A remote slot held by one job; given back once, when the job leaves remote states."""

    def __init__(self, give_back: Callable[[], None] | None = None) -> None:
        self._give_back = give_back

    def release(self) -> None:
        if self._give_back is not None:
            give_back, self._give_back = self._give_back, None
            give_back()


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
        planner: Planner,
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
        self._wakes: dict[str, anyio.Event] = {}  # set when a group has news
        self._where = _where(api.base_url)

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
            try:  # the claim, durable through a power cut before anything can be paid for
                await self.ledger.settle()
            except Exception as exc:  # noqa: BLE001 - a disk that cannot sync: send nothing
                why = f"not sent: the state database could not be made durable ({exc})"
                await self._unsent(job, slot, why)
                self.control.stop_submitting("state", f"{why}; no new submissions")
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
            self.breaker.failure(getattr(exc, "retry_after", None), cause=trouble(exc))
            await self._unsent(job, slot, f"not accepted, sent again after the back-off: {exc}")
            self.emit(Event("retry", job.key, f"submit not accepted, will retry: {exc}"))
            return
        if action is Action.UNKNOWN:
            self.breaker.failure(getattr(exc, "retry_after", None), cause=trouble(exc))
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
        """Poll `/result` until the render ends, then hand it on.

        One request per poll: an unfinished request's `/result` answers its current state,
        a finished one its outcome and files. `/status` is asked only for the queue
        position of a job `/result` shows queued without one, and only once the render
        time of its kind is known (the position is then worth a wait).
        """
        handle = job.handle or self.api.handle(job.request_id or "")
        job = replace(job, handle=handle)
        state = job.state
        submitted = job.submitted_at or self.clock()
        key = f"{for_model(job.model).render_group(job.payload)} @{self._where}"
        group = self._group(key)
        render_from = submitted  # the earliest the render can have begun
        group.begin(job.id, render_from)
        last: float | None = None  # render age at the last poll that found it unfinished
        last_at = submitted  # when that poll was
        seen_queued, polled = False, False
        hold_until: float | None = None  # a queued job's wait for the queue ahead
        said: set[str] = set()  # statuses the API gave that batcher does not know, told
        try:
            while True:
                now = self.clock()
                if polled and now - submitted > self.cfg.deadline:
                    await self._deadline(job, state, slot)
                    return
                if not polled and now - submitted > self.cfg.poll_max:
                    due = now  # resumed long after its submit: ask at once
                elif hold_until is not None:
                    due = hold_until
                else:
                    age = now - render_from
                    due = render_from + self.planner.next_age(group, last=last, age=age, now=now)
                if due > now:
                    # At most `poll_max` at a time: a wall clock set back does not stall it.
                    if not await self._nap(min(due - now, self.cfg.poll_max), key, group.news):
                        continue  # news of the group: plan again with what it taught
                    if self.clock() < due:
                        continue
                await self.breaker.wait()
                try:
                    st = await self.api.result(handle)
                except errors.BatcherError as exc:
                    if not self._poll_error(job, state, exc, slot):
                        return
                    hold_until = self.clock() + self.cfg.poll_min  # never a tight loop
                    continue
                self.breaker.success()
                polled, hold_until, now = True, None, self.clock()
                if isinstance(st, Queued):
                    seen_queued, render_from, last, last_at = True, now, None, now
                    group.begin(job.id, render_from)
                    hold_until = await self._queue_wait(
                        handle, group, st.position, queued_for=now - submitted
                    )
                elif isinstance(st, InProgress):
                    last, last_at = now - render_from, now
                    if st.said is not None and st.said not in said:
                        said.add(st.said)
                        self._odd_status(job, st.said)
                    if state is S.QUEUED:
                        if not self.ledger.started(job):  # moved meanwhile (a cancel): let go
                            slot.release()
                            return
                        state = S.RUNNING
                        self.emit(Event("running", job.key, job.request_id or ""))
                elif isinstance(st, Succeeded):
                    # The server's own clock is exact when the render was never queued;
                    # else the finish lies between the last two polls (only known when
                    # this process saw it unfinished: a job resumed late teaches nothing).
                    took = st.elapsed if st.elapsed is not None and not seen_queued else None
                    if took is None and last is not None:
                        took = (last_at + now) / 2 - render_from
                    learnt = self._learn(key, group, took)
                    group.end(job.id)  # its download is not render time
                    self.control.billed(job, st.cost)  # before its slot is given back
                    moved = self.ledger.rendered(job, state, took=learnt)
                    slot.release()  # files are not the API's work: free the slot for the next
                    if moved:
                        await self.fetch(replace(job, state=S.DOWNLOADING), slot, first=st)
                    return
                else:  # failed or cancelled
                    self._ended(job, state, st)
                    slot.release()
                    return
        finally:
            group.end(job.id)

    def _odd_status(self, job: Job, said: str) -> None:
        """Tell of a status batcher does not know (once per job and status): it is followed
        as still running until it ends or its deadline passes, not waited on in silence."""
        text = (
            f"the API says status {said!r}, which batcher does not know; following it as "
            f"still running (deadline {self.cfg.deadline / 3600:g} h after its submit)"
        )
        self.emit(Event("warn", job.key, text))
        self._note(job, "warn", f"{job.key}: {text}")  # for `batcher log` and `status`

    def _note(self, job: Job, kind: str, detail: str) -> None:
        """A note of the job's run (a note is worth less than the job: a refused write is
        let go; what the note is about is on screen already)."""
        try:
            self.ledger.note([job.run], kind, detail)
        except errors.StateError:
            pass

    def _group(self, key: str) -> RenderTimes:
        """The render times of `key`, with what earlier runs saw (read once per run)."""
        if key not in self.planner.groups:
            try:
                seen = self.ledger.render_times([key]).get(key, [])
            except errors.StateError:
                seen = []  # polling learns afresh; nothing is lost
            self.planner.group(key).remember(seen, self.clock())
        return self.planner.group(key)

    def _learn(
        self, key: str, group: RenderTimes, seconds: float | None
    ) -> tuple[str, float] | None:
        """Tell the group what a render took (waking its waiting jobs on news); returns the
        sample to keep with the job's move, or None when there is nothing to learn."""
        if seconds is None or not (math.isfinite(seconds) and seconds > 0):
            return None  # resumed late, or a clock set back
        news = group.news
        group.add(seconds)
        if group.news != news:
            self._wakes.pop(key, anyio.Event()).set()
        return key, seconds

    async def _nap(self, seconds: float, key: str, news: int) -> bool:
        """Sleep `seconds`; False if news of the group came first (then plan again)."""
        wake = self._wakes.get(key) or self._wakes.setdefault(key, anyio.Event())
        slept = False
        async with anyio.create_task_group() as tg:

            async def alarm() -> None:
                nonlocal slept
                await self.sleep(seconds)
                slept = True
                tg.cancel_scope.cancel()

            tg.start_soon(alarm)
            if self.planner.group(key).news == news:
                await wake.wait()
            tg.cancel_scope.cancel()
        return slept

    async def _queue_wait(
        self, handle: Submitted, group: RenderTimes, position: int | None, *, queued_for: float
    ) -> float:
        """When to ask again about a queued job: after about the time the queue ahead
        should take, once the render time of its kind is known; else after a quarter of the
        time it has waited so far (a long queue costs few requests)."""
        wait: float | None = None
        if group.known:
            if position is None:  # /result carries no position: /status may
                try:
                    st = await self.api.status(handle)
                except errors.BatcherError:
                    st = None
                position = st.position if isinstance(st, Queued) else None
            if position is not None:
                wait = self.planner.queue_wait(group, position, self.cfg.concurrency)
        if wait is None:
            wait = min(self.cfg.poll_max, max(self.cfg.poll_min, 0.25 * queued_for))
        return self.clock() + wait

    def _ended(self, job: Job, state: JobState, res: Failed | Cancelled) -> None:
        if isinstance(res, Failed):
            self._remote_failed(job, state, res.error or "generation failed (no reason given)", res)
        elif self.ledger.cancelled(job, state, "cancelled remotely"):
            self.control.returned(job)  # cancelled while queued: not billed
            self.emit(Event("cancelled", job.key, "cancelled remotely"))

    def _poll_error(self, job: Job, state: JobState, exc: errors.BatcherError, slot: Slot) -> bool:
        """Handle a failed poll; True to keep polling. The slot is given back only once
        the job's new state is committed (a failed write keeps it, for the retry)."""
        action = classify(exc, is_submit=False)
        if action is Action.RETRY:
            self.breaker.failure(getattr(exc, "retry_after", None), cause=trouble(exc))
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
            self._fail(job, state, why, O.ABANDONED)
        else:
            self._fail(job, state, str(exc), O.ABANDONED)
        slot.release()
        return False

    def _remote_failed(self, job: Job, state: JobState, error: str, res: Failed) -> None:
        """A failed generation: back to pending while attempts remain, else failed for good.
        The budget gets its charge back only when the API said it cost nothing (`cost:
        0`); a reported cost is what it counts; no word keeps the charge (may be billed).

        A superseded version is never claimed again, so it fails for good at once.
        """
        sent = self.ledger.sent_attempts(job)
        if job.current and sent < self.cfg.max_attempts:
            written = self.ledger.requeued(job, state, error, cost=res.cost)
            if written:
                self.emit(Event("retry", job.key, f"attempt {sent} failed: {error}"))
        else:
            written = self.ledger.failed(job, state, error, outcome=O.FAILED, cost=res.cost)
            if written:
                self.emit(Event("failed", job.key, error))
        if written and res.cost is not None and res.cost > 0:
            self.control.billed(job, res.cost)
        elif written and res.cost is not None:
            self.control.returned(job)  # the API says: not billed

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
        self._fail(job, state, note + " (the request may still finish and be billed)", O.ABANDONED)
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
                self._remote_failed(job, S.DOWNLOADING, res.error or "generation failed", res)
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
            except errors.HostRefused as exc:
                self.control.stop_submitting(
                    "refused",
                    f"{exc}: no new submissions (their files could not be fetched either); "
                    "renders in flight are followed; `batcher retry`, then `batcher resume "
                    "--allow-host HOST` fetches them if you trust the host",
                )
                # Remembered first: a later drive must not pay for renders it cannot fetch,
                # even if this process dies before the job's failure is written.
                self._note(job, "refused", exc.host)
                self._fail(job, S.DOWNLOADING, f"files refused: {exc}", O.DOWNLOAD_FAILED)
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
                    self.breaker.failure(getattr(exc, "retry_after", None), cause=trouble(exc))
                    continue
                if action is Action.FATAL:
                    self.control.fatal(exc)
                    return None
                outcome = O.ABANDONED if action is Action.EXPIRED else O.DOWNLOAD_FAILED
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
