"""Output files over loopback: public signed URLs, expiry, Range, HEAD, token hygiene."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from batcher.emulator import EmulatorConfig
from batcher.emulator.files import clips
from tests.emulator_server import FakeClock, RunningEmulator, running_emulator

AUTH = {"Authorization": "Bearer tok"}


def rendered(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client, **kw: object
) -> tuple[str, bytes]:
    """A finished request's fresh video URL and the clip bytes it must serve."""
    srv.reset(EmulatorConfig(clock=clock, speed=0.0, **kw))  # type: ignore[arg-type]
    rid = http.post(srv.model_url, json={"prompt": "fox"}, headers=AUTH).json()["request_id"]
    url: str = http.get(srv.url(f"/v1/requests/{rid}/result"), headers=AUTH).json()["output"][
        "video"
    ]
    return url, clips()[srv.emulator.requests[rid].clip].data


def test_full_download_needs_no_token(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    url, data = rendered(srv, clock, http)
    resp = http.get(url)
    assert resp.status_code == 200
    assert resp.content == data and resp.content[4:8] == b"ftyp"
    assert resp.headers["content-length"] == str(len(data))
    assert resp.headers["content-type"] == "video/mp4"
    assert resp.headers["accept-ranges"] == "bytes"
    assert resp.headers["etag"].startswith('"')
    hit = srv.emulator.file_hits[-1]
    assert (hit.status, hit.authorization, hit.method) == (200, False, "GET")


def test_file_requests_record_a_leaked_token(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    url, _ = rendered(srv, clock, http)
    assert http.get(url, headers=AUTH).status_code == 200  # public: works either way
    http.get(url)
    assert [h.authorization for h in srv.emulator.file_hits] == [True, False]
    stats = srv.stats()
    assert [f["authorization"] for f in stats["files"]] == [True, False]


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=0-99", 0, 99), ("bytes=100-", 100, None), ("bytes=-64", -64, None)],
)
def test_range_requests_get_206(
    srv: RunningEmulator,
    clock: FakeClock,
    http: httpx.Client,
    header: str,
    start: int,
    end: int | None,
) -> None:
    url, data = rendered(srv, clock, http)
    resp = http.get(url, headers={"Range": header})
    assert resp.status_code == 206
    expected = data[start : (end + 1 if end is not None else None)]
    assert resp.content == expected
    first = start % len(data)
    assert resp.headers["content-range"] == f"bytes {first}-{first + len(expected) - 1}/{len(data)}"
    assert resp.headers["content-length"] == str(len(expected))


def test_unsatisfiable_range_is_416_and_junk_range_is_ignored(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    url, data = rendered(srv, clock, http)
    resp = http.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert resp.status_code == 416
    assert resp.headers["content-range"] == f"bytes */{len(data)}"
    junk = http.get(url, headers={"Range": "bytes=oops"})
    assert junk.status_code == 200 and junk.content == data


def test_head_gives_headers_only(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    url, data = rendered(srv, clock, http)
    resp = http.head(url)
    assert resp.status_code == 200
    assert resp.headers["content-length"] == str(len(data)) and resp.content == b""
    part = http.head(url, headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.headers["content-length"] == "10"


def test_urls_expire_after_url_ttl_and_result_gives_fresh_ones(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    url, _ = rendered(srv, clock, http, url_ttl=60.0)
    exp = float(parse_qs(urlsplit(url).query)["exp"][0])
    assert exp == clock.now + 60.0
    clock.advance(60.0)
    assert http.get(url).status_code == 200  # valid through its expiry second
    clock.advance(0.5)
    resp = http.get(url)
    assert resp.status_code == 403
    assert resp.headers["content-type"] == "application/xml"
    assert b"expired" in resp.content
    rid = urlsplit(url).path.split("/")[2]
    fresh = http.get(srv.url(f"/v1/requests/{rid}/result"), headers=AUTH).json()["output"]["video"]
    assert http.get(fresh).status_code == 200


@pytest.mark.parametrize(
    "mangle",
    [
        lambda u: u.replace("sig=", "sig=0"),
        lambda u: u.replace("exp=", "exp=9"),
        lambda u: u.split("?")[0],
        lambda u: u.replace("n=0", "n=7"),
    ],
)
def test_bad_signatures_are_403(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client, mangle: object
) -> None:
    url, _ = rendered(srv, clock, http)
    bad = mangle(url)  # type: ignore[operator]
    assert bad != url
    assert http.get(bad).status_code == 403


def test_files_of_unfinished_failed_or_unknown_requests_are_404(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    url, _ = rendered(srv, clock, http)
    path = urlsplit(url).path
    other = url.replace(path, "/files/nope/" + path.split("/")[-1])
    assert http.get(other).status_code == 404
    assert http.get(url.replace(".mp4?", "x.mp4?")).status_code == 404
    srv.reset(EmulatorConfig(clock=clock, queue_delay=100.0))
    rid = http.post(srv.model_url, json={"prompt": "fox"}, headers=AUTH).json()["request_id"]
    request = srv.emulator.requests[rid]
    path = f"/files/{rid}/{request.clip}"
    signed = srv.url(f"{path}?{srv.emulator.issue_url_query(request, path)}")
    assert http.get(signed).status_code == 404


def test_files_host_serves_urls_from_another_host_name(clock: FakeClock) -> None:
    with running_emulator(EmulatorConfig(clock=clock, speed=0.0), files_host="localhost") as srv:
        with httpx.Client(timeout=10) as http:
            rid = http.post(srv.model_url, json={"prompt": "x"}, headers=AUTH).json()["request_id"]
            body = http.get(srv.url(f"/v1/requests/{rid}/result"), headers=AUTH).json()
            url = body["output"]["video"]
            assert url.startswith(f"http://localhost:{srv.server.port}/files/{rid}/")
            assert srv.base_url.startswith("http://127.0.0.1:")
            assert http.get(url).status_code == 200
