"""Pacing decisions for the scheduler: the shared back-off (circuit breaker) and the
adaptive poll interval. Pure arithmetic over an injected clock; the only waiting is
`Breaker.wait`, through an injected sleep.
"""

from __future__ import annotations

import random
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

    - Nothing seen yet in this run: intervals grow with the time already waited
      (a quarter of it), so a long render costs few requests.
    - Render times seen: sleep until the earliest plausible finish (10th percentile of
      seconds per video second), then poll briskly (`fast`, or 3% of the time waited)
      through the likely window (to the 90th percentile), then grow again.
    - Queued behind others: wait about the time the jobs ahead should take.
    Times count from when the job was first seen running when known, else from submit.
    """

    fast: float = 1.0  # the shortest interval
    maximum: float = 30.0  # the longest interval
    concurrency: int = 1
    seen: list[float] = field(default_factory=list)  # render seconds per video second

    def observe(self, render_seconds: float, video_seconds: float) -> None:
        if render_seconds > 0 and video_seconds > 0:
            self.seen.append(render_seconds / video_seconds)
            del self.seen[:-200]

    def bounds(self, video_seconds: float) -> tuple[float, float]:
        """Earliest and latest plausible render time for this length of video."""
        rates = sorted(self.seen) or [0.0]
        lo = rates[int(0.1 * (len(rates) - 1))]
        hi = rates[int(round(0.9 * (len(rates) - 1)))]
        v = max(video_seconds, 1.0)
        return lo * v, hi * v

    def interval(
        self,
        *,
        elapsed: float,
        video_seconds: float,
        position: int | None,
        running_for: float | None = None,
    ) -> float:
        """Seconds until the next status poll of one job."""
        if position and self.seen:
            lo, hi = self.bounds(video_seconds)
            return self._clamp(position * (lo + hi) / 2 / max(1, self.concurrency))
        t = running_for if running_for is not None else elapsed
        if not self.seen:
            return self._clamp(0.25 * t)
        lo, hi = self.bounds(video_seconds)
        brisk = max(self.fast, 0.03 * t)
        if t + brisk < lo:
            return self._clamp(lo - t)
        if t <= hi + brisk:
            return min(brisk, self.maximum)
        return self._clamp(0.25 * (t - hi))

    def _clamp(self, seconds: float) -> float:
        return min(self.maximum, max(self.fast, seconds))
