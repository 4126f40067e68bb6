"""The one exception tree of batcher (a leaf module: it imports nothing of ours).

BatcherError
├── UsageError                 bad command-line use (exit 2)
├── JobFileError               a job file cannot be used (exit 2)
│   └── JobFileInvalid         every problem found, each with FILE:LINE:COL
├── SchemaError                unknown model / unreadable schema file (exit 2)
├── ConfigError                missing token, bad base URL (exit 2)
├── StateError                 state database unusable or locked (exit 2)
│   ├── StateLocked            another runner holds the submit lock
│   ├── StateBusy              another program holds the database's write lock
│   └── StateWriteFailed       a write could not be committed (disk full, I/O, read-only)
├── ApiError                   the RunComfy API answered with an error
│   ├── AuthError              401/403/400004: fatal for the run (exit 3)
│   ├── InsufficientBalance    402/400002: stop new submissions
│   ├── InvalidInput           400/422: permanent job failure, server detail kept
│   ├── RequestNotFound        404/404001: request expired or deleted
│   ├── RateLimited            429 (retry_after seconds when given)
│   ├── ServerError            5xx / 408 / 500001
│   ├── MalformedAnswer        not JSON, unreadable body, bad request_id, bad shape
│   └── NotCarriedOut          a 2xx answer with an error_code we do not know: nothing made
├── TransportError             no answer at all (connect error, timeout, dropped)
│   ├── UnknownOutcome         a POST may or may not have been accepted
│   └── UnsendableRequest      the request cannot be built or sent on our side (invalid
│                              URL, header or body): nothing sent, resending cannot help
└── DownloadError              an output file could not be fetched or verified
    ├── UrlExpired             the output URL answered 403/404: refresh from /result
    ├── DiskFull               the output folder cannot take files (no space, read-only)
    └── HostRefused            an output URL names a host files may not come from

Failed jobs are data in the store, not exceptions that stop the batch: these are raised
by the layer that meets the condition and caught by the layer that decides what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class BatcherError(Exception):
    """Root of every expected failure."""


class UsageError(BatcherError):
    """The command line was used wrongly."""


class JobFileError(BatcherError):
    """A job file cannot be read at all (missing, directory, binary, huge, not YAML)."""


@dataclass(frozen=True)
class Problem:
    """One finding in a job file, located by 1-based line and column."""

    file: str
    line: int
    col: int
    where: str
    what: str
    severity: str = "error"  # "error" or "warning"

    def __str__(self) -> str:
        tag = "warning: " if self.severity == "warning" else ""
        where = f"{self.where}: " if self.where else ""
        return f"{self.file}:{self.line}:{self.col}: {tag}{where}{self.what}"


class JobFileInvalid(JobFileError):
    """A job file has one or more errors; `problems` lists all of them (and warnings)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        errors = [p for p in problems if p.severity == "error"]
        super().__init__(f"{len(errors)} problem(s)")


class SchemaError(BatcherError):
    """A model schema is unknown or unreadable."""


class ConfigError(BatcherError):
    """Settings are missing or wrong (token, base URL, options)."""


class StateError(BatcherError):
    """The state database cannot be used."""


class StateLocked(StateError):
    """Another batcher process holds the lock on this state file."""


class StateBusy(StateError):
    """The database stayed locked by another connection past the busy timeout."""


class StateWriteFailed(StateError):
    """A write to the state database failed (disk full, I/O error, read-only file)."""


@dataclass
class ApiError(BatcherError):
    """The API answered with an error status or an `error_code` body."""

    message: str
    status_code: int | None = None
    error_code: int | None = None
    detail: object = None
    retry_after: float | None = field(default=None)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        bits = []
        if self.status_code is not None:
            bits.append(f"HTTP {self.status_code}")
        if self.error_code is not None:
            bits.append(f"error_code {self.error_code}")
        prefix = f"[{', '.join(bits)}] " if bits else ""
        return f"{prefix}{self.message}"


class AuthError(ApiError):
    """The API refused the token (fatal for the run, exit 3)."""


class InsufficientBalance(ApiError):
    """The account has no balance left: stop new submissions."""


class InvalidInput(ApiError):
    """The API rejected the payload (400/422): a permanent job failure."""


class RequestNotFound(ApiError):
    """The request is unknown, deleted or expired (404 / 404001)."""


class RateLimited(ApiError):
    """429: slow down, honour retry_after when given."""


class ServerError(ApiError):
    """5xx, 408 or 500001: a passing upstream fault."""


class MalformedAnswer(ApiError):
    """The answer could not be understood (not JSON, bad request id, bad shape)."""


class NotCarriedOut(ApiError):
    """A 2xx answer carrying an `error_code` batcher does not know. RunComfy's own clients
    read any such answer as an error: the request was not carried out, nothing was
    created or billed (a submit so answered fails its job; a poll is asked again)."""


class TransportError(BatcherError):
    """No usable answer: connect error, timeout, dropped connection."""

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent  # False when the request surely never reached the server


class UnknownOutcome(TransportError):
    """A paid POST may or may not have been accepted: never resubmit silently."""


class UnsendableRequest(TransportError):
    """The request cannot be built or sent on our side: nothing reached the server.

    Sending the same request again fails the same way (an invalid URL, a header value a
    header cannot carry, a body that is not JSON), so it is never retried as a hiccup.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, sent=False)


class DownloadError(BatcherError):
    """An output file could not be fetched or failed verification."""


class UrlExpired(DownloadError):
    """The output URL answered 403/404: fetch /result again for a fresh one."""


class HostRefused(DownloadError):
    """An output URL (or a redirect) names a host files may not come from (`hosts.py`):
    every further render would be paid for and not fetched, so new submissions stop."""

    def __init__(self, message: str, *, host: str = "") -> None:
        super().__init__(message)
        self.host = host  # the refused host, remembered with the run


class DiskFull(DownloadError):
    """Files cannot be stored at all (no space left, quota, read-only filesystem): every
    further render would be paid for and lost, so new submissions stop."""
