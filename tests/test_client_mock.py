"""The client against in-process MockTransport: answer shapes, malformed answers,
error mapping and where the token goes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import h11
import httpx
import pytest

from batcher import errors
from batcher.client import RunComfyClient, error_from, parse_status
from batcher.models import Cancelled, Failed, InProgress, Queued, Submitted, Succeeded
from batcher.retry import Action, classify

BASE = "https://api.test"
MODEL = "kling/kling-3.0/pro/text-to-video"
pytestmark = pytest.mark.anyio


def make(
    handler: Callable[[httpx.Request], httpx.Response],
) -> tuple[RunComfyClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return handler(req)

    http = httpx.AsyncClient(transport=httpx.MockTransport(record))
    return RunComfyClient(http, base_url=BASE, token="sekrit-token"), seen


def answer(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    def h(_: httpx.Request) -> httpx.Response:
        if isinstance(body, bytes):
            return httpx.Response(status, content=body, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return h


def urls(rid: str, host: str = BASE) -> dict[str, str]:
    return {
        k: f"{host}/v1/requests/{rid}/{k.split('_')[0]}"
        for k in ("status_url", "result_url", "cancel_url")
    }


async def test_submit_posts_payload_to_the_model_path_with_the_token() -> None:
    client, seen = make(answer({"request_id": "abc-123", **urls("abc-123")}))
    sub = await client.submit(MODEL, {"prompt": "a fox"})
    assert sub == Submitted("abc-123", *urls("abc-123").values())
    [req] = seen
    assert req.method == "POST"
    assert req.url.path == f"/v1/models/{MODEL}"
    assert json.loads(req.content) == {"prompt": "a fox"}
    assert req.headers["authorization"] == "Bearer sekrit-token"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<html>gateway</html>", "expected a JSON object"),
        ([1, 2], "expected a JSON object"),
        ({"status_url": "x"}, "no usable request_id"),
        ({"request_id": ""}, "no usable request_id"),
        ({"request_id": "../../etc/passwd"}, "no usable request_id"),
        ({"request_id": "a" * 129}, "no usable request_id"),
        ({"request_id": 12345}, "no usable request_id"),
    ],
)
async def test_malformed_submit_answers_are_clear_errors(body: Any, why: str) -> None:
    client, _ = make(answer(body))
    with pytest.raises(errors.MalformedAnswer, match=why):
        await client.submit(MODEL, {"prompt": "x"})


async def test_server_given_urls_on_another_host_never_get_the_token() -> None:
    evil = "https://elsewhere.test"
    client, seen = make(answer({"request_id": "r1", **urls("r1", evil)}))
    sub = await client.submit(MODEL, {"prompt": "x"})
    assert sub.status_url.startswith(BASE)
    client2, seen2 = make(answer({"request_id": "r1", "status": "in_progress"}))
    await client2.status(Submitted("r1", f"{evil}/v1/requests/r1/status", "", ""))
    assert [str(r.url.host) for r in seen2] == ["api.test"]


async def test_error_200_with_error_code_is_an_error() -> None:
    client, _ = make(answer({"error_code": 400004, "error_message": "token expired"}))
    with pytest.raises(errors.AuthError, match="token expired"):
        await client.status(client.handle("r1"))


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (401, {"error_code": 401001, "error_message": "unauthorized"}, errors.AuthError),
        (403, {"message": "forbidden"}, errors.AuthError),
        (400, {"error_code": 400004, "error_message": "bad token"}, errors.AuthError),
        (402, {"error_message": "pay up"}, errors.InsufficientBalance),
        (400, {"error_code": 400002, "error_message": "no balance"}, errors.InsufficientBalance),
        (404, {"error_code": 404001, "error_message": "expired"}, errors.RequestNotFound),
        (
            422,
            {"error_code": 422001, "detail": [{"loc": ["cfg_scale"], "msg": "too big"}]},
            errors.InvalidInput,
        ),
        (400, {"error_code": 400001, "error_message": "bad model"}, errors.InvalidInput),
        (429, {"error_message": "slow"}, errors.RateLimited),
        (503, None, errors.ServerError),
        (
            500,
            {"error_code": 500001, "error": {"type": "internal", "message": "oops"}},
            errors.ServerError,
        ),
        (408, {}, errors.ServerError),
        # A known code decides before the status, 429 included.
        (429, {"error_code": 422001, "error_message": "invalid"}, errors.InvalidInput),
    ],
)
def test_error_mapping(
    status: int, body: dict[str, Any] | None, kind: type[errors.ApiError]
) -> None:
    exc = error_from(status, body, None)
    assert type(exc) is kind
    assert exc.status_code == status


async def test_retry_after_is_read_from_429() -> None:
    client, _ = make(answer({"error_message": "slow"}, 429, {"Retry-After": "7"}))
    with pytest.raises(errors.RateLimited) as info:
        await client.status(client.handle("r1"))
    assert info.value.retry_after == 7.0


async def test_validation_detail_is_kept() -> None:
    detail = [{"loc": ["body", "cfg_scale"], "msg": "must be <= 1"}]
    client, _ = make(
        answer({"error_code": 422001, "error_message": "invalid", "detail": detail}, 422)
    )
    with pytest.raises(errors.InvalidInput) as info:
        await client.submit(MODEL, {"prompt": "x", "cfg_scale": 3})
    assert info.value.detail == detail


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"status": "in_queue", "queue_position": 3}, Queued(3)),
        ({"status": "in_queue"}, Queued(None)),
        ({"status": "in_queue", "queue_position": True}, Queued(None)),
        ({"status": "in_progress"}, InProgress()),
        ({"status": "something_new"}, InProgress(said="something_new")),  # said, followed
        ({"status": "cancellation_requested"}, InProgress()),  # may still run: followed
        ({"status": "running"}, InProgress()),
        ({"status": "starting"}, InProgress()),  # the contract's other running words
        ({"status": "waiting"}, InProgress()),
        ({"status": "cancelled"}, Cancelled()),
        ({"status": "canceled"}, Cancelled()),
        ({"status": "failed", "error": "nsfw"}, Failed("nsfw")),
        ({"status": "error", "error": {"type": "x", "message": "gpu died"}}, Failed("gpu died")),
        (
            {"status": "succeeded", "output": {"video": "https://f.test/a.mp4"}},
            Succeeded(("https://f.test/a.mp4",)),
        ),
        (
            {
                "status": "completed",
                "output": {"videos": ["https://f.test/a.mp4", "https://f.test/b.mp4"]},
            },
            Succeeded(("https://f.test/a.mp4", "https://f.test/b.mp4")),
        ),
        (
            {
                "status": "succeeded",
                "output": {"video": "https://f.test/a.mp4", "videos": ["https://f.test/a.mp4"]},
                "cost": 0.84,
            },
            Succeeded(("https://f.test/a.mp4",), 0.84),
        ),
        (
            {
                "status": "succeeded",
                "output": {"image": "https://f.test/a.png", "images": ["https://f.test/b.png"]},
            },
            Succeeded(("https://f.test/a.png", "https://f.test/b.png")),
        ),
    ],
)
def test_parse_status_variants(body: dict[str, Any], expected: object) -> None:
    assert parse_status(body) == expected


def test_non_http_output_url_is_rejected() -> None:
    with pytest.raises(errors.MalformedAnswer, match="not http"):
        parse_status({"status": "succeeded", "output": {"video": "file:///etc/passwd"}})


def test_status_missing_is_malformed() -> None:
    with pytest.raises(errors.MalformedAnswer, match="no status"):
        parse_status({"request_id": "x"})


async def test_cancel_outcomes() -> None:
    for body, cancelled in [
        ({"status": "cancelled", "outcome": "cancelled"}, True),
        ({"outcome": "cancellation_requested"}, False),  # asked to stop: may still run
        ({"status": "canceled"}, True),
        ({"status": "in_progress", "outcome": "not_cancellable"}, False),
        ({"status": "completed"}, False),
    ]:
        client, _ = make(answer(body, 202))
        out = await client.cancel(client.handle("r1"))
        assert out.cancelled is cancelled, body


async def test_connect_error_on_submit_is_retryable_not_unknown() -> None:
    def refuse(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=req)

    client, _ = make(refuse)
    with pytest.raises(errors.TransportError) as info:
        await client.submit(MODEL, {"prompt": "x"})
    assert not isinstance(info.value, errors.UnknownOutcome)
    assert info.value.sent is False


async def test_read_timeout_on_submit_is_unknown_outcome() -> None:
    def slow(req: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=req)

    client, _ = make(slow)
    with pytest.raises(errors.UnknownOutcome):
        await client.submit(MODEL, {"prompt": "x"})


async def test_read_timeout_on_status_is_a_plain_transport_error() -> None:
    def slow(req: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=req)

    client, _ = make(slow)
    with pytest.raises(errors.TransportError) as info:
        await client.status(client.handle("r1"))
    assert not isinstance(info.value, errors.UnknownOutcome)


async def test_result_asks_for_cost_and_model_info_is_read() -> None:
    def h(req: httpx.Request) -> httpx.Response:
        if req.url.path.endswith("/result"):
            assert req.url.params["include_cost"] == "true"
            return httpx.Response(
                200,
                json={
                    "status": "succeeded",
                    "output": {"video": "https://f.test/v.mp4"},
                    "cost": 1.5,
                },
            )
        return httpx.Response(200, json={"base_price_usd": 0.168, "price_unit": "second"})

    client, _ = make(h)
    res = await client.result(client.handle("r1"))
    assert res == Succeeded(("https://f.test/v.mp4",), 1.5)
    info = await client.model_info(MODEL)
    assert info["price_unit"] == "second"


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (503, {"error_code": 503001, "error_message": "new code"}, errors.ServerError),
        (401, {"error_code": 401002, "error_message": "expired"}, errors.AuthError),
        (200, {"error_code": 999999, "error_message": "odd"}, errors.NotCarriedOut),
        (422, {"error_code": 12345}, errors.InvalidInput),
        (403, {"error_code": 403001, "error_message": "not yours"}, errors.RequestNotFound),
    ],
)
def test_unknown_error_codes_are_judged_by_the_http_status(
    status: int, body: dict[str, Any], kind: type[errors.ApiError]
) -> None:
    exc = error_from(status, body, None)
    assert type(exc) is kind and exc.error_code == body["error_code"]


async def test_error_code_zero_is_success() -> None:
    client, _ = make(answer({"request_id": "ok-1", "error_code": 0, **urls("ok-1")}))
    sub = await client.submit(MODEL, {"prompt": "x"})
    assert sub.request_id == "ok-1"


# -- every foreign exception is translated at the client boundary -----------------------
#
# What escapes the transport (or httpx/h11 above it), what a submit and a poll then raise,
# and what `classify` makes of it: a POST that may have reached the server is an unknown
# outcome, one that surely did not is retried, one that cannot be made at all is never
# retried (a submit fails the job, a poll stops the run and leaves the job to `resume`).


def _raising(make_exc: Callable[[httpx.Request], Exception]) -> Callable[..., httpx.Response]:
    def h(req: httpx.Request) -> httpx.Response:
        raise make_exc(req)

    return h


NOT_SENT = (errors.TransportError, Action.RETRY)
UNKNOWN = (errors.UnknownOutcome, Action.UNKNOWN)
HICCUP = (errors.TransportError, Action.RETRY)
UNSENDABLE_SUBMIT = (errors.UnsendableRequest, Action.FAIL_JOB)
UNSENDABLE_POLL = (errors.UnsendableRequest, Action.FATAL)
GARBLED_SUBMIT = (errors.MalformedAnswer, Action.UNKNOWN)
GARBLED_POLL = (errors.MalformedAnswer, Action.RETRY)

FOREIGN = [
    # (escaping exception, submit raises / action, poll raises / action)
    ("ConnectError", lambda r: httpx.ConnectError("refused", request=r), NOT_SENT, NOT_SENT),
    ("ConnectTimeout", lambda r: httpx.ConnectTimeout("slow", request=r), NOT_SENT, NOT_SENT),
    ("PoolTimeout", lambda r: httpx.PoolTimeout("pool", request=r), NOT_SENT, NOT_SENT),
    # httpcore raises ProxyError only while opening a tunnel: the request never left.
    ("ProxyError", lambda r: httpx.ProxyError("407", request=r), NOT_SENT, NOT_SENT),
    ("ReadTimeout", lambda r: httpx.ReadTimeout("slow", request=r), UNKNOWN, HICCUP),
    ("WriteError", lambda r: httpx.WriteError("reset", request=r), UNKNOWN, HICCUP),
    ("RemoteProtocolError", lambda r: httpx.RemoteProtocolError("bad", request=r), UNKNOWN, HICCUP),
    ("CloseError", lambda r: httpx.CloseError("close", request=r), UNKNOWN, HICCUP),
    ("TooManyRedirects", lambda r: httpx.TooManyRedirects("loop", request=r), UNKNOWN, HICCUP),
    (
        "HTTPStatusError",
        lambda r: httpx.HTTPStatusError("418", request=r, response=httpx.Response(418)),
        UNKNOWN,
        HICCUP,
    ),
    ("StreamConsumed", lambda r: httpx.StreamConsumed(), UNKNOWN, HICCUP),
    ("StreamClosed", lambda r: httpx.StreamClosed(), UNKNOWN, HICCUP),
    ("ResponseNotRead", lambda r: httpx.ResponseNotRead(), UNKNOWN, HICCUP),
    ("CookieConflict", lambda r: httpx.CookieConflict("two"), UNKNOWN, HICCUP),
    ("ValueError", lambda r: ValueError("bad header"), UNKNOWN, HICCUP),
    (
        "UnicodeDecodeError",
        lambda r: UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
        UNKNOWN,
        HICCUP,
    ),
    # h11 refuses a body longer than its Content-Length after the headers went out;
    # httpx lets h11's own exception through unmapped.
    ("h11.LocalProtocolError", lambda r: h11.LocalProtocolError("too much data"), UNKNOWN, HICCUP),
    ("RuntimeError", lambda r: RuntimeError("odd"), UNKNOWN, HICCUP),
    (
        "DecodingError",
        lambda r: httpx.DecodingError("bad gzip", request=r),
        GARBLED_SUBMIT,
        GARBLED_POLL,
    ),
    ("InvalidURL", lambda r: httpx.InvalidURL("bad url"), UNSENDABLE_SUBMIT, UNSENDABLE_POLL),
    (
        "UnsupportedProtocol",
        lambda r: httpx.UnsupportedProtocol("ftp", request=r),
        UNSENDABLE_SUBMIT,
        UNSENDABLE_POLL,
    ),
    # httpcore maps h11's refusal of a header value (before anything is written).
    (
        "LocalProtocolError",
        lambda r: httpx.LocalProtocolError("Illegal header value", request=r),
        UNSENDABLE_SUBMIT,
        UNSENDABLE_POLL,
    ),
]


@pytest.mark.parametrize(
    ("make_exc", "on_submit", "on_poll"),
    [pytest.param(*row[1:], id=row[0]) for row in FOREIGN],
)
async def test_every_foreign_exception_is_translated_with_its_meaning(
    make_exc: Callable[[httpx.Request], Exception],
    on_submit: tuple[type[errors.BatcherError], Action],
    on_poll: tuple[type[errors.BatcherError], Action],
) -> None:
    client, _ = make(_raising(make_exc))
    for call, is_submit, (kind, action) in [
        (lambda: client.submit(MODEL, {"prompt": "x"}), True, on_submit),
        (lambda: client.status(client.handle("r1")), False, on_poll),
    ]:
        with pytest.raises(errors.BatcherError) as info:
            await call()
        assert type(info.value) is kind, (is_submit, info.value)
        assert classify(info.value, is_submit=is_submit) is action
        root: BaseException = info.value
        while root.__cause__ is not None:
            root = root.__cause__
        assert not isinstance(root, errors.BatcherError)  # the foreign one is kept as cause
        if isinstance(info.value, errors.TransportError):
            assert info.value.sent is (
                kind is not errors.UnsendableRequest and on_submit != NOT_SENT
            )


def _garbled(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    # A stream (not content=) so that the body is decoded where the client reads it.
    return httpx.Response(
        status,
        stream=httpx.ByteStream(b"\x1f\x8b\x08\x00 this is not gzip at all"),
        headers={"Content-Encoding": "gzip", **(headers or {})},
    )


@pytest.mark.parametrize(
    ("status", "on_submit", "on_poll"),
    [
        # The server answered, so a submit may have been accepted; a poll asks again.
        (200, GARBLED_SUBMIT, GARBLED_POLL),
        # The status line is intact and says what happened: it decides.
        (429, (errors.RateLimited, Action.RETRY), (errors.RateLimited, Action.RETRY)),
        (401, (errors.AuthError, Action.FATAL), (errors.AuthError, Action.FATAL)),
        (503, (errors.ServerError, Action.UNKNOWN), (errors.ServerError, Action.RETRY)),
        (422, (errors.InvalidInput, Action.FAIL_JOB), (errors.InvalidInput, Action.FAIL_JOB)),
    ],
)
async def test_a_garbled_gzip_body_is_judged_by_the_status_it_came_with(
    status: int,
    on_submit: tuple[type[errors.BatcherError], Action],
    on_poll: tuple[type[errors.BatcherError], Action],
) -> None:
    client, _ = make(lambda r: _garbled(status, {"Retry-After": "7"}))
    for call, is_submit, (kind, action) in [
        (lambda: client.submit(MODEL, {"prompt": "x"}), True, on_submit),
        (lambda: client.status(client.handle("r1")), False, on_poll),
    ]:
        with pytest.raises(errors.BatcherError) as info:
            await call()
        assert type(info.value) is kind, (is_submit, info.value)
        assert classify(info.value, is_submit=is_submit) is action
        assert "unreadable" in str(info.value)
        if status == 429:
            assert info.value.retry_after == 7.0  # type: ignore[attr-defined]


async def test_a_body_cut_short_after_a_200_is_an_unknown_submit_and_a_poll_hiccup() -> None:
    class Cut(httpx.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[no-untyped-def]
            yield b'{"request_id": "abc'
            raise httpx.RemoteProtocolError("peer closed connection mid-body")

    client, _ = make(lambda r: httpx.Response(200, stream=Cut()))
    with pytest.raises(errors.UnknownOutcome):
        await client.submit(MODEL, {"prompt": "x"})
    with pytest.raises(errors.TransportError) as info:
        await client.status(client.handle("r1"))
    assert type(info.value) is errors.TransportError and info.value.sent


async def test_a_payload_httpx_cannot_encode_fails_the_job_without_sending() -> None:
    client, seen = make(answer({"request_id": "r1"}))
    with pytest.raises(errors.UnsendableRequest, match="cannot be sent") as info:
        await client.submit(MODEL, {"prompt": "x", "cfg_scale": float("nan")})
    assert seen == [] and info.value.sent is False
    assert classify(info.value, is_submit=True) is Action.FAIL_JOB


async def test_a_token_no_header_can_carry_is_unsendable_and_never_echoed() -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(answer({"status": "in_queue"})))
    client = RunComfyClient(http, base_url=BASE, token="sekrit\u2026token")
    with pytest.raises(errors.UnsendableRequest) as info:
        await client.status(client.handle("r1"))
    assert "sekrit" not in str(info.value)


async def test_the_token_is_redacted_from_every_translated_message() -> None:
    # h11 names the header value it refuses, token included.
    def refuse(req: httpx.Request) -> httpx.Response:
        value = req.headers["authorization"]
        raise httpx.LocalProtocolError(f"Illegal header value {value.encode()!r}", request=req)

    client, _ = make(refuse)
    with pytest.raises(errors.UnsendableRequest) as info:
        await client.status(client.handle("r1"))
    assert "sekrit-token" not in str(info.value) and "Illegal header value" in str(info.value)


# -- hostile answers: our own reading of them never raises a foreign exception ----------


async def test_server_urls_httpx_would_not_send_fall_back_to_the_api_urls() -> None:
    given = {
        "status_url": f"{BASE}:99999/v1/requests/r1/status",  # port out of range
        "result_url": f"{BASE}/v1/requests/r1/result\x7f",  # non-printable
        "cancel_url": "https://[::1/v1/requests/r1/cancel",  # unbalanced bracket
    }
    client, seen = make(answer({"request_id": "r1", **given}))
    sub = await client.submit(MODEL, {"prompt": "x"})
    assert sub == client.handle("r1")
    stored = Submitted("r1", *given.values())  # e.g. kept by an older version
    client2, seen2 = make(answer({"status": "in_progress"}))
    assert await client2.status(stored) == InProgress()
    assert await client2.result(stored) == InProgress()
    assert [str(r.url.copy_with(query=None)) for r in seen2] == [
        f"{BASE}/v1/requests/r1/status",
        f"{BASE}/v1/requests/r1/result",
    ]


def test_a_base_url_httpx_cannot_use_is_a_config_error() -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(answer({})))
    for base in ("https://xn--zz.test", "https://api.test\t.example", "ftp://api.test"):
        with pytest.raises(errors.ConfigError):
            RunComfyClient(http, base_url=base, token="t")


@pytest.mark.parametrize("cost", [10**400, float("inf"), float("nan"), "0.84", True], ids=repr)
def test_a_cost_that_is_not_a_finite_number_is_ignored(cost: object) -> None:
    body = {"status": "succeeded", "output": {"video": "https://f.test/a.mp4"}, "cost": cost}
    assert parse_status(body) == Succeeded(("https://f.test/a.mp4",), None)


def test_an_output_url_urlsplit_refuses_is_malformed() -> None:
    with pytest.raises(errors.MalformedAnswer, match="not http"):
        parse_status({"status": "succeeded", "output": {"video": "https://[::1/a.mp4"}})


async def test_an_answer_too_deeply_nested_for_json_is_malformed() -> None:
    client, _ = make(answer(b"[" * 5000 + b"]" * 5000))
    with pytest.raises(errors.MalformedAnswer):
        await client.status(client.handle("r1"))


def test_an_unknown_error_code_on_200_created_nothing() -> None:
    """Issue 11: RunComfy's MCP client treats any 200 with an `error_code` as an error that
    created nothing. A submit answered so is not an unknown outcome (never held, never
    paid twice): the job fails with the server's words; a poll answered so is retried."""
    from batcher.retry import Action, classify

    exc = error_from(200, {"error_code": 10002, "error_message": "model gated"}, None)
    assert isinstance(exc, errors.NotCarriedOut) and "model gated" in str(exc)
    assert classify(exc, is_submit=True) is Action.FAIL_JOB
    assert classify(exc, is_submit=False) is Action.RETRY


def test_a_2xx_error_code_with_a_request_id_may_have_been_accepted() -> None:
    """Review: an answer naming a request id may have made that request: held (unknown),
    never failed and re-sent by `retry`. Codes written as text or floats are codes."""
    from batcher.retry import Action, classify

    exc = error_from(200, {"request_id": "abc", "error_code": 123, "message": "odd"}, None)
    assert classify(exc, is_submit=True) is Action.UNKNOWN
    for written in ("500001", 500001.0):
        same = error_from(200, {"error_code": written, "error_message": "internal"}, None)
        assert isinstance(same, errors.ServerError) and same.error_code == 500001
