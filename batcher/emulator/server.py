"""Serving the emulator over real HTTP with uvicorn (loopback by default).

Invariants: the listening socket is bound before the app is built, so `port=0` yields a
known free port and the file host URL (`files_host`) can name it; uvicorn runs its h11
protocol (the one whose connections `app.py` knows how to drop); the socket is always
closed, whether the server ran, failed to start or was stopped.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import replace

import httpx
import uvicorn

from batcher.emulator.app import EmulatorApp, create_app
from batcher.emulator.config import EmulatorConfig


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _uvicorn_config(app: EmulatorApp) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        interface="asgi3",
        http="h11",
        loop="asyncio",
        ws="none",
        lifespan="off",
        proxy_headers=False,
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
        timeout_keep_alive=5,
    )


class EmulatorServer:
    """One emulator on one port: `run()` in the foreground, or `start()`/`stop()`."""

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        files_host: str | None = None,
    ) -> None:
        config = config or EmulatorConfig()
        self._sock = _bind(host, port)
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        self.base_url = f"http://{_url_host(host)}:{self.port}"
        try:
            if files_host is not None:
                files_base_url = f"http://{_url_host(files_host)}:{self.port}"
                config = replace(config, files_base_url=files_base_url)
            self.app: EmulatorApp = create_app(config)
            self._server = uvicorn.Server(_uvicorn_config(self.app))
        except BaseException:
            self._sock.close()
            raise
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        """Serve until interrupted (SIGINT/SIGTERM when on the main thread)."""
        try:
            self._server.run(sockets=[self._sock])
        finally:
            self._sock.close()

    def start(self, *, timeout: float = 10.0) -> None:
        """Serve from a background thread; returns once the server answers."""
        self._thread = threading.Thread(target=self.run, name="emulator-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the emulator did not start on {self.base_url}")
            time.sleep(0.005)
        with httpx.Client(base_url=self.base_url, timeout=timeout) as client:
            client.get("/_emulator/health").raise_for_status()

    def stop(self, *, timeout: float = 10.0) -> None:
        """Ask the server to finish and wait for its thread."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._sock.close()

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
