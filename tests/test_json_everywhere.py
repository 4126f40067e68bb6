"""`--json` on the commands that report something (issue 12): validate, run, resume,
cancel, retry give one JSON document scripts can read, with the same exit codes as the
text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_acting_runs import batcher as plain_batcher
from tests.test_acting_runs import states, two_runs

pytestmark = pytest.mark.e2e


def test_validate_json_lists_each_file_with_its_jobs_or_problems(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text("name: n\njobs:\n  - prompt: a fox\n  - prompt: an owl\n")
    (tmp_path / "bad.yaml").write_text("name: n\njobs:\n  - prompt: a fox\n    duraton: 5\n")
    done = plain_batcher("validate", "--json", "good.yaml", "bad.yaml", cwd=tmp_path)
    assert done.returncode == 2
    report = json.loads(done.stdout)
    good, bad = report["files"]
    assert good == {"file": "good.yaml", "ok": True, "jobs": 2, "problems": []}
    assert bad["ok"] is False and bad["jobs"] is None
    [problem] = [p for p in bad["problems"] if p["severity"] == "error"]
    assert (problem["line"], problem["col"]) == (4, 5) and "duration" in problem["what"]
    assert set(problem) == {"file", "line", "col", "where", "what", "severity"}


def test_cancel_and_retry_json_say_what_moved(tmp_path: Path) -> None:
    path = two_runs(tmp_path)
    cancel = plain_batcher("cancel", "day", "--json", "--state", str(path), cwd=tmp_path)
    assert cancel.returncode == 0, cancel.stderr
    moved = json.loads(cancel.stdout)
    assert [(c["key"], c["was"], c["now"]) for c in moved["cancelled"]] == [
        ("day/job-0", "pending", "cancelled"),
        ("day/job-1", "pending", "cancelled"),
    ]
    retry = plain_batcher(
        "retry", "day", "--cancelled", "--json", "--state", str(path), cwd=tmp_path
    )
    assert retry.returncode == 0, retry.stderr
    back = json.loads(retry.stdout)
    assert [(r["key"], r["now"]) for r in back["retried"]] == [
        ("day/job-0", "pending"),
        ("day/job-1", "pending"),
    ]
    assert back["runs"] == ["day"]
    assert {s for _, s in states(path)} == {"pending"}
    refused = plain_batcher("cancel", "--json", "--state", str(path), cwd=tmp_path)
    assert refused.returncode == 2 and refused.stdout == ""  # errors stay on stderr


def test_run_json_prints_one_summary_on_stdout_and_the_rest_on_stderr(tmp_path: Path) -> None:
    from batcher.emulator import EmulatorConfig
    from tests.emulator_server import running_emulator
    from tests.test_e2e import FAST, TOKEN, batcher

    (tmp_path / "jobs.yaml").write_text("name: night\njobs:\n  - prompt: a fox\n  - prompt: owl\n")
    state = ["--state", "s.db"]
    with running_emulator(EmulatorConfig(speed=0.02, token=TOKEN)) as emu:
        run = batcher(
            ["run", "jobs.yaml", *state, "--out", "out", "--json", *FAST],
            cwd=tmp_path,
            base_url=emu.base_url,
        )
        assert run.returncode == 0, run.stderr
        status = json.loads(
            batcher(["status", "--json", *state], cwd=tmp_path, base_url=emu.base_url).stdout
        )
        again = batcher(["resume", *state, "--json"], cwd=tmp_path, base_url=emu.base_url)
        refused = batcher(
            ["run", "jobs.yaml", "--state", "fresh.db", "--json", *FAST],
            cwd=tmp_path,
            base_url=emu.base_url,
            token="not-the-token",
        )
    [line] = run.stdout.splitlines()  # one document, one line: nothing else on stdout
    summary = json.loads(line)
    assert summary["ended"] == "done" and summary["exit_code"] == 0
    assert summary["runs"] == status["runs"] and summary["runs"][0]["counts"] == {"done": 2}
    assert "money: $" in run.stderr and "outputs of night" in run.stderr
    assert again.returncode == 0 and "nothing to resume" in again.stderr  # not on stdout
    assert json.loads(again.stdout)["runs"] == status["runs"]
    assert refused.returncode == 3
    told = json.loads(refused.stdout)
    assert told["ended"] == "auth" and told["exit_code"] == 3 and "token" in told["error"]
    assert summary["runs"][0]["money"]["sent_usd"] == 0.0  # a float, as every money figure
    assert isinstance(summary["runs"][0]["money"]["sent_usd"], float)


def test_run_json_says_so_when_it_stops_before_any_run_is_recorded(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("name: n\njobs:\n  - prompt: a fox\n    duraton: 5\n")
    (tmp_path / "good.yaml").write_text("name: n\njobs:\n  - prompt: a fox\n")
    no_token = plain_batcher("run", "good.yaml", "--json", "--state", "s.db", cwd=tmp_path)
    told = json.loads(no_token.stdout)
    assert no_token.returncode == 2 and told["exit_code"] == 2 and told["ended"] == "error"
    assert "RUNCOMFY_API_TOKEN" in told["error"] and told["runs"] == []
    unchecked = plain_batcher("run", "bad.yaml", "--json", "--state", "s.db", cwd=tmp_path)
    assert "duraton" in unchecked.stderr  # the file's problems come first, token or not
    bad = plain_batcher("run", "bad.yaml", "--emulator", "--json", "--state", "s.db", cwd=tmp_path)
    told = json.loads(bad.stdout)
    assert bad.returncode == 2 and told["ended"] == "error" and "problem" in told["error"]
    assert "duraton" in bad.stderr  # the problems, where and what, as without --json
    [problem] = told["problems"]
    assert (problem["line"], problem["col"]) == (4, 5) and "duration" in problem["what"]
