"""RunComfy Model API queue client (async, httpx): submit, status, result, cancel, info.

Invariants:
- Foreign exceptions never leak (cancellation and other BaseExceptions aside): every
  exception of a call becomes a `BatcherError`, its cause chained. Where it happened
  decides what it means (`retry.classify` decides what follows):
  - building the request (a body httpx cannot encode, a header it cannot carry), or
    httpx/h11 refusing it before writing a byte (invalid URL, unsupported scheme, illegal
    header): `UnsendableRequest`, nothing sent and sending again cannot help;
  - sending it: `TransportError(sent=False)` when no connection was made (connect error,
    pool timeout, proxy tunnel refused), anything else `TransportError(sent=True)`: it
    may have reached the server (a submit turns that into `UnknownOutcome`);
  - reading the answer: an error status decides (`error_from`) even when the body is
    unreadable, since the status line arrived whole; a 1xx-3xx body that is garbled or
    not understood is `MalformedAnswer`, one that stopped arriving `TransportError(sent)`.
- Error answers become `ApiError` subclasses, `error_code` first, HTTP status second.
- The token goes only to the base URL's origin as httpx (the parser that sends) reads it:
  a server-given URL on another origin, or one httpx cannot send, is replaced by the same
  path on the API origin. No error message carries the token (h11 quotes bad headers).
- Answers are checked: JSON objects only, request ids match `[A-Za-z0-9_-]{1,128}`,
  output URLs are http(s), a cost is a finite number or absent.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx

from batcher import errors
from batcher.models import (
    Cancelled,
    CancelOutcome,
    Failed,
    InProgress,
    Queued,
    RemoteStatus,
    Submitted,
    Succeeded,
)
from batcher.retry import parse_retry_after

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://model-api.runcomfy.net"
REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
SUCCESS = frozenset({"completed", "succeeded", "success"})
FAILURE = frozenset({"failed", "error"})
CANCELLED = frozenset({"cancelled", "canceled"})
QUEUED = frozenset({"in_queue", "queued", "pending"})
# cancellation_requested: asked to stop, may still run (runcomfy-cli): followed as running
RUNNING = frozenset(
    {"in_progress", "running", "processing", "started", "starting", "waiting"}
    | {"cancellation_requested"}
)
OUTPUT_KEYS = ("video", "videos", "image", "images")
# Error codes of runcomfy-api.md; any other code is judged by its HTTP status alone.
KNOWN_CODES = frozenset({400001, 400002, 400004, 401001, 403001, 404001, 422001, 500001})
DEFAULT_PORTS = {"http": 80, "https": 443}
T = TypeVar("T")
Origin = tuple[str, str, int]

# What escapes `send`, and what it says about the request. httpcore raises ProxyError only
# while opening a tunnel (before the request is written) and LocalProtocolError only when
# h11 refuses our request line or headers (before any byte of them is written).
NOT_CONNECTED = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)
REFUSED_BEFORE_SENDING = (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError)


@dataclass(frozen=True, kw_only=True)
class Timeouts:
    """Per-phase timeouts in seconds for every API call."""

    connect: float = 10.0
    read: float = 60.0
    write: float = 60.0
    pool: float = 30.0

    def httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


def _origin(url: object) -> Origin | None:
    """Scheme, host and port of an http(s) URL as httpx reads it; None if it cannot send it."""
    if not isinstance(url, str):
        return None
    try:
        parts = httpx.URL(url)
        scheme, host, port = parts.scheme, parts.host, parts.port  # .host decodes IDNA
    except Exception:  # InvalidURL, or idna's error for a bad host label
        return None
    if scheme not in DEFAULT_PORTS or not host:
        return None
    return scheme, host.lower(), port or DEFAULT_PORTS[scheme]


def _message(body: Mapping[str, Any]) -> str:
    for key in ("error_message", "message", "error", "detail"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, Mapping):
            inner = value.get("message") or value.get("type")
            if isinstance(inner, str) and inner:
                return inner
        if isinstance(value, list) and value:
            return json.dumps(value, ensure_ascii=False)[:500]
    return "no message"


def _code(raw: object) -> int | None:
    """An error code as a number, however written (500001, "500001", 500001.0)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw.strip())
    return None


def error_from(
    status: int, body: Mapping[str, Any] | None, retry_after: float | None
) -> errors.ApiError:
    """The ApiError subclass for an error answer (error_code decides before the HTTP status)."""
    body = body or {}
    raw_code = body.get("error_code")
    code = _code(raw_code)
    kw_code = code
    # A code we do not know says nothing we can act on: the HTTP status decides. A 2xx
    # answer carrying one was not carried out (RunComfy's clients read it as an error).
    if code not in KNOWN_CODES:
        code = None
    st = 500 if status < 400 and code is None else status
    msg = _message(body) if body else f"HTTP {status}"
    kw: dict[str, Any] = {
        "status_code": status,
        "error_code": kw_code,
        "detail": body.get("detail"),
    }
    if code is None and status < 400:
        if isinstance(body.get("request_id"), str) and body["request_id"].strip():
            # It names a request: one may have been made. Never read as "nothing made".
            return errors.MalformedAnswer(f"error_code {raw_code!r} with a request id: {msg}", **kw)
        return errors.NotCarriedOut(f"error_code {raw_code!r}: {msg}", **kw)
    if code == 403001:
        return errors.RequestNotFound(msg, **kw)  # not this account's request: gone for us
    if code in (400004, 401001) or (code is None and st in (401, 403)):
        return errors.AuthError(msg, **kw)
    if code == 400002 or (code is None and st == 402):
        return errors.InsufficientBalance(msg, **kw)
    if code == 404001 or (code is None and st == 404):
        return errors.RequestNotFound(msg, **kw)
    if code == 500001 or (code is None and (st == 408 or st >= 500)):
        return errors.ServerError(msg, retry_after=retry_after, **kw)
    if code is None and st == 429:  # a known code (400001, 422001) says more than 429
        return errors.RateLimited(msg, retry_after=retry_after, **kw)
    if code in (400001, 422001) or (code is None and st in (400, 422)):
        return errors.InvalidInput(msg, **kw)
    return errors.ApiError(msg, **kw)


def _urls_in(output: Any) -> list[str]:
    found: list[str] = []
    if isinstance(output, str):
        found.append(output)
    elif isinstance(output, list):
        for item in output:
            found.extend(_urls_in(item))
    elif isinstance(output, Mapping):
        for key in OUTPUT_KEYS:
            if key in output:
                found.extend(_urls_in(output[key]))
        if not found and isinstance(output.get("url"), str):
            found.append(output["url"])
    return found


def output_urls(body: Mapping[str, Any]) -> tuple[str, ...]:
    """Every output URL of a result body, video first, duplicates removed."""
    urls = list(dict.fromkeys(_urls_in(body.get("output"))))
    for url in urls:
        try:
            scheme = urlsplit(url).scheme
        except ValueError:  # e.g. an unbalanced "[" in the host
            scheme = ""
        if scheme not in ("http", "https"):
            raise errors.MalformedAnswer(f"output URL is not http(s): {url[:200]!r}")
    return tuple(urls)


def _cost(value: object) -> float | None:
    """A cost in USD when the answer gives a finite number, else None."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        cost = float(value)
    except OverflowError:  # an integer too large for a float
        return None
    return cost if math.isfinite(cost) else None


def _elapsed(body: Mapping[str, Any]) -> float | None:
    """Seconds from `created_at` to `finished_at` (ISO 8601), when both are given and sane."""
    times = []
    for name in ("created_at", "finished_at"):
        value = body.get(name)
        if not isinstance(value, str) or len(value) > 40:
            return None
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        times.append(parsed.timestamp())
    elapsed = times[1] - times[0]
    return elapsed if 0 < elapsed < 30 * 86400 else None


def parse_status(body: Mapping[str, Any]) -> RemoteStatus:
    """A typed status from a status or result body (robust to every known variant)."""
    raw = body.get("status")
    if not isinstance(raw, str):
        raise errors.MalformedAnswer(f"answer has no status: {json.dumps(body)[:200]}")
    status = raw.strip().lower()
    if status in SUCCESS:
        return Succeeded(
            outputs=output_urls(body), cost=_cost(body.get("cost")), elapsed=_elapsed(body)
        )
    if status in FAILURE:
        err, cost = body.get("error"), _cost(body.get("cost"))
        if err:
            return Failed(error=_message({"error": err}), cost=cost)
        text = _message(body)
        return Failed(error="" if text == "no message" else text, cost=cost)
    if status in CANCELLED:
        return Cancelled()
    if status in QUEUED:
        pos = body.get("queue_position")
        ok = isinstance(pos, int) and not isinstance(pos, bool)
        return Queued(position=pos if ok else None)
    return InProgress(said=None if status in RUNNING else status[:80])


class RunComfyClient:
    """One client per run; share one httpx.AsyncClient (connection pool) across tasks."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        token: str,
        timeouts: Timeouts | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        origin = _origin(self._base)
        if origin is None:
            raise errors.ConfigError(f"the API base URL {base_url!r} is not an http(s) URL")
        self._origin = origin
        # URLs that begin with the base URL's own "scheme://host[:port]/" are on its origin
        # without parsing them (a parse per request is a measurable cost at scale).
        head = "/".join(self._base.split("/", 3)[:3]) + "/"
        plain = "@" not in head and "\\" not in head and _origin(head) == origin
        self._prefix = head if plain and head.startswith(("http://", "https://")) else None
        self._token = token
        forms = {token, repr(token)[1:-1], repr(token.encode("utf-8", "replace"))[2:-1]}
        self._token_forms = sorted((f for f in forms if f), key=len, reverse=True)
        self._timeout = (timeouts or Timeouts()).httpx()
        self._clock = clock

    @property
    def base_url(self) -> str:
        return self._base

    def handle(self, request_id: str) -> Submitted:
        """Canonical URLs for a request id (used when none were stored)."""
        rid = quote(request_id, safe="")
        root = f"{self._base}/v1/requests/{rid}"
        return Submitted(request_id, f"{root}/status", f"{root}/result", f"{root}/cancel")

    async def submit(self, model_id: str, payload: Mapping[str, Any]) -> Submitted:
        """POST a request. Raises UnknownOutcome when it may have been accepted unseen."""
        url = f"{self._base}/v1/models/{quote(model_id, safe='/')}"
        try:
            return await self._call("POST", url, self._submitted, json_body=dict(payload))
        except errors.TransportError as exc:
            if exc.sent:
                raise errors.UnknownOutcome(f"submit outcome unknown: {exc}") from exc
            raise

    async def status(self, req: Submitted) -> RemoteStatus:
        """Current state of a request."""
        return await self._call("GET", self._safe(req.status_url, "status", req), parse_status)

    async def result(self, req: Submitted, *, include_cost: bool = True) -> RemoteStatus:
        """Outputs of a finished request, or its current state if unfinished."""
        url = self._safe(req.result_url, "result", req)
        params = {"include_cost": "true"} if include_cost else None
        return await self._call("GET", url, parse_status, params=params)

    async def cancel(self, req: Submitted) -> CancelOutcome:
        """Ask to cancel; only queued requests can be, the rest run to completion."""
        return await self._call("POST", self._safe(req.cancel_url, "cancel", req), _cancelled)

    async def model_info(self, model_id: str) -> Mapping[str, Any]:
        """One model's catalog entry (`GET /v1/models/{model_id}`: price, unit, schema)."""
        url = f"{self._base}/v1/models/{quote(model_id, safe='/')}"
        return await self._call("GET", url, lambda body: body)

    async def list_models(
        self, *, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        """A page of the catalog (`GET /v1/models`): its entries that name a model id, and
        the catalog's total when the answer gives one."""
        params = {"limit": str(limit), "offset": str(offset)}
        return await self._call("GET", f"{self._base}/v1/models", _catalog_page, params=params)

    def _submitted(self, body: Mapping[str, Any]) -> Submitted:
        rid = body.get("request_id")
        if not isinstance(rid, str) or not REQUEST_ID.fullmatch(rid):
            raise errors.MalformedAnswer(
                f"submit answer has no usable request_id: {json.dumps(body)[:200]}", status_code=200
            )
        canon = self.handle(rid)
        return Submitted(
            rid,
            self._server_url(body.get("status_url"), canon.status_url),
            self._server_url(body.get("result_url"), canon.result_url),
            self._server_url(body.get("cancel_url"), canon.cancel_url),
        )

    def _same_origin(self, url: object) -> bool:
        """Whether `url` is on the API's origin (where the token may go)."""
        if not isinstance(url, str):
            return False
        if (
            self._prefix is not None
            and url.startswith(self._prefix)
            and url.isascii()
            and url.isprintable()
            and " " not in url
        ):
            return True  # what parsing would say (a property test holds the two equal)
        return _origin(url) == self._origin

    def _server_url(self, given: object, canonical: str) -> str:
        return given if isinstance(given, str) and self._same_origin(given) else canonical

    def _safe(self, url: str, kind: str, req: Submitted) -> str:
        if self._same_origin(url):
            return url
        return getattr(self.handle(req.request_id), f"{kind}_url")  # type: ignore[no-any-return]

    async def _call(
        self,
        method: str,
        url: str,
        parse: Callable[[Mapping[str, Any]], T],
        *,
        json_body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> T:
        """One API request, its answer read by `parse`: a value or a BatcherError."""
        assert self._same_origin(url), "token must only go to the API origin"
        where = f"{method} {_path(url)}"
        request = self._build(where, method, url, json_body=json_body, params=params)
        resp = await self._send(where, request)
        try:
            try:
                await resp.aread()
            finally:
                await resp.aclose()
        except Exception as exc:
            raise self._unreadable(where, resp, exc) from exc
        try:
            return parse(self._decode(resp))
        except errors.BatcherError:
            raise
        except Exception as exc:  # our reading met an answer nobody foresaw
            raise errors.MalformedAnswer(
                self._redact(f"{where}: answer not understood ({_why(exc)})"),
                status_code=resp.status_code,
            ) from exc

    def _build(
        self,
        where: str,
        method: str,
        url: str,
        *,
        json_body: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
    ) -> httpx.Request:
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        try:
            return self._http.build_request(
                method, url, json=json_body, params=params, headers=headers, timeout=self._timeout
            )
        except Exception as exc:  # e.g. NaN in the body, a token with non-ASCII characters
            raise errors.UnsendableRequest(
                self._redact(f"{where}: the request cannot be sent ({_why(exc)})")
            ) from exc

    async def _send(self, where: str, request: httpx.Request) -> httpx.Response:
        """Send and receive the status line and headers; the body is read by the caller."""
        try:
            return await self._http.send(request, stream=True)
        except NOT_CONNECTED as exc:
            raise errors.TransportError(
                self._redact(f"{where}: cannot connect ({_why(exc)})"), sent=False
            ) from exc
        except REFUSED_BEFORE_SENDING as exc:
            raise errors.UnsendableRequest(
                self._redact(f"{where}: the request cannot be sent ({_why(exc)})")
            ) from exc
        except httpx.DecodingError as exc:
            raise errors.MalformedAnswer(
                self._redact(f"{where}: unreadable answer ({_why(exc)})")
            ) from exc
        except Exception as exc:
            # Anything else (a read timeout, a dropped connection, h11 or a codec failing
            # on a hostile answer) may have come after the request reached the server.
            raise errors.TransportError(self._redact(f"{where}: {_why(exc)}"), sent=True) from exc

    def _unreadable(self, where: str, resp: httpx.Response, exc: Exception) -> errors.BatcherError:
        """The error for an answer whose status line arrived but whose body did not read."""
        why = self._redact(f"{where}: unreadable answer body ({_why(exc)})")
        if resp.status_code >= 400:
            # The status says what happened (429: not accepted; 401: refused); only the
            # detail of the body is lost.
            return error_from(resp.status_code, {"error_message": why}, self._retry_after(resp))
        if isinstance(exc, httpx.TransportError):  # the body stopped arriving
            return errors.TransportError(why, sent=True)
        return errors.MalformedAnswer(why, status_code=resp.status_code)

    def _retry_after(self, resp: httpx.Response) -> float | None:
        return parse_retry_after(resp.headers.get("retry-after"), now=self._clock())

    def _redact(self, text: str) -> str:
        """The text without the token, however an underlying library quoted it."""
        for form in self._token_forms:
            text = text.replace(form, "<token>")
        return text

    def _decode(self, resp: httpx.Response) -> Mapping[str, Any]:
        retry_after = self._retry_after(resp)
        try:
            body = resp.json()
        except (ValueError, RecursionError):  # not JSON, bad bytes, absurdly nested
            body = None
        if resp.status_code >= 400:
            raise error_from(
                resp.status_code, body if isinstance(body, Mapping) else None, retry_after
            )
        if not isinstance(body, Mapping):
            snippet = resp.text[:120].replace("\n", " ")
            raise errors.MalformedAnswer(
                f"expected a JSON object, got {snippet!r}", status_code=resp.status_code
            )
        if body.get("error_code") not in (None, 0, "0", ""):
            raise error_from(resp.status_code, body, retry_after)
        return body


def _catalog_page(body: Mapping[str, Any]) -> tuple[list[dict[str, Any]], int | None]:
    models = body.get("models")
    if not isinstance(models, list):
        raise errors.MalformedAnswer(
            f"the catalog answer has no `models` list: {json.dumps(body)[:200]}", status_code=200
        )
    total = body.get("total")
    entries = [m for m in models if isinstance(m, dict) and isinstance(m.get("model_id"), str)]
    return entries, total if type(total) is int and total >= 0 else None


def _cancelled(body: Mapping[str, Any]) -> CancelOutcome:
    outcome = str(body.get("outcome") or "")
    status = str(body.get("status") or "").lower()
    # `cancellation_requested` is a request to stop, not a stop: it may still run (and be
    # billed), so it is followed until it says how it ended (runcomfy-api.md, "Cancel").
    done = outcome in ("cancelled", "canceled") or (not outcome and status in CANCELLED)
    return CancelOutcome(cancelled=done, outcome=outcome or status or "unknown")


def _path(url: str) -> str:
    return urlsplit(url).path


def _why(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
