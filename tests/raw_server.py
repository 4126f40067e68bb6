"""A raw HTTP/1.1 server on 127.0.0.1 for hostile answers no well-behaved server sends
(a garbled gzip body, a broken chunked encoding, a bad status line).

    with RawServer(b"HTTP/1.1 200 OK\\r\\nContent-Encoding: gzip\\r\\n...") as srv:
        httpx.get(srv.url("/v1/requests/r1/status"))
        srv.received          # the raw bytes of every request, b"" if none came

It reads one request per connection (head and Content-Length body), writes the canned
answer as it is, and closes the connection. A background thread serves, so the real
CLI in a subprocess can be pointed at it too.
"""

from __future__ import annotations

import re
import socket
import socketserver
import threading
from collections.abc import Callable

Answer = bytes | Callable[[bytes], bytes]
CONTENT_LENGTH = re.compile(rb"(?im)^content-length:[ \t]*(\d+)")


def response(status: str, headers: dict[str, str], body: bytes) -> bytes:
    """Raw answer bytes: a status line ("200 OK"), headers as given, then `body` as is."""
    head = "".join(f"{k}: {v}\r\n" for k, v in {**headers, "Connection": "close"}.items())
    return f"HTTP/1.1 {status}\r\n{head}\r\n".encode("latin-1") + body


def _read_request(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    match = CONTENT_LENGTH.search(head)
    need = int(match.group(1)) if match else 0
    while len(body) < need:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(10)
        request = _read_request(sock)
        owner = self.server.owner
        owner.received.append(request)
        if request:
            answer = owner.answer(request) if callable(owner.answer) else owner.answer
            sock.sendall(answer)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, owner: RawServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)


class RawServer:
    """Answers every request on 127.0.0.1 with `answer` (bytes, or a function of the request)."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.received: list[bytes] = []
        self._server = _Server(self)
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
