"""The ASGI 3 application: routing, reading requests, and carrying out replies.

Routes (the contract's, then the emulator's own):
    GET  /v1/models                     the catalog, a page at a time (search, category...)
    GET  /v1/models/categories          the catalog's category names
    POST /v1/models/{model_id}          submit (model ids contain slashes)
    GET  /v1/models/{model_id}          one model's catalog entry
    GET  /v1/requests/{id}/status       status
    GET  /v1/requests/{id}/result       result
    POST /v1/requests/{id}/cancel       cancel
    GET|HEAD /files/{id}/{clip}         output files (public, signed URLs)
    GET  /_emulator/stats|health        emulator-only introspection, no auth

Invariants: this module is the only one that awaits, sleeps or touches the connection.
A dropped connection is real over a server (the transport under uvicorn's `send` is
closed, so the client sees the peer hang up); in-process (httpx.ASGITransport, which
re-raises application exceptions) it is `ConnectionDropped`, an `httpx.RemoteProtocolError`,
the same exception httpx raises when a real server hangs up.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote_plus

import anyio
import httpx

from batcher.emulator import api
from batcher.emulator.cdn import serve_file
from batcher.emulator.config import EmulatorConfig
from batcher.emulator.state import Emulator
from batcher.emulator.wire import HttpRequest, Reply, error_reply, json_reply

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY = 1 << 20
_REQUEST_ROUTE = re.compile(r"/v1/requests/([^/]+)/(status|result|cancel)")
_METHODS = {"status": "GET", "result": "GET", "cancel": "POST"}


class ConnectionDropped(httpx.RemoteProtocolError):
    """In-process stand-in for a server that closed the connection without answering."""

    def __init__(self, message: str = "Server disconnected without sending a response.") -> None:
        super().__init__(message)


class BodyTooLarge(Exception):
    """The request body exceeds MAX_BODY."""


async def _read(scope: Scope, receive: Receive) -> HttpRequest:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        headers.setdefault(raw_name.decode("latin-1").lower(), raw_value.decode("latin-1"))
    host = headers.get("host")
    if host is None:
        server = scope.get("server") or ("emulator", None)
        host = server[0] if server[1] in (None, 80, 443) else f"{server[0]}:{server[1]}"
    query: dict[str, str] = {}
    for pair in scope.get("query_string", b"").decode("latin-1").split("&"):
        if pair:
            name, _, value = pair.partition("=")
            query.setdefault(unquote_plus(name), unquote_plus(value))
    return HttpRequest(
        method=scope["method"].upper(),
        path=scope["path"],
        query=query,
        headers=headers,
        body=b"".join(chunks),
        origin=f"{scope.get('scheme', 'http')}://{host}",
    )


def route(emu: Emulator, req: HttpRequest) -> Reply:
    """The reply for one request (synchronous: no awaits, so state changes are atomic)."""
    cfg = emu.config
    path, method = req.path, req.method
    if path.rstrip("/") in ("/v1/models", "/v1/models/categories") and method == "GET":
        if path.rstrip("/") == "/v1/models":
            return api.list_models(emu, req)
        return api.model_categories(emu, req)
    if path.startswith("/v1/models/"):
        model_id = path.removeprefix("/v1/models/").strip("/")
        if method == "POST":
            return api.submit(emu, req, model_id)
        if method == "GET":
            return api.model_info(emu, req, model_id)
        return error_reply(cfg, 405, 405001, f"method {method} not allowed here")
    match = _REQUEST_ROUTE.fullmatch(path)
    if match:
        rid, action = match.groups()
        if method != _METHODS[action]:
            return error_reply(cfg, 405, 405001, f"use {_METHODS[action]} for {action}")
        handler = {"status": api.status, "result": api.result, "cancel": api.cancel}[action]
        return handler(emu, req, rid)
    if path.startswith("/files/"):
        if method not in ("GET", "HEAD"):
            return error_reply(cfg, 405, 405001, "files are read-only")
        return serve_file(emu, req)
    if path == "/_emulator/stats" and method == "GET":
        return json_reply(200, emu.stats())
    if path == "/_emulator/health" and method == "GET":
        return json_reply(200, {"ok": True})
    return error_reply(cfg, 404, 404000, f"no such endpoint: {method} {path}")


async def _drop(receive: Receive, send: Send) -> None:
    """Close the connection without (finishing) an answer."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None or not callable(getattr(transport, "close", None)):
        raise ConnectionDropped
    transport.close()
    # Wait until the server has seen the connection go, so it does not try to answer.
    with anyio.move_on_after(5):
        while (await receive())["type"] != "http.disconnect":
            pass


async def _send(reply: Reply, receive: Receive, send: Send) -> None:
    if reply.drop:
        await _drop(receive, send)
        return
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
    headers.append((b"content-length", str(len(reply.body)).encode()))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    if reply.truncate_to is not None:
        part = reply.body[: reply.truncate_to]
        await send({"type": "http.response.body", "body": part, "more_body": True})
        await _drop(receive, send)
        return
    body = b"" if reply.head else reply.body
    await send({"type": "http.response.body", "body": body, "more_body": False})


class EmulatorApp:
    """The ASGI callable; `.emulator` is the state behind it (swap it to reset)."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        emu = self.emulator
        try:
            req = await _read(scope, receive)
        except BodyTooLarge:
            reply = error_reply(emu.config, 413, 413001, f"body larger than {MAX_BODY} bytes")
            await _send(reply, receive, send)
            return
        reply = route(emu, req)
        if reply.delay > 0:
            await emu.config.sleep(reply.delay)
        await _send(reply, receive, send)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_app(config: EmulatorConfig | None = None) -> EmulatorApp:
    """An ASGI app emulating the RunComfy Model API; `app.emulator` to introspect it."""
    return EmulatorApp(Emulator(config or EmulatorConfig()))
