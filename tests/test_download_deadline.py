"""A whole file download is bounded in time (httpx's read timeout restarts on each chunk)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from batcher.download import download, part_path
from batcher.errors import DownloadError

pytestmark = pytest.mark.anyio
HEAD = b"\x00\x00\x00\x18ftypmp42"


class Trickle(httpx.AsyncByteStream):
    """A server that sends one byte per tick of its own pace, forever slower than allowed."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield HEAD
        for _ in range(10_000):
            await anyio.sleep(0.01)  # the server's pace, not a synchronisation
            yield b"x"


def trickling(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, headers={"content-length": "10012"}, stream=Trickle())


async def test_a_trickling_download_gives_up_at_its_deadline_and_keeps_its_bytes(
    tmp_path: Path,
) -> None:
    dest = tmp_path / "clip.mp4"
    sizes: list[int] = []

    def time_for(size: int) -> float:
        sizes.append(size)
        return 0.2

    async with httpx.AsyncClient(transport=httpx.MockTransport(trickling)) as http:
        with anyio.fail_after(10):  # the test's own bound; the deadline must fire first
            with pytest.raises(DownloadError, match="too slow"):
                await download(
                    http, "http://files.test/clip.mp4", dest, tag="r1", time_for=time_for
                )
    assert sizes == [10012]  # scaled to the size the server announced
    assert not dest.exists()
    assert part_path(dest, "r1").read_bytes().startswith(HEAD)  # resumed next time


async def test_a_download_within_its_deadline_lands(tmp_path: Path) -> None:
    body = HEAD + b"y" * 1000

    class Whole(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield body

    def whole(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-length": str(len(body))}, stream=Whole())

    async with httpx.AsyncClient(transport=httpx.MockTransport(whole)) as http:
        got = await download(
            http, "http://files.test/a.mp4", tmp_path / "a.mp4", time_for=lambda n: 30
        )
    assert got.size == len(body) and (tmp_path / "a.mp4").read_bytes() == body
