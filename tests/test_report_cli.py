"""`batcher report` end to end: the real CLI in a subprocess, on a state database made by
`batcher run --emulator` (real MP4 files), for every format and every error."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest
from jsonschema import Draft202012Validator

from batcher.report import CSV_COLUMNS, manifest_schema

pytestmark = pytest.mark.e2e

FIRST = """\
name: first
jobs:
  - name: one
    prompt: "A lighthouse in fog"
    duration: 3
"""
SWEEP = """\
name: tuscany
defaults:
  duration: 3
  sound: false
vars:
  camera: "anamorphic lenses"
jobs:
  - name: fox
    prompt: "A red fox, {camera}, {{braces}} <script>window.__pwned=1</script> 雪"
    sweep:
      cfg_scale: [0.8, 0.3, 0.5]
      aspect_ratio: ["16:9", "9:16"]
    repeat: 2
  - name: terrace shots
    prompt: "Anniversary dinner, \\"quoted\\", with commas\\nand a newline"
    duration: 8
    multi_prompt:
      - {prompt: "Wide establishing shot", duration: 4}
      - {prompt: "Slow dolly-in", duration: 4}
"""
N_SWEEP = 13


@dataclass
class Result:
    code: int
    out: str
    err: str


def batcher(*args: str | Path, cwd: Path) -> Result:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHER_", "RUNCOMFY_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "batcher", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@dataclass
class Workspace:
    root: Path
    state: Path

    def report(self, *args: str | Path) -> Result:
        return batcher("report", *args, "--state", self.state, cwd=self.root)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("cli")
    (root / "first.yaml").write_text(FIRST, encoding="utf-8")
    (root / "tuscany.yaml").write_text(SWEEP, encoding="utf-8")
    state = root / "state" / "b.db"
    for name in ("first.yaml", "tuscany.yaml"):  # tuscany is the newest run
        done = batcher("run", name, "--emulator", "--no-progress", "--state", state,
                       "--out", "outputs", cwd=root)  # fmt: skip
        assert done.code == 0, done.err
    return Workspace(root, state)


def test_default_is_an_html_gallery_of_the_newest_run_in_its_folder(ws: Workspace) -> None:
    result = ws.report()
    assert result.code == 0, result.err
    page = ws.root / "outputs" / "tuscany" / "report.html"
    assert str(page) in result.out or "outputs/tuscany/report.html" in result.out
    html = page.read_text(encoding="utf-8")
    sources = re.findall(r'<video [^>]*src="([^"]+)"', html)
    assert len(sources) == N_SWEEP
    assert all((page.parent / unquote(src)).is_file() for src in sources)
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    assert "<script>window.__pwned" not in html


def test_html_elsewhere_points_back_at_the_videos(ws: Workspace) -> None:
    result = ws.report("first", "-o", "reports/")  # a new folder
    assert result.code == 0, result.err
    html = (ws.root / "reports" / "report.html").read_text(encoding="utf-8")
    (src,) = re.findall(r'<video [^>]*src="([^"]+)"', html)
    assert src.startswith("../outputs/first/")
    assert (ws.root / "reports" / unquote(src)).is_file()


def test_jsonl_goes_to_stdout_and_every_line_fits_the_schema(ws: Workspace) -> None:
    result = ws.report("--format", "jsonl")
    assert result.code == 0, result.err
    lines = [json.loads(line) for line in result.out.splitlines()]
    assert len(lines) == N_SWEEP
    validator = Draft202012Validator(manifest_schema())
    assert [e.message for line in lines for e in validator.iter_errors(line)] == []
    assert {line["state"] for line in lines} == {"done"}
    for line in lines:
        (out,) = line["outputs"]
        assert Path(line["out_dir"], out["path"]).stat().st_size == out["size"]
        assert line["request_id"] and line["timings"]["finished_at"].endswith("Z")


def test_csv_to_a_file_reads_back(ws: Workspace) -> None:
    result = ws.report("tuscany", "--format", "csv", "-o", "m.csv")
    assert result.code == 0, result.err
    assert "m.csv" in result.out
    with open(ws.root / "m.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == N_SWEEP
    shots = next(r for r in rows if r["name"] == "terrace shots")
    assert shots["prompt"] == 'Anniversary dinner, "quoted", with commas\nand a newline'
    assert [s["duration"] for s in json.loads(shots["shots"])] == [4, 4]


def test_yaml_export_plans_as_all_done_here_and_identical_elsewhere(ws: Workspace) -> None:
    result = ws.report("--format", "yaml", "-o", "again.yaml")
    assert result.code == 0, result.err
    same = batcher("plan", "again.yaml", "--state", ws.state, "--json", cwd=ws.root)
    assert same.code == 0, same.err
    plan = json.loads(same.out)
    assert plan["run"] == "tuscany" and len(plan["jobs"]) == N_SWEEP
    assert {job["mark"] for job in plan["jobs"]} == {"done"}
    original = batcher("plan", "tuscany.yaml", "--state", "fresh.db", "--json", cwd=ws.root)
    fresh = batcher("plan", "again.yaml", "--state", "fresh.db", "--json", cwd=ws.root)
    assert original.code == fresh.code == 0, fresh.err

    def view(out: str) -> list[tuple]:
        return [(j["key"], j["fingerprint"], j["payload"]) for j in json.loads(out)["jobs"]]

    assert view(fresh.out) == view(original.out)
    assert {j["mark"] for j in json.loads(fresh.out)["jobs"]} == {"new"}


def test_unknown_run_lists_the_known_ones(ws: Workspace) -> None:
    result = ws.report("nope")
    assert result.code == 2
    assert "nope" in result.err and "first" in result.err and "tuscany" in result.err


def test_missing_state_database_is_a_clear_usage_error(ws: Workspace) -> None:
    result = batcher("report", "--state", "no/such.db", cwd=ws.root)
    assert result.code == 2
    assert "no state database" in result.err
    assert not (ws.root / "no").exists()


def test_stdout_html_with_dash(ws: Workspace) -> None:
    result = ws.report("first", "-o", "-")
    assert result.code == 0, result.err
    assert result.out.startswith("<!DOCTYPE html>") and result.out.count("<video ") == 1


def test_run_report_flag_writes_the_gallery(ws: Workspace, tmp_path: Path) -> None:
    (tmp_path / "first.yaml").write_text(FIRST, encoding="utf-8")
    done = batcher("run", "first.yaml", "--emulator", "--no-progress", "--report",
                   "--state", "s.db", "--out", "o", cwd=tmp_path)  # fmt: skip
    assert done.code == 0, done.err
    assert (tmp_path / "o" / "first" / "report.html").is_file()
    assert "report.html" in done.out


def test_csv_stdout_is_byte_exact(ws: Workspace) -> None:
    result = ws.report("first", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.out, newline="")))
    assert [r["name"] for r in rows] == ["one"] and rows[0]["state"] == "done"


def test_a_csv_row_sweep_is_drawn_as_one_grid(tmp_path: Path) -> None:
    """Issue 12: rows x sweep read as one table (rows = the CSV's prompt rows, columns =
    the swept parameter), not one mini-grid per row."""
    examples = Path(__file__).parent.parent / "jobs" / "examples"
    for name in ("rows-csv.yaml", "prompts.csv"):
        (tmp_path / name).write_bytes((examples / name).read_bytes())
    done = batcher("run", "rows-csv.yaml", "--emulator", "--no-progress", "--state", "s.db",
                   "--out", "out", "--report", cwd=tmp_path)  # fmt: skip
    assert done.code == 0, done.err
    html = (tmp_path / "out" / "city-clips" / "report.html").read_text(encoding="utf-8")
    sections = re.findall(r'<section class="group sweep"[^>]*><h2>([^<]*)<small>([^<]*)', html)
    assert sections == [("prompts ", "6 jobs: 3 row \u00d7 2 cfg_scale")]
    assert re.findall(r'<th class="row">([^<]*)</th>', html) == ["harbour", "market", "rooftops"]
    assert re.findall(r'<th class="col">([^<]*)</th>', html) == ["0.4", "0.7"]


def test_a_run_bigger_than_a_page_is_split_into_linked_pages(ws: Workspace) -> None:
    """13 jobs at 5 per page: 3 pages, each job on exactly one, each page linking the
    others; the 12-job grid (3 cfg_scale rows of 4 cards) cut between its rows, never inside
    one; a later report with fewer pages removes the pages it no longer writes."""
    out = ws.root / "paged"
    result = ws.report("tuscany", "-o", "paged/", "--per-page", "5")
    assert result.code == 0, result.err
    assert "3 pages" in result.out
    names = ["report.html", "report-2.html", "report-3.html"]
    pages = [(out / n).read_text(encoding="utf-8") for n in names]
    cards = [re.findall(r'<article class="card[^"]*" id="(c\d+)"', p) for p in pages]
    assert [len(c) for c in cards] == [4, 4, 5]
    assert len({c for page in cards for c in page}) == N_SWEEP  # each job once
    for n, page in enumerate(pages):
        links = re.findall(r'<nav class="pages">.*?</nav>', page)[0]
        numbered = re.findall(r'<a href="([^"]+)">\d+</a>', links)
        assert numbered == [x for k, x in enumerate(names) if k != n]
        assert ('rel="prev"' in links) == (n > 0) and ('rel="next"' in links) == (n < 2)
        assert f"page {n + 1} of 3" in page
        assert f"<b>{N_SWEEP}</b> jobs" in page  # every page sums up the whole run
        sources = re.findall(r'<video [^>]*src="([^"]+)"', page)
        assert sources and all((out / unquote(s)).is_file() for s in sources)
    for n, page in enumerate(pages):  # each part: its own rows, the grid's whole shape
        assert f"(part {n + 1} of 3)" in page and "4 of 12 jobs: 3 cfg_scale" in page
        assert re.findall(r'<th class="corner">([^<]*)</th>', page) == [
            "cfg_scale ↓ × aspect_ratio →"
        ]
        assert len(re.findall(r'<th class="row">', page)) == 1

    (out / "report-4.html").write_text("<p>mine, not batcher's</p>")  # never removed
    again = ws.report("tuscany", "-o", "paged/", "--per-page", "20")
    assert again.code == 0, again.err
    assert "removed 2 pages of an earlier, longer report" in again.err
    assert sorted(p.name for p in out.glob("*.html")) == ["report-4.html", "report.html"]
    assert len(re.findall(r'<article class="card', (out / "report.html").read_text())) == 13
    assert '<nav class="pages">' not in (out / "report.html").read_text()


def test_per_page_must_be_positive(ws: Workspace) -> None:
    result = ws.report("tuscany", "--per-page", "0")
    assert result.code == 2 and "--per-page" in result.err and "Traceback" not in result.err


def test_lean_records_completed_by_id_are_the_full_records(ws: Workspace) -> None:
    """What a paged report renders from (lean records + their details by id) is exactly
    what `iter_records` gives: no field forgotten when JobRecord grows."""
    from batcher.store import Store

    with Store.open(ws.state, create=False, read_only=True) as store:
        full = {r.id: r for r in store.iter_records("tuscany")}
        lean = list(store.iter_records("tuscany", lean=True))
        assert all(not r.outputs and not r.attempts for r in lean)
        assert any(r.outputs and r.attempts for r in full.values())
        assert store.completed(lean) == full
        assert sorted(store.output_paths("tuscany")) == sorted(
            o.path for r in full.values() for o in r.outputs
        )


def test_the_first_report_says_it_makes_poster_frames_and_the_next_does_not(
    tmp_path: Path,
) -> None:
    (tmp_path / "first.yaml").write_text(FIRST, encoding="utf-8")
    state = tmp_path / "b.db"
    done = batcher("run", "first.yaml", "--emulator", "--no-progress", "--state", state,
                   "--out", "outputs", cwd=tmp_path)  # fmt: skip
    assert done.code == 0, done.err
    first = batcher("report", "--state", state, cwd=tmp_path)
    assert first.code == 0, first.err
    assert "making poster frames" in first.err and "made 1 poster frame" in first.err
    again = batcher("report", "--state", state, cwd=tmp_path)
    assert again.code == 0 and "poster" not in again.err


def test_another_report_named_like_a_page_is_never_removed(ws: Workspace) -> None:
    day2 = ws.report("first", "-o", "col/day-2.html")  # a report of its own
    assert day2.code == 0, day2.err
    day = ws.report("tuscany", "-o", "col/day.html")
    assert day.code == 0, day.err
    assert "removed" not in day.err
    assert sorted(p.name for p in (ws.root / "col").glob("*.html")) == ["day-2.html", "day.html"]
