"""The HTML report in a real headless chromium (Debian's), opened from file://.

One browser for the module; each test loads the page afresh. Skipped when chromium is
missing, unless BATCHER_REQUIRE_BROWSER=1 (CI), where a missing browser is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from batcher.posters import ensure_posters
from batcher.report import render_html
from tests.browser import Browser, Page, find_chromium
from tests.test_report_samples import CLIPS, sweep_run

pytestmark = pytest.mark.browser

CARDS = "document.querySelectorAll('article.card')"
# Polls a JS condition once per frame for up to 5 s; true when it came to hold.
WAIT_UNTIL = (
    "new Promise(done => {{ const t0 = performance.now(); (function poll() {{"
    " if ({0}) done(true); else if (performance.now() - t0 > 5000) done(false);"
    " else requestAnimationFrame(poll); }})(); }})"
)
VISIBLE_KEYS = (
    f"[...{CARDS}].filter(c => !c.hidden && !c.closest('section').hidden).map(c => c.dataset.state)"
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    executable = find_chromium()
    if executable is None:
        if os.environ.get("BATCHER_REQUIRE_BROWSER") == "1":
            pytest.fail("BATCHER_REQUIRE_BROWSER=1 but no chromium (apt-get install chromium)")
        where = os.environ.get("BATCHER_CHROMIUM") or "/usr/bin/chromium"
        pytest.skip(f"no chromium at {where} (apt-get install chromium)")
    instance = Browser(executable, tmp_path_factory.mktemp("chromium-profile"))
    yield instance
    instance.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    run_dir = root / "outputs" / "tuscany"
    page = root / "pages" / "report.html"  # not beside the videos: sources go "../outputs/"
    page.parent.mkdir(parents=True)
    records = sweep_run(run_dir)
    ensure_posters(records)  # as `batcher report` does
    page.write_text(render_html(records, out_dir=page.parent), encoding="utf-8")
    return page


@pytest.fixture
def page(browser: Browser, report: Path) -> Iterator[Page]:
    tab = browser.new_page(width=1400, height=900)
    tab.goto(report.as_uri())
    yield tab
    browser.send("Target.closeTarget", {"targetId": tab.target})


def _assert_clean(page: Page) -> None:
    assert page.eval("typeof window.__pwned") == "undefined"
    assert page.dialogs == []
    assert page.errors == []


def test_grid_has_cfg_scale_rows_and_aspect_ratio_columns(page: Page) -> None:
    grid = "#g0 table.grid"
    assert page.eval(f"[...document.querySelectorAll('{grid} > tbody > tr > th.row')]"
                     ".map(th => th.textContent)") == ["0.3", "0.5", "0.8"]  # fmt: skip
    assert page.eval(f"[...document.querySelectorAll('{grid} > thead th.col')]"
                     ".map(th => th.textContent)") == ["16:9", "9:16"]  # fmt: skip
    per_cell = page.eval(
        f"[...document.querySelectorAll('{grid} div.cell')].map(c => c.children.length)"
    )
    assert per_cell == [2, 2, 2, 2, 2, 2]
    _assert_clean(page)


def test_switching_axes_rebuilds_the_grid(page: Page) -> None:
    page.eval(
        "(() => { const s = document.querySelector('#g0 select[data-axis=rows]');"
        " s.value = 'aspect_ratio'; s.dispatchEvent(new Event('change')); })()"
    )
    assert page.eval("document.querySelector('#g0 select[data-axis=cols]').value") == "cfg_scale"
    rows = page.eval(
        "[...document.querySelectorAll('#g0 table.grid > tbody > tr > th.row')]"
        ".map(th => th.textContent)"
    )
    cols = page.eval(
        "[...document.querySelectorAll('#g0 table.grid > thead th.col')].map(t => t.textContent)"
    )
    assert (rows, cols) == (["16:9", "9:16"], ["0.3", "0.5", "0.8"])
    cells = page.eval(
        "[...document.querySelectorAll('#g0 div.cell')].map(c =>"
        " [...c.querySelectorAll('.key')].map(k => k.textContent))"
    )
    assert len(cells) == 6 and all(len(keys) == 2 for keys in cells)
    assert "aspect_ratio=9:16,cfg_scale=0.8" in cells[5][0]  # last row, last column
    page.eval(
        "(() => { const s = document.querySelector('#g0 select[data-axis=cols]');"
        " s.value = ''; s.dispatchEvent(new Event('change')); })()"
    )
    assert page.eval("document.querySelectorAll('#g0 div.cell').length") == 2
    _assert_clean(page)


def test_videos_load_lazily_from_files_that_exist(page: Page, report: Path) -> None:
    # Count players whether or not the lazy loader already made them live: how many are
    # live at this instant depends on timing, the sum does not.
    total = page.eval(
        "document.querySelectorAll('template.player').length"
        " + document.querySelectorAll('video').length"
    )
    assert total == 17  # every done job, the superseded version included
    assert page.eval(WAIT_UNTIL.format("document.querySelector('video')"))
    early = page.eval("document.querySelectorAll('video').length")
    assert 0 < early < total  # only players near the viewport are in the page
    page.eval("document.querySelectorAll('details').forEach(d => d.open = true)")
    page.eval(
        "new Promise(async done => { for (let y = 0; y <= document.body.scrollHeight;"
        " y += 300) { window.scrollTo(0, y); await new Promise(r => requestAnimationFrame("
        "() => requestAnimationFrame(r))); } done(); })"
    )
    assert page.eval(WAIT_UNTIL.format("!document.querySelector('template.player')"))
    urls = page.eval("[...document.querySelectorAll('video')].map(v => v.src)")
    assert len(urls) == total
    for url in urls:
        parsed = urlparse(url)
        assert parsed.scheme == "file"
        assert Path(unquote(parsed.path)).is_file(), url
    assert any(u.endswith("/odd%20dir/a%20b%231%3F.mp4") for u in urls)
    posters = page.eval("[...document.querySelectorAll('video')].map(v => v.poster)")
    assert len(posters) == total and all(posters), posters  # a picture before any playback
    for url in posters:
        still = Path(unquote(urlparse(url).path))
        assert still.is_file() and still.read_bytes()[:2] == b"\xff\xd8", url
    assert set(page.eval("[...document.querySelectorAll('video')].map(v => v.preload)")) == {
        "metadata"
    }
    if any(CLIPS.glob("*.mp4")):  # real clips: chromium must actually read them
        states = page.eval(
            "Promise.all([...document.querySelectorAll('video')].map(v => new Promise(r => {"
            " if (v.readyState >= 1 || v.error) return r([v.readyState, !!v.error]);"
            " v.addEventListener('loadedmetadata', () => r([v.readyState, false]));"
            " v.addEventListener('error', () => r([v.readyState, true])); })))"
        )
        assert all(ready >= 1 and not failed for ready, failed in states), states
    _assert_clean(page)


def _click_state(page: Page, state: str) -> None:
    page.eval(f"document.querySelector('input[data-state-filter][value={state}]').click()")


def _search(page: Page, text: str) -> None:
    page.eval(
        "(() => { const s = document.getElementById('search');"
        f" s.value = {text!r}; s.dispatchEvent(new Event('input')); }})()"
    )


def test_state_filter_hides_and_shows_cards(page: Page) -> None:
    assert page.eval("document.getElementById('shown').textContent") == "20 of 20 jobs shown"
    _click_state(page, "done")
    visible = page.eval(VISIBLE_KEYS)
    assert sorted(visible) == ["cancelled", "failed", "pending", "unknown"]
    assert page.eval("document.getElementById('g0').hidden") is True
    assert page.eval("document.getElementById('shown').textContent") == "4 of 20 jobs shown"
    _click_state(page, "failed")
    _click_state(page, "unknown")
    assert sorted(page.eval(VISIBLE_KEYS)) == ["cancelled", "pending"]
    _click_state(page, "done")
    assert page.eval("document.getElementById('g0').hidden") is False
    # 17 done (the superseded version included) + cancelled + pending
    assert len(page.eval(VISIBLE_KEYS)) == 19
    _assert_clean(page)


def test_text_search_matches_prompts_shots_and_keys(page: Page) -> None:
    def names() -> list[str]:
        return sorted(
            page.eval(
                f"[...{CARDS}].filter(c => !c.hidden)"
                ".map(c => c.querySelector('.key').textContent.split('/')[1])"
            )
        )

    _search(page, "VINEYARD")  # a shot prompt, case-insensitive
    assert names() == ["terrace-shots"]
    _search(page, "fox snow")  # every word must match
    assert len(names()) == 12 and set(names()) == {"fox"}
    _search(page, "雪の中")
    assert names() == ['hostile"><svg onload=alert(4)>']
    _search(page, "<script>window.__pwned")
    assert names() == ['hostile"><svg onload=alert(4)>']
    _search(page, "no such words anywhere")
    assert names() == [] and page.eval("document.getElementById('shown').textContent") == (
        "0 of 20 jobs shown"
    )
    _search(page, "")
    assert len(names()) == 21
    _assert_clean(page)


def test_hostile_prompt_renders_as_text_and_runs_nothing(page: Page) -> None:
    text = page.eval(
        "[...document.querySelectorAll('.prompt')].map(p => p.textContent)"
        ".find(t => t.includes('__pwned'))"
    )
    assert text.startswith("<script>window.__pwned = 1; alert('pwned-1')</script>")
    assert page.eval("document.querySelectorAll('img, svg, iframe').length") == 0
    assert page.eval("document.scripts.length") == 2
    page.eval("document.querySelectorAll('details').forEach(d => d.open = true)")
    _assert_clean(page)


def test_a_missed_escape_would_still_be_blocked_and_reported(
    browser: Browser, report: Path, tmp_path: Path
) -> None:
    """Negative control: inject a raw script into the page; the CSP must stop it and the
    harness must see the violation (so the clean checks above can fail)."""
    tampered = tmp_path / "tampered.html"
    html = report.read_text(encoding="utf-8")
    tampered.write_text(
        html.replace("<main>", "<main><script>window.__pwned = 1; alert(1)</script>", 1),
        encoding="utf-8",
    )
    tab = browser.new_page()
    try:
        tab.goto(tampered.as_uri())
        assert tab.eval("typeof window.__pwned") == "undefined"
        assert tab.dialogs == []
        assert any("Content Security Policy" in e for e in tab.errors), tab.errors
    finally:
        browser.send("Target.closeTarget", {"targetId": tab.target})


def test_pages_link_to_each_other_from_disk(browser: Browser, tmp_path: Path) -> None:
    """A paged report: page 1 links to page 2 by a relative link that works from file://,
    and page 2's own script runs (its grid, its search) on its own cards."""
    from batcher.report.html import Pages, page_names

    run_dir = tmp_path / "outputs" / "tuscany"
    records = sweep_run(run_dir)
    ensure_posters(records)
    pages = Pages(records, per_page=5)
    names = page_names("report.html", len(pages))
    assert len(names) >= 3
    full = {r.id: r for r in records}
    for n, name in enumerate(names):
        text = "".join(pages.page(n, full, out_dir=tmp_path, names=names))
        (tmp_path / name).write_text(text, encoding="utf-8")
    tab = browser.new_page(width=1200, height=800)
    try:
        tab.goto((tmp_path / "report.html").as_uri())
        assert tab.eval(f"{CARDS}.length") == len(pages.records(0))
        href = tab.eval("document.querySelector('nav.pages a').href")
        assert href == (tmp_path / "report-2.html").as_uri()
        tab.goto(href)
        assert tab.eval("document.title").startswith("batcher report")
        second = len([r for r in pages.records(1) if r.current])
        assert tab.eval(f"{CARDS}.length") == len(pages.records(1))
        shown = tab.eval("document.getElementById('shown').textContent")
        assert shown == f"{second} of {second} jobs shown"
        _assert_clean(tab)
    finally:
        browser.send("Target.closeTarget", {"targetId": tab.target})
