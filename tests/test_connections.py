"""The API's connection pool: idle connections checked on their socket directly, and
httpx's own client kept where a proxy is configured."""

from __future__ import annotations

import socket
import socketserver
import threading

import anyio
import httpx
import pytest
from anyio import wait_all_tasks_blocked

from batcher import connections
from tests import raw_server
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


class KeepAliveServer:
    """An HTTP/1.1 server on 127.0.0.1 that keeps connections alive and counts them.

    `/ok` answers at once; `/big` sends a 1 MiB body; `/hold` answers once `gate` is set.
    With `hang_up` the server closes each connection after its first answer, without
    saying so (as a server whose keep-alive ran out does)."""

    def __init__(self, *, hang_up: bool = False) -> None:
        self.hang_up = hang_up
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.opened = 0
        self.open_now = 0
        self.peak = 0
        self.closed: list[threading.Event] = []
        self.hung_up = threading.Condition(self.lock)
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                sock.settimeout(10)
                with owner.lock:
                    owner.opened += 1
                    owner.open_now += 1
                    owner.peak = max(owner.peak, owner.open_now)
                    gone = threading.Event()
                    owner.closed.append(gone)
                try:
                    while request := raw_server._read_request(sock):
                        path = request.split(b" ", 2)[1]
                        if path == b"/hold":
                            owner.gate.wait(10)
                        body = b"x" * (1 << 20) if path == b"/big" else b"ok"
                        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n"
                        sock.sendall(head.encode() + body)
                        if owner.hang_up:
                            break
                except OSError:
                    pass
                finally:
                    with owner.lock:
                        owner.open_now -= 1
                        owner.hung_up.notify_all()
                    gone.set()

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def wait_closed(self, count: int) -> int:
        """Waits (5 s at most) until `count` connections have ended; how many have."""
        with self.lock:
            self.hung_up.wait_for(lambda: self.opened - self.open_now >= count, timeout=5)
            return self.opened - self.open_now

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def __enter__(self) -> KeepAliveServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.gate.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


def _client(
    max_connections: int, keepalive: int | None = None, **limits: float
) -> httpx.AsyncClient:
    client = connections.pooled_client(
        httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections if keepalive is None else keepalive,
            **limits,
        )
    )
    assert isinstance(client._transport, connections._Transport)
    return client


def test_no_more_connections_open_than_the_limit_and_every_request_served(no_proxy: None) -> None:
    async def main(srv: KeepAliveServer) -> list[int]:
        async with _client(2) as client:
            codes: list[int] = []

            async def one() -> None:
                codes.append((await client.get(srv.url("/ok"))).status_code)

            async with anyio.create_task_group() as tg:
                for _ in range(12):
                    tg.start_soon(one)
            return codes

    with KeepAliveServer() as srv:
        codes = anyio.run(main, srv)
    assert codes == [200] * 12
    assert srv.peak <= 2 and srv.opened == 2  # the two connections served all twelve


def test_a_connection_the_server_closed_while_idle_is_not_reused(no_proxy: None) -> None:
    async def main(srv: KeepAliveServer) -> list[int]:
        async with _client(1) as client:
            first = (await client.get(srv.url("/ok"))).status_code
            assert srv.closed[0].wait(5)  # the server has hung up on the idle connection
            return [first, (await client.get(srv.url("/ok"))).status_code]

    with KeepAliveServer(hang_up=True) as srv:
        assert anyio.run(main, srv) == [200, 200]
    assert srv.opened == 2


def test_a_body_left_unread_closes_its_connection_and_frees_its_slot(no_proxy: None) -> None:
    async def main(srv: KeepAliveServer) -> int:
        async with _client(1) as client:
            async with client.stream("GET", srv.url("/big")) as response:
                assert response.status_code == 200  # and the body is never read
            return (await client.get(srv.url("/ok"))).status_code

    with KeepAliveServer() as srv:
        assert anyio.run(main, srv) == 200
        assert srv.closed[0].wait(5)  # the unread one was closed, not reused
    assert srv.opened == 2


def test_a_cancelled_request_closes_its_connection_and_frees_its_slot(no_proxy: None) -> None:
    async def main(srv: KeepAliveServer) -> int:
        async with _client(1) as client:
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.get, srv.url("/hold"))
                await wait_all_tasks_blocked()  # sent, waiting for the answer
                tg.cancel_scope.cancel()
            srv.gate.set()
            return (await client.get(srv.url("/ok"))).status_code

    with KeepAliveServer() as srv:
        assert anyio.run(main, srv) == 200
    assert srv.opened == 2


def test_waiting_for_a_slot_times_out_or_is_cancelled_without_losing_the_slot(
    no_proxy: None,
) -> None:
    async def main(srv: KeepAliveServer) -> list[object]:
        seen: list[object] = []
        async with _client(1) as client:
            async with client.stream("GET", srv.url("/ok")) as held:  # the only slot
                with pytest.raises(httpx.PoolTimeout):
                    await client.get(srv.url("/ok"), timeout=httpx.Timeout(5, pool=0.01))
                async with anyio.create_task_group() as tg:
                    tg.start_soon(client.get, srv.url("/ok"))
                    await wait_all_tasks_blocked()  # queued behind the held one
                    tg.cancel_scope.cancel()
                seen.append(await held.aread())
            seen.append((await client.get(srv.url("/ok"))).status_code)
        return seen

    with KeepAliveServer() as srv:
        assert anyio.run(main, srv) == [b"ok", 200]
    assert srv.opened == 1  # the one connection, reused after the two that gave up


def test_idle_connections_beyond_the_keepalive_limit_or_expiry_are_closed(no_proxy: None) -> None:
    async def burst(srv: KeepAliveServer, client: httpx.AsyncClient, n: int) -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(client.get, srv.url("/ok"))

    async def main(srv: KeepAliveServer) -> None:
        async with _client(4, keepalive=1) as client:
            await burst(srv, client, 3)
            assert srv.wait_closed(2) == 2  # one of the three kept
        async with _client(4, keepalive_expiry=0) as client:
            await burst(srv, client, 2)
            assert srv.wait_closed(4) == 4  # the first idle one expired as the second came
            await client.get(srv.url("/ok"))  # the second expired too: a new one
            assert srv.wait_closed(5) == 5

    with KeepAliveServer() as srv:
        anyio.run(main, srv)
    assert srv.opened == 6


def test_a_new_origin_at_the_limit_closes_another_origin_s_idle_connection(
    no_proxy: None,
) -> None:
    async def main(srv: KeepAliveServer) -> list[int]:
        async with _client(1, keepalive=2) as client:  # the limit, not keep-alive, decides
            codes = [(await client.get(srv.url("/ok"))).status_code]
            codes.append((await client.get(srv.url("/ok", host="localhost"))).status_code)
            assert srv.closed[0].wait(5)  # 127.0.0.1's idle one gave way
            return codes

    with KeepAliveServer() as srv:
        assert anyio.run(main, srv) == [200, 200]
