"""Pure retry classification and back-off, table-tested."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from batcher import errors
from batcher.retry import Action, Backoff, classify, parse_retry_after

E = errors
CASES = [
    # (error, is_submit, expected action)
    (E.AuthError("bad token", status_code=401), True, Action.FATAL),
    (E.AuthError("bad token", status_code=401), False, Action.FATAL),
    (E.InsufficientBalance("no money", status_code=402), True, Action.STOP_SUBMITTING),
    (E.InvalidInput("bad input", status_code=422), True, Action.FAIL_JOB),
    (E.RequestNotFound("expired", status_code=404, error_code=404001), False, Action.EXPIRED),
    (E.RequestNotFound("no such model route", status_code=404), True, Action.FAIL_JOB),
    (E.RateLimited("slow down", status_code=429), True, Action.RETRY),
    (E.RateLimited("slow down", status_code=429), False, Action.RETRY),
    (E.ServerError("boom", status_code=502), True, Action.UNKNOWN),
    (E.ServerError("boom", status_code=502), False, Action.RETRY),
    (E.ServerError("timeout", status_code=408), True, Action.UNKNOWN),
    (E.MalformedAnswer("no request id", status_code=200), True, Action.UNKNOWN),
    (E.MalformedAnswer("not json", status_code=200), False, Action.RETRY),
    (E.TransportError("refused", sent=False), True, Action.RETRY),
    (E.TransportError("read timeout", sent=True), True, Action.UNKNOWN),
    (E.UnknownOutcome("read timeout"), True, Action.UNKNOWN),
    (E.TransportError("read timeout", sent=True), False, Action.RETRY),
    (E.ApiError("teapot", status_code=418), True, Action.FAIL_JOB),
    (E.ApiError("teapot", status_code=418), False, Action.FAIL_JOB),
]


@pytest.mark.parametrize(("exc", "is_submit", "expected"), CASES)
def test_classify(exc: errors.BatcherError, is_submit: bool, expected: Action) -> None:
    assert classify(exc, is_submit=is_submit) is expected


def test_a_paid_post_is_only_retried_when_nothing_was_sent_or_429() -> None:
    retried = [exc for exc, sub, act in CASES if sub and act is Action.RETRY]
    assert all(
        isinstance(e, E.RateLimited) or (isinstance(e, E.TransportError) and not e.sent)
        for e in retried
    )


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    b = Backoff(base=1.0, factor=2.0, cap=10.0)
    rng = random.Random(7)
    delays = [b.delay(n, rng=rng) for n in range(1, 8)]
    for n, d in enumerate(delays, start=1):
        ceiling = min(10.0, 2 ** (n - 1))
        assert ceiling / 2 <= d <= ceiling
    assert max(delays) <= 10.0


def test_backoff_honours_retry_after_within_a_cap() -> None:
    b = Backoff(retry_after_cap=100.0)
    rng = random.Random(0)
    assert b.delay(1, retry_after=7.0, rng=rng) == 7.0
    assert b.delay(1, retry_after=5000.0, rng=rng) == 100.0


def test_parse_retry_after_seconds_and_http_date() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("12", now=now) == 12.0
    when = format_datetime(datetime.fromtimestamp(now + 30, UTC), usegmt=True)
    assert parse_retry_after(when, now=now) == pytest.approx(30.0)
    past = format_datetime(datetime.fromtimestamp(now - 30, UTC), usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0
    assert parse_retry_after(None, now=now) is None
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after("", now=now) is None
