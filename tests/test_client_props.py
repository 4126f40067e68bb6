"""Property tests: whatever a server answers (status, headers, bytes), every client call
returns its typed value or raises a BatcherError; never a foreign exception."""

from __future__ import annotations

import json
import math
import zlib
from typing import Any

import anyio
import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batcher import errors
from batcher.client import RunComfyClient, error_from, parse_status
from batcher.models import Succeeded

BASE = "https://api.test"
MODEL = "kling/kling-3.0/pro/text-to-video"
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PURE = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

STATUSES = ["succeeded", "completed", "failed", "error", "in_queue", "in_progress"]
STATUSES += ["cancelled", "cancellation_requested", "not_cancellable", " Succeeded ", ""]
URLS = [
    "https://f.test/a.mp4",
    f"{BASE}/v1/requests/r1/status",
    f"{BASE}:99999/v1/requests/r1/status",  # httpx parses it, urlsplit refuses the port
    f"{BASE}/v1/requests/r1/status\x7f",  # urlsplit parses it, httpx refuses it
    "https://[::1/a.mp4",
    "https://xn--zz.test/a.mp4",
    "file:///etc/passwd",
]
NUMBERS = [0, 400004, 404001, 500001, 999999, 10**400, -1, float("inf"), float("nan")]

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=12),
)
json_values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner)
    ),
    max_leaves=20,
)
urls = st.sampled_from(URLS) | leaves
outputs = st.recursive(
    urls,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["video", "videos", "image", "images", "url"]), inner)
    ),
    max_leaves=8,
)
numbers = st.sampled_from(NUMBERS) | st.floats() | st.integers()
statuses = st.sampled_from([*STATUSES, None, 7, ["succeeded"]])
request_ids = st.sampled_from(["r1", "../../etc", "a" * 129]) | leaves
# Objects shaped like the API's answers: any of its keys, each with a likely or odd value.
FIELDS = {
    "status": statuses,
    "request_id": request_ids,
    "status_url": urls,
    "result_url": urls,
    "cancel_url": urls,
    "output": outputs,
    "cost": numbers,
    "queue_position": numbers,
    "error_code": numbers,
    "error": json_values,
    "error_message": json_values,
    "message": json_values,
    "detail": json_values,
    "outcome": statuses,
}


def _shaped(required: str) -> st.SearchStrategy[dict[str, Any]]:
    rest = {key: value for key, value in FIELDS.items() if key != required}
    return st.fixed_dictionaries({required: FIELDS[required]}, optional=rest)


answer_objects = st.one_of(
    _shaped("status"), _shaped("request_id"), st.fixed_dictionaries({}, optional=FIELDS)
)


@st.composite
def answers(draw: st.DrawFn) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """A status, raw headers and raw body bytes, as a hostile server might send them."""
    status = draw(st.sampled_from([200, 202, 301, 400, 401, 404, 408, 422, 429, 500, 503]))
    value = draw(st.one_of(answer_objects, json_values))
    body = draw(
        st.one_of(
            st.just(json.dumps(value).encode()),
            st.binary(max_size=40),
            st.just(zlib.compress(json.dumps(value).encode())),
        )
    )
    headers: list[tuple[bytes, bytes]] = []
    encoding = draw(st.sampled_from([None, b"gzip", b"deflate", b"identity", b"x-odd"]))
    if encoding is not None:
        headers.append((b"Content-Encoding", encoding))
    retry_after = draw(
        st.sampled_from([None, b"7", b"soon", b"1e999", b"nan", b"Mon, 01 Jan 2024 00:00:00"])
    )
    if retry_after is not None:
        headers.append((b"Retry-After", retry_after))
    charset = draw(st.sampled_from([None, b"utf-8", b"no-such-charset", b"\xff"]))
    if charset is not None:
        headers.append((b"Content-Type", b"application/json; charset=" + charset))
    return status, headers, body


def _client(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> RunComfyClient:
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body))

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return RunComfyClient(http, base_url=BASE, token="sekrit-token")


async def _every_call(client: RunComfyClient) -> list[object]:
    req = client.handle("r1")
    calls = [
        lambda: client.submit(MODEL, {"prompt": "x"}),
        lambda: client.status(req),
        lambda: client.result(req),
        lambda: client.cancel(req),
        lambda: client.model_info(MODEL),
    ]
    outcomes: list[object] = []
    for call in calls:
        try:
            outcomes.append(await call())
        except errors.BatcherError as exc:
            outcomes.append(exc)
    return outcomes


@FAST
@given(answers())
def test_every_answer_becomes_a_value_or_a_batcher_error(
    answer: tuple[int, list[tuple[bytes, bytes]], bytes],
) -> None:
    outcomes = anyio.run(_every_call, _client(*answer))
    assert len(outcomes) == 5
    for outcome in outcomes:
        assert "sekrit-token" not in str(outcome)


@PURE
@given(_shaped("status"))
def test_parse_status_reads_any_json_object_or_says_it_is_malformed(
    body: dict[str, Any],
) -> None:
    try:
        status = parse_status(body)
    except errors.MalformedAnswer:
        return
    if isinstance(status, Succeeded):
        assert status.cost is None or math.isfinite(status.cost)


@settings(PURE, max_examples=300)
@given(st.integers(100, 599), st.none() | answer_objects)
def test_error_from_maps_any_error_answer(status: int, body: dict[str, Any] | None) -> None:
    exc = error_from(status, body, None)
    assert isinstance(exc, errors.ApiError) and exc.status_code == status


_HTTP = httpx.AsyncClient()  # never sends: the shortcut test only asks about URLs
_CLIENTS: dict[str, RunComfyClient] = {}


@given(
    st.sampled_from(
        ["https://api.runcomfy.net", "http://127.0.0.1:8080", "https://api.runcomfy.net/",
         "https://API.runcomfy.net:443", "http://[::1]:9000/v0"]
    ),
    st.sampled_from(["", "https://api.runcomfy.net", "http://127.0.0.1:8080", "https://",
                     "http://127.0.0.1:8080@evil.example", "https://api.runcomfy.net.evil.example",
                     "https://api.runcomfy.net:444", "http://[::1]:9000"]),
    st.text(alphabet="/\\@:?#%.a-z0-9 \u00e9\x00\x7f\t[]", max_size=20),
)  # fmt: skip
@settings(max_examples=1500, deadline=None)
def test_the_origin_shortcut_agrees_with_parsing(base: str, head: str, rest: str) -> None:
    """The prefix shortcut says what parsing says: the token never goes anywhere parsing
    would not allow, and a URL httpx could not send is never kept as the server's."""
    from batcher.client import _origin

    client = _CLIENTS.get(base) or _CLIENTS.setdefault(
        base, RunComfyClient(_HTTP, base_url=base, token="t")
    )
    url = head + rest
    assert client._same_origin(url) == (_origin(url) == client._origin), url
