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
    now[0] = b.open_until  # a failure once the pause is over: the next round
    second = b.failure()
    assert 1.0 <= second <= 2.0
    assert b.failure(retry_after=5.0) == 5.0 and b.open_until == now[0] + 5.0
    now[0] += 5.1
    assert not b.is_open
    b.success()
    assert b.failures == 0


class _Top(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return b


def _breaker(now: list[float], heard: list, **kw: object) -> Breaker:
    async def sleep(seconds: float) -> None:  # the clock moves as the breaker sleeps
        now[0] += seconds

    return Breaker(
        clock=lambda: now[0],
        sleep=sleep,
        backoff=Backoff(base=1, cap=60),
        rng=_Top(),  # no jitter: each delay at its ceiling
        report=heard.append,
        **kw,  # type: ignore[arg-type]
    )


def test_failures_during_one_pause_do_not_stack_up() -> None:
    """Issue 12 (user test): eight polls failing at once made the pause 60 s at the first
    outage, so a 20 s outage cost 70 s without a request."""
    now, heard = [0.0], []
    b = _breaker(now, heard)
    assert [b.failure() for _ in range(8)] == [1.0] * 8  # one round, whoever reports it
    now[0] = b.open_until  # the pause is over: the next failure is a new round
    assert b.failure() == 2.0
    now[0] = b.open_until
    assert b.failure() == 4.0


def test_a_lone_failure_is_not_an_outage_but_a_second_round_is() -> None:
    now, heard = [0.0], []
    b = _breaker(now, heard)
    b.failure(cause="API failing")
    now[0] = b.open_until
    b.success()
    assert heard == []  # one 503 then an answer: nothing to tell
    b.failure(cause="API unreachable")
    now[0] = b.open_until
    b.failure(cause="API unreachable")
    assert [(o.kind, o.since, o.cause) for o in heard] == [
        ("outage", 1.0, "API unreachable")
    ]  # since the first failure of the trouble
    now[0] = b.open_until  # the pause is over and a call works
    b.success()
    assert [o.kind for o in heard] == ["outage", "recovered"]


def test_a_long_pause_is_told_at_once_and_reminded_while_it_lasts() -> None:
    import anyio

    now, heard = [0.0], []
    b = _breaker(now, heard, remind=30.0)
    b.failure(retry_after=75.0, cause="rate-limited (429)")
    assert [(o.kind, o.pause) for o in heard] == [("outage", 75.0)]  # long: say so now
    anyio.run(b.wait)
    assert now[0] == 75.0
    assert [(o.kind, o.since) for o in heard] == [("outage", 0.0), ("still", 0.0), ("still", 0.0)]


def test_an_answer_from_before_a_pause_does_not_end_it() -> None:
    """Review: a call sent before a 429 answering during its Retry-After said "recovered"
    and reset the rounds while everyone kept waiting in silence."""
    now, heard = [0.0], []
    b = _breaker(now, heard)
    b.failure(retry_after=60.0, cause="rate-limited (429)")
    now[0] = 10.0
    b.success()  # sent before the 429: the server's word stands
    assert b.is_open and [o.kind for o in heard] == ["outage"] and b.failures == 1
    now[0] = 60.0
    b.success()  # a call after the pause works: now it is over
    assert [o.kind for o in heard] == ["outage", "recovered"] and b.failures == 0
