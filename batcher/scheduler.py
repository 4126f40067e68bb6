"""Admission (anyio): which job's life starts when. Slots, budget, disk room, pacing, the
shared back-off, and stopping; each job's life itself is `lifecycle`.

Invariants:
- At most `concurrency` jobs are remote at once (submitting, queued or running); a slot is
  given back when its job leaves the remote states (`lifecycle.Slot`).
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

import anyio
import anyio.abc

from batcher import errors
from batcher.lifecycle import Lifecycle, Slot
from batcher.models import Event, Job, JobState
from batcher.pacing import Breaker, PollPlanner
from batcher.ports import Api, Ledger, Sink
from batcher.schema import for_model
from batcher.settings import RunSettings

__all__ = ["Event", "Scheduler", "Summary"]

S = JobState
Step = Callable[[Job, Slot], Awaitable[None]]


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
        self.breaker = Breaker(clock, sleep, settings.backoff, self.rng)
        planner = PollPlanner(
            fast=settings.poll_min, maximum=settings.poll_max, concurrency=settings.concurrency
        )
        self.life = Lifecycle(
            ledger=ledger,
            api=api,
            sink=sink,
            settings=settings,
            breaker=self.breaker,
            planner=planner,
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
        self._spend: float | None = None  # committed USD, loaded once, then kept here

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
        if self._spend is not None:
            self._spend -= job.cost_estimate

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
        """Run one job's life; the unexpected ends this step, never the run."""
        crashes = 0
        try:
            while True:
                try:
                    await step(job, slot)
                    return
                except Exception as exc:  # noqa: BLE001 - the boundary that keeps the batch alive
                    crashes += 1
                    again = self._after_crash(job, exc, crashes, slot)
                    if again is None:
                        return
                    job, step = again
                    await self.sleep(self.cfg.backoff.delay(crashes, rng=self.rng))
        finally:
            slot.release()
            self._tasks -= 1
            self._expecting.pop(job.id, None)
            self._wake()

    def _after_crash(
        self, job: Job, exc: Exception, crashes: int, slot: Slot
    ) -> tuple[Job, Step] | None:
        """Where a job goes after its task met the unexpected; a step to take again, or None."""
        why = f"internal error: {type(exc).__name__}: {exc}"
        try:
            now = self.ledger.job(job.id)
        except Exception as again:  # noqa: BLE001 - the store itself may be what failed
            self.emit(Event("warn", job.key, f"{why}; the state cannot be read ({again})"))
            if job.state in (S.QUEUED, S.RUNNING):
                return job, self.life.follow
            return (job, self.life.fetch) if job.state is S.DOWNLOADING else None
        if now.state in (S.QUEUED, S.RUNNING):
            self.emit(Event("warn", job.key, f"{why}; following it again after a back-off"))
            return now, self.life.follow
        slot.release()
        if now.state is S.DOWNLOADING:
            if crashes < self.cfg.download_attempts:
                self.emit(Event("warn", job.key, f"{why}; fetching it again after a back-off"))
                return now, self.life.fetch
            if self.ledger.failed(now, S.DOWNLOADING, why, outcome="download_failed"):
                self.emit(Event("failed", job.key, why))
        elif now.state is S.SUBMITTING:  # its POST may have gone out
            if self.ledger.doubtful(now, why):
                self.emit(Event("unknown", job.key, why))
        else:
            self.emit(Event("warn", job.key, why))
        return None

    # -- admission ------------------------------------------------------------------------
    async def _admit(self) -> None:
        while not (self._stopping or self._closed):
            if self._remote >= self.cfg.concurrency:
                await self._changed.wait()
                continue
            await self.breaker.wait()
            nxt = self.ledger.peek_pending(self.runs)
            if nxt is None:
                if self._tasks == 0:
                    return
                await self._changed.wait()
                continue
            if not (self._within_budget(nxt) and self._has_room(nxt)):
                return
            await self._pace()
            if self.breaker.is_open or self._stopping or self._closed:
                self.returned(nxt)
                continue
            job = self.ledger.claim(self.runs)
            if job is None:
                self.returned(nxt)
                continue
            self._last_submit = self.clock()
            self._start(job, self.life.live, remote=True)

    def _within_budget(self, nxt: Job) -> bool:
        if self.cfg.max_cost is None:
            return True
        if self._spend is None:
            self._spend = self.ledger.committed_spend(self.runs)
        if self._spend + nxt.cost_estimate <= self.cfg.max_cost + 1e-9:
            self._spend += nxt.cost_estimate
            return True
        self.stop_submitting(
            "budget",
            f"budget: ${self._spend:.2f} committed of ${self.cfg.max_cost:.2f}; no new submissions",
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
