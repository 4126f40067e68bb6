"""The HTML page without a browser: escaping, CSP, lazy relative video sources, grid shape.

The page is parsed with the standard library's HTML parser into a small tree, so these
checks see what a browser's tokenizer sees (a raw `<script>` from a prompt would show up
as a script element here)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from batcher.models import JobState
from batcher.report import render_html
from batcher.report.html import media_url, script_json
from tests.test_report_samples import HOSTILE_PROMPT, SHOTS, make_record, sweep_run

VOID = {"meta", "input", "br", "img", "link", "source", "hr", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str | None]
    parts: list[Node | str] = field(default_factory=list)  # text and elements, in order

    @property
    def children(self) -> list[Node]:
        return [p for p in self.parts if isinstance(p, Node)]

    def all(self, tag: str, cls: str | None = None) -> list[Node]:
        found = []
        for child in self.children:
            if child.tag == tag and (
                cls is None or cls in (child.attrs.get("class") or "").split()
            ):
                found.append(child)
            found.extend(child.all(tag, cls))
        return found

    def content(self) -> str:
        return "".join(p if isinstance(p, str) else p.content() for p in self.parts)


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs))
        self.stack[-1].parts.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].parts.append(data)


def parse(page: str) -> Node:
    builder = TreeBuilder()
    builder.feed(page)
    builder.close()
    assert [n.tag for n in builder.stack] == ["#root"], "unclosed elements"
    return builder.root


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "outputs" / "tuscany"


@pytest.fixture
def records(run_dir: Path) -> list:
    return sweep_run(run_dir)


@pytest.fixture
def page(records: list, run_dir: Path) -> str:
    return render_html(records, out_dir=run_dir, title="tuscany <b>&")


def test_only_the_pages_own_scripts_exist_and_hostile_text_stays_text(page: str) -> None:
    tree = parse(page)
    scripts = tree.all("script")
    assert [s.attrs.get("type") for s in scripts] == ["application/json", None]
    assert tree.all("img") == [] and tree.all("svg") == []
    assert not any(k.startswith("on") for n in _walk(tree) for k in n.attrs)
    prompts = [p.content() for p in tree.all("p", "prompt")]
    assert HOSTILE_PROMPT in prompts
    assert tree.all("title")[0].content() == "tuscany <b>&"


def _walk(node: Node) -> list[Node]:
    out = [node]
    for child in node.children:
        out.extend(_walk(child))
    return out


def test_csp_allows_exactly_the_inline_script_and_style(page: str) -> None:
    tree = parse(page)
    (meta,) = [
        m for m in tree.all("meta") if m.attrs.get("http-equiv") == "Content-Security-Policy"
    ]
    policy = dict(
        (part.split()[0], part.split()[1:]) for part in (meta.attrs["content"] or "").split("; ")
    )
    script = tree.all("script")[1].content()
    style = tree.all("style")[0].content()

    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == [digest(script)]
    assert policy["style-src"] == [digest(style)]
    assert "'unsafe-inline'" not in page
    assert 'style="' not in page  # inline style attributes would be blocked by the policy


def test_grid_data_is_json_that_cannot_end_its_script_block(page: str) -> None:
    block = parse(page).all("script")[0].content()
    assert not set("<>&\u2028\u2029") & set(block)
    data = json.loads(block)
    (group,) = data["groups"]
    assert (group["rows"], group["cols"]) == ("cfg_scale", "aspect_ratio")
    assert [a["labels"] for a in group["axes"]] == [["0.3", "0.5", "0.8"], ["16:9", "9:16"]]
    assert len(group["cards"]) == 12
    assert json.loads(script_json({"s": "</script>\u2028&"})) == {"s": "</script>\u2028&"}


def test_sweep_grid_has_cfg_rows_aspect_columns_and_repeats_in_cells(page: str) -> None:
    tree = parse(page)
    (table,) = tree.all("table", "grid")
    head = [th.content() for th in table.all("th", "col")]
    rows = [th.content() for th in table.all("th", "row")]
    assert head == ["16:9", "9:16"] and rows == ["0.3", "0.5", "0.8"]
    cells = table.all("div", "cell")
    assert len(cells) == 6
    for cell in cells:
        keys = [k.content() for k in cell.all("span", "key")]
        assert len(keys) == 2 and keys[1] == keys[0] + "#2"  # copy 0 has no suffix


def test_videos_are_lazy_and_their_sources_are_files_relative_to_the_page(
    records: list, run_dir: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "reports"
    tree = parse(render_html(records, out_dir=elsewhere))
    templates = tree.all("template", "player")
    done = [r for r in records if r.state is JobState.DONE]
    assert len(templates) == len(done) == len(tree.all("video"))
    srcs = []
    for template in templates:
        (video,) = template.children  # the player waits, inert, in its template
        assert video.attrs["preload"] == "none"
        assert {"controls", "muted", "loop", "playsinline"} <= set(video.attrs)
        rel = video.attrs["src"] or ""
        assert rel.startswith("../outputs/tuscany/")
        assert (elsewhere / unquote(rel)).resolve().is_file(), rel
        srcs.append(rel.split("tuscany/", 1)[1])
    assert "odd%20dir/a%20b%231%3F.mp4" in srcs


def test_a_file_name_cannot_become_another_url_scheme(run_dir: Path) -> None:
    record = make_record(run_dir, files=("javascript:alert(1).mp4",))
    assert media_url(record, record.outputs[0].path, run_dir) == "javascript%3Aalert%281%29.mp4"
    assert media_url(record, "../x.mp4", run_dir / "a") == os.path.join("..", "..", "x.mp4")


def test_failed_cancelled_unknown_and_pending_jobs_show_their_reasons(page: str) -> None:
    tree = parse(page)
    cards = {c.attrs["data-state"]: c for c in tree.all("article", "card")}
    assert "content moderation" in cards["failed"].all("p", "reason")[0].content()
    assert cards["cancelled"].all("p", "reason")[0].content() == "cancelled by user"
    unknown = cards["unknown"].all("p", "reason")[0].content()
    assert "retry --unknown" in unknown and "read timeout" in unknown
    assert "not finished" in cards["pending"].all("p", "reason")[0].content()
    attempts = cards["failed"].all("table", "attempts")[0].content()
    assert "HTTP 503" in attempts


def test_cards_show_shots_params_and_facts(records: list, run_dir: Path) -> None:
    shots_job = next(r for r in records if r.name == "terrace-shots")
    tree = parse(render_html([shots_job], out_dir=run_dir))
    (card,) = tree.all("article", "card")
    items = [li.content() for li in card.all("li")]
    assert items == [f"{s['duration']} s{s['prompt']}" for s in SHOTS]
    params = card.all("p", "params")[0].content()
    assert "duration: 12" in params and "shot_type: customize" in params
    assert "prompt" not in params
    facts = card.all("dl", "facts")[0].content()
    assert shots_job.request_id in facts and "94.5 s" in facts and "$2.016" in facts
    assert shots_job.outputs[0].sha256[:12] in facts


def test_state_filters_list_present_states_and_superseded_versions_are_apart(page: str) -> None:
    tree = parse(page)
    summary = tree.all("p", "summary")[0].content()
    assert "20 jobs" in summary and "done 16" in summary and "87 s of video" in summary
    boxes = [i.attrs["value"] for i in tree.all("input") if "data-state-filter" in i.attrs]
    assert boxes == ["done", "failed", "unknown", "cancelled", "pending"]
    (history,) = [s for s in tree.all("section") if s.attrs.get("id") == "history"]
    assert [c.attrs["data-state"] for c in history.all("article", "card")] == ["done"]
    assert "old version" in history.content()


def test_no_sweep_gives_a_plain_gallery_and_no_jobs_an_empty_page(run_dir: Path) -> None:
    tree = parse(render_html([make_record(run_dir, name=n) for n in "abc"], out_dir=run_dir))
    assert tree.all("table", "grid") == []
    assert len(tree.all("div", "gallery")[0].all("article", "card")) == 3
    empty = parse(render_html([], out_dir=run_dir))
    assert "no jobs" in empty.all("main")[0].content()
    assert re.search(r"<h1>batcher report: empty</h1>", render_html([], out_dir=run_dir))


def test_pages_keep_sections_whole_when_they_fit_and_cut_big_grids(run_dir: Path) -> None:
    from batcher.report.html import Pages

    def sweep(name: str, n: int) -> list:
        return [make_record(run_dir, name=name, sweep={"cfg_scale": i / 100}) for i in range(n)]

    def shape(pages: Pages) -> list[list[tuple[str, int, int, int]]]:
        return [[(p.kind, len(p.records), p.number, p.of) for p in page] for page in pages.parts]

    six_six = Pages([*sweep("a", 6), *sweep("b", 6)], per_page=10)
    assert shape(six_six) == [[("grid", 6, 1, 1)], [("grid", 6, 1, 1)]]  # b starts a page
    assert shape(Pages([*sweep("a", 3), *sweep("b", 3)], per_page=10)) == [
        [("grid", 3, 1, 1), ("grid", 3, 1, 1)]
    ]
    big = Pages([*sweep("a", 25), make_record(run_dir, name="plain")], per_page=10)
    assert shape(big) == [
        [("grid", 10, 1, 3)],
        [("grid", 10, 2, 3)],
        [("grid", 5, 3, 3), ("plain", 1, 1, 1)],
    ]
    # a one-row grid cut between its cards: each part's columns are the values it shows
    part = big.parts[1][0]
    assert part.group is not None
    assert len(part.group.axes[0].labels) == 10
    assert part.group.default_layout == big.parts[0][0].group.default_layout  # type: ignore[union-attr]
    seen = [r.id for page in big.parts for p in page for r in p.records]
    assert len(seen) == len(set(seen)) == 26


def test_page_parts_after_review(run_dir: Path, tmp_path: Path) -> None:
    """A review's findings: parts filter every axis and take the whole grid's shared
    fields; the page at hand is marked when it holds failures; plain parts say N of M; a
    swept value spelt like the 'missing' label is not drawn twice."""
    from batcher.report.grid import MISSING, group_records
    from batcher.report.html import Pages, _pager, page_names

    fox = [
        make_record(run_dir, name="fox", sweep={"cfg_scale": c, "aspect_ratio": a, "seed": c})
        for c in (0.1, 0.2, 0.3)
        for a in ("16:9", "9:16")
    ]
    plain = [make_record(run_dir, name=f"p{i}") for i in range(5)]
    pages = Pages([*fox, *plain], per_page=2)
    names = page_names("report.html", len(pages))
    first = pages.parts[0][0]
    assert first.group is not None and first.kind == "grid"
    assert all(len(a.labels) == 1 for a in first.group.axes if a.field != "aspect_ratio")
    text = "".join(pages.page(0, {r.id: r for r in [*fox, *plain]}, out_dir=run_dir, names=names))
    shared = re.search(r'<div class="shared">(.*?)</div>', text)
    assert shared is not None and "cfg_scale" not in shared.group(1)  # swept over the whole
    last = "".join(
        pages.page(len(pages) - 1, {r.id: r for r in plain}, out_dir=run_dir, names=names)
    )
    assert re.search(r"Jobs <small>\(1 of 5 jobs\)</small>", last)

    nav = _pager(1, ["a.html", "b.html", "c.html"], [0, 2, 0])
    assert '<b aria-current="page" class="trouble" title="2 failed or unknown">2</b>' in nav

    odd = [
        make_record(run_dir, name="odd", sweep={"a": MISSING}),
        make_record(run_dir, name="odd", sweep={"b": 1}),
    ]
    (group,), _ = group_records(odd)
    assert [a.labels.count(MISSING) for a in group.axes] == [1, 1]
    page = render_html(odd, out_dir=run_dir)
    assert len(re.findall(r'<article class="card[^"]*" id="(c\d+)"', page)) == 2
