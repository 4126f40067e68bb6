"""The scheduler in-process against the emulator (ASGITransport): completion, limits,
retries, unknown outcomes, budget, deadline, auth and balance, versions."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from batcher.client import RunComfyClient
from batcher.emulator import EmulatorConfig, create_app, parse_faults
from batcher.models import Event, JobSpec, JobState
from batcher.outputs import LocalFolder
from batcher.scheduler import Scheduler, Summary
from batcher.settings import RunSettings
from batcher.store import SqliteLedger, Store
from tests.outputs_invariants import check_output_folder

pytestmark = pytest.mark.anyio
MODEL = "kling/kling-3.0/pro/text-to-video"
FAST = dict(
    poll_min=0.005,
    poll_max=0.05,
    backoff_base=0.005,
    backoff_cap=0.02,
    retry_after_cap=0.02,
)


def specs(n: int, *, run: str = "r", prompt: str = "a fox", duration: int = 5) -> list[JobSpec]:
    out = []
    for i in range(n):
        payload = {"prompt": f"{prompt} {i}", "duration": duration}
        fp = hashlib.sha256(repr(sorted(payload.items())).encode()).hexdigest()
        out.append(
            JobSpec(
                run=run,
                key=f"{run}/job-{i}",
                name=f"job-{i}",
                model=MODEL,
                payload=payload,
                fingerprint=fp,
                output_name=f"job-{i}",
                cost=0.84,
            )
        )
    return out


class Jumps:
    """An injected clock and sleep: a sleep moves this clock at once and yields only a
    moment of real time (so the emulator's few-millisecond renders progress)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def clock(self) -> float:
        return time.time() + self.offset

    async def sleep(self, seconds: float) -> None:
        self.offset += max(0.0, seconds)
        await anyio.sleep(min(max(seconds, 0.0), 0.002))


class Harness:
    def __init__(self, tmp: Path, emu: EmulatorConfig | None = None) -> None:
        self.tmp = tmp
        self.store = Store.open(tmp / "state.db")
        self.store.upsert_run("r", model=MODEL, job_file=None, out_dir=str(tmp / "out"), options={})
        self.app = create_app(emu or EmulatorConfig(speed=0.001))
        self.events: list[Event] = []

    @property
    def emulator(self) -> Any:
        return self.app.emulator

    async def run(
        self,
        *,
        sleep: Any = None,
        clock: Any = None,
        wrap_api: Any = None,
        wrap_files: Any = None,
        wrap_ledger: Any = None,
        wrap_sink: Any = None,
        out: Path | None = None,
        **cfg: Any,
    ) -> Summary:
        """Drive run "r"; the wrap_* hooks put a fault-injecting fake around a port."""
        transport = httpx.ASGITransport(app=self.app)
        files_transport = wrap_files(transport) if wrap_files else transport
        async with (
            httpx.AsyncClient(transport=transport) as http,
            httpx.AsyncClient(transport=files_transport) as files,
        ):
            client: Any = RunComfyClient(http, base_url="http://emu.test", token="tok")
            settings = RunSettings(**(FAST | cfg))
            sink: Any = LocalFolder(
                self.store,
                files,
                {"r": out or self.tmp / "out"},
                max_bytes=settings.max_download_bytes,
                time_for=settings.download_deadline,
            )
            ledger: Any = SqliteLedger(self.store)
            jumps = Jumps()  # scheduler time is injected: no test waits out a back-off
            extra = {"sleep": sleep or jumps.sleep, "clock": clock or jumps.clock}
            self.sched = Scheduler(
                wrap_ledger(ledger) if wrap_ledger else ledger,
                wrap_api(client) if wrap_api else client,
                wrap_sink(sink) if wrap_sink else sink,
                runs=["r"],
                settings=settings,
                on_event=self.events.append,
                **extra,
            )
            return await self.sched.run()

    def states(self) -> dict[str, str]:
        return {r.key: r.state.value for r in self.store.records("r") if r.current}

    def submissions_per_payload(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in self.emulator.submissions:
            counts[s.payload_sha256] = counts.get(s.payload_sha256, 0) + 1
        return counts


def assert_files_intact(h: Harness) -> None:
    out = h.tmp / "out"
    for rec in h.store.records("r"):
        if rec.state is not JobState.DONE:
            continue
        [f] = rec.outputs
        data = (out / f.path).read_bytes()
        assert data[4:8] == b"ftyp"
        assert hashlib.sha256(data).hexdigest() == f.sha256 and len(data) == f.size
        assert (out / f"{rec.output_name}.json").exists()
    assert not list(out.glob("*.part")) and not list(out.glob("*.tmp"))
    check_output_folder(h.store, "r")


async def test_every_job_completes_with_verified_files(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.store.sync_jobs("r", specs(6))
    summary = await h.run(concurrency=3)
    assert summary.stop_reason is None and summary.submitted == 6
    assert set(h.states().values()) == {"done"}
    assert_files_intact(h)
    assert max(h.submissions_per_payload().values()) == 1


async def test_remote_in_flight_never_exceeds_concurrency(tmp_path: Path) -> None:
    h = Harness(tmp_path, EmulatorConfig(speed=0.004, slots=2))
    h.store.sync_jobs("r", specs(10))
    await h.run(concurrency=3)
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
    assert peak == 3  # the limit was used, and never passed


class HeldFiles(httpx.AsyncBaseTransport):
    """A files transport that holds every download until `opened` is set."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.opened = anyio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self.opened.wait()
        return await self.inner.handle_async_request(request)


async def test_renders_waiting_for_their_files_hold_back_new_submissions(tmp_path: Path) -> None:
    # Found by the 16,000-job benchmark: renders finish faster than four download lanes
    # take their files, and submissions went on regardless: thousands of finished renders
    # waited for their files (their URLs may expire meanwhile), and the free space they
    # were all counted against ran out on paper ("not enough free space", 82 GB free).
    h = Harness(tmp_path, EmulatorConfig(speed=0.0))
    h.store.sync_jobs("r", specs(12))
    held: list[HeldFiles] = []
    offset = [0.0]

    async def instant(seconds: float) -> None:  # time jumps; every task runs until it waits
        offset[0] += max(seconds, 0.0)
        await anyio.lowlevel.checkpoint()

    def hold(inner: httpx.AsyncBaseTransport) -> HeldFiles:
        held.append(HeldFiles(inner))
        return held[-1]

    async def main() -> Summary:
        async with anyio.create_task_group() as tg:
            done: list[Summary] = []

            async def drive() -> None:
                done.append(
                    await h.run(
                        concurrency=2,
                        wrap_files=hold,
                        sleep=instant,
                        clock=lambda: time.time() + offset[0],
                    )
                )

            tg.start_soon(drive)
            await anyio.wait_all_tasks_blocked()  # every job task waits for its files
            assert len(h.emulator.submissions) == 4  # twice the concurrency, all waiting for files
            held[0].opened.set()
        return done[0]

    summary = await main()
    assert summary.stop_reason is None and set(h.states().values()) == {"done"}
    assert len(h.emulator.submissions) == 12


async def test_rerun_submits_nothing(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.store.sync_jobs("r", specs(3))
    await h.run()
    h.store.sync_jobs("r", specs(3))
    again = await h.run()
    assert again.submitted == 0 and len(h.emulator.submissions) == 3


async def test_edited_job_is_a_new_version_and_the_old_file_is_kept(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.store.sync_jobs("r", specs(2))
    await h.run()
    edited = specs(2)
    edited[1] = JobSpec(
        **{
            **asdict(edited[1]),
            "payload": {"prompt": "a wolf", "duration": 5},
            "fingerprint": "new",
        }
    )
    result = h.store.sync_jobs("r", edited)
    assert result.changed == ("r/job-1",)
    summary = await h.run()
    assert summary.submitted == 1
    versions = sorted(
        (r.version, r.current, r.outputs[0].path)
        for r in h.store.records("r")
        if r.key == "r/job-1"
    )
    assert versions == [(1, False, "job-1~v1.mp4"), (2, True, "job-1.mp4")]
    assert (tmp_path / "out" / "job-1~v1.mp4").exists()
    archived = json.loads((tmp_path / "out" / "job-1~v1.json").read_text())
    assert archived["outputs"][0]["path"] == "job-1~v1.mp4"  # follows its file
    current = json.loads((tmp_path / "out" / "job-1.json").read_text())
    assert current["attempts"][-1]["outcome"] == "succeeded"
    assert current["attempts"][-1]["finished_at"] is not None


async def test_rate_limits_and_server_errors_are_survived_without_duplicates(
    tmp_path: Path,
) -> None:
    faults = parse_faults(["429:0.3", "5xx:0.3@status,result"])
    h = Harness(tmp_path, EmulatorConfig(speed=0.001, seed=3, faults=faults))
    h.store.sync_jobs("r", specs(8))
    await h.run(concurrency=4)
    assert set(h.states().values()) == {"done"}
    assert max(h.submissions_per_payload().values()) == 1
    kinds = {f.kind for f in h.emulator.faults_injected}
    assert {"429", "5xx"} <= kinds
    assert_files_intact(h)


@pytest.mark.parametrize("kind", ["accept-5xx", "accept-drop", "no-request-id"])
async def test_unknown_outcomes_are_held_never_resubmitted(tmp_path: Path, kind: str) -> None:
    h = Harness(tmp_path, EmulatorConfig(speed=0.001, seed=1, faults=parse_faults([f"{kind}:0.5"])))
    h.store.sync_jobs("r", specs(6))
    await h.run(concurrency=2)
    states = h.states()
    unknown = [k for k, s in states.items() if s == "unknown"]
    injected = [f for f in h.emulator.faults_injected if f.kind == kind]
    assert 0 < len(unknown) == len(injected) < 6, states
    assert max(h.submissions_per_payload().values()) == 1  # held: sent once
    assert all(s in ("done", "unknown") for s in states.values())


async def test_unknown_policy_resubmit_sends_again_on_purpose(tmp_path: Path) -> None:
    faults = parse_faults(["accept-5xx:0.5"])
    h = Harness(tmp_path, EmulatorConfig(speed=0.001, seed=1, faults=faults))
    h.store.sync_jobs("r", specs(4))
    await h.run(concurrency=1, on_unknown="resubmit", max_attempts=5)
    assert set(h.states().values()) == {"done"}
    injected = [f for f in h.emulator.faults_injected if f.kind == "accept-5xx"]
    assert injected and sum(h.submissions_per_payload().values()) == 4 + len(injected)


async def test_unknown_resubmits_are_bounded_by_max_attempts(tmp_path: Path) -> None:
    h = Harness(tmp_path, EmulatorConfig(speed=0.001, faults=parse_faults(["accept-5xx:1"])))
    h.store.sync_jobs("r", specs(1))
    await h.run(on_unknown="resubmit", max_attempts=3)
    assert h.states() == {"r/job-0": "unknown"}
    assert len(h.emulator.submissions) == 3


async def test_failed_generations_retry_then_fail_for_good_with_history(tmp_path: Path) -> None:
    h = Harness(tmp_path, EmulatorConfig(speed=0.001, faults=parse_faults(["fail:1"])))
    h.store.sync_jobs("r", specs(1))
    await h.run(max_attempts=3)
    [rec] = h.store.records("r")
    assert rec.state is JobState.FAILED
    assert [a.outcome for a in rec.attempts] == ["failed", "failed", "failed"]
    assert all(a.error for a in rec.attempts) and len({a.request_id for a in rec.attempts}) == 3


async def test_invalid_payload_fails_at_once_with_the_servers_detail(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    bad = specs(1)[0]
    bad = JobSpec(**{**asdict(bad), "payload": {"prompt": "x", "cfg_scale": 7}})
    h.store.sync_jobs("r", [bad])
    await h.run()
    [rec] = h.store.records("r")
    assert rec.state is JobState.FAILED and "422" in (rec.error or "")
    assert [a.outcome for a in rec.attempts] == ["rejected"]
    assert h.store.money(["r"]).at_most == 0


async def test_truncated_and_expired_downloads_are_recovered(tmp_path: Path) -> None:
    faults = parse_faults(["truncate:1#1", "expire:1#2"])
    h = Harness(tmp_path, EmulatorConfig(speed=0.001, seed=5, faults=faults))
    h.store.sync_jobs("r", specs(3))
    await h.run(concurrency=1)
    assert set(h.states().values()) == {"done"}
    assert {"truncate", "expire"} <= {f.kind for f in h.emulator.faults_injected}
    assert_files_intact(h)
    assert not any(hit.authorization for hit in h.emulator.file_hits)


@pytest.mark.parametrize(
    "variant",
    [
        "succeeded",
        "canceled,error-object",
        "videos",
        "error-status",
        "failed-status",
        "no-queue-position",
    ],
)
async def test_status_variants(tmp_path: Path, variant: str) -> None:
    h = Harness(tmp_path, EmulatorConfig(speed=0.001, status_variant=variant))
    h.store.sync_jobs("r", specs(2))
    await h.run()
    assert set(h.states().values()) == {"done"}


async def test_budget_stops_new_submissions(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.store.sync_jobs("r", specs(5))
    summary = await h.run(max_cost=2.0, concurrency=1)  # 0.84 each: two fit
    assert summary.stop_reason == "budget"
    assert sorted(h.states().values()) == ["done", "done", "pending", "pending", "pending"]
    assert len(h.emulator.submissions) == 2


async def test_deadline_cancels_a_request_still_queued(tmp_path: Path) -> None:
    h = Harness(tmp_path, EmulatorConfig(speed=0.001, queue_delay=60.0))
    h.store.sync_jobs("r", specs(1))
    await h.run(deadline=0.05)
    [rec] = h.store.records("r")
    assert rec.state is JobState.CANCELLED and "deadline" in (rec.error or "")


async def test_bad_token_is_fatal(tmp_path: Path) -> None:
    h = Harness(tmp_path, EmulatorConfig(speed=0.001, token="the-right-one"))
    h.store.sync_jobs("r", specs(3))
    summary = await h.run()
    assert summary.fatal is not None and summary.stop_reason == "auth"
    assert set(h.states().values()) == {"pending"}
    assert h.emulator.submissions == []


async def test_insufficient_balance_stops_submitting(tmp_path: Path) -> None:
    h = Harness(tmp_path, EmulatorConfig(speed=0.001, balance_usd=1.0))
    h.store.sync_jobs("r", specs(3))
    summary = await h.run(concurrency=1)
    assert summary.stop_reason == "balance"
    assert sorted(h.states().values()) == ["done", "pending", "pending"]


async def test_resume_follows_jobs_already_in_flight(tmp_path: Path) -> None:
    h = Harness(tmp_path, EmulatorConfig(speed=0.001))
    h.store.sync_jobs("r", specs(2))
    summary = await h.run(concurrency=2, max_cost=0.9)  # submits one, finishes it
    assert summary.stop_reason == "budget"
    # Simulate a crash right after a POST was committed: queued with a live request id.
    [job] = h.store.claim(["r"], 1)
    transport = httpx.ASGITransport(app=h.app)
    async with httpx.AsyncClient(transport=transport) as http:
        sub = await RunComfyClient(http, base_url="http://emu.test", token="tok").submit(
            MODEL, job.payload
        )
    h.store.record_submitted(job.id, sub)
    again = await h.run()
    assert again.submitted == 0
    assert set(h.states().values()) == {"done"}


async def test_rate_limits_while_fetching_results_do_not_fail_jobs(tmp_path: Path) -> None:
    faults = parse_faults(["429:1:0.01@result#4", "5xx:1@result#2"])
    h = Harness(tmp_path, EmulatorConfig(speed=0.001, faults=faults))
    h.store.sync_jobs("r", specs(2))
    await h.run(download_attempts=2)
    assert set(h.states().values()) == {"done"}
    assert_files_intact(h)


async def test_a_failed_download_is_retried_as_a_download_not_a_new_render(tmp_path: Path) -> None:
    from batcher.operations import retry_jobs

    h = Harness(tmp_path, EmulatorConfig(speed=0.001, faults=parse_faults(["truncate:1#3"])))
    h.store.sync_jobs("r", specs(1))
    await h.run(download_attempts=2)
    [rec] = h.store.records("r")
    assert rec.state is JobState.FAILED and "download failed" in (rec.error or "")
    [moved] = retry_jobs(h.store, "r", [JobState.FAILED])
    assert h.store.job(moved.id).state is JobState.DOWNLOADING
    await h.run(download_attempts=2)
    assert set(h.states().values()) == {"done"} and len(h.emulator.submissions) == 1
    assert_files_intact(h)


async def submit_by_hand(h: Harness, job_id: int, payload: Any) -> None:
    """What a crash right after a committed POST leaves: a queued job with a live request."""
    transport = httpx.ASGITransport(app=h.app)
    async with httpx.AsyncClient(transport=transport) as http:
        sub = await RunComfyClient(http, base_url="http://emu.test", token="tok").submit(
            MODEL, payload
        )
    assert h.store.record_submitted(job_id, sub)


async def test_a_superseded_version_in_flight_is_still_downloaded(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.store.sync_jobs("r", specs(1))
    [v1] = h.store.claim(["r"], 1)
    await submit_by_hand(h, v1.id, v1.payload)
    edited = JobSpec(
        **{
            **asdict(specs(1)[0]),
            "payload": {"prompt": "edited", "duration": 5},
            "fingerprint": "v2",
        }
    )
    assert h.store.sync_jobs("r", [edited]).changed == ("r/job-0",)
    await h.run()
    versions = {
        (r.version, r.current): (r.state, [o.path for o in r.outputs]) for r in h.store.records("r")
    }
    assert versions == {
        (1, False): (JobState.DONE, ["job-0~v1.mp4"]),
        (2, True): (JobState.DONE, ["job-0.mp4"]),
    }
    assert (tmp_path / "out" / "job-0~v1.json").exists()
    assert_files_intact(h)


async def test_balance_stop_still_follows_what_was_accepted(tmp_path: Path) -> None:
    h = Harness(tmp_path, EmulatorConfig(speed=0.001, balance_usd=1.7))  # two of 0.84 fit
    h.store.sync_jobs("r", specs(5))
    summary = await h.run(concurrency=3)
    assert summary.stop_reason == "balance"
    assert sorted(h.states().values()) == ["done", "done", "pending", "pending", "pending"]


async def test_a_request_the_api_forgot_is_failed_not_resubmitted(tmp_path: Path) -> None:
    from batcher.emulator import Emulator

    h = Harness(tmp_path)
    h.store.sync_jobs("r", specs(1))
    [job] = h.store.claim(["r"], 1)
    await submit_by_hand(h, job.id, job.payload)
    h.app.emulator = Emulator(EmulatorConfig(speed=0.001))  # it forgets every request
    await h.run()
    [rec] = h.store.records("r")
    assert rec.state is JobState.FAILED and "does not know this request" in (rec.error or "")
    assert h.app.emulator.submissions == []


async def test_an_unexpected_error_fails_one_job_not_the_run(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.store.sync_jobs("r", specs(3))
    (tmp_path / "out" / "job-1.json").mkdir(parents=True)  # its sidecar cannot be written
    summary = await h.run()
    assert summary.stop_reason is None
    states = h.states()
    assert states["r/job-1"] == "failed" and states["r/job-0"] == states["r/job-2"] == "done"
    [rec] = [r for r in h.store.records("r") if r.key == "r/job-1"]
    assert "cannot write" in (rec.error or "") and "job-1.json" in (rec.error or "")
    assert rec.attempts[-1].outcome == "download_failed"  # `retry` downloads it again


async def test_unknown_policy_at_start_respects_the_attempt_limit(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.store.sync_jobs("r", specs(1))
    [job] = h.store.claim(["r"], 1)
    SqliteLedger(h.store).reconcile(["r"])  # a crash during its POST: unknown, attempt 1 used
    await h.run(on_unknown="resubmit", max_attempts=1)
    assert h.states() == {"r/job-0": "unknown"} and h.emulator.submissions == []


async def test_bytes_of_an_earlier_render_are_cleaned_up(tmp_path: Path) -> None:
    from batcher.download import part_path
    from batcher.models import Submitted
    from batcher.operations import retry_jobs

    h = Harness(tmp_path)
    h.store.sync_jobs("r", specs(1))
    [job] = h.store.claim(["r"], 1)
    gone = Submitted(
        "forgotten-1",
        *(f"http://emu.test/v1/requests/forgotten-1/{k}" for k in ("status", "result", "cancel")),
    )
    h.store.record_submitted(job.id, gone)
    stale = part_path(tmp_path / "out" / "job-0.mp4", "forgotten-1")
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half of another render")
    await h.run()
    assert h.states() == {"r/job-0": "failed"}
    retry_jobs(h.store, "r", [JobState.FAILED])
    await h.run()
    assert h.states() == {"r/job-0": "done"} and not stale.exists()
    assert_files_intact(h)


async def test_a_job_resumed_after_its_deadline_is_polled_before_giving_up(tmp_path: Path) -> None:
    from tests.emulator_server import FakeClock

    remote_time = FakeClock()
    h = Harness(tmp_path, EmulatorConfig(speed=1.0, clock=remote_time))
    h.store.sync_jobs("r", specs(1))
    [job] = h.store.claim(["r"], 1)
    await submit_by_hand(h, job.id, job.payload)
    remote_time.advance(86400)  # it finished remotely while we were away for a day
    h.store._conn.execute("UPDATE jobs SET submitted_at = submitted_at - 86400")
    await h.run(deadline=3600)
    assert h.states() == {"r/job-0": "done"}


async def test_an_archived_version_never_lands_on_another_jobs_file(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    clip, other = specs(2)
    other = JobSpec(**{**asdict(other), "output_name": "job-0.v1", "key": "r/job-0.v1"})
    h.store.sync_jobs("r", [clip, other])
    await h.run()
    theirs = (tmp_path / "out" / "job-0.v1.mp4").read_bytes()
    edited = JobSpec(
        **{**asdict(clip), "payload": {"prompt": "edited", "duration": 5}, "fingerprint": "v2"}
    )
    h.store.sync_jobs("r", [edited, other])
    await h.run()
    assert (tmp_path / "out" / "job-0.v1.mp4").read_bytes() == theirs
    assert (tmp_path / "out" / "job-0~v1.mp4").exists()
    assert_files_intact(h)


async def test_going_back_to_a_rendered_payload_renders_nothing(tmp_path: Path) -> None:
    from batcher.store import plan_marks

    h = Harness(tmp_path)
    original = specs(1)
    h.store.sync_jobs("r", original)
    await h.run()
    edited = [
        JobSpec(
            **{
                **asdict(original[0]),
                "payload": {"prompt": "dusk", "duration": 5},
                "fingerprint": "dusk",
            }
        )
    ]
    h.store.sync_jobs("r", edited)
    await h.run()
    assert len(h.emulator.submissions) == 2
    assert plan_marks(h.store.path, original) == {"r/job-0": "done"}
    h.store.sync_jobs("r", original)  # the edit is reverted
    summary = await h.run()
    assert summary.submitted == 0 and len(h.emulator.submissions) == 2
    [current] = [r for r in h.store.records("r") if r.current]
    assert current.version == 1 and current.state is JobState.DONE
    assert (tmp_path / "out" / current.outputs[0].path).exists()
    edited_again = [
        JobSpec(**{**asdict(original[0]), "payload": {"prompt": "noon"}, "fingerprint": "noon"})
    ]
    assert h.store.sync_jobs("r", edited_again).changed == ("r/job-0",)  # version 3, no clash
    await h.run()
    assert {r.version for r in h.store.records("r")} == {1, 2, 3}
    assert_files_intact(h)


async def test_a_deleted_file_is_noticed_and_downloaded_again(tmp_path: Path) -> None:
    from batcher.operations import missing_files, refetch_missing, status_data

    h = Harness(tmp_path)
    h.store.sync_jobs("r", specs(2))
    await h.run()
    (tmp_path / "out" / "job-1.mp4").unlink()
    assert [j.key for j in missing_files(h.store, "r")] == ["r/job-1"]
    assert status_data(h.store, "r")["runs"][0]["missing_files"] == ["r/job-1"]
    assert [j.key for j in refetch_missing(h.store, ["r"])] == ["r/job-1"]
    await h.run()
    assert (tmp_path / "out" / "job-1.mp4").exists() and len(h.emulator.submissions) == 2
    assert missing_files(h.store, "r") == []
    assert_files_intact(h)


class Passthrough:
    """A port that passes every call to `inner`: subclasses change the calls they name."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)


class SaysSomethingNew(Passthrough):
    """The emulator, but a running render's status is one batcher has never seen."""

    async def result(self, req: Any, **kw: Any) -> Any:
        from batcher.models import InProgress

        answer = await self.inner.result(req, **kw)
        return InProgress(said="warming_up") if isinstance(answer, InProgress) else answer


async def test_a_status_never_seen_before_is_told_not_silently_waited_on(tmp_path: Path) -> None:
    """Issue 11: a new status was read as `running` without a word, for up to six hours."""
    h = Harness(tmp_path, EmulatorConfig(speed=0.2))
    h.store.sync_jobs("r", specs(2))
    await h.run(wrap_api=SaysSomethingNew)
    assert set(h.states().values()) == {"done"}  # still followed to the end
    told = [e for e in h.events if e.kind == "warn" and "warming_up" in e.message]
    assert len(told) == 2, h.events  # once per job, however many polls said it
    notes = [e for e in h.store.run_events("r") if e["key"] is None and e["to_state"] == "warn"]
    assert len(notes) == 2 and "warming_up" in notes[0]["detail"]  # for `batcher log`
    from batcher.operations import status_data

    [run] = status_data(h.store, "r")["runs"]  # ... and `batcher status`
    assert len(run["warnings"]) == 2 and all("warming_up" in w for w in run["warnings"])
