"""Pacing decisions for the scheduler: the shared back-off (circuit breaker) and the
adaptive poll interval. Pure arithmetic over an injected clock; the only waiting is
`Breaker.wait`, through an injected sleep.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from batcher.retry import Backoff


@dataclass
class Breaker:
    """One shared back-off: when the API says 429 or is failing, every caller waits."""

    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    backoff: Backoff = field(default_factory=Backoff)
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0
    open_until: float = 0.0

    def failure(self, retry_after: float | None = None) -> float:
        """Record a failure; returns the delay now imposed on everyone."""
        self.failures += 1
        delay = self.backoff.delay(self.failures, retry_after=retry_after, rng=self.rng)
        self.open_until = max(self.open_until, self.clock() + delay)
        return delay

    def success(self) -> None:
        self.failures = 0

    @property
    def is_open(self) -> bool:
        return self.clock() < self.open_until

    async def wait(self) -> None:
        """Return once the back-off has passed."""
        while (left := self.open_until - self.clock()) > 0:
            await self.sleep(left)


@dataclass
class PollPlanner:
    """Adaptive poll intervals from queue position, elapsed time and render times seen.

    Far from the expected finish it polls rarely (half the remaining time, capped); near
    or past it, every `fast` seconds, so completion is noticed within a couple of seconds.
    """

    minimum: float = 1.0
    maximum: float = 30.0
    fast: float = 1.0
    prior_per_second: float = 30.0  # render seconds per video second before any is seen
    concurrency: int = 1
    seen: list[float] = field(default_factory=list)  # render seconds per video second

    def observe(self, render_seconds: float, video_seconds: float) -> None:
        if render_seconds > 0 and video_seconds > 0:
            self.seen.append(render_seconds / video_seconds)
            del self.seen[:-200]

    def expected(self, video_seconds: float) -> float:
        rate = statistics.median(self.seen) if self.seen else self.prior_per_second
        return rate * max(video_seconds, 1.0)

    def interval(self, *, elapsed: float, video_seconds: float, position: int | None) -> float:
        """Seconds until the next status poll of one job."""
        remaining = self.expected(video_seconds) - elapsed
        if position:
            remaining += position * self.expected(video_seconds) / max(1, self.concurrency)
        if remaining <= 2 * self.fast:
            return self.fast
        return min(self.maximum, max(self.minimum, remaining / 2))
