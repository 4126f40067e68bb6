"""The shared back-off (circuit breaker): when the API says 429 or is failing, every
submit and poll waits. Arithmetic over an injected clock; the only waiting is
`Breaker.wait`, through an injected sleep. (When to poll each job: `polling.py`.)
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from batcher.retry import Backoff


@dataclass
class Outage:
    """What the shared back-off tells the user: it began, goes on, or ended."""

    kind: str  # "outage", "still", "recovered"
    cause: str  # e.g. "rate-limited (429)", "API unreachable"
    since: float  # when the trouble began (clock time)
    pause: float = 0.0  # seconds everyone now waits ("outage", "still")


@dataclass
class Breaker:
    """One shared back-off: when the API says 429 or is failing, every caller waits.

    The pause grows by rounds, not by callers: failures reported while a pause is on
    (every job in flight meeting the same outage) count once; a failure after the pause
    has passed is the next round and doubles it (`backoff`), so the first probe after an
    outage ends comes soon.

    `report` hears when trouble begins, every `remind` seconds while it lasts (from the
    probes, and from `wait` while everyone waits), and when the API answers again, so an
    outage is never silent. A lone failure that the next call shrugs off is not an
    outage: trouble is told once it is a second round or imposes a pause of `notice`
    seconds or more."""

    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    backoff: Backoff = field(default_factory=Backoff)
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0  # rounds of failure in a row
    open_until: float = 0.0
    report: Callable[[Outage], None] | None = None
    remind: float = 30.0
    notice: float = 5.0
    _since: float | None = None  # when the trouble began
    _cause: str = ""
    _told: float | None = None  # when it was last told (None: not told yet)

    def failure(self, retry_after: float | None = None, *, cause: str = "API failing") -> float:
        """Record a failure; returns the delay now imposed on everyone."""
        now = self.clock()
        if now >= self.open_until or not self.failures:  # no pause on: a new round
            self.failures += 1
        delay = self.backoff.delay(self.failures, retry_after=retry_after, rng=self.rng)
        self.open_until = max(self.open_until, now + delay)
        pause = self.open_until - now
        self._cause = cause
        if self._since is None:
            self._since = now
        if self._told is None:
            if self.failures >= 2 or pause >= self.notice:
                self._told = now
                self._tell(Outage("outage", cause, self._since, pause))
        elif now - self._told >= self.remind:
            self._told = now
            self._tell(Outage("still", cause, self._since, pause))
        return delay

    def success(self) -> None:
        if self.clock() < self.open_until:
            # An answer to a call sent before the pause began: the server's word (a
            # Retry-After) still stands, and so does the outage until a call after it works.
            return
        self.failures = 0
        since, told = self._since, self._told
        self._since = self._told = None
        if since is not None and told is not None:
            self._tell(Outage("recovered", "", since))

    def _tell(self, outage: Outage) -> None:
        if self.report is not None:
            self.report(outage)

    @property
    def is_open(self) -> bool:
        return self.clock() < self.open_until

    async def wait(self) -> None:
        """Return once the back-off has passed (reminding, while it lasts, that it does)."""
        while (left := self.open_until - self.clock()) > 0:
            await self.sleep(min(left, self.remind))
            now = self.clock()
            told, since = self._told, self._since
            if told is not None and since is not None and now < self.open_until:
                if now - told >= self.remind:
                    self._told = now
                    self._tell(Outage("still", self._cause, since, self.open_until - now))
