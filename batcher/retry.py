"""Pure retry classification and back-off (no sleeping, no I/O, no clocks).

Invariants:
- A paid POST (submit) is retried automatically only when nothing reached the server
  (connect-phase error) or the server said 429; every other doubtful POST outcome is
  `UNKNOWN`, left to the scheduler's unknown-outcome policy.
- A request that cannot be made at all (`UnsendableRequest`) is never retried: sending it
  again fails the same way. A submit fails its job (nothing was sent, nothing is owed);
  a poll stops the run (`FATAL`): the cause is the run's own settings, and the remote job
  is left as it is for `resume` rather than dropped.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum

from batcher import errors


class Action(StrEnum):
    """What the caller should do after an error."""

    RETRY = "retry"  # try the same call again after `delay`
    FAIL_JOB = "fail_job"  # permanent failure of this job (keep the server's detail)
    EXPIRED = "expired"  # the request id is gone (404001): the job must be resubmitted
    UNKNOWN = "unknown"  # a POST may have been accepted: hold for the unknown-outcome policy
    STOP_SUBMITTING = "stop_submitting"  # insufficient balance: no new submissions
    FATAL = "fatal"  # auth refused, or requests cannot be made: stop the whole run


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Exponential back-off with full jitter, capped."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    retry_after_cap: float = 600.0  # never wait longer than this on a server's word

    def delay(self, attempt: int, *, retry_after: float | None = None, rng: random.Random) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.retry_after_cap)
        ceiling = min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


def classify(exc: errors.BatcherError, *, is_submit: bool) -> Action:
    """Decide what to do about `exc`, raised by a submit (POST) or by another call."""
    if isinstance(exc, errors.AuthError):
        return Action.FATAL
    if isinstance(exc, errors.InsufficientBalance):
        return Action.STOP_SUBMITTING
    if isinstance(exc, errors.InvalidInput):
        return Action.FAIL_JOB
    if isinstance(exc, errors.RequestNotFound):
        return Action.FAIL_JOB if is_submit else Action.EXPIRED
    if isinstance(exc, errors.RateLimited):
        return Action.RETRY
    if isinstance(exc, errors.UnsendableRequest):
        return Action.FAIL_JOB if is_submit else Action.FATAL
    if isinstance(exc, errors.UnknownOutcome):  # whatever its `sent` says: it may have landed
        return Action.UNKNOWN if is_submit else Action.RETRY
    if isinstance(exc, errors.TransportError):
        if is_submit and exc.sent:
            return Action.UNKNOWN
        return Action.RETRY
    if isinstance(exc, errors.NotCarriedOut):  # nothing was created: nothing to hold
        return Action.FAIL_JOB if is_submit else Action.RETRY
    if isinstance(exc, errors.ServerError | errors.MalformedAnswer):
        return Action.UNKNOWN if is_submit else Action.RETRY
    if isinstance(exc, errors.ApiError):
        # Any other 4xx: the request itself is wrong; retrying cannot help.
        return Action.UNKNOWN if is_submit and exc.status_code is None else Action.FAIL_JOB
    return Action.FAIL_JOB


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)
