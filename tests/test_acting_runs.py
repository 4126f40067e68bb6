"""Commands that cancel or resubmit act on one run unless told otherwise: with two runs in
one state, a bare `batcher cancel` or `batcher retry --unknown` touches neither and says
which runs have such work (issue 12: one shared state must not let a bare command stop
every project or pay twice across all of them)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from batcher.models import JobState
from batcher.store import Store
from tests.test_scheduler import MODEL, specs

S = JobState


def two_runs(tmp: Path, *, second: S = S.PENDING) -> Path:
    """A state with runs `night` (2 pending) and `day` (2 jobs in state `second`)."""
    path = tmp / "state.db"
    with Store.open(path) as store:
        for run in ("night", "day"):
            store.upsert_run(run, model=MODEL, job_file=None, out_dir=str(tmp / run), options={})
            store.sync_jobs(run, specs(2, run=run))
        for job in store.jobs(["day"], [S.PENDING]):
            if second is S.UNKNOWN:
                store.transition(job.id, S.PENDING, S.SUBMITTING)
                store.transition(job.id, S.SUBMITTING, S.UNKNOWN, error="no answer")
            elif second is S.FAILED:
                store.transition(job.id, S.PENDING, S.CANCELLED)
    return path


def states(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT key, state FROM jobs ORDER BY id").fetchall()
    conn.close()
    return rows


def batcher(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batcher", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "RUNCOMFY_BASE_URL": "http://127.0.0.1:9"},
    )


def test_a_bare_cancel_with_two_runs_touches_neither(tmp_path: Path) -> None:
    path = two_runs(tmp_path)
    before = states(path)
    done = batcher("cancel", "--state", str(path), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert states(path) == before
    assert "night" in done.stderr and "day" in done.stderr and "--all" in done.stderr
    assert "Traceback" not in done.stderr


def test_cancel_of_one_named_run_or_all_of_them(tmp_path: Path) -> None:
    path = two_runs(tmp_path)
    named = batcher("cancel", "day", "--state", str(path), cwd=tmp_path)
    assert named.returncode == 0, named.stderr
    assert {state for key, state in states(path) if key.startswith("day/")} == {"cancelled"}
    assert {state for key, state in states(path) if key.startswith("night/")} == {"pending"}
    everything = batcher("cancel", "--all", "--state", str(path), cwd=tmp_path)
    assert everything.returncode == 0, everything.stderr
    assert {state for _, state in states(path)} == {"cancelled"}


def test_a_bare_cancel_acts_when_only_one_run_has_anything_to_cancel(tmp_path: Path) -> None:
    path = two_runs(tmp_path, second=S.FAILED)  # `day` holds only cancelled jobs
    done = batcher("cancel", "--state", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert {state for _, state in states(path)} == {"cancelled"}


@pytest.mark.parametrize("flag", ["--unknown", "--cancelled"])
def test_a_bare_retry_that_may_pay_asks_which_run(tmp_path: Path, flag: str) -> None:
    path = two_runs(tmp_path, second=S.UNKNOWN if flag == "--unknown" else S.FAILED)
    with Store.open(path) as store:  # give `night` the same kind of work
        for job in store.jobs(["night"], [S.PENDING]):
            store.transition(job.id, S.PENDING, S.SUBMITTING)
            store.transition(job.id, S.SUBMITTING, S.UNKNOWN, error="no answer")
            if flag == "--cancelled":
                store.transition(job.id, S.UNKNOWN, S.CANCELLED)
    before = states(path)
    done = batcher("retry", flag, "--state", str(path), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert states(path) == before and "night" in done.stderr and "day" in done.stderr
    one = batcher("retry", flag, "night", "--state", str(path), cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    assert {s for k, s in states(path) if k.startswith("night/")} == {"pending"}
    assert {s for k, s in states(path) if k.startswith("day/")} == {s for _, s in before[2:]}
