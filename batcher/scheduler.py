"""Admission (anyio): which job's life starts when. Slots, budget, disk room, pacing, the
shared back-off, and stopping; each job's life itself is `lifecycle`.

Invariants:
- At most `concurrency` jobs are remote at once (submitting, queued or running); a slot is
  given back when its job leaves the remote states (`lifecycle.Slot`).
- At most twice `concurrency` jobs are in hand at once (remote, or past the API taking
  their files): a slow download never holds a submission slot, yet renders that end
  faster than their files are taken never pile up (their URLs expire; the room kept for
  their files counts against the disk).
- A job is claimed only right before its POST: after the shared back-off has passed, the
  pacing interval has run, and the budget and the disk have room for it.
- Every version still remote is followed at start (superseded ones too: they were paid
  for). A job's task that meets the unexpected is followed again after a back-off while
  its job is remote or downloading: a run never ends with remote jobs nobody polls.
- Stopping (first Ctrl-C) lets POSTs in flight finish and record their request ids;
  everything else simply stops: `resume` continues from the store.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial

import anyio
import anyio.abc

from batcher import errors
from batcher.lifecycle import Lifecycle, Slot
from batcher.models import Event, Job, JobState, bill_ratio
from batcher.pacing import Breaker, Outage
from batcher.polling import Planner
from batcher.ports import Api, Ledger, Sink
from batcher.schema import for_model
from batcher.settings import RunSettings

__all__ = ["Event", "Scheduler", "Summary"]

S = JobState
Step = Callable[[Job, Slot], Awaitable[None]]
MAX_CRASHES = 10  # unexpected errors one job's task meets before it is left for `resume`


@dataclass
class Summary:
    """How a scheduler run ended."""

    stop_reason: str | None = None  # budget, balance, disk, state, auth, fatal, interrupted
    fatal: errors.BatcherError | None = None
    submitted: int = 0


class Scheduler:
    """Drives every unfinished job of the given runs to a final state."""

    def __init__(
        self,
        ledger: Ledger,
        api: Api,
        sink: Sink,
        *,
        runs: Sequence[str],
        settings: RunSettings,
        on_event: Callable[[Event], None] = lambda e: None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.ledger, self.sink, self.runs, self.cfg = ledger, sink, list(runs), settings
        self.emit, self.clock, self.sleep = on_event, clock, sleep
        self.rng = rng or random.Random()
        self.breaker = Breaker(clock, sleep, settings.backoff, self.rng, report=self._outage)
        self.planner = Planner(settings.poll_policy, rng=self.rng)
        self.life = Lifecycle(
            ledger=ledger,
            api=api,
            sink=sink,
            settings=settings,
            breaker=self.breaker,
            planner=self.planner,
            control=self,
            emit=on_event,
            clock=clock,
            sleep=sleep,
            rng=self.rng,
        )
        self.summary = Summary()
        self._remote = 0  # jobs holding a remote slot
        self._tasks = 0  # job tasks alive (a downloading job may still go back to pending)
        self._expecting: dict[int, int] = {}  # job id -> bytes its files will need
        self._changed = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None
        self._stopping = False  # interrupted or fatal: stop everything
        self._closed = False  # budget, balance, disk, state: no new submissions
        self._last_submit: float | None = None
        self._spend: float | None = None  # USD spent or sent, loaded once, then kept here
        # job id -> (estimate, USD charged to the budget at admission), until billed/returned
        self._charged: dict[int, tuple[float, float]] = {}
        self._billed = self._billed_estimate = 0.0  # USD reported, and their estimates
        self._billed_attempts: set[tuple[int, int]] = set()
        self._done = False  # nothing pending and no job task alive

    # -- Control, as lent to each job's life -------------------------------------------
    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop_submitting(self, reason: str, message: str) -> None:
        if not self._closed:
            self.summary.stop_reason = self.summary.stop_reason or reason
            self._closed = True
            self.emit(Event("stop", "", message))
        self._wake()

    def fatal(self, exc: errors.BatcherError) -> None:
        self.summary.fatal = exc
        self.stop("auth" if isinstance(exc, errors.AuthError) else "fatal")

    def returned(self, job: Job) -> None:
        _, charged = self._charged.pop(job.id, (job.cost_estimate, job.cost_estimate))
        if self._spend is not None:
            self._spend -= charged

    def billed(self, job: Job, cost: float | None) -> None:
        """A render finished and the API said what it cost: the budget counts that (once
        per attempt: a job taken up again after a crash is not billed twice). A cost of 0
        or less is read as not said: the estimate stands."""
        if (job.id, job.attempts) in self._billed_attempts:
            return
        self._billed_attempts.add((job.id, job.attempts))
        _, charged = self._charged.pop(job.id, (job.cost_estimate, job.cost_estimate))
        if cost is None or not cost > 0 or not job.cost_estimate > 0:
            return
        self._billed += cost
        self._billed_estimate += job.cost_estimate
        if self._spend is not None:
            self._spend += cost - charged

    def _outage(self, o: Outage) -> None:
        """Say so when the API fails or limits us, while it lasts, and when it is back."""
        since = time.strftime("%H:%M:%S", time.localtime(o.since))
        lasted = self.clock() - o.since
        flight = f"{self._remote} render{'s' if self._remote != 1 else ''} in flight"
        if o.kind == "outage":
            text = f"{o.cause} since {since}; pausing submits and polls {o.pause:.0f} s; {flight}"
        elif o.kind == "still":
            text = (
                f"{o.cause}, since {since} ({lasted:.0f} s); retrying in {o.pause:.0f} s; {flight}"
            )
        else:
            text = f"API answering again after {lasted:.0f} s (trouble since {since})"
        kind = "recovered" if o.kind == "recovered" else "outage"
        self.emit(Event(kind, "", text))
        try:
            self.ledger.note(self.runs, kind, text)  # for `batcher log` in the morning
        except errors.StateError:
            pass  # the screen and plain lines have it; the state has enough to do

    # -- top level ----------------------------------------------------------------------
    async def run(self) -> Summary:
        """Reconcile, then submit and follow until nothing is left or a stop is asked."""
        for job in self.ledger.reconcile(self.runs):
            self.emit(Event("unknown", job.key, "left submitting by a stopped process"))
        self._apply_unknown_policy()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for job in self.ledger.in_states(self.runs, [S.QUEUED, S.RUNNING]):
                self._start(job, self.life.follow, remote=True)
            for job in self.ledger.in_states(self.runs, [S.DOWNLOADING]):
                self._start(job, self.life.fetch, remote=False)
            tg.start_soon(self._admit)
        self.summary.submitted = self.life.submitted
        return self.summary

    def stop(self, reason: str = "interrupted") -> None:
        """Stop submitting and following; POSTs in flight still record their answer."""
        if self._stopping:
            return
        self._stopping = True
        self.summary.stop_reason = self.summary.stop_reason or reason
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    def _apply_unknown_policy(self) -> None:
        if self.cfg.on_unknown != "resubmit":
            return
        for job in self.ledger.in_states(self.runs, [S.UNKNOWN]):
            if not job.current or self.ledger.sent_attempts(job) >= self.cfg.max_attempts:
                continue
            if self.ledger.release_unknown(job, "on_unknown: resubmit"):
                self.emit(Event("retry", job.key, "unknown outcome: resubmitting by policy"))

    # -- tasks ----------------------------------------------------------------------------
    def _start(self, job: Job, step: Step, *, remote: bool) -> None:
        assert self._tg is not None
        if remote:
            self._remote += 1
        self._tasks += 1
        self._expecting[job.id] = for_model(job.model).expected_bytes(job.payload)
        slot = Slot(self._give_back if remote else None)
        self._tg.start_soon(self._guarded, job, step, slot)

    def _give_back(self) -> None:
        self._remote -= 1
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def _guarded(self, job: Job, step: Step, slot: Slot) -> None:
        """Run one job's life; the unexpected ends this step, never the run.

        After a crash the job is taken up again where the store says it stands
        (`Lifecycle.carry_on`), after a back-off, at most MAX_CRASHES times; then it is
        left as it is for `batcher resume`, and new submissions stop.
        """
        crashes = 0
        try:
            while True:
                try:
                    await step(job, slot)
                    return
                except Exception as exc:  # noqa: BLE001 - the boundary that keeps the batch alive
                    crashes += 1
                    why = f"internal error: {type(exc).__name__}: {exc}"
                    if crashes > MAX_CRASHES:
                        self._give_up(job, why, exc)
                        return
                    self.emit(Event("warn", job.key, f"{why}; taking it up again"))
                    step = partial(self.life.carry_on, why=why)
                    await self.sleep(self.cfg.backoff.delay(crashes, rng=self.rng))
        finally:
            slot.release()
            self._tasks -= 1
            self._expecting.pop(job.id, None)
            self._charged.pop(job.id, None)  # what it was charged stays spent
            self._wake()

    def _give_up(self, job: Job, why: str, exc: Exception) -> None:
        try:  # a download can be tried again later as a download: say so in the store
            if self.ledger.failed(job, S.DOWNLOADING, why, outcome="download_failed"):
                self.emit(Event("failed", job.key, why))
                return
        except Exception:  # noqa: BLE001 - the store may be what keeps failing
            pass
        reason = "state" if isinstance(exc, errors.StateError) else "internal"
        self.emit(
            Event("warn", job.key, f"{why}; left as it is, `batcher resume` takes it up again")
        )
        self.stop_submitting(
            reason, f"a job keeps failing in this process ({why}); no new submissions"
        )

    # -- admission ------------------------------------------------------------------------
    async def _admit(self) -> None:
        """Start a job's life whenever a slot, the back-off, the budget and the disk allow.

        A state database that refuses a claim while jobs are in flight is tried again after
        a back-off (a backup tool may hold it a while), then submissions stop; with nothing
        in flight the error ends the run at once (a clear line, exit 2, nothing changed).
        """
        failures = 0
        while not (self._stopping or self._closed or self._done):
            try:
                await self._admit_one()
                failures = 0
            except Exception as exc:  # noqa: BLE001 - admission must not end the run
                state_error = isinstance(exc, errors.StateError)
                if state_error and self._tasks == 0:
                    raise
                failures += 1
                why = f"{type(exc).__name__}: {exc}"
                if failures > MAX_CRASHES or not state_error:
                    self.stop_submitting("state", f"cannot admit jobs ({why}); no new submissions")
                    return
                self.emit(Event("warn", "", f"cannot admit jobs now ({why}); trying again"))
                await self.sleep(self.cfg.backoff.delay(failures, rng=self.rng))

    async def _admit_one(self) -> None:
        if self._remote >= self.cfg.concurrency or self._tasks >= 2 * self.cfg.concurrency:
            await self._changed.wait()  # a render ended, or a job's files were taken
            return
        await self.breaker.wait()
        nxt = self.ledger.peek_pending(self.runs)
        if nxt is None:
            if self._tasks == 0:
                self._done = True
                return
            await self._changed.wait()
            return
        if not (self._within_budget(nxt) and self._has_room(nxt)):
            return
        await self._pace()
        job = None
        if not (self.breaker.is_open or self._stopping or self._closed):
            job = self.ledger.claim(self.runs, job_id=nxt.id)  # the job the checks were for
        if job is None:
            self.returned(nxt)
            return
        self._last_submit = self.clock()
        self._start(job, self.life.live, remote=True)

    def _within_budget(self, nxt: Job) -> bool:
        if self.cfg.max_cost is None:
            return True
        if self._spend is None:
            self._spend = self.ledger.money(self.runs).at_most
            self._billed, self._billed_estimate = self.ledger.billed(self.runs)
        # What the API bills beyond the estimates, for jobs in flight and the next one.
        ratio = bill_ratio(self._billed, self._billed_estimate)
        behind = sum(max(0.0, ratio * est - got) for est, got in self._charged.values())
        charge = nxt.cost_estimate * ratio
        if self._spend + behind + charge <= self.cfg.max_cost + 1e-9:
            self._spend += charge
            self._charged[nxt.id] = (nxt.cost_estimate, charge)
            return True
        self.stop_submitting(
            "budget",
            f"budget: ${self._spend:.2f} spent or sent of ${self.cfg.max_cost:.2f}; "
            "no new submissions",
        )
        return False

    def _has_room(self, nxt: Job) -> bool:
        """Free space for the files of every job in flight and of the next one."""
        need = sum(self._expecting.values()) + for_model(nxt.model).expected_bytes(nxt.payload)
        free = self.sink.free_bytes(nxt.run)
        if free >= need:
            return True
        self.returned(nxt)
        self.stop_submitting(
            "disk",
            f"not enough free space for the outputs of {nxt.run}: {_mb(free)} free, about "
            f"{_mb(need)} needed by the renders in flight and the next one; no new "
            "submissions; free space, then `batcher resume`",
        )
        return False

    async def _pace(self) -> None:
        if self.cfg.submit_interval > 0 and self._last_submit is not None:
            wait = self._last_submit + self.cfg.submit_interval - self.clock()
            if wait > 0:
                await self.sleep(wait)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
