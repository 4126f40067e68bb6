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
