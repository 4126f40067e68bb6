"""HTTP connection pools whose look at idle connections costs little.

Before each request httpcore asks every pooled connection whether it has expired; for an
idle one that means asking its stream whether it is readable (a server that closed it
leaves EOF to read). AnyIO's stream answers that by rebuilding the table of all its
attributes, a `getpeername` call among them, every time: with as many connections kept as
requests in flight, that was about a quarter of the CPU of a zero-latency run (cProfile,
1,000 jobs at concurrency 64: 76,000 such looks). Here each connection finds its socket
once and polls it directly; everything else is httpcore's and AnyIO's own.

Invariants:
- Only where httpx would use its default transport: with a proxy configured in the
  environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY), `pooled_client` gives httpx's own
  client, so its proxy handling is kept.
- A stream answers "is_readable" as httpcore's own check does: True when the socket has
  data or EOF waiting, or is closed.
"""

from __future__ import annotations

import select
import socket
import ssl
import urllib.request
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

__all__ = ["pooled_client"]


def pooled_client(limits: httpx.Limits, **options: Any) -> httpx.AsyncClient:
    """An httpx client with `limits` (and its other `options`) over the cheap-check pool."""
    if any(kind in urllib.request.getproxies() for kind in ("http", "https", "all")):
        return httpx.AsyncClient(limits=limits, **options)  # NO_PROXY alone proxies nothing
    return httpx.AsyncClient(transport=_Transport(limits), **options)


class _Transport(httpx.AsyncHTTPTransport):
    """httpx's transport over a pool of `_Stream`s (its request and error mapping kept)."""

    def __init__(self, limits: httpx.Limits) -> None:
        super().__init__(limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_Backend(),
        )


class _Backend(httpcore.AsyncNetworkBackend):
    """AnyIO's backend, its streams wrapped."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        return _Stream(stream)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )
        return _Stream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _Stream(httpcore.AsyncNetworkStream):
    """A connection's stream that finds its socket once (see the module docstring)."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = inner.get_extra_info("socket")
        self._poller = _poller(self._socket) if self._socket is not None else None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._socket is not None:
            return readable(self._socket, self._poller)
        return self._inner.get_extra_info(info)


def _poller(sock: socket.socket) -> Any:
    """A poll object watching `sock` for reading (None where there is no poll: Windows)."""
    poll = getattr(select, "poll", None)
    if poll is None or sock.fileno() == -1:
        return None
    poller = poll()
    poller.register(sock, select.POLLIN)
    return poller


def readable(sock: socket.socket, poller: Any = None) -> bool:
    """Whether reading `sock` would not block: data or EOF waiting, or the socket closed.
    `poller`: `_poller(sock)`, made once per connection (a poll costs little, a new poll
    object more)."""
    if sock.fileno() == -1:
        return True
    if poller is None:
        poller = _poller(sock)
    if poller is None:  # Windows: select works on sockets there
        return bool(select.select([sock], [], [], 0)[0])
    return bool(poller.poll(0))
