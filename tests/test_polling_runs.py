"""Polling that learns, in runs: one request per poll, what renders took kept in the state
for the next run, `/status` only for a queue position worth waiting on, and what was
learnt shown by `status`, the report and the ETA."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from batcher.cli.progress import Progress
from batcher.client import parse_status
from batcher.emulator import EmulatorConfig
from batcher.models import Money, Queued, Succeeded
from batcher.schema import for_model
from tests.emulator_server import running_emulator
from tests.test_e2e import FAST, TOKEN, batcher
from tests.test_scheduler import MODEL, Harness, specs

KIND = for_model(MODEL).render_group({"duration": 5})
GROUP = f"{KIND} @emu.test"  # renders of one API say nothing of another's


class Asked:
    """Counts the API calls a run makes, by kind."""

    def __init__(self, inner: Any, calls: list[str]) -> None:
        self.inner, self.calls = inner, calls

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)

    async def status(self, req: Any) -> Any:
        self.calls.append("status")
        return await self.inner.status(req)

    async def result(self, req: Any, **kw: Any) -> Any:
        answer = await self.inner.result(req, **kw)
        kind = {Succeeded: "result:done", Queued: "result:queued"}.get(type(answer), "result")
        self.calls.append(kind)
        return answer


@pytest.mark.anyio
async def test_renders_are_followed_on_result_alone_and_remembered(tmp_path: Path) -> None:
    h = Harness(tmp_path, EmulatorConfig(speed=0.001, slots=8))
    h.store.sync_jobs("r", specs(5))
    calls: list[str] = []
    await h.run(wrap_api=lambda api: Asked(api, calls))
    assert set(h.states().values()) == {"done"}
    assert "status" not in calls and calls.count("result:done") == 5
    seen = h.store.render_times()
    assert list(seen) == [GROUP] and len(seen[GROUP]) == 5
    # The next run of the same kind, in a new process, starts knowing them.
    h.store.close()
    again = Harness(tmp_path)
    again.store.sync_jobs("r", specs(2, prompt="an owl"))
    read: list[int] = []

    class Remembers:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, attr: str) -> Any:
            return getattr(self.inner, attr)

        def render_times(self, groups: Any) -> Any:
            found = self.inner.render_times(groups)
            read.append(len(found.get(GROUP, [])))
            return found

    await again.run(wrap_ledger=Remembers)
    assert read == [5]  # read once, all five
    assert again.sched.planner.groups[GROUP].known


@pytest.mark.anyio
async def test_a_queued_job_asks_status_for_its_position_only_once_times_are_known(
    tmp_path: Path,
) -> None:
    # Real time here (a few tenths of a second): the injected jump clock moves once per
    # sleeping task, which would put every job past its render before its first poll.
    emu = EmulatorConfig(speed=0.1, spread=0.0, slots=1)  # 0.5 s renders, one at a time
    fast = dict(sleep=anyio.sleep, clock=time.time, poll_min=0.01, poll_max=5, concurrency=4)
    cold = Harness(tmp_path / "cold", emu)
    cold.store.sync_jobs("r", specs(4))
    cold_calls: list[str] = []
    await cold.run(wrap_api=lambda api: Asked(api, cold_calls), **fast)
    assert set(cold.states().values()) == {"done"}
    # Until a render of the kind has finished, a queue position would not say how long.
    first_done = cold_calls.index("result:done")
    assert "result:queued" in cold_calls[:first_done]
    assert "status" not in cold_calls[:first_done]

    warm = Harness(tmp_path / "warm", emu)
    for _ in range(5):
        warm.store.add_render_time(GROUP, 0.5)
    warm.store.sync_jobs("r", specs(4, prompt="an owl"))
    warm_calls: list[str] = []
    await warm.run(wrap_api=lambda api: Asked(api, warm_calls), **fast)
    assert set(warm.states().values()) == {"done"}
    # Known times: a job /result shows queued asks /status once for its place in line.
    queued = warm_calls.count("result:queued")
    assert queued >= 1 and warm_calls.count("status") == queued, warm_calls


def test_the_server_clock_says_how_long_a_render_took() -> None:
    body = {
        "status": "succeeded",
        "output": {"video": "https://x.runcomfy.net/a.mp4"},
        "created_at": "2026-12-02T01:00:00.000Z",
        "finished_at": "2026-12-02T01:00:42.500Z",
    }
    parsed = parse_status(body)
    assert isinstance(parsed, Succeeded) and parsed.elapsed == pytest.approx(42.5)
    for junk in (
        {"finished_at": "yesterday"},
        {"created_at": 7},
        {"finished_at": "2026-12-02T00:59:00Z"},
    ):
        parsed = parse_status(body | junk)
        assert isinstance(parsed, Succeeded) and parsed.elapsed is None


def test_the_eta_uses_render_times_seen_before_anything_finishes() -> None:
    counts = {"pending": 8, "queued": 4}
    bar = Progress(lambda: counts, Money, live=False, typical_render=90.0, concurrency=4)
    text = " ".join(str(cell) for row in bar._render().columns[1].cells for cell in [row])
    assert "~4.5 min (from render times seen)" in text  # 3 waves of 4 x 90 s, none elapsed
    soon = Progress(lambda: {"queued": 2}, Money, live=False, typical_render=40.0, concurrency=2)
    assert "~40 s (from render times seen)" in " ".join(
        str(c) for c in soon._render().columns[1].cells
    )
    blind = Progress(lambda: counts, Money, live=False)
    assert "ETA -" in " ".join(str(c) for c in blind._render().columns[1].cells)


@pytest.mark.e2e
def test_status_and_the_report_show_what_renders_took(tmp_path: Path) -> None:
    with running_emulator(EmulatorConfig(speed=0.05, token=TOKEN)) as emu:
        (tmp_path / "jobs.yaml").write_text(
            "name: night\njobs:\n"
            + "".join(f"  - name: c{i}\n    prompt: clip {i}\n    duration: 5\n" for i in range(4))
        )
        common = ["--state", "state.db"]
        run = batcher(
            ["run", "jobs.yaml", *common, "--out", "out", *FAST],
            cwd=tmp_path,
            base_url=emu.base_url,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        status = batcher(["status", *common], cwd=tmp_path, base_url=emu.base_url)
        assert "render times seen" in status.stdout
        group = f"{KIND} @127.0.0.1:{emu.base_url.rsplit(':', 1)[1]}"
        assert f"{group}: p10 " in status.stdout and "(4 renders)" in status.stdout
        data = json.loads(
            batcher(["status", "--json", *common], cwd=tmp_path, base_url=emu.base_url).stdout
        )
        [entry] = data["render_times"]
        assert entry["group"] == group and entry["renders"] == 4
        assert 0 < entry["p10"] <= entry["p50"] <= entry["p90"] < 5
        report = batcher(["report", *common], cwd=tmp_path, base_url=emu.base_url)
        assert report.returncode == 0, report.stderr
        page = (tmp_path / "out" / "night" / "report.html").read_text()
        assert "render times seen" in page and "(4 renders)" in page


@pytest.mark.e2e
def test_poll_settings_are_checked_and_bad_emulator_timings_refused(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text("name: n\njobs:\n  - prompt: a fox\n")
    bad = batcher(
        ["run", "jobs.yaml", "--emulator", "--state", "s.db", "--out", "out", "--poll-min", "90"],
        cwd=tmp_path,
        base_url="http://127.0.0.1:9",
    )
    assert bad.returncode == 2
    assert (
        "--poll-min" in bad.stderr and "--poll-max" in bad.stderr and "Traceback" not in bad.stderr
    )
    for flag, value in (("--poll-min", "inf"), ("--poll-max", "inf"), ("--poll-delay", "nan")):
        odd = batcher(
            ["run", "jobs.yaml", "--emulator", "--state", "s.db", "--out", "out", flag, value],
            cwd=tmp_path,
            base_url="http://127.0.0.1:9",
        )
        assert odd.returncode == 2, (flag, value, odd.stdout + odd.stderr)
        assert flag in odd.stderr and "Traceback" not in odd.stderr
    for bad_emulator in (["--spread", "nan"], ["--speed", "inf"]):
        emu_bad = batcher(["emulator", *bad_emulator], cwd=tmp_path, base_url="http://127.0.0.1:9")
        assert emu_bad.returncode == 2, emu_bad.stderr
    ok = batcher(
        [
            "run",
            "jobs.yaml",
            "--emulator",
            "--state",
            "s.db",
            "--out",
            "out",
            "--poll-delay",
            "0.5",
            "--no-progress",
        ],
        cwd=tmp_path,
        base_url="http://127.0.0.1:9",
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    started = time.monotonic()
    emu = batcher(
        ["emulator", "--render-time", "gamma:1:2"], cwd=tmp_path, base_url="http://127.0.0.1:9"
    )
    assert emu.returncode == 2 and "uniform:LO:HI" in emu.stderr
    assert time.monotonic() - started < 30


def test_the_panel_reads_the_state_less_often_when_reading_it_costs() -> None:
    """Issue 10: counts and money over every job, twice a second, held the event loop
    ~0.2 s each time on a 100,000-job state."""
    now = [0.0]
    reads: list[float] = []

    def counts() -> dict[str, int]:
        reads.append(now[0])
        now[0] += cost[0]  # what the query takes
        return {"pending": 3}

    cost = [0.001]
    panel = Progress(counts, Money, live=False, clock=lambda: now[0])
    for _ in range(10):  # cheap: read at every tick
        panel._render()
        now[0] += 0.5
    assert len(reads) == 10
    cost[0], reads[:] = 0.2, []
    for _ in range(40):  # 0.2 s a read: once every 4 s or so, not every 0.5 s
        panel._render()
        now[0] += 0.5
    assert 4 <= len(reads) <= 6, reads
