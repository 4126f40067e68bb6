"""Pure retry classification and back-off: a table, and properties over every input."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batcher import client, errors
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
    (E.UnknownOutcome("odd", sent=False), True, Action.UNKNOWN),  # the type decides
    (E.UnsendableRequest("invalid URL"), True, Action.FAIL_JOB),
    (E.UnsendableRequest("invalid URL"), False, Action.FATAL),
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


# -- classify as a property: every error type x sent flag x HTTP status x error_code ------
#
# API errors are made by the client's own `error_from`, so the property covers the real
# mapping from an answer to an action, not only the type table above.

KNOWN_CODES = sorted(client.KNOWN_CODES)
# What runcomfy-api.md says each known error_code means, whatever the HTTP status:
# (action on a submit, action on a poll).
CODE_MEANS = {
    400001: (Action.FAIL_JOB, Action.FAIL_JOB),  # invalid model id
    422001: (Action.FAIL_JOB, Action.FAIL_JOB),  # validation error
    400002: (Action.STOP_SUBMITTING, Action.STOP_SUBMITTING),  # insufficient balance
    400004: (Action.FATAL, Action.FATAL),  # bad or expired token
    401001: (Action.FATAL, Action.FATAL),  # unauthorized
    403001: (Action.FAIL_JOB, Action.EXPIRED),  # not your request: gone for us
    404001: (Action.FAIL_JOB, Action.EXPIRED),  # not found, deleted or expired
    500001: (Action.UNKNOWN, Action.RETRY),  # internal error: a POST may have landed
}
statuses = st.integers(100, 599) | st.sampled_from([200, 400, 401, 402, 403, 404, 408, 422, 429])
codes = st.none() | st.sampled_from(KNOWN_CODES) | st.integers(-1, 10**6) | st.just("400004")
bodies = st.none() | st.builds(
    lambda code, msg: {"error_code": code, "error_message": msg}, codes, st.text(max_size=8)
)
retry_afters = st.none() | st.floats(0, 1e6)


def _known(body: dict[str, object] | None) -> int | None:
    code = (body or {}).get("error_code")
    if isinstance(code, str) and code.isdigit():  # a code written as text is the code
        code = int(code)
    return code if isinstance(code, int) and code in CODE_MEANS else None


api_errors = st.builds(client.error_from, statuses, bodies, retry_afters)
transport_errors = st.builds(
    lambda kind, sent: kind("no answer", sent=sent),
    st.sampled_from([E.TransportError, E.UnknownOutcome]),
    st.booleans(),
)
other_errors = st.sampled_from(
    [
        E.UnsendableRequest("invalid URL"),
        E.MalformedAnswer("unreadable gzip"),  # raised before any status was known
        E.ApiError("odd", status_code=None),
        E.DownloadError("short file"),
        E.UrlExpired("403"),
        E.ConfigError("bad base URL"),
        E.StateBusy("locked"),
        E.BatcherError("root"),
    ]
)
every_error = api_errors | transport_errors | other_errors


def _may_have_been_accepted(exc: errors.BatcherError) -> bool:
    """A POST with this error may have created a (paid) request on the server."""
    if isinstance(exc, E.UnsendableRequest):
        return False
    if isinstance(exc, E.UnknownOutcome | E.ServerError | E.MalformedAnswer):
        return True
    if isinstance(exc, E.TransportError):
        return exc.sent
    return type(exc) is E.ApiError and exc.status_code is None


def _surely_not_sent(exc: errors.BatcherError) -> bool:
    return (
        type(exc) in (E.TransportError, E.UnsendableRequest) and not exc.sent  # type: ignore[attr-defined]
    )


PROPS = settings(max_examples=400, deadline=None)


@PROPS
@given(every_error, st.booleans())
def test_classify_is_total_and_keeps_its_promises(exc: errors.BatcherError, sub: bool) -> None:
    action = classify(exc, is_submit=sub)
    assert isinstance(action, Action)
    if isinstance(exc, E.AuthError):
        assert action is Action.FATAL
    if not sub:
        assert action is not Action.UNKNOWN  # only a POST has an unknown outcome
    if sub and action is Action.RETRY:  # a paid POST is sent again only when safe
        assert isinstance(exc, E.RateLimited) or (
            _surely_not_sent(exc) and not isinstance(exc, E.UnsendableRequest)
        )
    if sub and _may_have_been_accepted(exc):
        assert action is Action.UNKNOWN  # never resubmitted silently, never dropped
    if isinstance(exc, E.UnsendableRequest):  # sending again fails the same way
        assert action is (Action.FAIL_JOB if sub else Action.FATAL)


@PROPS
@given(every_error)
def test_a_poll_hiccup_is_followed_again(exc: errors.BatcherError) -> None:
    hiccup = isinstance(exc, E.RateLimited | E.ServerError | E.MalformedAnswer) or (
        isinstance(exc, E.TransportError) and not isinstance(exc, E.UnsendableRequest)
    )
    if hiccup:
        assert classify(exc, is_submit=False) is Action.RETRY


@PROPS
@given(st.sampled_from(KNOWN_CODES), statuses, retry_afters, st.booleans())
def test_a_known_error_code_decides_whatever_the_status(
    code: int, status: int, retry_after: float | None, sub: bool
) -> None:
    exc = client.error_from(status, {"error_code": code, "error_message": "m"}, retry_after)
    assert classify(exc, is_submit=sub) is CODE_MEANS[code][0 if sub else 1]


@PROPS
@given(statuses, bodies, retry_afters, st.booleans())
def test_without_a_known_code_the_http_status_decides(
    status: int, body: dict[str, object] | None, retry_after: float | None, sub: bool
) -> None:
    if _known(body) is not None:
        return
    action = classify(client.error_from(status, body, retry_after), is_submit=sub)
    if status in (401, 403):
        assert action is Action.FATAL
    elif status == 429:
        assert action is Action.RETRY
    elif status < 400:
        # An error_code nobody knows on a 2xx: not carried out (runcomfy-api.md, "Errors").
        assert action is (Action.FAIL_JOB if sub else Action.RETRY)
    elif status >= 500 or status == 408:  # a server fault: a POST may have landed
        assert action is (Action.UNKNOWN if sub else Action.RETRY)
    else:  # any other 4xx: the server refused this request; sending it again cannot help
        assert action not in (Action.RETRY, Action.UNKNOWN)
