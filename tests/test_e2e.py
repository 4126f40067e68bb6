"""End to end: the real CLI in a subprocess against the emulator on loopback.

Covers: a sweep completes with every file intact; a re-run submits nothing; an edited
prompt re-renders only that job; kill -9 at many points then `resume`; every fault class;
two runners on one state file; SIGINT; auth and token errors.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from batcher.emulator import EmulatorConfig, parse_faults
from batcher.store import Store
from tests.emulator_server import RunningEmulator, running_emulator
from tests.outputs_invariants import check_output_folder

pytestmark = pytest.mark.e2e
TOKEN = "e2e-token"
FAST = ["--poll-min", "0.02", "--poll-max", "0.1", "--backoff-base", "0.01", "--no-progress"]

SWEEP = """\
name: sweep
defaults:
  duration: 5
  sound: false
jobs:
  - name: fox
    prompt: "A red fox trotting through fresh snow"
    sweep:
      cfg_scale: [0.3, 0.5, 0.8]
      aspect_ratio: ["16:9", "9:16"]
  - name: terrace
    prompt: "Anniversary dinner on a Tuscan terrace"
    duration: 6
    shot_type: customize
    multi_prompt:
      - {prompt: "Wide establishing shot", duration: 3}
      - {prompt: "Slow dolly-in", duration: 3}
"""
N_JOBS = 7


@pytest.fixture(scope="module")
def emu() -> Any:
    with running_emulator(EmulatorConfig(speed=0.02, slots=4, token=TOKEN)) as running:
        yield running


def batcher(
    args: list[str],
    *,
    cwd: Path,
    base_url: str,
    env: dict[str, str] | None = None,
    token: str = TOKEN,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ) | {"RUNCOMFY_BASE_URL": base_url, "RUNCOMFY_API_TOKEN": token}
    full_env.pop("BATCHER_CRASH_AT", None)
    full_env |= env or {}
    return subprocess.run(
        [sys.executable, "-m", "batcher", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(
    args: list[str], *, cwd: Path, base_url: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    full_env = dict(os.environ) | {"RUNCOMFY_BASE_URL": base_url, "RUNCOMFY_API_TOKEN": TOKEN}
    full_env |= env or {}
    return subprocess.Popen(
        [sys.executable, "-m", "batcher", *args],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_submissions(
    emu: RunningEmulator, proc: subprocess.Popen[str], n: int, *, may_exit: bool = False
) -> None:
    """Block until the emulator has accepted `n` requests (bounded: 60 s)."""
    deadline = time.monotonic() + 60
    while len(emu.emulator.submissions) < n:
        if proc.poll() is not None:
            assert may_exit, f"runner exited early: {proc.returncode}"
            return
        assert time.monotonic() < deadline, "runner made no progress"
        time.sleep(0.005)


def fresh(emu: RunningEmulator, tmp: Path, **cfg: Any) -> Path:
    emu.reset(EmulatorConfig(**({"speed": 0.02, "slots": 4, "token": TOKEN} | cfg)))
    (tmp / "jobs.yaml").write_text(SWEEP)
    return tmp


def db_rows(tmp: Path) -> list[sqlite3.Row]:
    conn = sqlite3.connect(tmp / "state.db")
    conn.row_factory = sqlite3.Row
    return conn.execute("SELECT * FROM jobs WHERE current=1 ORDER BY id").fetchall()


def check_outputs(tmp: Path) -> None:
    """Every done job's file is whole; no temporary file is left under any name."""
    out = tmp / "out" / "sweep"
    for row in db_rows(tmp):
        if row["state"] != "done":
            continue
        for f in json.loads(row["outputs"]):
            data = (out / f["path"]).read_bytes()
            assert data[4:8] == b"ftyp"
            assert len(data) == f["size"] and hashlib.sha256(data).hexdigest() == f["sha256"]
    names = [p.name for p in out.iterdir()] if out.exists() else []
    assert not [n for n in names if n.endswith((".part", ".tmp"))], names
    with Store.open(tmp / "state.db", create=False) as store:
        check_output_folder(store, "sweep")


def per_payload(emu: RunningEmulator) -> Counter[str]:
    return Counter(s.payload_sha256 for s in emu.emulator.submissions)


def run_args(tmp: Path, *extra: str) -> list[str]:
    return ["run", "jobs.yaml", "--state", "state.db", "--out", "out", *FAST, *extra]


def test_sweep_completes_rerun_submits_nothing_edit_renders_one(
    emu: RunningEmulator, tmp_path: Path
) -> None:
    tmp = fresh(emu, tmp_path)
    first = batcher(run_args(tmp), cwd=tmp, base_url=emu.base_url)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"{N_JOBS} jobs: {N_JOBS} done" in first.stdout
    assert len(emu.emulator.submissions) == N_JOBS
    check_outputs(tmp)
    sidecars = sorted((tmp / "out" / "sweep").glob("*.json"))
    assert len(sidecars) == N_JOBS
    assert TOKEN not in "".join(p.read_text() for p in sidecars)
    assert TOKEN.encode() not in (tmp / "state.db").read_bytes()

    again = batcher(run_args(tmp), cwd=tmp, base_url=emu.base_url)
    assert again.returncode == 0 and len(emu.emulator.submissions) == N_JOBS

    (tmp / "jobs.yaml").write_text(SWEEP.replace("Slow dolly-in", "Slow dolly-out"))
    plan = batcher(
        ["plan", "jobs.yaml", "--state", "state.db", "--json"], cwd=tmp, base_url=emu.base_url
    )
    marks = Counter(j.get("mark") or j.get("status") for j in json.loads(plan.stdout)["jobs"])
    assert marks["changed"] == 1 and marks["done"] == N_JOBS - 1, plan.stdout
    edited = batcher(run_args(tmp), cwd=tmp, base_url=emu.base_url)
    assert edited.returncode == 0, edited.stderr
    assert len(emu.emulator.submissions) == N_JOBS + 1
    assert (tmp / "out" / "sweep" / "terrace~v1.mp4").exists()
    check_outputs(tmp)


CRASH_POINTS = [
    "before_post",
    "after_post",
    "after_commit",
    "mid_download",
    "before_rename",
    "before_done",
]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_9_at_a_crash_point_then_resume(
    emu: RunningEmulator, tmp_path: Path, point: str
) -> None:
    rng = random.Random(f"crash-{point}")
    nth = rng.randint(1, 4)
    tmp = fresh(emu, tmp_path)
    crashed = batcher(
        run_args(tmp, "--concurrency", "3"),
        cwd=tmp,
        base_url=emu.base_url,
        env={"BATCHER_CRASH_AT": f"{point}:{nth}"},
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    finish_after_crash(emu, tmp)


def finish_after_crash(emu: RunningEmulator, tmp: Path) -> None:
    """resume; resubmit unknowns on purpose; then every job is done exactly as allowed."""
    resumed = batcher(["resume", "--state", "state.db", *FAST], cwd=tmp, base_url=emu.base_url)
    assert resumed.returncode in (0, 1), resumed.stdout + resumed.stderr
    rows = db_rows(tmp)
    unknown = {r["fingerprint"] for r in rows if r["state"] == "unknown"}
    assert all(r["state"] in ("done", "unknown") for r in rows), resumed.stdout
    if unknown:
        assert "unknown outcome" in resumed.stdout
        batcher(["retry", "--unknown", "--state", "state.db"], cwd=tmp, base_url=emu.base_url)
        again = batcher(["resume", "--state", "state.db", *FAST], cwd=tmp, base_url=emu.base_url)
        assert again.returncode == 0, again.stdout + again.stderr
    rows = db_rows(tmp)
    assert [r["state"] for r in rows] == ["done"] * N_JOBS
    check_outputs(tmp)
    # Each job was sent once, plus once more only after an attempt that failed remotely or
    # whose outcome was reported unknown; and never without an attempt recorded first.
    counts = per_payload(emu)
    for row in rows:
        sha = _emulator_sha(row["payload"])
        redo = redo_attempts(tmp, row["id"])
        assert counts[sha] <= 1 + redo, (row["key"], counts[sha], redo)
        assert counts[sha] <= row["attempts"], (row["key"], counts[sha], row["attempts"])


def redo_attempts(tmp: Path, job_id: int) -> int:
    conn = sqlite3.connect(tmp / "state.db")
    return int(
        conn.execute(
            "SELECT COUNT(*) FROM attempts WHERE job_id=? AND outcome IN ('failed', 'unknown')",
            (job_id,),
        ).fetchone()[0]
    )


def _emulator_sha(payload_json: str) -> str:
    from batcher.emulator import canonical_sha256

    return canonical_sha256(json.loads(payload_json))


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_kill_9_at_a_random_moment_then_resume(
    emu: RunningEmulator, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    tmp = fresh(emu, tmp_path)
    want = rng.randint(1, N_JOBS - 1)
    proc = start(run_args(tmp, "--concurrency", "2"), cwd=tmp, base_url=emu.base_url)
    wait_for_submissions(emu, proc, want, may_exit=True)
    proc.kill()
    proc.communicate(timeout=30)
    finish_after_crash(emu, tmp)


FAULT_SETS = [
    ["429:0.3:0.05", "5xx:0.2", "slow:0.2:0.05"],
    ["drop:0.2@status,result,files", "error-200:0.2@status"],
    ["truncate:0.3", "expire:0.5"],
    ["accept-5xx:0.3", "accept-drop:0.2", "no-request-id:0.2"],
    ["fail:0.4"],
]


@pytest.mark.parametrize("faults", FAULT_SETS, ids=lambda f: "+".join(f))
def test_every_fault_class_is_survived(
    emu: RunningEmulator, tmp_path: Path, faults: list[str]
) -> None:
    tmp = fresh(emu, tmp_path, seed=7, faults=parse_faults(faults))
    first = batcher(run_args(tmp, "--max-attempts", "3"), cwd=tmp, base_url=emu.base_url)
    assert first.returncode in (0, 1), first.stdout + first.stderr
    assert emu.emulator.faults_injected, "the fault set injected nothing"
    failed = [r for r in db_rows(tmp) if r["state"] == "failed"]
    for row in failed:  # only a generation that failed on every attempt may fail for good
        assert "emulated fault" in row["error"] and row["attempts"] == 3, row["error"]
    if failed:
        retried = batcher(["retry", "--state", "state.db"], cwd=tmp, base_url=emu.base_url)
        assert f"{len(failed)} job(s) back to pending" in retried.stdout
    finish_after_crash(emu, tmp)


def test_two_runners_on_one_state_file_submit_each_job_once(
    emu: RunningEmulator, tmp_path: Path
) -> None:
    tmp = fresh(emu, tmp_path, speed=0.05)
    a = start(run_args(tmp), cwd=tmp, base_url=emu.base_url)
    b = start(run_args(tmp), cwd=tmp, base_url=emu.base_url)
    outs = [p.communicate(timeout=120) for p in (a, b)]
    codes = sorted([a.returncode, b.returncode])
    text = "".join(o + e for o, e in outs)
    assert codes[0] == 0, text
    assert codes == [0, 0] or ("another batcher process" in text and codes == [0, 2]), text
    assert max(per_payload(emu).values()) == 1 and len(emu.emulator.submissions) == N_JOBS
    assert [r["state"] for r in db_rows(tmp)] == ["done"] * N_JOBS


def test_sigint_saves_state_exits_130_and_resume_finishes(
    emu: RunningEmulator, tmp_path: Path
) -> None:
    tmp = fresh(emu, tmp_path, speed=0.2)
    proc = start(run_args(tmp, "--concurrency", "2"), cwd=tmp, base_url=emu.base_url)
    wait_for_submissions(emu, proc, 2)
    proc.send_signal(signal.SIGINT)
    out, errtext = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + errtext
    assert "batcher resume" in errtext
    finish_after_crash(emu, tmp)


def test_refused_token_exits_3_and_missing_token_is_explained(
    emu: RunningEmulator, tmp_path: Path
) -> None:
    tmp = fresh(emu, tmp_path)
    bad = batcher(run_args(tmp), cwd=tmp, base_url=emu.base_url, token="wrong")
    assert bad.returncode == 3, bad.stdout + bad.stderr
    assert "wrong" not in bad.stdout + bad.stderr
    assert emu.emulator.submissions == []
    missing = batcher(run_args(tmp), cwd=tmp, base_url=emu.base_url, token="")
    assert missing.returncode == 2 and "RUNCOMFY_API_TOKEN" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_status_cancel_and_retry_commands(emu: RunningEmulator, tmp_path: Path) -> None:
    tmp = fresh(emu, tmp_path, faults=parse_faults(["fail:1"]))
    ran = batcher(run_args(tmp, "--max-attempts", "1"), cwd=tmp, base_url=emu.base_url)
    assert ran.returncode == 1
    status = batcher(["status", "--state", "state.db", "--json"], cwd=tmp, base_url=emu.base_url)
    data = json.loads(status.stdout)["runs"][0]
    assert data["counts"] == {"failed": N_JOBS} and len(data["attention"]) == N_JOBS
    assert all(j["error"] for j in data["attention"])
    emu.reset(EmulatorConfig(speed=0.02, token=TOKEN))
    retried = batcher(["retry", "--state", "state.db"], cwd=tmp, base_url=emu.base_url)
    assert f"{N_JOBS} job(s) back to pending" in retried.stdout
    cancelled = batcher(["cancel", "sweep", "--state", "state.db"], cwd=tmp, base_url=emu.base_url)
    assert cancelled.returncode == 0 and cancelled.stdout.count("cancelled") == N_JOBS
    status = batcher(["status", "sweep", "--state", "state.db"], cwd=tmp, base_url=emu.base_url)
    assert f"cancelled {N_JOBS}" in status.stdout


def test_a_second_sigint_exits_at_once_and_state_stays_consistent(
    emu: RunningEmulator, tmp_path: Path
) -> None:
    tmp = fresh(emu, tmp_path, speed=0.2)
    proc = start(run_args(tmp, "--concurrency", "3"), cwd=tmp, base_url=emu.base_url)
    wait_for_submissions(emu, proc, 3)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    out, errtext = proc.communicate(timeout=30)
    assert proc.returncode == 130, out + errtext
    assert "Traceback" not in errtext
    finish_after_crash(emu, tmp)


def test_a_locked_run_is_not_touched_by_a_second_runner(
    emu: RunningEmulator, tmp_path: Path
) -> None:
    tmp = fresh(emu, tmp_path, speed=0.1)
    a = start(run_args(tmp, "--concurrency", "1"), cwd=tmp, base_url=emu.base_url)
    wait_for_submissions(emu, a, 1)
    (tmp / "jobs.yaml").write_text(SWEEP.replace("Slow dolly-in", "Slow dolly-out"))
    b = batcher(run_args(tmp), cwd=tmp, base_url=emu.base_url)
    assert b.returncode == 2 and "another batcher process" in b.stderr, b.stderr
    conn = sqlite3.connect(tmp / "state.db")
    assert conn.execute("SELECT MAX(version) FROM jobs").fetchone()[0] == 1  # nothing synced
    a.communicate(timeout=120)
    assert a.returncode == 0


def test_resume_stays_with_the_api_the_run_started_with(
    emu: RunningEmulator, tmp_path: Path
) -> None:
    tmp = fresh(emu, tmp_path)
    (tmp / "jobs.yaml").write_text(SWEEP + "max_cost: 1\n")  # stops early: work is left
    first = batcher(run_args(tmp), cwd=tmp, base_url=emu.base_url)
    assert first.returncode == 1 and "budget" in first.stdout
    elsewhere = batcher(
        ["resume", "--state", "state.db", *FAST], cwd=tmp, base_url="http://127.0.0.1:9"
    )
    assert elsewhere.returncode == 2 and "was started against" in elsewhere.stderr
    emulated = batcher(
        ["resume", "--state", "state.db", "--emulator"], cwd=tmp, base_url=emu.base_url
    )
    assert emulated.returncode == 2 and "--emulator" in emulated.stderr
    assert len(emu.emulator.submissions) == 1


def test_an_unreachable_api_is_reported_at_once(emu: RunningEmulator, tmp_path: Path) -> None:
    tmp = fresh(emu, tmp_path)
    started = time.monotonic()
    run = batcher(run_args(tmp), cwd=tmp, base_url="http://127.0.0.1:9")  # refused
    assert run.returncode == 2 and "cannot reach the API" in run.stderr, run.stderr
    assert time.monotonic() - started < 30
    status = batcher(["status", "--state", "state.db", "--json"], cwd=tmp, base_url=emu.base_url)
    assert json.loads(status.stdout)["runs"][0]["counts"] == {"pending": N_JOBS}
