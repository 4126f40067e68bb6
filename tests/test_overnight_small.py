"""Smaller things a night's user trips over (issue 12): a budget below the plan is said
before anything is sent; `status` summarises long lists of cancelled jobs; the report is
readable by whoever can read the videos."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from batcher.emulator import EmulatorConfig
from batcher.models import JobState
from batcher.store import Store
from tests.emulator_server import running_emulator
from tests.test_e2e import FAST, TOKEN, batcher

pytestmark = pytest.mark.e2e


def jobs(n: int) -> str:
    return "name: night\njobs:\n" + "".join(
        f"  - name: c{i}\n    prompt: clip {i}\n    duration: 5\n" for i in range(n)
    )


def test_a_budget_below_the_plan_is_said_before_anything_is_sent(tmp_path: Path) -> None:
    with running_emulator(EmulatorConfig(speed=0.02, token=TOKEN)) as emu:
        (tmp_path / "jobs.yaml").write_text(jobs(4))  # 4 x $0.84 (5 s with sound)
        run = batcher(
            ["run", "jobs.yaml", "--state", "s.db", "--out", "out", "--max-cost", "1.2", *FAST],
            cwd=tmp_path,
            base_url=emu.base_url,
        )
        sent = len(emu.emulator.submissions)
    lines = run.stdout.splitlines()
    [at] = [i for i, line in enumerate(lines) if "exceeds --max-cost" in line]
    assert "$3.36" in lines[at] and "$1.20" in lines[at] and "about 1 of 4" in lines[at]
    assert at < min(i for i, line in enumerate(lines) if " night/" in line)  # before any event
    assert sent == 1


def test_status_summarises_a_long_list_of_cancelled_jobs(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    (tmp_path / "jobs.yaml").write_text(jobs(9))
    planned = batcher(
        [
            "run",
            "jobs.yaml",
            "--state",
            str(path),
            "--out",
            "out",
            "--max-cost",
            "0.01",
            *FAST,
            "--emulator",
        ],
        cwd=tmp_path,
        base_url="http://127.0.0.1:9",
    )
    assert "budget" in planned.stdout, planned.stdout + planned.stderr
    with Store.open(path) as store:
        for job in store.jobs(["night"], [JobState.PENDING]):
            store.transition(job.id, JobState.PENDING, JobState.CANCELLED, error="by hand")
    short = batcher(["status", "--state", str(path)], cwd=tmp_path, base_url="http://127.0.0.1:9")
    assert short.returncode == 0, short.stderr
    assert "9 cancelled: `batcher status --all` lists them" in short.stdout
    assert short.stdout.count("night/c") == 0
    full = batcher(
        ["status", "--all", "--state", str(path)], cwd=tmp_path, base_url="http://127.0.0.1:9"
    )
    assert full.stdout.count("night/c") == 9
    data = json.loads(
        batcher(
            ["status", "--json", "--state", str(path)], cwd=tmp_path, base_url="http://127.0.0.1:9"
        ).stdout
    )
    assert len(data["runs"][0]["attention"]) == 9  # machines get everything


def test_the_report_is_as_readable_as_the_videos(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(jobs(1))
    run = batcher(
        ["run", "jobs.yaml", "--emulator", "--state", "s.db", "--out", "out", "--report", *FAST],
        cwd=tmp_path,
        base_url="http://127.0.0.1:9",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    folder = tmp_path / "out" / "night"
    video = stat.S_IMODE(os.stat(folder / "c0.mp4").st_mode)
    page = stat.S_IMODE(os.stat(folder / "report.html").st_mode)
    assert page == video and page & stat.S_IRGRP


def test_one_job_reads_as_one_job(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(jobs(1))
    valid = batcher(["validate", "jobs.yaml"], cwd=tmp_path, base_url="http://127.0.0.1:9")
    assert valid.stdout.strip() == "jobs.yaml: ok, 1 job"
    run = batcher(
        ["run", "jobs.yaml", "--emulator", "--state", "s.db", "--out", "out", *FAST],
        cwd=tmp_path,
        base_url="http://127.0.0.1:9",
    )
    assert "\n1 job: 1 done\n" in run.stdout and "1 jobs" not in run.stdout
    status = batcher(["status", "--state", "s.db"], cwd=tmp_path, base_url="http://127.0.0.1:9")
    assert "night: 1 job (done 1)" in status.stdout
    assert "(emulated: nothing billed)" in status.stdout  # as the run's own last lines say
    listed = json.loads(
        batcher(
            ["status", "--json", "--state", "s.db"], cwd=tmp_path, base_url="http://127.0.0.1:9"
        ).stdout
    )
    assert listed["runs"][0]["emulated"] and listed["money"]["spent_usd"] == 0.0  # not counted


def test_quiet_shows_only_what_needs_attention_and_the_summary(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(jobs(3))
    run = batcher(
        ["run", "jobs.yaml", "--emulator", "--state", "s.db", "--out", "out", "-q", *FAST],
        cwd=tmp_path,
        base_url="http://127.0.0.1:9",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert " done " not in run.stdout and "night/c0" not in run.stdout  # no event lines
    assert "3 jobs: 3 done" in run.stdout  # the summary stays


def test_report_open_hands_the_page_to_the_desktop(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(jobs(1))
    run = batcher(
        ["run", "jobs.yaml", "--emulator", "--state", "s.db", "--out", "out", *FAST],
        cwd=tmp_path,
        base_url="http://127.0.0.1:9",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    opener = bin_dir / "xdg-open"  # what click.launch runs on Linux
    opener.write_text(f'#!/bin/sh\necho "$1" > {tmp_path / "opened.txt"}\n')
    opener.chmod(0o755)
    env_path = f"{bin_dir}:{os.environ['PATH']}"
    done = subprocess.run(
        [sys.executable, "-m", "batcher", "report", "--open", "--state", "s.db"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=os.environ | {"PATH": env_path},
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "opened.txt").read_text().strip().endswith("out/night/report.html")


def test_help_lists_whole_summaries_and_examples() -> None:
    """`--help` used to cut command summaries mid-phrase ("...") at 80 columns."""
    env = dict(os.environ) | {"COLUMNS": "80"}
    top = subprocess.run(
        [sys.executable, "-m", "batcher", "--help"], capture_output=True, text=True, env=env
    )
    listed = top.stdout.split("Commands:")[1].splitlines()
    assert len([line for line in listed if line.strip()]) >= 12
    assert not [line for line in listed if line.rstrip().endswith("...")], top.stdout
    for command in ("run", "status", "log", "runs", "report", "cancel", "retry"):
        page = subprocess.run(
            [sys.executable, "-m", "batcher", command, "--help"],
            capture_output=True,
            text=True,
            env=env,
        )
        assert "Examples:" in page.stdout or command == "runs", command
