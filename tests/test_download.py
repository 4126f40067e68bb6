"""Downloads against in-process MockTransport: verification, Range resume, caps, errors."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable
from pathlib import Path

import h11
import httpx
import pytest

from batcher.download import download, part_path, suffix_for
from batcher.errors import DownloadError, UrlExpired

pytestmark = pytest.mark.anyio
MP4 = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40
URL = "https://files.test/out/video.mp4?sig=abc"


def client(
    handler: Callable[[httpx.Request], httpx.Response],
) -> tuple[httpx.AsyncClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return handler(req)

    return httpx.AsyncClient(transport=httpx.MockTransport(record)), seen


def serve(data: bytes, *, honour_range: bool = True) -> Callable[[httpx.Request], httpx.Response]:
    def h(req: httpx.Request) -> httpx.Response:
        rng = req.headers.get("range")
        if rng and honour_range:
            start = int(rng.split("=")[1].rstrip("-"))
            if start >= len(data):
                return httpx.Response(416)
            return httpx.Response(
                206,
                stream=httpx.ByteStream(data[start:]),
                headers={"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"},
            )
        return httpx.Response(200, stream=httpx.ByteStream(data))

    return h


async def test_a_verified_file_lands_under_its_final_name(tmp_path: Path) -> None:
    http, seen = client(serve(MP4))
    dest = tmp_path / "v.mp4"
    got = await download(http, URL, dest)
    assert dest.read_bytes() == MP4 and got.size == len(MP4)
    assert got.sha256 == hashlib.sha256(MP4).hexdigest()
    assert not part_path(dest).exists()
    assert "authorization" not in seen[0].headers


async def test_a_partial_file_is_resumed_with_range(tmp_path: Path) -> None:
    dest = tmp_path / "v.mp4"
    part_path(dest).write_bytes(MP4[:1000])
    http, seen = client(serve(MP4))
    got = await download(http, URL, dest)
    assert seen[0].headers["range"] == "bytes=1000-"
    assert dest.read_bytes() == MP4 and got.sha256 == hashlib.sha256(MP4).hexdigest()


async def test_a_server_ignoring_range_restarts_cleanly(tmp_path: Path) -> None:
    dest = tmp_path / "v.mp4"
    part_path(dest).write_bytes(b"garbage that must not stay")
    http, _ = client(serve(MP4, honour_range=False))
    got = await download(http, URL, dest)
    assert dest.read_bytes() == MP4 and got.size == len(MP4)


async def test_unsatisfiable_range_drops_the_part_and_asks_again(tmp_path: Path) -> None:
    dest = tmp_path / "v.mp4"
    part_path(dest).write_bytes(MP4 + b"extra")
    http, _ = client(serve(MP4))
    with pytest.raises(DownloadError, match="range not satisfiable"):
        await download(http, URL, dest)
    assert not part_path(dest).exists()
    await download(http, URL, dest)
    assert dest.read_bytes() == MP4


async def test_a_truncated_body_never_gets_the_final_name(tmp_path: Path) -> None:
    def short(req: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, stream=httpx.ByteStream(MP4[:500]), headers={"Content-Length": str(len(MP4))}
        )

    http, _ = client(short)
    dest = tmp_path / "v.mp4"
    with pytest.raises(DownloadError):
        await download(http, URL, dest)
    assert not dest.exists()


async def test_what_arrived_before_a_drop_is_kept_for_resume(tmp_path: Path) -> None:
    class Dropping(httpx.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[no-untyped-def]
            yield MP4[:700]
            raise httpx.ReadError("connection reset")

    def h(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Dropping(), headers={"Content-Length": str(len(MP4))})

    http, _ = client(h)
    dest = tmp_path / "v.mp4"
    with pytest.raises(DownloadError, match="interrupted"):
        await download(http, URL, dest)
    assert part_path(dest).read_bytes() == MP4[:700] and not dest.exists()


@pytest.mark.parametrize("status", [403, 404, 410])
async def test_expired_urls_say_so(tmp_path: Path, status: int) -> None:
    http, _ = client(lambda r: httpx.Response(status))
    with pytest.raises(UrlExpired):
        await download(http, URL, tmp_path / "v.mp4")


async def test_a_file_that_is_not_mp4_is_refused(tmp_path: Path) -> None:
    http, _ = client(serve(b"<html>error page</html>"))
    dest = tmp_path / "v.mp4"
    with pytest.raises(DownloadError, match="not an MP4"):
        await download(http, URL, dest)
    assert not dest.exists() and not part_path(dest).exists()


async def test_the_size_cap_is_enforced(tmp_path: Path) -> None:
    http, _ = client(serve(MP4))
    dest = tmp_path / "v.mp4"
    with pytest.raises(DownloadError, match="cap"):
        await download(http, URL, dest, max_bytes=100)
    assert not dest.exists() and not part_path(dest).exists()


async def test_large_files_stream_through_the_part_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import batcher.download as d

    monkeypatch.setattr(d, "SPILL", 1024)
    http, _ = client(serve(MP4))
    got = await download(http, URL, tmp_path / "v.mp4")
    assert got.sha256 == hashlib.sha256(MP4).hexdigest()
    assert (tmp_path / "v.mp4").read_bytes() == MP4


def test_suffix_comes_from_the_url_path_only() -> None:
    assert suffix_for("https://x.test/a/b.MP4?sig=1.png") == ".mp4"
    assert suffix_for("https://x.test/a/b.webm") == ".webm"
    assert suffix_for("https://x.test/a/b.exe") == ".mp4"
    assert suffix_for("https://x.test/a/noext") == ".mp4"


async def test_a_part_from_another_render_is_never_resumed(tmp_path: Path) -> None:
    dest = tmp_path / "v.mp4"
    part_path(dest, "render-A").write_bytes(b"\x00\x00\x00\x18ftypXXXX" + b"A" * 500)
    http, seen = client(serve(MP4))
    got = await download(http, URL, dest, tag="render-B")
    assert "range" not in seen[0].headers
    assert dest.read_bytes() == MP4 and got.sha256 == hashlib.sha256(MP4).hexdigest()
    assert part_path(dest, "render-A").exists()  # untouched: the scheduler cleans up


async def test_a_206_at_the_wrong_offset_restarts(tmp_path: Path) -> None:
    dest = tmp_path / "v.mp4"
    part_path(dest).write_bytes(MP4[:1000])

    def wrong(req: httpx.Request) -> httpx.Response:
        if req.headers.get("range"):
            return httpx.Response(
                206,
                stream=httpx.ByteStream(MP4),
                headers={"Content-Range": f"bytes 0-{len(MP4) - 1}/{len(MP4)}"},
            )
        return httpx.Response(200, stream=httpx.ByteStream(MP4))

    http, _ = client(wrong)
    with pytest.raises(DownloadError, match="another offset"):
        await download(http, URL, dest)
    assert not part_path(dest).exists()
    got = await download(http, URL, dest)
    assert dest.read_bytes() == MP4 and got.size == len(MP4)


# -- content encoding, and every foreign exception a DownloadError -----------------------


async def test_files_are_asked_for_without_content_encoding(tmp_path: Path) -> None:
    http, seen = client(serve(MP4))
    await download(http, URL, tmp_path / "v.mp4")
    assert seen[0].headers["accept-encoding"] == "identity"


@pytest.mark.parametrize("name", ["v.mp4", "v.png"])
async def test_an_encoded_answer_is_refused_and_the_part_kept(tmp_path: Path, name: str) -> None:
    # We ask for identity; bytes hashed and checked must be the file's, not gzip's.
    dest = tmp_path / name
    part_path(dest).write_bytes(MP4[:1000])

    def gzipped(req: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, stream=httpx.ByteStream(gzip.compress(MP4)), headers={"Content-Encoding": "gzip"}
        )

    http, _ = client(gzipped)
    with pytest.raises(DownloadError, match="Content-Encoding"):
        await download(http, URL, dest)
    assert not dest.exists() and part_path(dest).read_bytes() == MP4[:1000]


@pytest.mark.parametrize("encoding", ["identity", "", "IDENTITY"])
async def test_identity_said_out_loud_is_fine(tmp_path: Path, encoding: str) -> None:
    def h(req: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, stream=httpx.ByteStream(MP4), headers={"Content-Encoding": encoding}
        )

    http, _ = client(h)
    got = await download(http, URL, tmp_path / "v.mp4")
    assert got.sha256 == hashlib.sha256(MP4).hexdigest()


RAISED = [
    pytest.param(lambda r: httpx.InvalidURL("bad"), id="InvalidURL"),
    pytest.param(lambda r: httpx.TooManyRedirects("loop", request=r), id="TooManyRedirects"),
    pytest.param(lambda r: httpx.DecodingError("bad gzip", request=r), id="DecodingError"),
    pytest.param(lambda r: httpx.UnsupportedProtocol("ftp", request=r), id="UnsupportedProtocol"),
    pytest.param(lambda r: httpx.LocalProtocolError("header", request=r), id="LocalProtocolError"),
    pytest.param(lambda r: httpx.StreamConsumed(), id="StreamConsumed"),
    pytest.param(lambda r: httpx.StreamClosed(), id="StreamClosed"),
    pytest.param(lambda r: h11.RemoteProtocolError("bad chunk"), id="h11.RemoteProtocolError"),
    pytest.param(lambda r: ValueError("bad header"), id="ValueError"),
    pytest.param(
        lambda r: UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), id="UnicodeDecodeError"
    ),
    pytest.param(lambda r: RuntimeError("odd"), id="RuntimeError"),
]


@pytest.mark.parametrize("make_exc", RAISED)
async def test_every_foreign_exception_before_the_body_is_a_download_error(
    tmp_path: Path, make_exc: Callable[[httpx.Request], Exception]
) -> None:
    def h(req: httpx.Request) -> httpx.Response:
        raise make_exc(req)

    http, _ = client(h)
    dest = tmp_path / "v.mp4"
    with pytest.raises(DownloadError) as info:
        await download(http, URL, dest)
    assert info.value.__cause__ is not None and not dest.exists()


@pytest.mark.parametrize("make_exc", RAISED)
async def test_every_foreign_exception_mid_body_keeps_what_arrived(
    tmp_path: Path, make_exc: Callable[[httpx.Request], Exception]
) -> None:
    def h(req: httpx.Request) -> httpx.Response:
        class Breaking(httpx.AsyncByteStream):
            async def __aiter__(self):  # type: ignore[no-untyped-def]
                yield MP4[:700]
                raise make_exc(req)

        return httpx.Response(200, stream=Breaking(), headers={"Content-Length": str(len(MP4))})

    http, _ = client(h)
    dest = tmp_path / "v.mp4"
    with pytest.raises(DownloadError):
        await download(http, URL, dest)
    # Raw bytes as received, in order: safe to resume with a Range request.
    assert part_path(dest).read_bytes() == MP4[:700] and not dest.exists()


async def test_a_url_httpx_refuses_is_a_download_error(tmp_path: Path) -> None:
    http, seen = client(serve(MP4))
    with pytest.raises(DownloadError):
        await download(http, "https://files.test/a\x7f.mp4", tmp_path / "v.mp4")
    assert seen == []


async def test_digits_that_are_not_ascii_are_not_a_length(tmp_path: Path) -> None:
    # "²".isdigit() is True, int("²") raises: a latin-1 header byte must not crash.
    def h(req: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, stream=httpx.ByteStream(MP4), headers=[(b"Content-Length", b"\xb2")]
        )

    http, _ = client(h)
    got = await download(http, URL, tmp_path / "v.mp4")
    assert got.size == len(MP4)
