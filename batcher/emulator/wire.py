"""Plain request/reply values shared by the handlers, and the shared answer builders.

Invariants: handlers are synchronous functions from an `HttpRequest` to a `Reply` (they
never await), so every state change happens in one uninterrupted step; the ASGI layer
(`app.py`) is the only place that sleeps, sends bytes or drops connections. Every API
error body is JSON with a numeric `error_code` and a message (`error_message`, or
`message` under the `message-key` variant), plus `detail` when there is one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

from batcher.emulator.config import EmulatorConfig
from batcher.emulator.faults import Fault

JSON = "application/json"


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request, fully read."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    origin: str = "http://emulator"  # scheme://host[:port] the client used


@dataclass(frozen=True)
class Reply:
    """What to answer, and how (delay, drop, truncation are carried out by app.py)."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0  # seconds to wait before answering (`slow`)
    drop: bool = False  # close the connection without any answer
    truncate_to: int | None = None  # send this many body bytes, then close
    head: bool = False  # HEAD: headers (Content-Length of `body`) without the body


def json_reply(status: int, obj: object, *, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    """A JSON answer."""
    body = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    return Reply(status, body, (("content-type", JSON), *headers))


def error_reply(
    config: EmulatorConfig,
    status: int,
    code: int,
    message: str,
    *,
    detail: object = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> Reply:
    """A JSON error body in the contract's shape."""
    key = "message" if config.has("message-key") else "error_message"
    body: dict[str, Any] = {"error_code": code, key: message}
    if detail is not None:
        body["detail"] = detail
    return json_reply(status, body, headers=headers)


def iso(ts: float) -> str:
    """ISO 8601 UTC with milliseconds and a Z."""
    text = datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def retry_after(fault: Fault, now: float) -> str:
    """Retry-After: delta seconds, or (a third of the time) an HTTP-date."""
    seconds = max(0.0, fault.param if fault.param is not None else 1.0)
    if fault.aux < 1 / 3:
        return formatdate(math.ceil(now + seconds), usegmt=True)
    return str(math.ceil(seconds))


def server_error_status(fault: Fault) -> int:
    """500, 502 or 503: PARAM when it names one, else chosen by the fault's hash."""
    if fault.param is not None and int(fault.param) in (500, 502, 503):
        return int(fault.param)
    return (500, 502, 503)[min(2, int(fault.aux * 3))]


def fault_reply(config: EmulatorConfig, fault: Fault | None, now: float) -> Reply | None:
    """The answer for faults that act before the API handler runs, else None."""
    if fault is None:
        return None
    kind = fault.kind
    if kind == "drop":
        return Reply(0, drop=True)
    if kind == "429":
        header = (("retry-after", retry_after(fault, now)),)
        return error_reply(config, 429, 429001, "too many requests", headers=header)
    if kind == "5xx":
        status = server_error_status(fault)
        return error_reply(config, status, 500001, "internal error, retry with backoff")
    if kind == "error-200":
        code = int(fault.param) if fault.param is not None else 500001
        return error_reply(config, 200, code, "request failed (error reported with HTTP 200)")
    if kind == "balance":
        return error_reply(config, 402, 400002, "insufficient balance")
    return None


def slowed(reply: Reply, fault: Fault | None) -> Reply:
    """The reply, delayed when the call drew the `slow` fault."""
    if fault is not None and fault.kind == "slow":
        return replace(reply, delay=max(0.0, fault.param or 0.0))
    return reply
