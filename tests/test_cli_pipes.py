"""A reader that stops early (`batcher plan big.yaml | head -1`) ends batcher quietly.

Each command runs in a subprocess whose stdout is a real pipe; the test reads one line and
closes its end while batcher is still writing. Expected, as with Unix tools: nothing on
stderr (no "internal error", no traceback, no "Exception ignored") and exit 141
(128 + SIGPIPE, what a shell reports for `yes | head -1`).

A command that prints its whole output in one write (a JSON or CSV document) may exit 0:
CPython's buffered stdout reports a write cut short by the closing reader as a short
write, not as an error, so nothing in the process ever sees the broken pipe.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from batcher.jobfile import load_jobfile
from batcher.models import JobState
from batcher.store import Store

pytestmark = pytest.mark.e2e

# 3,000 jobs: every command below writes well over a pipe's 64 KiB buffer, so batcher is
# still writing (blocked on the full pipe) when the reader closes its end.
BIG = """\
name: big
defaults: {duration: 5}
jobs:
  - name: fox
    prompt: "A red fox trotting through fresh snow, long lens, morning light"
    sweep:
      cfg_scale: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
      aspect_ratio: ["16:9", "9:16", "1:1"]
    repeat: 100
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A job file of 3,000 jobs and a state where every one of them failed (for status)."""
    tmp = tmp_path_factory.mktemp("pipes")
    (tmp / "big.yaml").write_text(BIG, encoding="utf-8")
    jf = load_jobfile(tmp / "big.yaml")
    with Store.open(tmp / "state.db") as store:
        store.upsert_run("big", model=jf.model, job_file="big.yaml", out_dir="out", options={})
        store.sync_jobs("big", jf.jobs)
        for job in store.jobs(["big"]):
            store.transition(job.id, JobState.PENDING, JobState.FAILED, error="made up")
    return tmp


def user_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a user's shell: stdout block-buffered, no debug tracebacks."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", "BATCHER_DEBUG")}
    return env | extra


def first_line_then_close(args: list[str], cwd: Path) -> tuple[bytes, int, bytes]:
    """Run batcher, read one line of its stdout, close the pipe; (line, exit code, stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "batcher", *args],
        cwd=cwd,
        env=user_env({"BATCHER_STATE": str(cwd / "state.db")}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read()
    proc.stderr.close()
    return line, proc.wait(timeout=60), stderr


LINE_BY_LINE = {141}
ONE_WRITE = {0, 141}  # see the module docstring


@pytest.mark.parametrize(
    ("args", "codes"),
    [
        pytest.param(args, codes, id=" ".join(args))
        for args, codes in [
            (["plan", "big.yaml"], LINE_BY_LINE),
            (["status"], LINE_BY_LINE),
            (["plan", "--json", "big.yaml"], ONE_WRITE),
            (["status", "--json"], ONE_WRITE),
            (["report", "--format", "csv"], ONE_WRITE),
            (["report", "--format", "jsonl"], ONE_WRITE),
        ]
    ],
)
def test_a_reader_that_stops_early_ends_batcher_quietly(
    work: Path, args: list[str], codes: set[int]
) -> None:
    line, code, stderr = first_line_then_close(args, work)
    assert line  # batcher did start writing
    assert stderr.decode() == ""
    assert code in codes


def test_a_reader_gone_before_the_first_line_ends_batcher_quietly(work: Path) -> None:
    """The pipe is closed before batcher writes at all: its first write or flush meets it."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "batcher", "validate", "big.yaml"],
            cwd=work,
            env=user_env({"BATCHER_STATE": str(work / "state.db")}),
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert done.stderr.decode() == ""
    assert done.returncode == 141


SPILL = """\
import sys
from batcher.cli import main

@main.command("spill")
def spill() -> None:
    sys.stdout.write("left in the buffer until the process ends\\n")

main(["spill"])
"""


def test_output_left_in_the_buffer_meets_a_closed_pipe_quietly(tmp_path: Path) -> None:
    """A command that prints without flushing: the closed pipe is met when batcher ends.

    Without the group's final flush, the interpreter meets it at exit instead, prints
    "Exception ignored ... BrokenPipeError" and exits 120.
    """
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-c", SPILL],
            cwd=tmp_path,
            env=user_env({"PYTHONPATH": str(Path(__file__).parents[1])}),
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert done.stderr.decode() == ""
    assert done.returncode == 141
