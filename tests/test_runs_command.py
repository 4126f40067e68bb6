"""Runs as things you can name (issue 12): `batcher runs` lists them with their counts,
spend, API and the process driving each; `batcher resume [RUN...]` drives the runs no
other process holds (saying which it skipped) instead of refusing them all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batcher.emulator import EmulatorConfig
from tests.emulator_server import running_emulator
from tests.test_e2e import FAST, TOKEN, batcher, start

pytestmark = pytest.mark.e2e


def night(name: str, n: int = 2) -> str:
    return f"name: {name}\njobs:\n" + "".join(
        f"  - name: c{i}\n    prompt: {name} clip {i}\n    duration: 5\n" for i in range(n)
    )


def recorded(tmp: Path, base_url: str, *names: str) -> None:
    """Each run recorded with nothing sent (a budget too small for one job)."""
    for name in names:
        (tmp / f"{name}.yaml").write_text(night(name))
        held = batcher(
            [
                "run",
                f"{name}.yaml",
                "--state",
                "state.db",
                "--out",
                "out",
                "--max-cost",
                "0.01",
                *FAST,
            ],
            cwd=tmp,
            base_url=base_url,
        )
        assert "budget" in held.stdout, held.stdout + held.stderr


def test_runs_lists_each_run_with_counts_spend_api_and_its_driver(tmp_path: Path) -> None:
    with running_emulator(EmulatorConfig(speed=1.2, spread=0.0, token=TOKEN)) as emu:  # 6 s renders
        recorded(tmp_path, emu.base_url, "night", "day")
        idle = json.loads(
            batcher(
                ["runs", "--json", "--state", "state.db"], cwd=tmp_path, base_url=emu.base_url
            ).stdout
        )
        assert [r["run"] for r in idle] == ["night", "day"]
        assert idle[0]["counts"] == {"pending": 2} and idle[0]["driven_by"] is None
        assert idle[0]["api"] == emu.base_url and idle[0]["job_file"].endswith("night.yaml")
        assert idle[0]["money"]["estimated_usd"] > 0 and idle[0]["last_activity"]
        driver = start(
            ["resume", "night", "--state", "state.db", "--max-cost", "100", *FAST],
            cwd=tmp_path,
            base_url=emu.base_url,
        )
        try:
            assert driver.stdout is not None
            assert "resuming night" in driver.stdout.readline()  # it holds the run now
            busy = json.loads(
                batcher(
                    ["runs", "--json", "--state", "state.db"], cwd=tmp_path, base_url=emu.base_url
                ).stdout
            )
            text = batcher(["runs", "--state", "state.db"], cwd=tmp_path, base_url=emu.base_url)
        finally:
            driver.communicate(timeout=60)
    assert {r["run"]: r["driven_by"] for r in busy} == {"night": driver.pid, "day": None}
    assert f"pid {driver.pid}" in text.stdout and "day" in text.stdout


def test_resume_drives_the_runs_nobody_holds_and_says_which_it_skipped(tmp_path: Path) -> None:
    with running_emulator(EmulatorConfig(speed=1.2, spread=0.0, token=TOKEN)) as emu:  # 6 s renders
        recorded(tmp_path, emu.base_url, "night", "day")
        driver = start(
            ["resume", "night", "--state", "state.db", "--max-cost", "100", *FAST],
            cwd=tmp_path,
            base_url=emu.base_url,
        )
        try:
            assert driver.stdout is not None
            assert "resuming night" in driver.stdout.readline()
            other = batcher(
                ["resume", "--state", "state.db", "--max-cost", "100", *FAST],
                cwd=tmp_path,
                base_url=emu.base_url,
                timeout=60,
            )
        finally:
            driver.communicate(timeout=60)
        assert other.returncode == 0, other.stdout + other.stderr
        assert "skipped night" in other.stdout + other.stderr
        assert "resuming day" in other.stdout
        runs = json.loads(
            batcher(
                ["runs", "--json", "--state", "state.db"], cwd=tmp_path, base_url=emu.base_url
            ).stdout
        )
    assert {r["run"]: r["counts"] for r in runs} == {"night": {"done": 2}, "day": {"done": 2}}


def test_resume_of_a_named_run_leaves_the_others(tmp_path: Path) -> None:
    with running_emulator(EmulatorConfig(speed=0.02, token=TOKEN)) as emu:
        recorded(tmp_path, emu.base_url, "night", "day")
        one = batcher(
            ["resume", "day", "--state", "state.db", "--max-cost", "100", *FAST],
            cwd=tmp_path,
            base_url=emu.base_url,
        )
        assert one.returncode == 0, one.stdout + one.stderr
        runs = json.loads(
            batcher(
                ["runs", "--json", "--state", "state.db"], cwd=tmp_path, base_url=emu.base_url
            ).stdout
        )
        nobody = batcher(
            ["resume", "dusk", "--state", "state.db"], cwd=tmp_path, base_url=emu.base_url
        )
    assert {r["run"]: r["counts"] for r in runs} == {"night": {"pending": 2}, "day": {"done": 2}}
    assert nobody.returncode == 2 and "night" in nobody.stderr
