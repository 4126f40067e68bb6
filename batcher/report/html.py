"""The HTML gallery: one self-contained static page for a run (no server, no CDN).

Invariants:
- `render_html` is a pure function of its arguments; it returns text and reads only its
  own package data (`page.css`, `page.js`).
- Everything that came from a job file, the store or the server goes through `esc`
  (text and attribute values, always double-quoted) or, for the grid data the script
  reads, through `script_json` (JSON with `<`, `>`, `&`, U+2028 and U+2029 escaped, inside
  a `<script type="application/json">` block). No markup is ever built from such data in
  JavaScript either (the script uses textContent and DOM nodes only).
- The Content-Security-Policy allows exactly the page's own script and style, by hash, so
  even a missed escape could not run an injected script or inline handler. Media and links
  may point to files only (`'self'`/`file:`); nothing loads from the network.
- Video sources are URLs relative to the page's own folder (`report_dir`), each path
  segment percent-encoded, so the page works when opened from disk and a file name can
  never turn into another URL scheme. Each player is written inside a `<template>` (inert:
  no element, no request, no layout cost) with `preload="none"`; the script puts it in the
  page, asking for metadata (the first frame), only when its card nears the viewport.
  1,900 live <video> elements would cost seconds of page load; templates cost nothing.
- Current job versions make the gallery; superseded versions are listed apart at the end.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from batcher.models import JobRecord, JobState, Money
from batcher.posters import poster_name
from batcher.report.grid import Group, grid_rows, group_records, layout, regroup, value_label
from batcher.report.manifest import iso, render_seconds

STATE_ORDER: tuple[JobState, ...] = (
    JobState.DONE,
    JobState.FAILED,
    JobState.UNKNOWN,
    JobState.CANCELLED,
    JobState.PENDING,
    JobState.SUBMITTING,
    JobState.QUEUED,
    JobState.RUNNING,
    JobState.DOWNLOADING,
)
_ASPECT_CLASS = {"16:9": "ar-16-9", "9:16": "ar-9-16", "1:1": "ar-1-1"}
_VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".m4v", ".ogv")
DOT = " \u00b7 "  # separator between facts on one line
DASH = "\u2014"  # shown for a missing value
_UNKNOWN_HINT = (
    "outcome unknown: the request may have been accepted and billed; check before "
    "resubmitting (batcher retry --unknown)"
)


def esc(value: object) -> str:
    """Text made safe for HTML text and double-quoted attribute values."""
    text = str(value)
    if "&" in text or "<" in text or ">" in text or '"' in text or "'" in text:
        return html.escape(text, quote=True)
    return text  # most text has nothing to escape: five scans cost less than a rewrite


def script_json(data: Any) -> str:
    """JSON that can sit inside a `<script>` block without ending it or breaking JS."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in (
        ("&", "\\u0026"),
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return text


@cache
def asset(name: str) -> str:
    """A page asset (`page.css` / `page.js`) from package data."""
    return resources.files("batcher.report").joinpath(name).read_text("utf-8")


def csp_hash(text: str) -> str:
    """The CSP source expression allowing exactly this inline script or style."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def content_security_policy() -> str:
    """The page's policy: own script and style by hash, local media only."""
    return (
        f"default-src 'none'; script-src {csp_hash(asset('page.js'))}; "
        f"style-src {csp_hash(asset('page.css'))}; media-src 'self' file:; "
        "img-src 'self' file: data:; base-uri 'none'; form-action 'none'"
    )


_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]+\Z")  # what `quote(text, safe="")` leaves as is


def media_url(record: JobRecord, path: str, report_dir: str | os.PathLike[str]) -> str:
    """The URL of an output file relative to the page's folder, percent-encoded."""
    if "/" not in path and path not in ("", ".", ".."):  # a file right in the run's folder
        base = _folder_url(record.out_dir, os.fspath(report_dir))
        if base is not None:
            return base + (path if _UNRESERVED.match(path) else quote(path, safe=""))
    target = os.path.abspath(os.path.join(record.out_dir, path))
    try:
        rel = os.path.relpath(target, os.path.abspath(report_dir))
    except ValueError:  # another drive (Windows): only an absolute URL can work
        return Path(target).as_uri()
    return "/".join(quote(part, safe="") for part in Path(rel).parts)


def _listing(folder: str) -> frozenset[str]:
    """The names in a run's folder (one listing per folder per report, not a stat per file)."""
    found = _LISTINGS.get(folder)
    if found is None:
        try:
            found = frozenset(e.name for e in os.scandir(folder))
        except OSError:
            found = frozenset()
        _LISTINGS[folder] = found
    return found


_LISTINGS: dict[str, frozenset[str]] = {}  # cleared for each report (see Pages)


@lru_cache(maxsize=64)
def _folder_url(out_dir: str, report_dir: str) -> str | None:
    """The URL prefix (ending in `/`, or empty) of a run's folder as seen from the page's
    folder: worked out once per folder, not once per file (100,000 at scale)."""
    try:
        rel = os.path.relpath(os.path.abspath(out_dir), os.path.abspath(report_dir))
    except ValueError:
        return None
    if rel == ".":
        return ""
    return "".join(quote(part, safe="") + "/" for part in Path(rel).parts)


def _video_output(record: JobRecord) -> str | None:
    paths = [o.path for o in record.outputs]
    videos = [p for p in paths if p.lower().endswith(_VIDEO_SUFFIXES)]
    return next(iter(videos or paths), None)


def reason(record: JobRecord) -> str:
    """Why a job has no video to show (empty for a finished job with files)."""
    last_error = next((a.error for a in reversed(record.attempts) if a.error), None)
    detail = record.error or last_error
    if record.state is JobState.UNKNOWN:
        return f"{_UNKNOWN_HINT}; {detail}" if detail else _UNKNOWN_HINT
    if record.state in (JobState.FAILED, JobState.CANCELLED):
        return detail or record.state.value
    if record.state is JobState.DONE:
        return "" if record.outputs else "no output file recorded"
    return f"not finished yet ({record.state.value})"


def _media(record: JobRecord, report_dir: str | os.PathLike[str]) -> str:
    aspect = _ASPECT_CLASS.get(str(record.payload.get("aspect_ratio", "")), "ar-16-9")
    video = _video_output(record) if record.state is JobState.DONE else None
    if video is not None:
        src = esc(media_url(record, video, report_dir))
        poster = ""
        if "/" not in video:  # in the run's folder: its poster is listed there, or not
            still = poster_name(video)
            found = still in _listing(record.out_dir)
        else:
            still = str(PurePosixPath(video).with_name(poster_name(PurePosixPath(video).name)))
            found = (Path(record.out_dir) / still).is_file()
        if found:  # made by `batcher report` beside the video
            poster = f' poster="{esc(media_url(record, still, report_dir))}"'
        return (
            f'<div class="media {aspect}" data-lazy><template class="player"><video controls '
            f'muted loop playsinline preload="none"{poster} src="{src}"></video></template></div>'
        )
    kind = "" if record.state.terminal or record.state is JobState.UNKNOWN else " active"
    state = record.state.value
    return (
        f'<div class="media {aspect} placeholder state-{state}{kind}">'
        f'<p class="reason">{esc(reason(record) or state)}</p></div>'
    )


def _shots(payload: Mapping[str, Any], *, hidden: bool = False) -> str:
    shots = payload.get("multi_prompt")
    if not isinstance(shots, list | tuple) or not shots:
        return ""
    items = []
    for shot in shots:
        shot = shot if isinstance(shot, Mapping) else {"prompt": shot}
        duration = shot.get("duration")
        dur = f'<span class="dur">{esc(duration)} s</span>' if duration is not None else ""
        items.append(f"<li>{dur}{esc(shot.get('prompt', ''))}</li>")
    return f'<ol class="shots"{" hidden" if hidden else ""}>{"".join(items)}</ol>'


def _params(payload: Mapping[str, Any], skip: frozenset[str] = frozenset()) -> str:
    pairs = [
        f"{esc(k)}: {esc(value_label(v))}"
        for k, v in payload.items()
        if k not in ("prompt", "multi_prompt") and k not in skip
    ]
    return f'<p class="params">{DOT.join(pairs)}</p>' if pairs else ""


def _facts(record: JobRecord, report_dir: str | os.PathLike[str]) -> str:
    secs = render_seconds(record)
    files = "".join(
        f'<dt>file</dt><dd><a href="{esc(media_url(record, out.path, report_dir))}">'
        f"{esc(out.path)}</a> ({out.size:,} B)</dd><dt>sha256</dt>"
        f'<dd><span title="{esc(out.sha256)}">{esc(out.sha256[:12])}</span></dd>'
        for out in record.outputs
    )
    return (  # one text, not a list of pairs joined: 100,000 cards a report
        f'<dl class="facts"><dt>request</dt><dd>{esc(record.request_id or DASH)}</dd>'
        f"<dt>submitted</dt><dd>{iso(record.submitted_at) or DASH}</dd>"  # digits, -:.TZ
        f"<dt>finished</dt><dd>{iso(record.finished_at) or DASH}</dd>"
        f"<dt>render</dt><dd>{f'{secs:.1f} s' if secs is not None else DASH}</dd>"
        f"<dt>cost</dt><dd>${record.cost:.3f}</dd>"
        f"<dt>version</dt><dd>{record.version}{'' if record.current else ' (superseded)'}</dd>"
        f"<dt>fingerprint</dt><dd>{esc(record.fingerprint[:12])}</dd>{files}</dl>"
    )


def _attempts(record: JobRecord) -> str:
    if not record.attempts:
        return ""
    head = "<tr><th>#</th><th>request</th><th>outcome</th><th>finished</th><th>error</th></tr>"
    body = "".join(
        f"<tr><td>{a.number}</td><td>{esc(a.request_id or '')}</td><td>{esc(a.outcome)}</td>"
        f"<td>{esc(iso(a.finished_at) or '')}</td><td>{esc(a.error or '')}</td></tr>"
        for a in record.attempts
    )
    return f'<table class="attempts">{head}{body}</table>'


def card(
    index: int,
    record: JobRecord,
    report_dir: str | os.PathLike[str],
    *,
    sweep_fields: Sequence[str] = (),
    shared: frozenset[str] = frozenset(),
) -> str:
    """One job's card: video (or the reason there is none), prompt, shots and facts.

    Payload fields in `shared` are shown by the group heading instead (the prompt and
    shots stay in the card, hidden, so the text search still finds them)."""
    state = record.state.value
    sweep = DOT.join(
        f"{esc(f)}={esc(value_label(record.sweep[f]))}" for f in sweep_fields if f in record.sweep
    )
    repeat = f"repeat {record.repeat + 1}" if record.repeat else ""
    tag = DOT.join(part for part in (sweep, repeat) if part)
    error = (
        f'<p class="error">{esc(record.error)}</p>'
        if record.error and record.state is not JobState.DONE
        else ""
    )
    n_attempts = len(record.attempts)
    return (
        f'<article class="card state-{state}" id="c{index}" data-state="{state}">'
        f"{_media(record, report_dir)}"
        f'<div class="head"><span class="badge state-{state}">{state}</span>'
        f'<span class="key">{esc(record.key)}</span></div>'
        + (f'<p class="sweepvals">{tag}</p>' if tag else "")
        + f'<p class="prompt"{" hidden" if "prompt" in shared else ""}>'
        f"{esc(record.payload.get('prompt', ''))}</p>"
        f"{_shots(record.payload, hidden='multi_prompt' in shared)}"
        f"{_params(record.payload, shared | set(sweep_fields))}{error}"
        f'<details class="more"><summary>request, timings, files, {n_attempts} attempt(s)'
        f"</summary>{_facts(record, report_dir)}{_attempts(record)}</details></article>"
    )


def _select(axis: str, fields: Sequence[str], chosen: str | None) -> str:
    options = ['<option value="">(none)</option>'] + [
        f'<option value="{esc(f)}"{" selected" if f == chosen else ""}>{esc(f)}</option>'
        for f in fields
    ]
    return f'<select data-axis="{axis}">{"".join(options)}</select>'


def _corner(rows: str | None, cols: str | None) -> str:
    joiner = " \u2193 \u00d7 " if rows and cols else ""
    return (rows or "") + joiner + (f"{cols} \u2192" if cols else "")


def _grid_table(group: Group, card_of: Callable[[JobRecord], str]) -> Iterator[str]:
    rows, cols = group.default_layout
    grid = layout(group, rows, cols)
    head = "".join(f'<th class="col">{esc(c.col or "")}</th>' for c in grid[0])
    yield (
        f'<table class="grid"><thead><tr><th class="corner">{esc(_corner(rows, cols))}</th>'
        f"{head}</tr></thead><tbody>"
    )
    for line in grid:
        yield (
            f'<tr><th class="row">{esc(line[0].row or "")}</th>'
            + "".join(
                f'<td><div class="cell">{"".join(card_of(r) for r in c.records)}</div></td>'
                for c in line
            )
            + "</tr>"
        )
    yield "</tbody></table>"


def _grid_section(
    gid: str,
    group: Group,
    card_of: Callable[[JobRecord], str],
    part: Part,
    shared: Mapping[str, Any],
) -> Iterator[str]:
    """The grid of `part` (`group`: the jobs it shows; `shared`: what the whole grid's jobs
    share); a part of a bigger grid says which part, of how many jobs in all."""
    whole = part.whole or group
    rows, cols = group.default_layout
    fields = [axis.field for axis in group.axes]
    shape = " \u00d7 ".join(f"{len(a.labels)} {esc(a.field)}" for a in whole.axes)
    repeats = len({r.repeat for r in whole.records})
    extra = f" \u00d7 {repeats} repeats" if repeats > 1 else ""
    count = f"{len(whole.records)} jobs"
    if whole is not group:
        count = f"{len(group.records)} of {count}"
    prompt = f'<p class="prompt">{esc(shared["prompt"])}</p>' if "prompt" in shared else ""
    yield (
        f'<section class="group sweep" id="{gid}"><h2>{esc(group.name)} '
        f"<small>{count}: {shape}{extra}</small>{_part_label(part)}</h2>"
        f'<div class="shared">{prompt}{_shots(shared)}{_params(shared)}</div>'
        f'<div class="axes"><label>rows {_select("rows", fields, rows)}</label> '
        f"<label>columns {_select('cols', fields, cols)}</label></div>"
        f'<div class="grid-wrap">'
    )
    yield from _grid_table(group, card_of)
    yield "</div></section>"


def _grid_data(gid: str, group: Group, index_of: Mapping[int, int]) -> dict[str, Any]:
    rows, cols = group.default_layout
    ordered = sorted(group.records, key=lambda r: r.repeat)
    return {
        "id": gid,
        "axes": [{"field": a.field, "labels": list(a.labels)} for a in group.axes],
        "rows": rows,
        "cols": cols,
        "cards": [
            {
                "id": f"c{index_of[r.id]}",
                "v": {a.field: group.label(r, a.field) for a in group.axes},
            }
            for r in ordered
        ],
    }


def _header(
    title: str,
    current: Sequence[JobRecord],
    render_times: Sequence[str] = (),
    money: Money | None = None,
    emulated: bool = False,
) -> str:
    """The top of every page, up to the filters: the whole run's summary and money."""
    counts = Counter(r.state for r in current)
    done = [r for r in current if r.state is JobState.DONE]
    seconds = sum(
        d for r in done if isinstance(d := r.payload.get("duration"), int | float) and d > 0
    )
    if money is None:  # no state at hand: what the records say of finished jobs
        spent = sum(r.cost for r in done)
        money = Money(estimated=sum(r.cost for r in current), spent=spent)
    runs = sorted({r.run for r in current})
    models = sorted({r.model for r in current})
    bits = [f"<b>{len(current)}</b> jobs"] + [
        f"{esc(s.value)} <b>{counts[s]}</b>" for s in STATE_ORDER if counts[s]
    ]
    bits.append(f"{seconds:g} s of video")
    return (
        f'<header class="top"><h1>{esc(title)}</h1>'
        f'<p class="summary">run {esc(", ".join(runs) or DASH)}{DOT}'
        f"model {esc(', '.join(models) or DASH)}{DOT}{DOT.join(bits)}</p>"
        f'<p class="summary money">money: {esc(money.text(emulated=emulated))}</p>'
        + (
            f'<p class="summary render-times">render times seen: '
            f"{DOT.join(esc(line) for line in render_times)}</p>"
            if render_times
            else ""
        )
    )


def _controls(records: Iterable[JobRecord]) -> str:
    """The state filters (counts of the cards on this page) and the search box."""
    counts = Counter(r.state for r in records)
    boxes = "".join(
        f'<label><input type="checkbox" data-state-filter value="{s.value}" checked> '
        f'<span class="badge state-{s.value}">{s.value}</span> {counts[s]}</label>'
        for s in STATE_ORDER
        if counts[s]
    )
    return (
        f'<div class="controls">{boxes}<input type="search" id="search" '
        f'placeholder="search prompts and keys" aria-label="search prompts and keys">'
        f'<span id="shown"></span></div>'
    )


def render_html(records: Sequence[JobRecord], **options: Any) -> str:
    """The gallery page of `records` as one text: every job on one page (`options`: those
    of `html_pieces`)."""
    return "".join(html_pieces(records, **options))


def html_pieces(
    records: Sequence[JobRecord],
    *,
    out_dir: str | os.PathLike[str],
    title: str | None = None,
    render_times: Sequence[str] = (),
    money: Money | None = None,
    emulated: bool = False,
) -> Iterator[str]:
    """Every job on one page, in pieces as they are made (see `Pages`)."""
    pages = Pages(
        records,
        per_page=max(1, len(records)),
        title=title,
        render_times=render_times,
        money=money,
        emulated=emulated,
    )
    return pages.page(0, {r.id: r for r in records}, out_dir=out_dir, names=["report.html"])


GENERATOR = "batcher report"  # in every page's head: how a page of ours is known again
PAGE_CARDS = 1_000  # cards per page: a page a browser opens at once, whatever the night


@dataclass(frozen=True)
class Part:
    """A page's share of one section: a sweep grid (or a part of one: its own grid of those
    jobs), plain cards, or superseded versions."""

    kind: str  # "grid", "plain" or "history"
    records: tuple[JobRecord, ...]  # in display order
    group: Group | None = None  # "grid": the group (or the part of it) this page shows
    number: int = 1  # which part of its section this is (1-based)
    of: int = 1  # how many parts its section has
    whole: Group | None = None  # "grid": the whole group this is a part of


class Pages:
    """The gallery of a run cut into pages of at most `per_page` cards.

    Made from *lean* records (what grouping and the summary need: payload, sweep, state,
    cost; attempts and files may be left out); each page is then rendered from the full
    records of its own jobs only, so a 100,000-job night is rendered in bounded memory
    and opens in a browser. Sections stay whole on a page when they fit on one; a sweep
    grid bigger than a page is cut, in grid order, into parts, each its own grid. Every
    page carries the whole run's summary and links to the other pages."""

    def __init__(
        self,
        records: Sequence[JobRecord],
        *,
        per_page: int = PAGE_CARDS,
        title: str | None = None,
        render_times: Sequence[str] = (),
        money: Money | None = None,
        emulated: bool = False,
    ) -> None:
        _LISTINGS.clear()  # the folders as they are now: listed once for all the pages
        self.index_of = {r.id: i for i, r in enumerate(records)}
        current = [r for r in records if r.current]
        superseded = [r for r in records if not r.current]
        groups, plain = group_records(current)
        sections: list[tuple[str, Group | None, Sequence[Sequence[JobRecord]]]] = [
            ("grid", g, grid_rows(g))
            for g in groups  # in grid order, row by row
        ]
        if plain:
            sections.append(("plain", None, [plain]))
        if superseded:
            sections.append(("history", None, [superseded]))
        self.parts = _paginate(sections, per_page)
        self.section_sizes = {"plain": len(plain), "history": len(superseded)}
        self._shared: dict[int, dict[str, Any]] = {}
        self.plain_heading = "Jobs" if groups else "Gallery"
        runs = ", ".join(sorted({r.run for r in records})) or "empty"
        self.title = title or f"batcher report: {runs}"
        self.header = _header(self.title, current, render_times, money, emulated)
        self.empty = not records
        self.trouble = [  # per page: current jobs that did not end well
            sum(
                1
                for part in parts
                for r in part.records
                if r.current and r.state in (JobState.FAILED, JobState.UNKNOWN)
            )
            for parts in self.parts
        ]

    def __len__(self) -> int:
        return len(self.parts)

    def shared(self, group: Group) -> dict[str, Any]:
        """`group.shared`, worked out once per group (it reads every job of the group)."""
        found = self._shared.get(id(group))
        if found is None:
            found = self._shared[id(group)] = group.shared
        return found

    def of_all(self, part: Part) -> str:
        """` <small>(N jobs)</small>`, or `N of M jobs` for a part of a bigger section."""
        total = self.section_sizes.get(part.kind, len(part.records))
        count = f"{len(part.records)} of {total}" if part.of > 1 else str(total)
        return f" <small>({count} jobs)</small>"

    def records(self, n: int) -> list[JobRecord]:
        """The records of page `n` (0-based), as given: `page` needs their full forms."""
        return [r for part in self.parts[n] for r in part.records]

    def page(
        self,
        n: int,
        full: Mapping[int, JobRecord],
        *,
        out_dir: str | os.PathLike[str],
        names: Sequence[str],
    ) -> Iterator[str]:
        """Page `n` (0-based) in pieces as they are made; `full`: job id -> full record of
        (at least) this page's jobs; `names`: every page's file name (links between them);
        `out_dir`: the folder the page is saved in (video sources are relative to it)."""
        parts = self.parts[n]
        out_dir = os.fspath(out_dir)  # once, not once per file
        of = f" (page {n + 1} of {len(names)})" if len(names) > 1 else ""
        pager = _pager(n, names, self.trouble)
        yield (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{content_security_policy()}">'
            '<meta name="referrer" content="no-referrer">'
            f'<meta name="generator" content="{GENERATOR}">'
            f'<meta name="batcher-first-page" content="{esc(names[0])}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(self.title)}{of}</title><style>{asset('page.css')}</style></head>"
            f"<body>{self.header}{_controls(self.records(n))}{pager}</header><main>"
        )
        grids: list[dict[str, Any]] = []
        for k, part in enumerate(parts):
            gid = f"g{k}"

            fields = [a.field for a in part.group.axes] if part.group is not None else []
            hidden = frozenset(self.shared(part.whole)) if part.whole is not None else None

            def card_of(
                record: JobRecord,
                fields: list[str] = fields,
                hidden: frozenset[str] | None = hidden,
            ) -> str:
                whole = full.get(record.id, record)  # gone meanwhile (forgotten): as planned
                if hidden is None:
                    return card(self.index_of[record.id], whole, out_dir)
                return card(
                    self.index_of[record.id], whole, out_dir, sweep_fields=fields, shared=hidden
                )

            if part.group is not None and part.whole is not None:
                shared = self.shared(part.whole)
                yield from _grid_section(gid, part.group, card_of, part, shared)
                grids.append(_grid_data(gid, part.group, self.index_of))
            elif part.kind == "plain":
                yield (
                    f'<section class="group plain" id="plain"><h2>{self.plain_heading}'
                    f'{self.of_all(part)}{_part_label(part)}</h2><div class="gallery">'
                )
                yield from (card_of(r) for r in part.records)
                yield "</div></section>"
            else:
                yield (
                    f'<section class="group history" id="history"><details><summary>'
                    f"Superseded versions{self.of_all(part)}{_part_label(part)}: edited "
                    f'since, kept for history</summary><div class="gallery">'
                )
                yield from (card_of(r) for r in part.records)
                yield "</div></details></section>"
        if self.empty:
            yield '<p class="empty">This run has no jobs.</p>'
        yield (
            f"</main>{pager}"
            '<script type="application/json" id="batcher-data">'
            f"{script_json({'groups': grids})}</script>"
            f"<script>{asset('page.js')}</script></body></html>\n"
        )


def page_names(first: str, count: int) -> list[str]:
    """File names of a report's pages: `report.html`, then `report-2.html`, ..."""
    stem, suffix = os.path.splitext(first)
    return [first, *(f"{stem}-{k}{suffix}" for k in range(2, count + 1))]


def _pager(n: int, names: Sequence[str], trouble: Sequence[int] = ()) -> str:
    """Links to every page (previous, next, each by number; pages holding failed or
    unknown jobs marked), or nothing for a one-page report."""
    if len(names) < 2:
        return ""

    def mark(k: int) -> str:
        bad = trouble[k] if k < len(trouble) else 0
        return f' class="trouble" title="{bad} failed or unknown"' if bad else ""

    def link(k: int, text: str, rel: str = "") -> str:
        return f'<a href="{esc(quote(names[k]))}"{rel}{mark(k)}>{text}</a>'

    items = [link(n - 1, "\u2190 previous", ' rel="prev"')] if n > 0 else []
    items += [
        f'<b aria-current="page"{mark(k)}>{k + 1}</b>' if k == n else link(k, str(k + 1))
        for k in range(len(names))
    ]
    if n + 1 < len(names):
        items.append(link(n + 1, "next \u2192", ' rel="next"'))
    return f'<nav class="pages">page {n + 1} of {len(names)}: {" ".join(items)}</nav>'


def _part_label(part: Part) -> str:
    return f" <small>(part {part.number} of {part.of})</small>" if part.of > 1 else ""


def _paginate(
    sections: Sequence[tuple[str, Group | None, Sequence[Sequence[JobRecord]]]], per_page: int
) -> list[list[Part]]:
    """Sections (each as units: a grid's rows, else all its cards as one) onto pages: whole
    where a section fits on a page; a grid bigger than a page cut between its rows (a row
    bigger than a page between its cards), each part keeping the grid's layout."""
    pages: list[list[Part]] = [[]]
    room = per_page
    for kind, group, units in sections:
        size = sum(len(unit) for unit in units)
        if room < size <= per_page and pages[-1]:
            pages.append([])  # it fits on a page of its own: kept whole
            room = per_page
        chunks: list[tuple[int, list[JobRecord]]] = []
        for unit in units:
            at = 0
            while at < len(unit):
                left = len(unit) - at
                if room == 0 or (room < left <= per_page and room < per_page):
                    pages.append([])  # a grid row that fits on a page is not cut
                    room = per_page
                take = unit[at : at + room]
                if not chunks or chunks[-1][0] != len(pages) - 1:
                    chunks.append((len(pages) - 1, []))
                chunks[-1][1].extend(take)
                at += len(take)
                room -= len(take)
        for i, (page, chunk) in enumerate(chunks):
            part_group = group
            if group is not None and len(chunks) > 1:
                part_group = regroup(group, chunk)
            pages[page].append(Part(kind, tuple(chunk), part_group, i + 1, len(chunks), group))
    return pages
