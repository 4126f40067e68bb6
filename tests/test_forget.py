"""`batcher forget RUN`: drops a run's records after a confirmation; its files stay, and a
run with paid work still out (or driven by another process) is refused (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batcher.models import JobState
from batcher.store import Store
from tests.test_e2e import FAST, batcher

pytestmark = pytest.mark.e2e
NOWHERE = "http://127.0.0.1:9"


def two_runs(tmp: Path) -> None:
    for name in ("night", "day"):
        (tmp / f"{name}.yaml").write_text(
            f"name: {name}\njobs:\n  - name: c0\n    prompt: {name} clip\n    duration: 5\n"
        )
        done = batcher(
            ["run", f"{name}.yaml", "--emulator", "--state", "s.db", "--out", "out", *FAST],
            cwd=tmp,
            base_url=NOWHERE,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def runs(tmp: Path) -> list[str]:
    listed = batcher(["runs", "--json", "--state", "s.db"], cwd=tmp, base_url=NOWHERE)
    return [r["run"] for r in json.loads(listed.stdout)]


def test_forget_drops_the_records_and_keeps_the_files(tmp_path: Path) -> None:
    two_runs(tmp_path)
    bare = batcher(["forget", "--yes", "--state", "s.db"], cwd=tmp_path, base_url=NOWHERE)
    assert bare.returncode == 2 and "(runs: night, day)" in bare.stderr  # names, forgets none
    unasked = batcher(["forget", "night", "--state", "s.db"], cwd=tmp_path, base_url=NOWHERE)
    assert unasked.returncode == 2 and "--yes" in unasked.stderr  # no terminal to ask on
    assert runs(tmp_path) == ["night", "day"]
    gone = batcher(
        ["forget", "night", "--yes", "--json", "--state", "s.db"], cwd=tmp_path, base_url=NOWHERE
    )
    assert gone.returncode == 0, gone.stderr
    said = json.loads(gone.stdout)
    assert said["run"] == "night" and said["dropped"] == 1 and said["out_dir"].endswith("night")
    assert runs(tmp_path) == ["day"]
    assert (tmp_path / "out" / "night" / "c0.mp4").exists()
    with Store.open(tmp_path / "s.db") as store:
        assert store.records("night") == [] and len(store.records("day")) == 1
    again = batcher(["forget", "night", "--yes", "--state", "s.db"], cwd=tmp_path, base_url=NOWHERE)
    assert again.returncode == 2 and "day" in again.stderr


def test_a_run_with_paid_work_still_out_is_not_forgotten(tmp_path: Path) -> None:
    two_runs(tmp_path)
    with Store.open(tmp_path / "s.db") as store:
        [job] = store.jobs(["night"], [JobState.DONE])
        store.transition(job.id, JobState.DONE, JobState.DOWNLOADING, reason="test")
    kept = batcher(["forget", "night", "--yes", "--state", "s.db"], cwd=tmp_path, base_url=NOWHERE)
    assert kept.returncode == 2 and "downloading" in kept.stderr
    assert runs(tmp_path) == ["night", "day"]


def test_a_render_paid_for_but_not_downloaded_is_not_forgotten(tmp_path: Path) -> None:
    two_runs(tmp_path)
    with Store.open(tmp_path / "s.db") as store:
        [job] = store.jobs(["night"], [JobState.DONE])
        store.transition(job.id, JobState.DONE, JobState.DOWNLOADING, reason="test")
        store.transition(
            job.id,
            JobState.DOWNLOADING,
            JobState.FAILED,
            error="download failed",
            attempt={"outcome": "download_failed"},
        )
    kept = batcher(["forget", "night", "--yes", "--state", "s.db"], cwd=tmp_path, base_url=NOWHERE)
    assert kept.returncode == 2 and "retry" in kept.stderr, kept.stdout + kept.stderr
    assert runs(tmp_path) == ["night", "day"]
