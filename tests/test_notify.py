"""`--notify CMD` (and `notify:` in the job file): CMD runs once when a run ends, for any
reason, with a JSON summary on its stdin that agrees with `status --json`; `run --report`
and `--notify` are kept for `resume` (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batcher.emulator import EmulatorConfig
from tests.emulator_server import running_emulator
from tests.test_e2e import FAST, TOKEN, batcher

pytestmark = pytest.mark.e2e
JOBS = "name: night\njobs:\n" + "".join(
    f"  - name: c{i}\n    prompt: clip {i}\n    duration: 5\n" for i in range(3)
)
HEARD = "cat >> heard.jsonl"  # one JSON document per call, one line each


def heard(tmp: Path) -> list[dict]:
    path = tmp / "heard.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_notify_fires_once_with_a_summary_that_matches_status(tmp_path: Path) -> None:
    with running_emulator(EmulatorConfig(speed=0.02, token=TOKEN)) as emu:
        (tmp_path / "jobs.yaml").write_text(JOBS)
        state = ["--state", "state.db"]
        run = batcher(
            ["run", "jobs.yaml", *state, "--out", "out", "--notify", HEARD, *FAST],
            cwd=tmp_path,
            base_url=emu.base_url,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        status = json.loads(
            batcher(["status", "--json", *state], cwd=tmp_path, base_url=emu.base_url).stdout
        )
    [summary] = heard(tmp_path)
    assert summary["exit_code"] == 0 and summary["ended"] == "done"
    assert summary["runs"] == status["runs"]
    assert summary["runs"][0]["counts"] == {"done": 3}
    assert summary["duration_s"] > 0 and summary["report"] is None
    assert summary["state"].endswith("state.db")


def test_the_job_files_notify_and_report_are_kept_for_resume(tmp_path: Path) -> None:
    with running_emulator(EmulatorConfig(speed=0.02, token=TOKEN)) as emu:
        (tmp_path / "jobs.yaml").write_text(f"notify: '{HEARD}'\n" + JOBS)
        state = ["--state", "state.db"]
        held = batcher(
            ["run", "jobs.yaml", *state, "--out", "out", "--max-cost", "0.01", "--report", *FAST],
            cwd=tmp_path,
            base_url=emu.base_url,
        )
        assert f"notify: jobs.yaml asks to run `{HEARD}` when night ends" in held.stdout
        [first] = heard(tmp_path)
        assert first["ended"] == "budget" and first["exit_code"] == held.returncode
        resumed = batcher(
            ["resume", *state, "--max-cost", "100", *FAST], cwd=tmp_path, base_url=emu.base_url
        )
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    first, second = heard(tmp_path)
    assert second["ended"] == "done" and second["runs"][0]["counts"] == {"done": 3}
    report = tmp_path / "out" / "night" / "report.html"
    assert second["report"] == str(report) and report.exists()  # --report, kept


def test_a_failing_notify_command_is_a_warning_not_a_new_outcome(tmp_path: Path) -> None:
    with running_emulator(EmulatorConfig(speed=0.02, token=TOKEN)) as emu:
        (tmp_path / "jobs.yaml").write_text(JOBS)
        run = batcher(
            ["run", "jobs.yaml", "--state", "s.db", "--out", "out", "--notify", "exit 7", *FAST],
            cwd=tmp_path,
            base_url=emu.base_url,
        )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "notify" in run.stderr and "7" in run.stderr


def test_the_notify_command_never_sees_the_token(tmp_path: Path) -> None:
    with running_emulator(EmulatorConfig(speed=0.02, token=TOKEN)) as emu:
        (tmp_path / "jobs.yaml").write_text(JOBS)
        run = batcher(
            [
                "run",
                "jobs.yaml",
                "--state",
                "s.db",
                "--out",
                "out",
                *FAST,
                "--notify",
                "env > seen.env; cat > summary.json",
            ],
            cwd=tmp_path,
            base_url=emu.base_url,
        )
    assert run.returncode == 0, run.stdout + run.stderr
    assert TOKEN not in (tmp_path / "seen.env").read_text()
    assert TOKEN not in (tmp_path / "summary.json").read_text()
    assert "RUNCOMFY_BASE_URL" in (tmp_path / "seen.env").read_text()  # the rest is passed on


def test_notify_hears_a_run_that_could_not_start(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(JOBS)
    run = batcher(
        ["run", "jobs.yaml", "--state", "s.db", "--out", "out", "--notify", HEARD, *FAST],
        cwd=tmp_path,
        base_url="http://127.0.0.1:9",  # nothing listens there
    )
    assert run.returncode == 2, run.stdout + run.stderr
    [summary] = heard(tmp_path)
    assert summary["ended"] == "error" and summary["exit_code"] == 2
    assert "127.0.0.1:9" in summary["error"]
    assert summary["runs"][0]["counts"] == {"pending": 3}
