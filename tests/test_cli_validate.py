"""`batcher validate` through the real CLI: the bad-jobs folder, unusable files, good files.

tests/bad_jobs/expected.txt is the exact stderr of `batcher validate *.yaml` run in that
folder: every problem line (FILE:LINE:COL: where: what) followed by each file's summary.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from batcher.cli import main

ROOT = Path(__file__).resolve().parent.parent
BAD = ROOT / "tests" / "bad_jobs"
BAD_FILES = sorted(p.name for p in BAD.glob("*.yaml"))
EXPECTED = (BAD / "expected.txt").read_text(encoding="utf-8")


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batcher", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def blocks() -> dict[str, list[str]]:
    """expected.txt split per job file: its problem lines, then its summary line."""
    out: dict[str, list[str]] = {}
    current: list[str] = []
    for line in EXPECTED.splitlines():
        current.append(line)
        name, _, rest = line.partition(": ")
        summary = rest.endswith(("error(s)", "warning(s)"))
        if summary and name.endswith(".yaml") and ":" not in name:
            out[name] = current
            current = []
    assert not current, f"expected.txt ends without a summary line: {current}"
    return out


def test_there_are_at_least_25_distinct_bad_files() -> None:
    assert len(BAD_FILES) >= 25
    assert sorted(blocks()) == BAD_FILES  # every file has its block, no block is stale


def test_every_bad_file_through_the_real_cli() -> None:
    done = run_cli("validate", *BAD_FILES, cwd=BAD)
    assert done.returncode == 2
    assert done.stdout == ""  # no file passed
    assert "Traceback" not in done.stderr
    assert done.stderr == EXPECTED


@pytest.mark.parametrize("name", BAD_FILES)
def test_each_bad_file_alone(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BAD)
    result = CliRunner().invoke(main, ["validate", name])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.splitlines() == blocks()[name]
    errors = [line for line in blocks()[name] if ": warning: " not in line][:-1]
    assert errors, "a bad file must have at least one error, not only warnings"


def test_plan_refuses_a_bad_file_with_the_same_lines() -> None:
    done = run_cli("plan", "shot-sum.yaml", cwd=BAD)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        "shot-sum.yaml:6:5: jobs[0].multi_prompt: shot durations sum to 9 s but duration is 12 s",
        "1 error(s); nothing was submitted",
    ]
    assert done.stdout == ""


def test_unusable_files_each_one_line(tmp_path: Path) -> None:
    (tmp_path / "folder.yaml").mkdir()
    (tmp_path / "empty.yaml").write_bytes(b"")
    (tmp_path / "blank.yaml").write_bytes(b"  \n\n")
    (tmp_path / "binary.yaml").write_bytes(b"jobs:\x00\x01\x02")
    (tmp_path / "latin1.yaml").write_bytes("jobs:\n  - prompt: caf\xe9\n".encode("latin-1"))
    with open(tmp_path / "huge.yaml", "wb") as fh:  # sparse: the size is refused unread
        fh.truncate(65 * 1024 * 1024)
    (tmp_path / "comments.yaml").write_text("# nothing but a comment\n", encoding="utf-8")
    names = ["missing.yaml", "folder.yaml", "empty.yaml", "blank.yaml", "binary.yaml"]
    names += ["latin1.yaml", "huge.yaml", "comments.yaml"]
    done = run_cli("validate", *names, cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        "batcher: error: missing.yaml: no such file",
        "batcher: error: folder.yaml: is a directory, not a file",
        "batcher: error: empty.yaml: file is empty",
        "batcher: error: blank.yaml: file is empty",
        "batcher: error: binary.yaml: binary file (contains NUL bytes), expected UTF-8 text",
        "batcher: error: latin1.yaml: not UTF-8 text (invalid byte 0xe9 on line 2)",
        "batcher: error: huge.yaml: file is too large (65.0 MiB; the limit is 64.0 MiB)",
        "comments.yaml:1:1: no YAML content (only comments or blank lines): add a `jobs:` list",
        "comments.yaml: 1 error(s)",
    ]


def test_plan_on_a_missing_file_is_one_line(tmp_path: Path) -> None:
    done = run_cli("plan", "nope.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == "batcher: error: nope.yaml: no such file\n"


def test_demo_and_examples_validate() -> None:
    files = [
        "jobs/demo.yaml",
        *sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("jobs/examples/*.yaml")),
    ]
    assert len(files) >= 5
    done = run_cli("validate", *files)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # not even a warning
    assert done.stdout.splitlines()[0] == "jobs/demo.yaml: ok, 6 jobs"
    assert all(": ok, " in line for line in done.stdout.splitlines())
    assert len(done.stdout.splitlines()) == len(files)


def test_one_bad_file_among_good_ones_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "good.yaml").write_text("jobs:\n  - prompt: A red fox\n", encoding="utf-8")
    (tmp_path / "bad.yaml").write_text(
        "jobs:\n  - prompt: A red fox\n    cfg: 1\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["validate", "good.yaml", "bad.yaml"])
    assert result.exit_code == 2
    assert result.stdout == "good.yaml: ok, 1 job\n"
    assert result.stderr.splitlines() == [
        "bad.yaml:3:5: jobs[0].cfg: unknown key (did you mean 'cfg_scale'?)",
        "bad.yaml: 1 error(s)",
    ]


def test_warnings_do_not_fail_validation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    long = "a" * 2501
    text = f"vars:\n  spare: x\njobs:\n  - prompt: {long}\n"
    (tmp_path / "warn.yaml").write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["validate", "warn.yaml"])
    assert result.exit_code == 0
    assert result.stdout == "warn.yaml: ok, 1 job, 2 warning(s)\n"
    assert result.stderr.splitlines() == [
        "warn.yaml:2:10: warning: vars.spare: var 'spare' is never used",
        "warn.yaml:4:13: warning: jobs[0].prompt: prompt is 2501 characters; Kling's limit is 2500",
    ]


def test_validate_needs_a_file() -> None:
    result = CliRunner().invoke(main, ["validate"])
    assert result.exit_code == 2
    assert "Missing argument" in result.stderr
