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

    `report` hears when trouble begins, every `remind` seconds while it lasts, and when
    the API answers again, so an outage is never silent."""

    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    backoff: Backoff = field(default_factory=Backoff)
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0
    open_until: float = 0.0
    report: Callable[[Outage], None] | None = None
    remind: float = 30.0
    _since: float | None = None
    _told: float = 0.0

    def failure(self, retry_after: float | None = None, *, cause: str = "API failing") -> float:
        """Record a failure; returns the delay now imposed on everyone."""
        self.failures += 1
        delay = self.backoff.delay(self.failures, retry_after=retry_after, rng=self.rng)
        now = self.clock()
        self.open_until = max(self.open_until, now + delay)
        pause = self.open_until - now
        if self._since is None:
            self._since = self._told = now
            self._tell(Outage("outage", cause, now, pause))
        elif now - self._told >= self.remind:
            self._told = now
            self._tell(Outage("still", cause, self._since, pause))
        return delay

    def success(self) -> None:
        self.failures = 0
        if self._since is not None:
            since, self._since = self._since, None
            self._tell(Outage("recovered", "", since))

    def _tell(self, outage: Outage) -> None:
        if self.report is not None:
            self.report(outage)

    @property
    def is_open(self) -> bool:
        return self.clock() < self.open_until

    async def wait(self) -> None:
        """Return once the back-off has passed."""
        while (left := self.open_until - self.clock()) > 0:
            await self.sleep(left)
