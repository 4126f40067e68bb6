"""One job's life, in-process against the emulator: the holes of "trust the morning".

Each test puts a fault-injecting fake around one port (Api, Ledger, Sink) or the files
client, or gives the emulator a documented behaviour the client must handle.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from batcher import errors
from batcher.emulator import EmulatorConfig, parse_faults
from batcher.models import JobState
from batcher.operations import retry_jobs
from batcher.schema import for_model
from batcher.store import rescue_path
from tests.test_scheduler import MODEL, Harness, Jumps, assert_files_intact, specs

pytestmark = pytest.mark.anyio


class Faulty:
    """Delegates to `inner`; the method `name` raises `exc` on its first `times` calls."""

    def __init__(self, inner: Any, name: str, exc: Exception, times: int = 1) -> None:
        self.inner, self.name, self.exc, self.left = inner, name, exc, times
        self.raised = 0

    def __getattr__(self, attr: str) -> Any:
        target = getattr(self.inner, attr)
        if attr != self.name:
            return target

        def fail() -> None:
            if self.left > 0:
                self.left -= 1
                self.raised += 1
                raise self.exc

        if inspect.iscoroutinefunction(target):

            async def async_call(*a: Any, **kw: Any) -> Any:
                fail()
                return await target(*a, **kw)

            return async_call

        def call(*a: Any, **kw: Any) -> Any:
            fail()
            return target(*a, **kw)

        return call


async def quick(seconds: float) -> None:
    """A sleep that lets no real time pass beyond a moment (retry delays of a few steps)."""
    await anyio.sleep(min(seconds, 0.002))


# -- hole 2: `submitting` spans exactly one POST --------------------------------------------


async def test_a_job_waiting_out_a_429_is_pending_not_submitting(tmp_path: Path) -> None:
    h = Harness(tmp_path, EmulatorConfig(speed=0.001, faults=parse_faults(["429:1:30@submit#1"])))
    h.store.sync_jobs("r", specs(1))
    during: list[dict[str, str]] = []
    jumps = Jumps()

    async def sleep(seconds: float) -> None:
        if seconds >= 5:  # the server's Retry-After: what would a kill -9 now leave?
            during.append(h.states())
        await jumps.sleep(seconds)

    await h.run(sleep=sleep, clock=jumps.clock, retry_after_cap=600)
    assert during and during[0] == {"r/job-0": "pending"}
    [rec] = h.store.records("r")
    assert rec.state is JobState.DONE
    assert [a.outcome for a in rec.attempts] == ["not_sent", "succeeded"]
    assert len(h.emulator.submissions) == 1


# -- hole 3: an odd answer never drops a remote job ---------------------------------------


async def test_an_unexpected_error_while_polling_is_followed_again(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.store.sync_jobs("r", specs(2))
    faulty: list[Faulty] = []

    def wrap(api: Any) -> Faulty:
        faulty.append(Faulty(api, "result", RuntimeError("a garbled answer"), times=3))
        return faulty[0]

    summary = await h.run(wrap_api=wrap, sleep=quick)
    assert faulty[0].raised == 3 and summary.stop_reason is None
    assert set(h.states().values()) == {"done"} and len(h.emulator.submissions) == 2
    assert any("taking it up again" in e.message for e in h.events)
    assert_files_intact(h)


async def test_a_state_error_while_following_is_followed_again(tmp_path: Path) -> None:
    h = Harness(tmp_path, EmulatorConfig(speed=0.01))
    h.store.sync_jobs("r", specs(1))
    busy = errors.StateBusy("state.db: database is locked")
    await h.run(wrap_ledger=lambda led: Faulty(led, "started", busy), sleep=quick)
    assert h.states() == {"r/job-0": "done"} and len(h.emulator.submissions) == 1


# -- hole 4: a request id never lives only in memory ----------------------------------------


async def test_a_refused_request_id_commit_is_retried_until_it_lands(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.store.sync_jobs("r", specs(1))
    busy = errors.StateBusy("state.db: database is locked")
    await h.run(wrap_ledger=lambda led: Faulty(led, "accepted", busy, times=3), sleep=quick)
    assert h.states() == {"r/job-0": "done"} and len(h.emulator.submissions) == 1
    assert not rescue_path(h.store.path).exists()


async def test_a_request_id_the_database_refuses_is_rescued_and_followed(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.store.sync_jobs("r", specs(3))
    full = errors.StateWriteFailed("state.db: database or disk is full")
    summary = await h.run(
        concurrency=1,
        wrap_ledger=lambda led: Faulty(led, "accepted", full, times=10**6),
        sleep=quick,
    )
    assert summary.stop_reason == "state"
    [rid] = [s.request_id for s in h.emulator.submissions]  # no further submissions
    [line] = rescue_path(h.store.path).read_text().splitlines()
    assert json.loads(line)["request_id"] == rid
    assert any(rid in e.message for e in h.events if e.kind == "warn")
    assert sorted(h.states().values()) == ["pending", "pending", "submitting"]
    from batcher.operations import status_data

    [kept] = status_data(h.store, "r")["runs"][0]["rescued"]  # `status` names it
    assert kept["request_id"] == rid and kept["key"] == "r/job-0"
    again = await h.run()  # the next start follows it by its id: nothing is paid twice
    assert again.stop_reason is None and set(h.states().values()) == {"done"}
    assert [s.request_id for s in h.emulator.submissions].count(rid) == 1
    assert len(h.emulator.submissions) == 3
    first = [r for r in h.store.records("r") if r.key == "r/job-0"][0]
    assert [a.request_id for a in first.attempts] == [rid]
    assert not rescue_path(h.store.path).exists()


# -- hole 9: downloads free their slot and are bounded in time -------------------------------


class Gate(httpx.AsyncBaseTransport):
    """Holds every file download until `opened` is set (bounded)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, opened: anyio.Event) -> None:
        self.inner, self.opened = inner, opened

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with anyio.fail_after(10):
            await self.opened.wait()
        return await self.inner.handle_async_request(request)


async def test_a_download_does_not_hold_a_submission_slot(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.store.sync_jobs("r", specs(2))
    second_sent = anyio.Event()
    events = h.events

    class Watch(list[Any]):
        def append(self, e: Any) -> None:
            events.append(e)
            if e.kind == "submitted" and len([x for x in events if x.kind == "submitted"]) == 2:
                second_sent.set()

    h.events = Watch()
    # concurrency 1: the second job is submitted while the first one's file is on its way.
    await h.run(concurrency=1, wrap_files=lambda t: Gate(t, second_sent))
    assert set(h.states().values()) == {"done"}
    kinds = [(e.kind, e.key) for e in events if e.kind in ("submitted", "done")]
    assert kinds.index(("submitted", "r/job-1")) < kinds.index(("done", "r/job-0"))


# -- hole 10: /result decides how a render ended -------------------------------------------


async def test_a_failed_render_that_status_calls_completed_is_rendered_again(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, EmulatorConfig(speed=0.001, faults=parse_faults(["fail:1#1"])))
    h.store.sync_jobs("r", specs(1))
    await h.run(sleep=quick)
    [rec] = h.store.records("r")
    assert rec.state is JobState.DONE
    assert [a.outcome for a in rec.attempts] == ["failed", "succeeded"]
    assert "failed" in (rec.attempts[0].error or "")
    assert len(h.emulator.submissions) == 2
    assert_files_intact(h)


async def test_a_result_that_lags_behind_the_status_is_waited_out(tmp_path: Path) -> None:
    jumps = Jumps()  # one injected time for both sides: the 90 s lag passes at once
    h = Harness(tmp_path, EmulatorConfig(speed=1.0, result_lag=90.0, clock=jumps.clock))
    h.store.sync_jobs("r", specs(2))
    await h.run(sleep=jumps.sleep, clock=jumps.clock, poll_max=10)
    assert set(h.states().values()) == {"done"} and len(h.emulator.submissions) == 2
    assert_files_intact(h)


# -- hole 11: a full disk stops the spending -------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (root only): a disk that fills up after a few emulator clips."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


class Roomy:
    """A sink that claims plenty of free space (the disk fills up behind its back)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)

    def free_bytes(self, run: str) -> int:
        return 10**12


async def test_a_full_disk_stops_new_submissions_at_once(tiny_disk: Path, tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.store.sync_jobs("r", specs(16))
    summary = await h.run(concurrency=2, out=tiny_disk, wrap_sink=Roomy, sleep=quick)
    assert summary.stop_reason == "disk"
    [stop] = [e for e in h.events if e.kind == "stop"]
    assert "No space left" in stop.message or "cannot write" in stop.message
    sent = len(h.emulator.submissions)
    states = h.states()
    assert states.values() and "pending" in states.values() and sent < 16
    assert not {"queued", "running", "submitting", "downloading"} & set(states.values())
    # No download was retried with back-off: each failed once and was left for `retry`.
    assert not [e for e in h.events if e.kind == "retry" and "download" in e.message]
    failed = [r for r in h.store.records("r") if r.state is JobState.FAILED]
    assert failed and all(r.attempts[-1].outcome == "download_failed" for r in failed)
    # Space freed: `retry` downloads what was rendered, nothing is rendered twice.
    subprocess.run(["mount", "-o", "remount,size=512m", str(tiny_disk)], check=True)
    retry_jobs(h.store, "r", [JobState.FAILED])
    again = await h.run(concurrency=2, out=tiny_disk, sleep=quick)
    assert again.stop_reason is None and set(h.states().values()) == {"done"}
    assert len(h.emulator.submissions) == 16
    assert max(h.submissions_per_payload().values()) == 1


async def test_too_little_free_space_submits_nothing(tiny_disk: Path, tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.store.sync_jobs("r", specs(2))
    summary = await h.run(out=tiny_disk)
    assert summary.stop_reason == "disk" and h.emulator.submissions == []
    [stop] = [e for e in h.events if e.kind == "stop"]
    assert "not enough free space" in stop.message
    assert set(h.states().values()) == {"pending"}


class Tight:
    """A sink whose disk has room for the files of `jobs` 5-second renders, no more
    (and never fills: the files landed are not counted)."""

    def __init__(self, inner: Any, jobs: int) -> None:
        self.inner = inner
        self.room = jobs * for_model(MODEL).expected_bytes({"duration": 5})

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)

    def free_bytes(self, run: str) -> int:
        return self.room


async def test_room_held_for_a_job_s_files_is_given_back_when_the_job_ends(
    tmp_path: Path,
) -> None:
    # Twelve jobs, room for five: at most four in hand (twice the concurrency) and the next.
    h = Harness(tmp_path)
    h.store.sync_jobs("r", specs(12))
    summary = await h.run(concurrency=2, wrap_sink=lambda sink: Tight(sink, 5), sleep=quick)
    assert summary.stop_reason is None
    assert set(h.states().values()) == {"done"}


# -- issue 10: the claim's fsync off the event loop, still before its POST ------------------


class Journal:
    """Wraps a port; every call of the names given is written to a shared list."""

    def __init__(self, inner: Any, log: list[str], names: tuple[str, ...]) -> None:
        self.inner, self.log, self.names = inner, log, names

    def __getattr__(self, attr: str) -> Any:
        target = getattr(self.inner, attr)
        if attr not in self.names:
            return target
        if inspect.iscoroutinefunction(target):

            async def async_call(*a: Any, **kw: Any) -> Any:
                self.log.append(attr)
                return await target(*a, **kw)

            return async_call

        def call(*a: Any, **kw: Any) -> Any:
            self.log.append(attr)
            return target(*a, **kw)

        return call


async def test_every_claim_is_made_durable_before_its_post(tmp_path: Path) -> None:
    h = Harness(tmp_path, EmulatorConfig(speed=0))
    h.store.sync_jobs("r", specs(3))
    log: list[str] = []
    await h.run(
        wrap_ledger=lambda led: Journal(led, log, ("claim", "settle")),
        wrap_api=lambda api: Journal(api, log, ("submit",)),
        concurrency=1,
    )
    assert set(h.states().values()) == {"done"}
    sequence = [c for c in log if c in ("claim", "settle", "submit")]
    assert sequence == ["claim", "settle", "submit"] * 3


async def test_a_state_that_cannot_be_made_durable_sends_nothing(tmp_path: Path) -> None:
    h = Harness(tmp_path, EmulatorConfig(speed=0))
    h.store.sync_jobs("r", specs(2))
    log: list[str] = []
    broken = OSError(5, "Input/output error")
    summary = await h.run(
        wrap_ledger=lambda led: Faulty(led, "settle", broken, times=10**6),
        wrap_api=lambda api: Journal(api, log, ("submit",)),
        sleep=quick,
    )
    assert log == []  # no POST went out
    assert set(h.states().values()) == {"pending"}  # claimed, then put back: not unknown
    assert summary.stop_reason == "state"


def _fsyncs_seen(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, the path of every file fsynced (and fsynced still)."""
    synced: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return synced


def test_sync_fsyncs_the_write_ahead_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from batcher.store import Store

    with Store.open(tmp_path / "s.db") as store:
        store.upsert_run("r", model="m", job_file=None, out_dir=str(tmp_path), options={})
        store.sync_jobs("r", specs(1))
        synced = _fsyncs_seen(monkeypatch)
        store.sync()
    assert synced == [str(tmp_path / "s.db-wal")]


def test_sync_finds_the_log_of_a_state_reached_through_a_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite puts the log beside the real file: a state path that is a symlink must not
    make `sync` look for it beside the link (and sync nothing)."""
    from batcher.errors import StateWriteFailed
    from batcher.store import Store

    (tmp_path / "real").mkdir()
    (tmp_path / "link.db").symlink_to(tmp_path / "real" / "state.db")
    with Store.open(tmp_path / "link.db") as store:
        store.upsert_run("r", model="m", job_file=None, out_dir=str(tmp_path), options={})
        synced = _fsyncs_seen(monkeypatch)
        store.sync()
        assert synced == [str(tmp_path / "real" / "state.db-wal")]
        (tmp_path / "real" / "state.db-wal").rename(tmp_path / "moved-wal")
        with pytest.raises(StateWriteFailed, match="write-ahead log"):
            store.sync()  # never a silent no-op
        (tmp_path / "moved-wal").rename(tmp_path / "real" / "state.db-wal")
