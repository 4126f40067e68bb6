"""One account of money (issue 12): `plan`, `run`, `status`, `runs`, the report and the
`--notify` summary say the same thing: estimated, spent (the API's reported cost where it
said one), sent and may be billed, and failed generations apart (not billed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batcher.emulator import EmulatorConfig
from batcher.emulator.faults import parse_faults
from batcher.models import Money
from tests.emulator_server import running_emulator
from tests.test_e2e import FAST, TOKEN, batcher

pytestmark = pytest.mark.e2e
JOBS = "name: night\njobs:\n" + "".join(
    f"  - name: c{i}\n    prompt: clip {i}\n    duration: 5\n" for i in range(3)
)


def test_every_command_tells_the_same_account(tmp_path: Path) -> None:
    faults = parse_faults(["fail:1@generate#1"])  # every job's first render fails
    with running_emulator(EmulatorConfig(speed=0.02, token=TOKEN, faults=faults)) as emu:
        (tmp_path / "jobs.yaml").write_text(JOBS)
        state = ["--state", "state.db"]

        def cli(*args: str) -> str:
            done = batcher([*args, *state], cwd=tmp_path, base_url=emu.base_url)
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout

        before = json.loads(cli("plan", "jobs.yaml", "--json"))["money"]
        run = cli(
            "run", "jobs.yaml", "--out", "out", "--report", "--notify", "cat > heard.json", *FAST
        )
        status = json.loads(cli("status", "--json"))
        runs = json.loads(cli("runs", "--json"))
        status_text, runs_text = cli("status"), cli("runs")
        plan_text = cli("plan", "jobs.yaml")
        after = json.loads(cli("plan", "jobs.yaml", "--json"))["money"]
    money = Money.of_json(status["runs"][0]["money"])
    assert before == Money(estimated=money.estimated).as_json()  # nothing spent yet
    assert money.estimated > 0 and money.spent == pytest.approx(money.estimated)
    assert money.failed == pytest.approx(money.estimated) and money.sent == 0
    assert runs[0]["money"] == status["runs"][0]["money"] == status["money"] == after
    heard = json.loads((tmp_path / "heard.json").read_text())
    assert heard["runs"][0]["money"] == status["runs"][0]["money"]
    said = money.text()
    assert "failed generations" in said and "not billed" in said
    assert f"money: {said}" in run
    assert f"money: {said}" in status_text and f"money: {said}" in runs_text
    assert f"so far: {said}" in plan_text
    page = (tmp_path / "out" / "night" / "report.html").read_text()
    assert f"money: {said}" in page
