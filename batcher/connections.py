"""HTTP connection pools whose bookkeeping costs little per request.

httpcore's own pool, on every request and every response closed, walks all its connections
(is it closed, expired, idle, available?) and, for an idle one, asks its stream whether it
is readable, which AnyIO answers by rebuilding a table of the socket's attributes. With as
many connections kept as requests in flight that walk was a quarter of the CPU of a
zero-latency run (cProfile, 4,000 jobs at concurrency 64: 7.5 million `is_idle` calls and
350,000 polls). Here (`_Pool`) idle connections wait in a stack per origin: a request takes
the one returned last, looks at that one alone (one poll of its socket, found once per
connection), and creates a connection only when none is left. httpcore's HTTP/1.1
connections, streams and exceptions are used as they are.

Invariants:
- At most `max_connections` connections are open, and as many requests in flight; more
  requests wait (the pool timeout applies) and are served in arrival order.
- At most `max_keepalive_connections` idle connections are kept, none longer than
  `keepalive_expiry`; a connection the server closed is never reused.
- A connection whose request failed, was cancelled or was not read to its end is closed,
  never reused.
- Only where httpx would use its default transport: with a proxy configured in the
  environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY), `pooled_client` gives httpx's own
  client, so its proxy handling is kept.
- A stream answers "is_readable" as httpcore's own check does: True when the socket has
  data or EOF waiting, or is closed.
"""

from __future__ import annotations

import math
import select
import socket
import ssl
import time
import urllib.request
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any

import anyio
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
        self._pool = _Pool(limits, httpx.create_ssl_context(), _Backend())  # type: ignore[assignment]


_Connection = httpcore.AsyncHTTP11Connection
_Key = tuple[bytes, bytes, int]  # scheme, host, port (httpcore's Origin is not hashable)


class _Pool:
    """HTTP/1.1 connections kept per origin, the one returned last reused first (see the
    module docstring). Used by one event loop's tasks; no thread locks."""

    def __init__(
        self, limits: httpx.Limits, ssl_context: ssl.SSLContext, backend: _Backend
    ) -> None:
        self._ssl = ssl_context
        self._backend = backend
        self._max = math.inf if limits.max_connections is None else limits.max_connections
        self._max_idle = (
            math.inf
            if limits.max_keepalive_connections is None
            else limits.max_keepalive_connections
        )
        self._expiry = limits.keepalive_expiry
        self._idle: dict[_Key, deque[tuple[_Connection, float]]] = {}
        self._idle_count = 0
        self._busy: dict[_Connection, _Key] = {}  # in use, with their origins
        self._slots = self._max  # requests that may start now
        self._waiting: deque[anyio.Event] = deque()

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        scheme = request.url.scheme
        if scheme not in (b"http", b"https"):
            raise httpcore.UnsupportedProtocol(
                f"Request URL has an unsupported protocol '{scheme.decode()}://'."
                if scheme
                else "Request URL is missing an 'http://' or 'https://' protocol."
            )
        await self._take_slot(request.extensions.get("timeout", {}).get("pool"))
        try:
            conn = await self._connection(request)  # idle ones looked at just before
            try:
                response = await conn.handle_async_request(request)
            except BaseException:
                await self._put_back(conn)  # closed: a failed request leaves it unusable
                raise
        except BaseException:
            self._give_slot()
            raise
        return httpcore.Response(
            status=response.status,
            headers=response.headers,
            content=_Body(response.stream, self, conn),
            extensions=response.extensions,
        )

    async def _take_slot(self, timeout: float | None) -> None:
        if self._slots > 0 and not self._waiting:
            self._slots -= 1
            return
        turn = anyio.Event()
        self._waiting.append(turn)
        try:
            with anyio.fail_after(timeout):
                await turn.wait()
        except BaseException as exc:
            if turn.is_set():
                self._give_slot()  # handed a slot it will not use
            else:
                self._waiting.remove(turn)
            if isinstance(exc, TimeoutError):
                raise httpcore.PoolTimeout("no connection became free in time") from None
            raise

    def _give_slot(self) -> None:
        if self._waiting:
            self._waiting.popleft().set()  # the slot passes to the first waiting request
        else:
            self._slots += 1

    async def _connection(self, request: httpcore.Request) -> _Connection:
        origin = request.url.origin
        key = (origin.scheme, origin.host, origin.port)
        while conn := self._pop_idle(key):
            if conn.is_available() and not conn.has_expired():
                self._busy[conn] = key
                return conn
            await _close(conn)
        if self._idle_count > self._slots:  # requests holding slots + idle ones > the limit
            await _close(self._pop_idle(None))  # room for this origin's connection
        stream = await self._connect(request)
        conn = _Connection(origin=origin, stream=stream, keepalive_expiry=self._expiry)
        self._busy[conn] = key
        return conn

    async def _connect(self, request: httpcore.Request) -> httpcore.AsyncNetworkStream:
        url = request.url
        timeout = request.extensions.get("timeout", {}).get("connect")
        stream = await self._backend.connect_tcp(
            url.host.decode("ascii"),
            url.port or (443 if url.scheme == b"https" else 80),
            timeout=timeout,
        )
        if url.scheme == b"https":
            self._ssl.set_alpn_protocols(["http/1.1"])
            try:
                stream = await stream.start_tls(
                    self._ssl,
                    server_hostname=request.extensions.get("sni_hostname")
                    or url.host.decode("ascii"),
                    timeout=timeout,
                )
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await stream.aclose()
                raise
        return stream

    async def _put_back(self, conn: _Connection) -> None:
        """`conn`'s request is over: kept idle if it can serve another, else closed.
        The pool's books are settled before any connection is closed (closing yields)."""
        key = self._busy.pop(conn)
        closing: list[_Connection | None] = []
        if conn.is_available():
            now = time.monotonic()
            self._idle.setdefault(key, deque()).append((conn, now))
            self._idle_count += 1
            while self._idle_count > self._max_idle:
                closing.append(self._pop_idle(None))
            if self._expiry is not None:
                while (oldest := self._oldest()) and now - oldest[1] > self._expiry:
                    closing.append(self._pop_idle(None))
        else:
            closing.append(conn)
        for each in closing:
            await _close(each)

    def _oldest(self) -> tuple[_Key, float] | None:
        """The origin of the idle connection kept longest, and since when it is idle."""
        firsts = [(key, idle[0][1]) for key, idle in self._idle.items()]
        return min(firsts, key=lambda first: first[1]) if firsts else None

    def _pop_idle(self, key: _Key | None) -> _Connection | None:
        """Takes `key`'s idle connection returned last; with None, the one kept longest."""
        if key is None:
            oldest = self._oldest()
            if oldest is None:
                return None
            key = oldest[0]
            conn = self._idle[key].popleft()[0]
        elif key in self._idle:
            conn = self._idle[key].pop()[0]
        else:
            return None
        if not self._idle[key]:
            del self._idle[key]
        self._idle_count -= 1
        return conn

    async def _response_done(self, conn: _Connection) -> None:
        try:
            await self._put_back(conn)
        finally:
            self._give_slot()

    async def aclose(self) -> None:
        conns = [conn for idle in self._idle.values() for conn, _ in idle] + list(self._busy)
        self._idle.clear()
        self._idle_count = 0
        self._busy.clear()
        for conn in conns:
            await _close(conn)

    async def __aenter__(self) -> _Pool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def _close(conn: _Connection | None) -> None:
    if conn is not None:
        with anyio.CancelScope(shield=True):
            await conn.aclose()


class _Body:
    """A response's body; the end of it (read or not) gives its connection back."""

    def __init__(self, stream: Any, pool: _Pool, conn: _Connection) -> None:
        self._stream = stream
        self._pool = pool
        self._conn = conn
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for part in self._stream:
                yield part
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            with anyio.CancelScope(shield=True):
                await self._stream.aclose()
        finally:
            with anyio.CancelScope(shield=True):
                await self._pool._response_done(self._conn)


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
