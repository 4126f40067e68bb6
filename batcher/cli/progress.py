"""Progress on long runs: a live rich panel on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

from batcher.models import Event, Money

ORDER = (
    "pending",
    "submitting",
    "queued",
    "running",
    "downloading",
    "done",
    "failed",
    "unknown",
    "cancelled",
)
QUIET_KINDS = frozenset({"submitted", "running"})  # shown with -v only
ATTENTION_KINDS = frozenset({"failed", "unknown", "stop", "warn", "outage", "recovered"})  # -q


class Progress:
    """Shows events and periodic counts; `live=False` prints one line per event."""

    def __init__(
        self,
        counts: Callable[[], dict[str, int]],
        money: Callable[[], Money],
        *,
        live: bool,
        verbose: bool = False,
        quiet: bool = False,
        typical_render: float | None = None,
        concurrency: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._counts, self._money, self._clock = counts, money, clock
        self._figures: tuple[dict[str, int], Money] | None = None
        self._fresh_until = 0.0
        self._typical, self._concurrency = typical_render, max(1, concurrency)
        self._live_on, self._verbose, self._quiet = live, verbose, quiet
        self._recent: deque[str] = deque(maxlen=5)
        self._start = time.monotonic()
        self._done_at_start: int | None = None
        self._live: Live | None = None
        self._outage: str | None = None  # the API trouble going on, if any

    def __enter__(self) -> Progress:
        if self._live_on:
            self._live = Live(
                self._render(), console=Console(stderr=True), refresh_per_second=4, transient=False
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(None, None, None)

    def event(self, e: Event) -> None:
        stamp = time.strftime("%H:%M:%S")
        line = " ".join(part for part in (f"{e.kind:<10}", e.key, e.message) if part).rstrip()
        if e.kind == "outage":
            self._outage = f"{stamp} {e.message}"
        elif e.kind == "recovered":
            self._outage = None
        if e.kind in ("failed", "unknown", "retry", "stop", "warn", "outage", "recovered"):
            self._recent.append(f"{stamp} {line}")
        shown = (
            e.kind in ATTENTION_KINDS if self._quiet else self._verbose or e.kind not in QUIET_KINDS
        )
        if self._live is None and shown:
            click.echo(f"{stamp} {line}", err=False)  # every plain line says when
            sys.stdout.flush()

    def tick(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def _read(self) -> tuple[dict[str, int], Money]:
        """Counts and money from the state, read again only once the last reading is old
        by twenty times what it cost: the panel's queries (a fifth of a second on a
        100,000-job state) never take more than a twentieth of the event loop."""
        start = self._clock()
        if self._figures is None or start >= self._fresh_until:
            self._figures = (self._counts(), self._money())
            self._fresh_until = self._clock() + 20 * (self._clock() - start)
        return self._figures

    def _render(self) -> Table:
        counts, money = self._read()
        done = counts.get("done", 0)
        if self._done_at_start is None:
            self._done_at_start = done
        total = sum(counts.values())
        elapsed = max(time.monotonic() - self._start, 1e-6)
        rate = (done - self._done_at_start) / elapsed * 60
        left = total - done - counts.get("failed", 0) - counts.get("cancelled", 0)
        eta = "-"
        if rate > 0 and left:
            eta = _span(left / rate * 60)
        elif self._typical and left:  # nothing finished yet: what earlier renders took
            waves = -(-left // self._concurrency)
            eta = f"~{_span(max(0.0, waves * self._typical - elapsed))} (from render times seen)"
        table = Table(title="batcher", show_header=False, box=None)
        table.add_row("jobs", "  ".join(f"{s} {counts[s]}" for s in ORDER if counts.get(s)))
        table.add_row(
            "progress", f"{done}/{total} done, {rate:.1f}/min, ETA {eta}, elapsed {elapsed:.0f} s"
        )
        table.add_row("money", money.text())
        if self._outage is not None:
            table.add_row("api", self._outage)
        for line in self._recent:
            table.add_row("", line)  # whole: rich wraps it to the terminal
        return table


def _span(seconds: float) -> str:
    """`40 s`, `1.5 min`, `2.3 h`."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
