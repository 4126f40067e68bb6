"""The API's connection pool: idle connections checked on their socket directly, and
httpx's own client kept where a proxy is configured."""

from __future__ import annotations

import socket

import anyio
import httpx
import pytest

from batcher import connections
from tests.emulator_server import running_emulator


def test_readable_is_true_only_when_a_read_would_not_block() -> None:
    ours, theirs = socket.socketpair()
    kept = connections._poller(ours)  # one poll object for the connection's life
    try:
        for poller in (None, kept):
            assert connections.readable(ours, poller) is False  # idle, open: reusable
            theirs.sendall(b"x")
            assert connections.readable(ours, poller) is True  # data waiting
            ours.recv(1)
        theirs.close()
        assert connections.readable(ours, kept) is True  # EOF: the server closed it
        assert connections.readable(ours) is True
    finally:
        ours.close()
    assert connections.readable(ours, kept) is True  # closed here


def test_requests_reuse_connections_checked_by_their_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    looks: list[bool] = []
    real = connections.readable

    def spy(sock: socket.socket, poller: object = None) -> bool:
        looks.append(answer := real(sock, poller))
        return answer

    monkeypatch.setattr(connections, "readable", spy)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)

    async def main(base: str) -> list[int]:
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
        async with connections.pooled_client(limits) as client:
            return [(await client.get(f"{base}/v1/requests/nope/status")).status_code
                    for _ in range(3)]  # fmt: skip

    with running_emulator() as emu:
        codes = anyio.run(main, emu.base_url)
    assert len(set(codes)) == 1 and codes[0] in (401, 404)
    assert looks and not any(looks)  # the kept connection was looked at, found reusable


def test_a_proxy_in_the_environment_keeps_httpx_s_own_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    client = connections.pooled_client(httpx.Limits(max_connections=2))
    try:
        assert not isinstance(client._transport, connections._Transport)
    finally:
        anyio.run(client.aclose)


def test_no_proxy_alone_keeps_the_cheap_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "localhost")
    client = connections.pooled_client(httpx.Limits(max_connections=2))
    try:
        assert isinstance(client._transport, connections._Transport)
    finally:
        anyio.run(client.aclose)
