"""End to end, through the real CLI over loopback: the user-visible holes of "trust the
morning" (another API taking over a run, kill -9 during a back-off, a failure shown only
by /result, a disk too small for the night)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from batcher.emulator import EmulatorConfig, parse_faults
from tests.emulator_server import running_emulator
from tests.test_e2e import FAST, TOKEN, batcher, start

pytestmark = pytest.mark.e2e

ONE = """\
name: night
jobs:
  - name: fox
    prompt: "A red fox trotting through fresh snow"
    duration: 5
"""
TWO = (
    ONE
    + """\
  - name: owl
    prompt: "An owl on a snowy branch at night"
    duration: 5
"""
)


def state(tmp: Path) -> list[tuple[str, str, str | None]]:
    conn = sqlite3.connect(tmp / "state.db")
    rows = conn.execute("SELECT key, state, request_id FROM jobs ORDER BY id").fetchall()
    conn.close()
    return rows


def attempts(tmp: Path) -> list[str]:
    conn = sqlite3.connect(tmp / "state.db")
    rows = conn.execute("SELECT outcome FROM attempts ORDER BY id").fetchall()
    conn.close()
    return [r[0] for r in rows]


def dump(tmp: Path) -> list[tuple[object, ...]]:
    """Every row of the state that a takeover could change."""
    conn = sqlite3.connect(tmp / "state.db")
    rows = [
        *conn.execute("SELECT * FROM runs ORDER BY name").fetchall(),
        *conn.execute("SELECT * FROM jobs ORDER BY id").fetchall(),
        *conn.execute("SELECT * FROM attempts ORDER BY id").fetchall(),
        *conn.execute("SELECT COUNT(*) FROM events").fetchall(),
    ]
    conn.close()
    return rows


def args(*extra: str) -> list[str]:
    return ["run", "jobs.yaml", "--state", "state.db", "--out", "out", *FAST, *extra]


def test_emulator_cannot_take_over_a_run_with_paid_requests_in_flight(tmp_path: Path) -> None:
    with running_emulator(EmulatorConfig(speed=0.02, token=TOKEN)) as emu:
        (tmp_path / "jobs.yaml").write_text(ONE)
        crashed = batcher(
            args(), cwd=tmp_path, base_url=emu.base_url, env={"BATCHER_CRASH_AT": "after_commit"}
        )
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
        [(_, st, rid)] = state(tmp_path)
        assert st == "queued" and rid
        before = dump(tmp_path)
        took = batcher([*args(), "--emulator"], cwd=tmp_path, base_url=emu.base_url)
        assert took.returncode == 2, took.stdout + took.stderr
        assert "was started against the API at" in took.stderr
        assert "Traceback" not in took.stderr
        assert dump(tmp_path) == before  # the state is untouched
        resumed = batcher(
            ["resume", "--state", "state.db", *FAST], cwd=tmp_path, base_url=emu.base_url
        )
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert state(tmp_path) == [("night/fox", "done", rid)]
        assert len(emu.emulator.submissions) == 1


def test_a_run_started_on_the_emulator_is_not_continued_against_a_server(
    tmp_path: Path,
) -> None:
    (tmp_path / "jobs.yaml").write_text(ONE)
    first = batcher([*args(), "--emulator"], cwd=tmp_path, base_url="http://127.0.0.1:9")
    assert first.returncode == 0, first.stdout + first.stderr
    before = dump(tmp_path)
    second = batcher(args(), cwd=tmp_path, base_url="http://127.0.0.1:9")
    assert second.returncode == 2 and "built-in emulator" in second.stderr, second.stderr
    assert dump(tmp_path) == before


def test_kill_9_while_backing_off_a_429_leaves_nothing_unknown(tmp_path: Path) -> None:
    faults = parse_faults(["429:1:120@submit#1"])  # the first POST: wait two minutes
    with running_emulator(EmulatorConfig(speed=0.02, token=TOKEN, faults=faults)) as emu:
        (tmp_path / "jobs.yaml").write_text(ONE)
        proc = start([*args(), "--backoff-base", "1"], cwd=tmp_path, base_url=emu.base_url)
        try:
            deadline = time.monotonic() + 60
            while "not_sent" not in _attempts_or_empty(tmp_path):
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the 429 was never recorded"
                time.sleep(0.02)
            assert [s for _, s, _ in state(tmp_path)] == ["pending"]  # during the back-off
        finally:
            proc.kill()
            proc.communicate()
        emu.reset(EmulatorConfig(speed=0.02, token=TOKEN))
        resumed = batcher(
            ["resume", "--state", "state.db", *FAST], cwd=tmp_path, base_url=emu.base_url
        )
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert [s for _, s, _ in state(tmp_path)] == ["done"]
        assert "unknown" not in attempts(tmp_path)
        assert len(emu.emulator.submissions) == 1


def _attempts_or_empty(tmp: Path) -> list[str]:
    try:
        return attempts(tmp)
    except sqlite3.OperationalError:  # not created yet, or busy: look again
        return []


def test_a_failure_only_result_shows_is_rendered_again(tmp_path: Path) -> None:
    faults = parse_faults(["fail:1#1"])  # the first render fails; /status still says completed
    with running_emulator(EmulatorConfig(speed=0.02, token=TOKEN, faults=faults)) as emu:
        (tmp_path / "jobs.yaml").write_text(ONE)
        done = batcher(args(), cwd=tmp_path, base_url=emu.base_url)
        assert done.returncode == 0, done.stdout + done.stderr
        assert attempts(tmp_path) == ["failed", "succeeded"]
        assert len(emu.emulator.submissions) == 2
        assert (tmp_path / "out" / "night" / "fox.mp4").exists()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_disk_too_small_for_the_night_submits_nothing(small_disk: Path, tmp_path: Path) -> None:
    with running_emulator(EmulatorConfig(speed=0.02, token=TOKEN)) as emu:
        (tmp_path / "jobs.yaml").write_text(TWO)
        run = batcher(
            ["run", "jobs.yaml", "--state", "state.db", "--out", str(small_disk), *FAST],
            cwd=tmp_path,
            base_url=emu.base_url,
        )
        assert run.returncode == 1, run.stdout + run.stderr
        assert "not enough free space" in run.stdout
        assert "stopped submitting" in run.stdout
        assert emu.emulator.submissions == []
        assert [s for _, s, _ in state(tmp_path)] == ["pending", "pending"]


def test_a_token_no_header_can_carry_is_a_usage_error_at_once(tmp_path: Path) -> None:
    with running_emulator(EmulatorConfig(speed=0.02, token=TOKEN)) as emu:
        (tmp_path / "jobs.yaml").write_text(ONE)
        bad = "secret-part\nsecond-line"
        run = batcher(args(), cwd=tmp_path, base_url=emu.base_url, token=bad)
        assert run.returncode == 2, run.stdout + run.stderr
        assert "cannot send requests to the API" in run.stderr
        assert "secret-part" not in run.stdout + run.stderr
        assert emu.emulator.submissions == []
