"""What a user reads the morning after (issue 12): every plain line says when, and an
outage is shown as it happens and when it ends, not hidden behind a frozen panel."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from batcher.emulator import EmulatorConfig, parse_faults
from batcher.pacing import Breaker, Outage
from batcher.retry import Backoff
from tests.emulator_server import running_emulator
from tests.test_e2e import FAST, TOKEN, batcher

STAMP = re.compile(r"^\d\d:\d\d:\d\d \S")


def test_the_back_off_says_when_trouble_begins_lasts_and_ends() -> None:
    now = [1000.0]
    heard: list[Outage] = []
    b = Breaker(
        clock=lambda: now[0],
        sleep=None,  # type: ignore[arg-type]
        backoff=Backoff(base=1, cap=8),
        rng=random.Random(0),
        report=heard.append,
        remind=30.0,
    )
    b.success()
    assert heard == []  # nothing to say while all is well
    b.failure(cause="API unreachable")
    assert heard == []  # one failure may be a blip: not told yet
    now[0] = b.open_until
    b.failure(cause="API unreachable")  # the next round fails too: an outage since the first
    b.failure(cause="API unreachable")  # soon after: no second line
    assert [o.kind for o in heard] == ["outage"] and heard[0].since == 1000.0
    assert heard[0].pause > 0
    now[0] += 31
    b.failure(cause="rate-limited (429)", retry_after=20)
    assert [o.kind for o in heard] == ["outage", "still"] and heard[1].since == 1000.0
    assert heard[1].pause == pytest.approx(20)
    now[0] += 25
    b.success()
    b.success()
    assert [o.kind for o in heard] == ["outage", "still", "recovered"]
    assert heard[2].since == 1000.0


@pytest.mark.e2e
def test_plain_lines_carry_the_time_and_an_outage_shows_with_its_end(tmp_path: Path) -> None:
    faults = parse_faults(["5xx:1@result#2"])  # every render's first two polls fail
    with running_emulator(EmulatorConfig(speed=0.02, token=TOKEN, faults=faults)) as emu:
        (tmp_path / "jobs.yaml").write_text(
            "name: night\njobs:\n  - name: fox\n    prompt: a red fox\n    duration: 5\n"
        )
        run = batcher(
            ["run", "jobs.yaml", "--state", "state.db", "--out", "out", *FAST],
            cwd=tmp_path,
            base_url=emu.base_url,
        )
    assert run.returncode == 0, run.stdout + run.stderr
    events = [line for line in run.stdout.splitlines() if STAMP.match(line)]
    kinds = [line.split()[1] for line in events]
    assert "outage" in kinds and "recovered" in kinds and "done" in kinds, run.stdout
    assert kinds[0] == "start" and "night: 1 job to do of 1; money: $0.00 spent" in events[0]
    assert kinds.index("outage") < kinds.index("recovered") < kinds.index("done")
    outage = events[kinds.index("outage")]
    assert "API failing" in outage and "since" in outage and "in flight" in outage
    assert "answering again" in events[kinds.index("recovered")]
    # ... and the morning's `batcher log` tells it in its place, with times.
    log = batcher(["log", "--state", "state.db"], cwd=tmp_path, base_url="http://127.0.0.1:9")
    assert log.returncode == 0, log.stderr
    told = [line for line in log.stdout.splitlines() if "(night)" in line]
    assert [line.split("  ")[2].split(":")[0] for line in told] == ["start", "outage", "recovered"]
    assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", line) for line in told)
