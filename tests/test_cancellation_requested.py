"""`cancellation_requested` is a request to stop, not a stop (runcomfy-api.md, "Cancel";
issue 11 and its review): the job is followed until it says how it ended, never marked
cancelled on that word (it may still run, be billed, and have files to fetch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batcher.emulator import EmulatorConfig
from tests.emulator_server import running_emulator
from tests.test_e2e import FAST, TOKEN, batcher, start, wait_for_submissions

pytestmark = pytest.mark.e2e


def test_a_cancel_answered_cancellation_requested_is_followed_to_its_end(tmp_path: Path) -> None:
    config = EmulatorConfig(
        speed=0.02, queue_delay=3600, token=TOKEN, status_variant="cancellation-requested"
    )
    (tmp_path / "jobs.yaml").write_text("name: night\njobs:\n  - prompt: a fox\n")
    state = ["--state", "s.db"]
    with running_emulator(config) as emu:
        runner = start(["run", "jobs.yaml", *state, "--out", "out", "-v", *FAST], cwd=tmp_path,
                       base_url=emu.base_url)  # fmt: skip
        try:
            wait_for_submissions(emu, runner, 1)
            assert runner.stdout is not None
            for line in runner.stdout:  # bounded: the runner ends if anything goes wrong
                if " submitted " in line:  # its request id is committed: queued
                    break
        finally:
            runner.kill()
            runner.communicate(timeout=30)  # and close its pipes
        asked = batcher(["cancel", *state], cwd=tmp_path, base_url=emu.base_url)
        assert asked.returncode == 0, asked.stdout + asked.stderr
        assert "cancellation requested" in asked.stdout and "may still run" in asked.stdout
        status = json.loads(batcher(["status", "--json", *state], cwd=tmp_path,
                                    base_url=emu.base_url).stdout)  # fmt: skip
        assert "cancelled" not in status["runs"][0]["counts"]  # not on that word alone
        resumed = batcher(["resume", *state, *FAST], cwd=tmp_path, base_url=emu.base_url)
        final = json.loads(batcher(["status", "--json", *state], cwd=tmp_path,
                                   base_url=emu.base_url).stdout)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert final["runs"][0]["counts"] == {"cancelled": 1}  # the API said so in the end
