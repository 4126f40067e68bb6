"""Defects a cold review found in one job's life (each a failing test first), in-process
against the emulator through the real ports, with fault-injecting fakes around them."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio
import pytest

from batcher import errors
from batcher.emulator import EmulatorConfig, parse_faults
from batcher.models import JobSpec
from tests.test_lifecycle import Faulty
from tests.test_scheduler import Harness, Jumps, specs

pytestmark = pytest.mark.anyio


# -- A render is followed on /result alone (issue 9; it also closes the old gap where
# /status said completed, /result lagged and the submit deadline failed a billed render).
@pytest.mark.parametrize("deadline", [400, 3600])
async def test_a_render_whose_result_lags_is_followed_on_result_alone(
    tmp_path: Path, deadline: float
) -> None:
    jumps = Jumps()
    h = Harness(tmp_path, EmulatorConfig(speed=1.0, result_lag=90.0, clock=jumps.clock))
    h.store.sync_jobs("r", specs(2))
    asked: list[str] = []

    class Spy:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, a):
            return getattr(self.inner, a)

        async def status(self, req):
            asked.append("status")
            return await self.inner.status(req)

        async def result(self, req, **kw):
            asked.append("result")
            return await self.inner.result(req, **kw)

    await h.run(sleep=jumps.sleep, clock=jumps.clock, poll_max=10, deadline=deadline, wrap_api=Spy)
    assert set(h.states().values()) == {"done"}
    assert "status" not in asked  # no render time known yet: no queue position asked
    assert 4 <= asked.count("result") <= 80, asked.count("result")


# -- A /result that answers garbled forever: followed until the deadline, then given up.
async def test_a_result_garbled_forever_is_given_up_at_the_deadline(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.store.sync_jobs("r", specs(1))
    jumps = Jumps()
    bad = errors.MalformedAnswer("output URL is not http(s): '/files/x.mp4'")
    faulty: list[Faulty] = []

    def wrap(api: Any) -> Faulty:
        faulty.append(Faulty(api, "result", bad, times=10**9))
        return faulty[0]

    finished = False
    with anyio.move_on_after(3):
        await h.run(
            wrap_api=wrap,
            sleep=jumps.sleep,
            clock=jumps.clock,
            deadline=30,
            backoff_base=1,
            backoff_cap=10,
        )
        finished = True
    _ = ("result calls:", faulty[0].raised, "simulated s:", round(jumps.offset), h.states())
    assert finished, f"run still going after {jumps.offset:.0f} simulated s (deadline 30)"


# -- Admission is not guarded: one StateBusy at claim ends the run and every follow task.
class BusySecondClaim:
    def __init__(self, inner: Any) -> None:
        self.inner, self.n = inner, 0

    def __getattr__(self, a: str) -> Any:
        return getattr(self.inner, a)

    def claim(self, runs: Any, **kw: Any) -> Any:
        self.n += 1
        if self.n == 2:
            raise errors.StateBusy("state.db: locked by another program")
        return self.inner.claim(runs, **kw)


async def test_a_busy_claim_does_not_end_the_run(tmp_path: Path) -> None:
    h = Harness(tmp_path, EmulatorConfig(speed=0.05))
    h.store.sync_jobs("r", specs(2))
    await h.run(concurrency=2, wrap_ledger=BusySecondClaim, sleep=Jumps().sleep)
    assert set(h.states().values()) == {"done"} and len(h.emulator.submissions) == 2


# -- Ledger writes inside Scheduler._after_crash are not guarded.
class Busy:
    def __init__(self, inner: Any, names: set[str]) -> None:
        self.inner, self.names = inner, dict.fromkeys(names, 1)

    def __getattr__(self, a: str) -> Any:
        target = getattr(self.inner, a)
        if a not in self.names:
            return target

        def call(*x: Any, **kw: Any) -> Any:
            if self.names[a]:
                self.names[a] -= 1
                raise errors.StateBusy("state.db: locked by another program")
            return target(*x, **kw)

        return call


async def test_a_429_whose_not_sent_commit_fails_is_not_unknown(tmp_path: Path) -> None:
    h = Harness(tmp_path, EmulatorConfig(speed=0.001, faults=parse_faults(["429:1#1"])))
    h.store.sync_jobs("r", specs(1))
    await h.run(wrap_ledger=lambda led: Busy(led, {"not_sent"}))
    _ = (h.states(), len(h.emulator.submissions))
    assert h.states() == {"r/job-0": "done"}, h.states()


async def test_a_failing_crash_handler_does_not_kill_the_run(tmp_path: Path) -> None:
    h = Harness(tmp_path, EmulatorConfig(speed=0.01, faults=parse_faults(["429:1#1"])))
    h.store.sync_jobs("r", specs(3))
    await h.run(concurrency=3, wrap_ledger=lambda led: Busy(led, {"not_sent", "doubtful"}))
    assert set(h.states().values()) == {"done"}
    assert max(h.submissions_per_payload().values()) == 1


# -- _after_crash's fallback (state unreadable) judges a `live` job by its claimed snapshot
# (SUBMITTING), so an accepted, queued job is dropped: nobody follows it.
class Once:
    def __init__(self, inner: Any) -> None:
        self.inner, self.left = inner, {"started": 1, "job": 1}

    def __getattr__(self, a: str) -> Any:
        target = getattr(self.inner, a)
        if a not in self.left:
            return target

        def call(*x: Any, **kw: Any) -> Any:
            if self.left[a]:
                self.left[a] -= 1
                raise errors.StateBusy(f"{a}: locked")
            return target(*x, **kw)

        return call


async def test_a_queued_job_is_followed_when_the_state_cannot_be_read(tmp_path: Path) -> None:
    h = Harness(tmp_path, EmulatorConfig(speed=0.05))
    h.store.sync_jobs("r", specs(1))
    s = await h.run(wrap_ledger=Once)
    _ = (s, h.states(), [e.message for e in h.events if e.kind == "warn"])
    assert h.states() == {"r/job-0": "done"}


# -- A slot given back before a ledger write that then fails: the job is followed again
# without a slot, and admission sends one more than `concurrency`.
class ExpiredOnce:
    """status raises RequestNotFound once (EXPIRED -> slot released, then ledger.failed)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.left = inner, 1

    def __getattr__(self, a: str) -> Any:
        return getattr(self.inner, a)

    async def status(self, req: Any) -> Any:
        if self.left:
            self.left -= 1
            raise errors.RequestNotFound("not found", status_code=404)
        return await self.inner.status(req)


class FailedBusyOnce:
    def __init__(self, inner: Any) -> None:
        self.inner, self.left = inner, 1

    def __getattr__(self, a: str) -> Any:
        return getattr(self.inner, a)

    def failed(self, *a: Any, **kw: Any) -> Any:
        if self.left:
            self.left -= 1
            raise errors.StateBusy("state.db: database is locked")
        return self.inner.failed(*a, **kw)


async def test_concurrency_one_never_has_two_remote(tmp_path: Path) -> None:
    h = Harness(tmp_path, EmulatorConfig(speed=0.05))
    h.store.sync_jobs("r", specs(3))
    await h.run(concurrency=1, wrap_api=ExpiredOnce, wrap_ledger=FailedBusyOnce)
    remote = {"submitting", "queued", "running"}
    live: set[int] = set()
    peak = 0
    rows = h.store._conn.execute("SELECT job_id, to_state FROM events ORDER BY id").fetchall()
    for job_id, to in rows:
        if to in remote:
            live.add(job_id)
        elif to is not None:
            live.discard(job_id)
        peak = max(peak, len(live))
    _ = (h.states(), [e.message for e in h.events if e.kind == "warn"])
    assert peak == 1, f"peak remote {peak} with concurrency 1"


# -- --max-cost: a rejected submit (400/422, nothing owed) keeps its estimate in the budget.
async def test_rejected_jobs_do_not_use_up_the_budget(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    jobs = specs(3)
    bad = JobSpec(**{**asdict(jobs[0]), "payload": {"prompt": "x", "cfg_scale": 7}})
    h.store.sync_jobs("r", [bad, jobs[1], jobs[2]])
    summary = await h.run(max_cost=1.0, concurrency=1)  # 0.84 each: one real render fits
    _ = (summary, h.states(), h.store.money(["r"]).at_most)
    assert (
        h.store.money(["r"]).at_most == 0.84
        or summary.stop_reason != "budget"
        or len(h.emulator.submissions) == 2
    ), (summary, h.states())
    # one valid job must have been rendered: spend 0 < budget 1.0
    assert "done" in h.states().values(), h.states()


# -- Budget and disk room are checked for the peeked job, but claim() may take another one
# (a job requeued during the pacing wait): --max-cost can be passed.
async def test_max_cost_holds_when_a_job_is_requeued_during_pacing(tmp_path: Path) -> None:
    h = Harness(tmp_path, EmulatorConfig(speed=0.001, faults=parse_faults(["fail:1#1"])))
    jobs = specs(2)
    long = specs(1, duration=15, prompt="long")[0]
    jobs[0] = JobSpec(**{**asdict(long), "cost": 2.52})
    h.store.sync_jobs("r", jobs)
    jumps = Jumps()

    async def sleep(s: float) -> None:
        if s >= 5:  # the pacing wait: let job-0's failed render come back meanwhile
            await anyio.sleep(0.5)
        await jumps.sleep(s)

    await h.run(sleep=sleep, clock=jumps.clock, concurrency=2, submit_interval=10, max_cost=4.5)
    spend = h.store.money(["r"]).at_most
    _ = (h.states(), spend, [(a.outcome) for r in h.store.records("r") for a in r.attempts])
    assert spend <= 4.5 + 1e-9, f"committed ${spend:.2f} with --max-cost 4.50"


# -- A remote job whose task crashes the same way every time is followed again forever:
# no bound, no deadline; the run never ends.
async def test_a_persistent_crash_does_not_hang_the_run(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.store.sync_jobs("r", specs(1))
    jumps = Jumps()
    ro = errors.StateWriteFailed(
        "state.db: cannot be written (attempt to write a readonly database)"
    )
    f: list[Faulty] = []

    def wrap(led: Any) -> Faulty:
        f.append(Faulty(led, "rendered", ro, times=10**9))
        return f[0]

    done = False
    with anyio.move_on_after(3):
        await h.run(
            wrap_ledger=wrap,
            sleep=jumps.sleep,
            clock=jumps.clock,
            deadline=60,
            backoff_base=1,
            backoff_cap=10,
        )
        done = True
    _ = ("crashes:", f[0].raised, "simulated s:", round(jumps.offset), h.states())
    assert done, f"still following after {jumps.offset:.0f} simulated s, deadline 60"
