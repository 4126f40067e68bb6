"""`batcher log`: a run's events read back from the state, with times, job keys, attempts
and errors; `--json` for tools; `--follow` while another process drives the run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from batcher.emulator import EmulatorConfig, parse_faults
from tests.emulator_server import running_emulator
from tests.test_e2e import FAST, TOKEN, batcher, start

pytestmark = pytest.mark.e2e
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d  ")
JOBS = "name: night\njobs:\n" + "".join(
    f"  - name: c{i}\n    prompt: clip {i}\n    duration: 5\n" for i in range(3)
)


def test_the_log_tells_each_jobs_story_with_times_attempts_and_errors(tmp_path: Path) -> None:
    faults = parse_faults(["fail:1#1"])  # c-something's first render fails
    with running_emulator(EmulatorConfig(speed=0.02, token=TOKEN, faults=faults)) as emu:
        (tmp_path / "jobs.yaml").write_text(JOBS)
        state = ["--state", "state.db"]
        run = batcher(
            ["run", "jobs.yaml", *state, "--out", "out", *FAST], cwd=tmp_path, base_url=emu.base_url
        )
        assert run.returncode == 0, run.stdout + run.stderr
        text = batcher(["log", *state], cwd=tmp_path, base_url=emu.base_url)
        assert text.returncode == 0, text.stderr
        lines = text.stdout.splitlines()
        assert lines and all(ISO.match(line) for line in lines), lines[:3]
        assert any("night/c0 v1  pending -> submitting attempt 1" in line for line in lines)
        assert sum("-> done" in line for line in lines) == 3
        retried = [line for line in lines if "attempt 2" in line]
        assert retried, "the failed render's second attempt is numbered"
        assert any("failed" in line and ": " in line.split("  ", 2)[2] for line in lines)

        as_json = batcher(["log", "night", "--json", *state], cwd=tmp_path, base_url=emu.base_url)
        entries = [json.loads(line) for line in as_json.stdout.splitlines()]
        assert len(entries) == len(lines)
        assert {e["key"] for e in entries} == {"night/c0", "night/c1", "night/c2", None}
        [start] = [e for e in entries if e["key"] is None]  # a note of the whole run
        assert start["to"] == "start" and "3 jobs to do of 3" in start["detail"]
        assert {"at", "run", "key", "version", "from", "to", "attempt", "detail"} <= set(entries[0])
        assert max(e["attempt"] or 0 for e in entries) == 2

        follow = batcher(
            ["log", "--follow", *state], cwd=tmp_path, base_url=emu.base_url, timeout=30
        )
        assert follow.returncode == 0 and follow.stdout == text.stdout  # finished: ends at once

        nobody = batcher(["log", "day", *state], cwd=tmp_path, base_url=emu.base_url)
        assert nobody.returncode == 2 and "night" in nobody.stderr


def test_follow_prints_a_run_as_another_process_drives_it(tmp_path: Path) -> None:
    with running_emulator(EmulatorConfig(speed=0.3, spread=0.0, token=TOKEN)) as emu:
        (tmp_path / "jobs.yaml").write_text(JOBS)
        state = ["--state", "state.db"]
        # Record the run with nothing sent (a budget too small for one job) ...
        held = batcher(
            ["run", "jobs.yaml", *state, "--out", "out", "--max-cost", "0.01", *FAST],
            cwd=tmp_path,
            base_url=emu.base_url,
        )
        assert "budget" in held.stdout + held.stderr
        # ... then drive it in another process while `log --follow` watches.
        driver = start(
            ["resume", *state, "--max-cost", "100", *FAST], cwd=tmp_path, base_url=emu.base_url
        )
        try:
            watch = batcher(
                ["log", "--follow", *state], cwd=tmp_path, base_url=emu.base_url, timeout=60
            )
        finally:
            _, driven = driver.communicate(timeout=60)
        assert driver.returncode == 0, driven
        assert watch.returncode == 0, watch.stderr
        assert sum("-> done" in line for line in watch.stdout.splitlines()) == 3


def test_follow_stops_when_nobody_drives_the_run(tmp_path: Path) -> None:
    with running_emulator(EmulatorConfig(speed=0.02, token=TOKEN)) as emu:
        (tmp_path / "jobs.yaml").write_text(JOBS)
        state = ["--state", "state.db"]
        held = batcher(
            ["run", "jobs.yaml", *state, "--out", "out", "--max-cost", "0.01", *FAST],
            cwd=tmp_path,
            base_url=emu.base_url,
        )
        assert "budget" in held.stdout
        watch = batcher(
            ["log", "--follow", *state], cwd=tmp_path, base_url=emu.base_url, timeout=30
        )
    assert watch.returncode == 0, watch.stderr
    assert "no process is driving night" in watch.stderr
    assert "resume night" in watch.stderr
