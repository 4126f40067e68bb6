"""Hostile answers over real loopback HTTP (a raw server, h11 and httpcore in the path):
garbled gzip bodies, broken chunked encodings, bad status lines, an unsendable header.
Every one is a BatcherError with the meaning `classify` acts on; nothing foreign leaks."""

from __future__ import annotations

import gzip
from pathlib import Path

import httpx
import pytest

from batcher import errors
from batcher.client import RunComfyClient
from batcher.download import download, part_path
from batcher.retry import Action, classify
from tests.raw_server import RawServer, response

pytestmark = pytest.mark.anyio
MODEL = "kling/kling-3.0/pro/text-to-video"
TOKEN = "loopback-secret-token"
MP4 = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40
GARBLED_GZIP = b"\x1f\x8b\x08\x00" + b"this is no deflate stream" * 4
BROKEN_CHUNKS = b"10\r\n" + b'{"request_id": "' + b"\r\nzz\r\nnot a chunk\r\n"


async def _submit_and_poll(srv: RawServer, token: str = TOKEN) -> list[errors.BatcherError]:
    raised: list[errors.BatcherError] = []
    async with httpx.AsyncClient() as http:
        client = RunComfyClient(http, base_url=srv.base_url, token=token)
        for call in (
            lambda: client.submit(MODEL, {"prompt": "x"}),
            lambda: client.status(client.handle("r1")),
        ):
            with pytest.raises(errors.BatcherError) as info:
                await call()
            raised.append(info.value)
    return raised


@pytest.mark.parametrize(
    ("answer", "on_submit", "on_poll"),
    [
        pytest.param(
            response("200 OK", {"Content-Encoding": "gzip"}, GARBLED_GZIP),
            (errors.MalformedAnswer, Action.UNKNOWN),  # it answered: it may have accepted
            (errors.MalformedAnswer, Action.RETRY),
            id="garbled-gzip-200",
        ),
        pytest.param(
            response(
                "429 Too Many", {"Content-Encoding": "gzip", "Retry-After": "3"}, GARBLED_GZIP
            ),
            (errors.RateLimited, Action.RETRY),  # the status line says: not accepted
            (errors.RateLimited, Action.RETRY),
            id="garbled-gzip-429",
        ),
        pytest.param(
            response("200 OK", {"Transfer-Encoding": "chunked"}, BROKEN_CHUNKS),
            (errors.UnknownOutcome, Action.UNKNOWN),
            (errors.TransportError, Action.RETRY),
            id="broken-chunked-200",
        ),
        pytest.param(
            b"HTTP/1.1 two hundred\r\n\r\n",
            (errors.UnknownOutcome, Action.UNKNOWN),
            (errors.TransportError, Action.RETRY),
            id="bad-status-line",
        ),
        pytest.param(
            response("200 OK", {"Content-Type": "application/json; charset=utf-8"}, b"\xff\xfe{"),
            (errors.MalformedAnswer, Action.UNKNOWN),
            (errors.MalformedAnswer, Action.RETRY),
            id="bad-bytes",
        ),
    ],
)
async def test_hostile_answers_mean_what_classify_needs(
    answer: bytes,
    on_submit: tuple[type[errors.BatcherError], Action],
    on_poll: tuple[type[errors.BatcherError], Action],
) -> None:
    with RawServer(answer) as srv:
        submit_exc, poll_exc = await _submit_and_poll(srv)
        assert len(srv.received) == 2  # both requests reached the server
    for exc, is_submit, (kind, action) in [
        (submit_exc, True, on_submit),
        (poll_exc, False, on_poll),
    ]:
        assert type(exc) is kind, (is_submit, exc)
        assert classify(exc, is_submit=is_submit) is action


async def test_a_token_h11_refuses_sends_nothing_and_is_never_echoed() -> None:
    token = "sekrit\ntoken"
    with RawServer(response("200 OK", {}, b"{}")) as srv:
        submit_exc, poll_exc = await _submit_and_poll(srv, token=token)
        assert not any(srv.received)  # not one byte of a request arrived
    for exc, is_submit, action in [
        (submit_exc, True, Action.FAIL_JOB),
        (poll_exc, False, Action.FATAL),
    ]:
        assert type(exc) is errors.UnsendableRequest and exc.sent is False
        assert classify(exc, is_submit=is_submit) is action
        assert "sekrit" not in str(exc), str(exc)


async def test_a_garbled_gzip_file_is_refused_without_a_part(tmp_path: Path) -> None:
    answer = response("200 OK", {"Content-Encoding": "gzip"}, GARBLED_GZIP)
    dest = tmp_path / "v.png"  # no MP4 check to catch it later
    with RawServer(answer) as srv:
        async with httpx.AsyncClient() as files:
            with pytest.raises(errors.DownloadError, match="Content-Encoding"):
                await download(files, srv.url("/out/v.png"), dest)
        [request] = srv.received
    assert b"accept-encoding: identity" in request.lower()
    assert not dest.exists() and not part_path(dest).exists()


async def test_a_gzipped_video_is_refused_rather_than_hashed_as_gzip(tmp_path: Path) -> None:
    answer = response("200 OK", {"Content-Encoding": "gzip"}, gzip.compress(MP4))
    dest = tmp_path / "v.mp4"
    with RawServer(answer) as srv, pytest.raises(errors.DownloadError, match="Content-Encoding"):
        async with httpx.AsyncClient() as files:
            await download(files, srv.url("/out/v.mp4"), dest)
    assert not dest.exists()


async def test_a_broken_chunked_file_keeps_what_arrived_for_resume(tmp_path: Path) -> None:
    body = f"{700:x}\r\n".encode() + MP4[:700] + b"\r\nzz\r\n"
    dest = tmp_path / "v.mp4"
    with RawServer(response("200 OK", {"Transfer-Encoding": "chunked"}, body)) as srv:
        async with httpx.AsyncClient() as files:
            with pytest.raises(errors.DownloadError):
                await download(files, srv.url("/out/v.mp4"), dest)
    assert part_path(dest).read_bytes() == MP4[:700] and not dest.exists()
