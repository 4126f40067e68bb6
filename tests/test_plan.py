"""`batcher plan`: rows, marks, totals, the JSON document and the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from batcher.cli import jobs as cli_jobs
from batcher.cli import main
from batcher.jobfile import JobFile, load_jobfile, loads_jobfile
from batcher.jobfile.plan import job_entry, plain_table, plan_document, plan_rows, summary, totals

TEXT = """
name: p
prices: {usd_per_second: 0.1, usd_per_second_with_sound: 0.2}
concurrency: 2
jobs:
  - {name: a, prompt: A, duration: 10}
  - {name: b, prompt: B, sound: false}
  - name: c
    prompt: C
    duration: 3
    sweep: {aspect_ratio: ["16:9", "1:1"]}
"""


@pytest.fixture
def jf() -> JobFile:
    return loads_jobfile(TEXT, path=Path("p.yaml"))


def test_rows_take_schema_defaults_for_duration_and_sound(jf: JobFile) -> None:
    rows = plan_rows(jf, {})
    assert [(r.job.key, r.seconds, r.sound, r.mark) for r in rows] == [
        ("p/a", 10, True, "new"),
        ("p/b", 5, False, "new"),
        ("p/c/aspect_ratio=16:9", 3, True, "new"),
        ("p/c/aspect_ratio=1:1", 3, True, "new"),
    ]
    assert [r.job.cost for r in rows] == pytest.approx([2.0, 0.5, 0.6, 0.6])


def test_totals_split_what_still_needs_rendering(jf: JobFile) -> None:
    marks = {"p/a": "done", "p/b": "changed", "p/c/aspect_ratio=16:9": "failed"}
    t = totals(plan_rows(jf, marks))
    assert (t.jobs, t.seconds, t.cost) == (4, 21, pytest.approx(3.7))
    assert (t.render_jobs, t.render_seconds, t.render_cost) == (2, 8, pytest.approx(1.1))
    assert t.by_mark == {"changed": 1, "done": 1, "failed": 1, "new": 1}
    assert summary(t) == [
        "4 jobs (1 changed, 1 done, 1 failed, 1 new), 21 s of video, estimated $3.70",
        "to render: 2 jobs, 8 s, estimated $1.10",
    ]


def test_json_document(jf: JobFile) -> None:
    doc = plan_document(jf, plan_rows(jf, {"p/a": "done"}))
    assert doc["run"] == "p" and doc["file"] == "p.yaml"
    assert doc["price"] == {
        "unit": "second",
        "usd_per_second": 0.1,
        "usd_per_second_with_sound": 0.2,
    }
    assert doc["options"] == {"concurrency": 2}
    first = doc["jobs"][0]
    assert first["key"] == "p/a" and first["mark"] == "done" and first["output_name"] == "a"
    assert first["payload"] == {"prompt": "A", "duration": 10}
    assert len(first["fingerprint"]) == 64 and first["source"] == "p.yaml:6"
    assert doc["jobs"][2]["sweep"] == {"aspect_ratio": "16:9"}
    assert doc["totals"] == {
        "jobs": 4,
        "seconds": 21,
        "cost": pytest.approx(3.7),
        "by_mark": {"done": 1, "new": 3},
        "to_render": {"jobs": 3, "seconds": 11, "cost": pytest.approx(1.7)},
    }
    assert json.loads(json.dumps(doc)) == doc


def test_plain_table_is_aligned(jf: JobFile) -> None:
    lines = plain_table(plan_rows(jf, {}))
    assert lines[0].split() == ["KEY", "OUTPUT", "SECONDS", "SOUND", "COST", "MARK"]
    assert lines[1].split() == ["p/a", "a", "10", "yes", "$2.000", "new"]
    assert len({line.index("$") for line in lines[1:]}) == 1  # one cost column


def test_cli_plan_json_does_not_create_the_state(tmp_path: Path) -> None:
    job = tmp_path / "p.yaml"
    job.write_text(TEXT, encoding="utf-8")
    state = tmp_path / "state" / "batcher.db"
    result = CliRunner().invoke(main, ["plan", str(job), "--json", "--state", str(state)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [j["mark"] for j in doc["jobs"]] == ["new"] * 4
    assert doc["totals"]["to_render"]["jobs"] == 4
    assert not state.exists() and not state.parent.exists()


def test_cli_plan_text_when_not_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("p.yaml").write_text(TEXT + "vars: {unused: x}\n", encoding="utf-8")
    monkeypatch.setenv("BATCHER_STATE", str(tmp_path / "none.db"))
    result = CliRunner().invoke(main, ["plan", "p.yaml"])
    assert result.exit_code == 0, result.output
    out = result.stdout.splitlines()
    assert out[0] == "run p  model kling/kling-3.0/pro/text-to-video"
    assert out[1].split()[0] == "KEY" and len(out) == 1 + 1 + 4 + 2
    assert out[-1] == "to render: 4 jobs, 21 s, estimated $3.70"
    assert result.stderr == "p.yaml:12:16: warning: vars.unused: var 'unused' is never used\n"


def test_cli_plan_uses_the_store_marks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Path] = []

    def fake_marks(state_path: Path, jobs: object) -> dict[str, str]:
        seen.append(state_path)
        return {"p/a": "done"}

    monkeypatch.setattr(cli_jobs, "_marks", fake_marks)
    job = tmp_path / "p.yaml"
    job.write_text(TEXT, encoding="utf-8")
    result = CliRunner().invoke(main, ["plan", str(job), "--json", "--state", "s.db"])
    assert result.exit_code == 0, result.output
    assert seen == [Path("s.db")]
    assert json.loads(result.stdout)["totals"]["by_mark"] == {"done": 1, "new": 3}


def test_rich_table_for_terminals(jf: JobFile, capsys: pytest.CaptureFixture[str]) -> None:
    cli_jobs._rich_table(plan_rows(jf, {}), "p  (model)", ["total line"])
    out = capsys.readouterr().out
    assert "p/a" in out and "total line" in out and "$2.000" in out


def test_plan_json_streams_the_same_document(tmp_path: Path) -> None:
    """Issue 10: `plan --json` is written a job at a time; it reads back as the document."""
    from batcher.jobfile.plan import plan_json

    (tmp_path / "p.yaml").write_text(
        "name: p\njobs:\n  - name: a\n    prompt: a fox\n    sweep: {cfg_scale: [0.3, 0.5]}\n"
    )
    jf = load_jobfile(tmp_path / "p.yaml")
    rows = plan_rows(jf, {})
    pieces = list(plan_json(jf, rows, {"money": {"spent_usd": 0}}))
    assert len(pieces) == 2 + len(rows)
    assert json.loads("".join(pieces)) == plan_document(jf, rows, {"money": {"spent_usd": 0}})
    empty = plan_json(jf, [], None)
    assert json.loads("".join(empty))["jobs"] == []


def test_a_plan_line_is_the_job_entry_as_json_would_write_it(tmp_path: Path) -> None:
    from batcher.jobfile.plan import _ENCODER, job_line

    (tmp_path / "odd.yaml").write_text(
        'name: p\njobs:\n  - name: "fox \\"quoted\\" é 雪 \\t tab"\n'
        '    prompt: "line\\nbreak </script> \\u2028"\n'
        "    sweep: {cfg_scale: [0.3, 1], sound: [true, false]}\n    repeat: 2\n",
        encoding="utf-8",
    )
    jf = load_jobfile(tmp_path / "odd.yaml")
    for r in plan_rows(jf, {jf.jobs[0].key: "done"}):
        assert job_line(r) == _ENCODER.encode(job_entry(r))
