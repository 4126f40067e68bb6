"""Every fault kind, over real loopback HTTP (and raw sockets where httpx hides the wire)."""

from __future__ import annotations

import socket
import time
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from batcher.emulator import Emulator, EmulatorConfig, parse_faults
from tests.emulator_server import FakeClock, RunningEmulator

AUTH = {"Authorization": "Bearer tok"}


def reset(srv: RunningEmulator, clock: FakeClock, *faults: str, **kw: Any) -> Emulator:
    kw.setdefault("speed", 0.0)
    return srv.reset(EmulatorConfig(clock=clock, faults=parse_faults(faults), **kw))


def submit(http: httpx.Client, srv: RunningEmulator, prompt: str = "fox") -> httpx.Response:
    return http.post(srv.model_url, json={"prompt": prompt}, headers=AUTH)


def raw(srv: RunningEmulator, request: bytes) -> bytes:
    """Send raw bytes, read until the server closes: what a client really receives."""
    with socket.create_connection(("127.0.0.1", srv.server.port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def raw_post(srv: RunningEmulator, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer tok\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return raw(srv, head.encode() + body)


def test_429_carries_retry_after_as_seconds_or_http_date(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    emu = reset(srv, clock, "429:1:7@submit")
    forms = set()
    for i in range(24):
        resp = submit(http, srv, f"p{i}")
        assert resp.status_code == 429
        assert resp.json()["error_code"] == 429001
        value = resp.headers["retry-after"]
        if value.isdigit():
            assert value == "7"
            forms.add("seconds")
        else:
            when = parsedate_to_datetime(value).timestamp()
            assert when == clock.now + 7
            forms.add("date")
    assert forms == {"seconds", "date"}
    assert emu.submissions == []
    assert len(emu.faults_injected) == 24


def test_5xx_on_first_calls_then_the_retry_passes(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    emu = reset(srv, clock, "5xx#1")
    statuses = set()
    for i in range(12):
        first = submit(http, srv, f"p{i}")
        assert first.status_code in (500, 502, 503)
        assert first.json()["error_code"] == 500001
        statuses.add(first.status_code)
        assert submit(http, srv, f"p{i}").status_code == 200
    assert statuses == {500, 502, 503}
    rid = emu.submissions[0].request_id
    assert http.get(srv.url(f"/v1/requests/{rid}/status"), headers=AUTH).status_code >= 500
    assert http.get(srv.url(f"/v1/requests/{rid}/status"), headers=AUTH).status_code == 200
    assert len(emu.submissions) == 12


def test_5xx_param_fixes_the_status(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    reset(srv, clock, "5xx:1:503@model")
    assert http.get(srv.model_url, headers=AUTH).status_code == 503
    assert submit(http, srv).status_code == 200  # only @model


def test_drop_on_submit_closes_without_answer_and_accepts_nothing(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    emu = reset(srv, clock, "drop@submit")
    with pytest.raises(httpx.RemoteProtocolError):
        submit(http, srv)
    assert raw_post(srv, srv.model_url.removeprefix(srv.base_url), b'{"prompt":"x"}') == b""
    assert emu.submissions == [] and emu.hits["submit"] == 2
    assert [f.kind for f in emu.faults_injected] == ["drop", "drop"]


def test_drop_on_status(srv: RunningEmulator, clock: FakeClock, http: httpx.Client) -> None:
    emu = reset(srv, clock, "drop@status#1")
    rid = submit(http, srv).json()["request_id"]
    with pytest.raises(httpx.RemoteProtocolError):
        http.get(srv.url(f"/v1/requests/{rid}/status"), headers=AUTH)
    assert http.get(srv.url(f"/v1/requests/{rid}/status"), headers=AUTH).status_code == 200
    assert emu.hits["status"] == 2


def test_slow_answer_outlasts_a_read_timeout_after_the_request_exists(
    srv: RunningEmulator, clock: FakeClock
) -> None:
    emu = reset(srv, clock, "slow:1:0.3@submit")
    with httpx.Client(timeout=httpx.Timeout(5.0, read=0.05)) as hasty:
        with pytest.raises(httpx.ReadTimeout):
            submit(hasty, srv, "a")
    assert len(emu.submissions) == 1  # the unknown-outcome case: it was accepted
    with httpx.Client(timeout=5.0) as patient:
        started = time.monotonic()
        resp = submit(patient, srv, "b")
        assert time.monotonic() - started >= 0.3
    assert resp.status_code == 200 and len(emu.submissions) == 2


def test_accept_5xx_creates_the_request_then_answers_502(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    emu = reset(srv, clock, "accept-5xx")
    resp = submit(http, srv)
    assert resp.status_code == 502 and resp.json()["error_code"] == 500001
    assert len(emu.submissions) == 1
    rid = emu.submissions[0].request_id
    assert http.get(srv.url(f"/v1/requests/{rid}/status"), headers=AUTH).json()["status"] == (
        "completed"
    )


def test_accept_drop_creates_the_request_then_hangs_up(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    emu = reset(srv, clock, "accept-drop")
    with pytest.raises(httpx.RemoteProtocolError):
        submit(http, srv, "a")
    assert raw_post(srv, "/v1/models/kling/kling-3.0/pro/text-to-video", b'{"prompt":"b"}') == b""
    assert len(emu.submissions) == 2


def test_no_request_id(srv: RunningEmulator, clock: FakeClock, http: httpx.Client) -> None:
    emu = reset(srv, clock, "no-request-id")
    resp = submit(http, srv)
    assert resp.status_code == 200
    assert "request_id" not in resp.json()
    assert len(emu.submissions) == 1


@pytest.mark.parametrize(("spec", "code"), [("error-200", 500001), ("error-200:1:400002", 400002)])
def test_error_200_carries_an_error_code(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client, spec: str, code: int
) -> None:
    emu = reset(srv, clock, spec)
    resp = submit(http, srv)
    assert resp.status_code == 200
    body = resp.json()
    assert body["error_code"] == code and body["error_message"]
    assert "request_id" not in body
    assert emu.submissions == []


def test_balance_fault_and_balance_limit(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    emu = reset(srv, clock, "balance")
    resp = submit(http, srv)
    assert (resp.status_code, resp.json()["error_code"]) == (402, 400002)
    assert emu.submissions == []
    emu = reset(srv, clock, balance_usd=1.0)
    assert submit(http, srv, "a").status_code == 200  # $0.84
    resp = submit(http, srv, "b")
    assert (resp.status_code, resp.json()["error_code"]) == (402, 400002)
    assert len(emu.submissions) == 1


def test_fail_rate_splits_outcomes(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    emu = reset(srv, clock, "fail:0.5")
    for i in range(30):
        submit(http, srv, f"p{i}")
    failed = [r.fail for r in emu.requests.values()]
    assert 5 < sum(failed) < 25
    words = {
        http.get(srv.url(f"/v1/requests/{rid}/status"), headers=AUTH).json()["status"]
        for rid in emu.requests
    }
    assert words == {"completed"}  # /status says finished; only /result tells failures apart
    outcomes = {
        http.get(srv.url(f"/v1/requests/{rid}/result"), headers=AUTH).json()["status"]
        for rid in emu.requests
    }
    assert outcomes == {"succeeded", "failed"}


def test_fail_first_n_renders_of_a_payload(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    emu = reset(srv, clock, "fail#2")
    for _ in range(3):
        assert submit(http, srv, "same").status_code == 200
    assert [r.fail for r in emu.requests.values()] == [True, True, False]
    assert [(f.kind, f.call) for f in emu.faults_injected] == [("fail", 0), ("fail", 1)]


def _video_url(http: httpx.Client, srv: RunningEmulator, rid: str) -> str:
    body = http.get(srv.url(f"/v1/requests/{rid}/result"), headers=AUTH).json()
    url: str = body["output"]["video"]
    return url


def test_truncate_sends_fewer_bytes_than_content_length(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    emu = reset(srv, clock, "truncate:1:0.25#2")
    rid = submit(http, srv).json()["request_id"]
    url = _video_url(http, srv, rid)
    with pytest.raises(httpx.RemoteProtocolError):
        http.get(url)
    target = url.removeprefix(srv.base_url)
    answer = raw(srv, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[
            1
        ]
    )
    assert head.startswith(b"HTTP/1.1 200")
    assert 0 < len(body) < length and len(body) == int(length * 0.25)
    full = http.get(url)  # the third try is past #2
    assert full.status_code == 200 and len(full.content) == length
    assert [h.fault for h in emu.file_hits] == ["truncate", "truncate", None]


def test_expire_refuses_the_first_url_and_a_fresh_one_works(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    emu = reset(srv, clock, "expire")
    rid = submit(http, srv).json()["request_id"]
    old = _video_url(http, srv, rid)
    first = http.get(old)
    assert first.status_code == 403 and b"<Code>AccessDenied</Code>" in first.content
    assert http.get(old).status_code == 403  # that URL stays dead
    fresh = _video_url(http, srv, rid)
    assert fresh != old
    ok = http.get(fresh)
    assert ok.status_code == 200 and ok.content[4:8] == b"ftyp"
    assert [f.kind for f in emu.faults_injected] == ["expire"]
