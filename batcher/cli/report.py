"""`batcher report`: the HTML gallery, JSONL/CSV manifests or a reproducing job file.

Invariants: the report package renders text; this module alone reads the store for it and
writes files (atomically: a temporary file in the target folder, then a rename, so a
half-written report never carries the final name). Unknown runs and missing state files
are StateErrors (exit 2) that name what exists.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import click

from batcher import collector
from batcher.cli.common import count, err, handle_errors, state_option
from batcher.errors import StateError
from batcher.models import JobRecord, Money
from batcher.operations import render_time_lines, render_times
from batcher.posters import ensure_posters, ensure_posters_at
from batcher.report import csv_lines, html_pieces, jsonl_lines, render_yaml
from batcher.report.html import GENERATOR, PAGE_CARDS, Pages, esc, page_names
from batcher.store import Store

FORMATS = ("html", "csv", "jsonl", "yaml")
SUFFIX = {"html": ".html", "csv": ".csv", "jsonl": ".jsonl", "yaml": ".yaml"}


def pick_run(store: Store, run: str | None) -> str:
    """The named run, or the newest one; StateError naming the known runs otherwise."""
    runs = store.run_names()
    if not runs:
        raise StateError(f"{store.path}: no runs yet (run `batcher run FILE` first)")
    if run is None:
        return runs[-1]
    if run not in runs:
        raise StateError(f"no run named {run!r} in {store.path} (runs: {', '.join(runs)})")
    return run


def write_text(path: Path, text: str | Iterable[str]) -> None:
    """Write `text` (or its pieces, as they come) to `path` atomically (temp file in the
    same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.fchmod(fd, 0o666 & ~mask)  # as any file (the videos), not mkstemp's 0600
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.writelines([text] if isinstance(text, str) else text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def report_path(output: str | None, run_out_dir: str, fmt: str) -> Path:
    """Where a report goes: -o PATH (a folder, or a path ending in /, gets
    `report.<ext>`), else `report.<ext>` in the run's output folder."""
    if output is None:
        return Path(run_out_dir) / f"report{SUFFIX[fmt]}"
    if output.endswith(("/", os.sep)) or Path(output).is_dir():
        return Path(output) / f"report{SUFFIX[fmt]}"
    return Path(output)


def render(
    records: Iterable[JobRecord],
    fmt: str,
    *,
    page_dir: Path,
    title: str,
    partial: bool = False,
    render_times: Sequence[str] = (),
    money: Money | None = None,
    emulated: bool = False,
) -> Iterable[str]:
    """The report of `records` in `fmt`, in pieces (html sources relative to `page_dir`).
    The manifests stream: `records` may be an iterator, read once, as they are written."""
    if fmt == "csv":
        return csv_lines(records)
    if fmt == "jsonl":
        return jsonl_lines(records)
    records = list(records)
    if fmt == "html":
        return html_pieces(
            records,
            out_dir=page_dir,
            title=title,
            render_times=render_times,
            money=money,
            emulated=emulated,
        )
    return [render_yaml(records, partial=partial)]


def write_html_report(store: Store, run: str, output: Path | None) -> Path:
    """Write the HTML report of `run` (default `<run out_dir>/report.html`); its path."""
    run = pick_run(store, run)
    path = report_path(None if output is None else str(output), store.run_info(run).out_dir, "html")
    write_html_pages(store, run, path)
    return path


def write_html_pages(
    store: Store, run: str, path: Path, *, per_page: int = PAGE_CARDS
) -> tuple[int, int]:
    """The HTML report of `run` at `path`, in pages of `per_page` jobs (`report.html`,
    `report-2.html`, ...; pages a bigger report left behind are removed), posters made
    first; (job versions shown, pages). Memory: lean records of the run and the full
    records of one page at a time."""
    with collector.paused():  # the run's lean records live until the last page is written
        return _write_html_pages(store, run, path, per_page)


def _write_html_pages(store: Store, run: str, path: Path, per_page: int) -> tuple[int, int]:
    made = ensure_posters_at(
        store.run_info(run).out_dir,
        store.output_paths(run),
        making=lambda: err("making poster frames (each video's first frame, once)..."),
    )
    if made:
        err(f"made {count(made, 'poster frame')}")
    lean = list(store.iter_records(run, lean=True))
    pages = Pages(lean, per_page=per_page, **_about(store, run))
    names = page_names(path.name, len(pages))
    folder = path.parent.resolve()
    for n, name in enumerate(names):
        full = store.completed(pages.records(n))
        write_text(folder / name, pages.page(n, full, out_dir=folder, names=names))
    extra = len(pages) + 1
    while _ours(stale := folder / page_names(path.name, extra)[-1], path.name):
        stale.unlink()  # a page of a bigger report before (numbered without gaps)
        extra += 1
    if extra > len(pages) + 1:
        err(f"removed {count(extra - len(pages) - 1, 'page')} of an earlier, longer report")
    return len(lean), len(pages)


def _ours(page: Path, first: str) -> bool:
    """Whether `page` is a page batcher wrote of the report whose first page is `first`
    (its head names both), not a page of another report or anyone else's file."""
    try:
        with page.open("rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    mine = f'<meta name="generator" content="{GENERATOR}">'
    mine += f'<meta name="batcher-first-page" content="{esc(first)}">'
    return mine.encode() in head


def _about(store: Store, run: str) -> dict[str, Any]:
    """What a report page says of its run beside the jobs: title, render times, money."""
    info = store.run_info(run)
    return {
        "title": f"batcher: {run}",
        "render_times": render_time_lines(render_times(store, [info.model], now=time.time())),
        "money": store.money([run]),
        "emulated": info.options.get("api") == "emulator",
    }


@click.command()
@click.argument("run", required=False)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="html",
    show_default=True,
    help="html gallery, csv/jsonl manifest, or a yaml job file that reproduces the run.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=True),
    default=None,
    help="Where to write ('-' for stdout). Default: html -> <run output folder>/report.html, "
    "others -> stdout.",
)
@click.option(
    "--partial",
    is_flag=True,
    help="yaml: leave out jobs no job entry can re-create (listed in the file's header) "
    "instead of failing.",
)
@click.option(
    "--per-page",
    type=click.IntRange(min=1),
    default=PAGE_CARDS,
    show_default=True,
    help="html: jobs per page (a bigger run gets report-2.html, ... linked from each page).",
)
@click.option(
    "--open", "open_it", is_flag=True, help="Open the written report (your desktop's viewer)."
)
@state_option
@handle_errors
def report(
    run: str | None,
    fmt: str,
    output: str | None,
    partial: bool,
    per_page: int,
    open_it: bool,
    state_path: Path,
) -> None:
    """Write a report of RUN (default: the newest run).

    \b
    Examples:
      batcher report                      # outputs/<run>/report.html, with poster frames
      batcher report night --format csv -o night.csv
      batcher report night --format yaml > again.yaml   # a job file that re-creates it
    """
    with Store.open(state_path, create=False, read_only=True) as store:
        name = pick_run(store, run)
        run_out = store.run_info(name).out_dir
        to_stdout = output == "-" or (output is None and fmt != "html")
        pages = 1
        if fmt == "html" and not to_stdout:
            path = report_path(output, run_out, fmt)
            seen, pages = write_html_pages(store, name, path, per_page=per_page)
        else:
            seen = 0

            def counted() -> Iterator[JobRecord]:
                nonlocal seen
                for record in store.iter_records(name):
                    seen += 1
                    yield record

            records: Iterable[JobRecord] = counted()
            if fmt == "html":  # to stdout: one page
                records = list(records)
                ensure_posters(records)
            page_dir = Path.cwd() if to_stdout else report_path(output, run_out, fmt).parent
            pieces = render(records, fmt, page_dir=page_dir.resolve(), partial=partial,
                            **_about(store, name))  # fmt: skip
            if to_stdout:
                for piece in pieces:
                    click.echo(piece, nl=False)
                return
            path = report_path(output, run_out, fmt)
            write_text(path, pieces)
    more = f", {pages} pages: {path.name} links the others" if pages > 1 else ""
    click.echo(f"{fmt} report of run {name!r} ({count(seen, 'job version')}{more}): {path}")
    if open_it and click.launch(str(path), wait=True) != 0:
        err(f"batcher: warning: could not open {path}; open it yourself")


COMMANDS: list[click.Command] = [report]
