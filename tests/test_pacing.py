"""The shared back-off, with an injected clock (poll planning: test_polling.py)."""

from __future__ import annotations

import random

from batcher.pacing import Breaker
from batcher.retry import Backoff


def test_breaker_shares_one_back_off_and_resets_on_success() -> None:
    now = [100.0]
    b = Breaker(
        clock=lambda: now[0],
        sleep=None,
        backoff=Backoff(base=1, cap=8),  # type: ignore[arg-type]
        rng=random.Random(0),
    )
    first = b.failure()
    assert 0.5 <= first <= 1.0 and b.is_open
    second = b.failure()
    assert 1.0 <= second <= 2.0
    assert b.failure(retry_after=5.0) == 5.0 and b.open_until == 105.0
    now[0] = 105.1
    assert not b.is_open
    b.success()
    assert b.failures == 0
