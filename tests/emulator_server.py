"""Loopback emulator servers for tests (imported by tests/conftest.py).

    def test_something(emulator_server, fake_clock):
        with emulator_server(EmulatorConfig(clock=fake_clock, speed=0.0)) as srv:
            httpx.post(f"{srv.base_url}/v1/models/...", ...)
            srv.emulator.submissions          # in-process introspection
            fake_clock.advance(10)            # move emulated time, no sleeping

`emulator_server(config=None, *, files_host=None)` starts uvicorn on 127.0.0.1 on a free
port in a background thread and returns once the server answers. The returned
`RunningEmulator` is a context manager; servers not stopped by the test are stopped at
fixture teardown. `running_emulator(...)` is the same as a plain context manager, for
module-scoped fixtures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import httpx
import pytest

from batcher.emulator import Emulator, EmulatorConfig
from batcher.emulator.server import EmulatorServer

__all__ = [
    "FakeClock",
    "RunningEmulator",
    "clock",
    "emulator_server",
    "fake_clock",
    "http",
    "running_emulator",
    "srv",
]

MODEL = "kling/kling-3.0/pro/text-to-video"


class FakeClock:
    """A clock tests move by hand; `step` also advances it on every read."""

    def __init__(self, start: float = 1_700_000_000.0, *, step: float = 0.0) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> float:
        value = self.now
        self.now += self.step
        return value

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RunningEmulator:
    """A started emulator server: its base URL and the Emulator behind it."""

    def __init__(self, server: EmulatorServer) -> None:
        self.server = server
        self.base_url = server.base_url
        self.model_url = f"{server.base_url}/v1/models/{MODEL}"
        self._stopped = False

    @property
    def emulator(self) -> Emulator:
        """The live Emulator (requests, submissions, hits, faults_injected, file_hits)."""
        return self.server.app.emulator

    @property
    def config(self) -> EmulatorConfig:
        return self.emulator.config

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def reset(self, config: EmulatorConfig | None = None) -> Emulator:
        """Swap in a fresh Emulator (same port): cheaper than a new server per test."""
        config = config or EmulatorConfig()
        old = self.server.app.emulator.config.files_base_url
        if config.files_base_url is None and old is not None:
            config = replace(config, files_base_url=old)
        self.server.app.emulator = Emulator(config)
        return self.server.app.emulator

    def stats(self) -> dict[str, Any]:
        """GET /_emulator/stats over HTTP."""
        with httpx.Client(timeout=10) as client:
            data: dict[str, Any] = client.get(self.url("/_emulator/stats")).json()
            return data

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.server.stop()

    def __enter__(self) -> RunningEmulator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _start(config: EmulatorConfig | None, files_host: str | None) -> RunningEmulator:
    server = EmulatorServer(config or EmulatorConfig(), files_host=files_host)
    server.start()
    return RunningEmulator(server)


@contextmanager
def running_emulator(
    config: EmulatorConfig | None = None, *, files_host: str | None = None
) -> Iterator[RunningEmulator]:
    """A loopback emulator for the duration of the `with` block."""
    running = _start(config, files_host)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def emulator_server() -> Iterator[Callable[..., RunningEmulator]]:
    """Factory: `emulator_server(config=None, *, files_host=None) -> RunningEmulator`."""
    started: list[RunningEmulator] = []

    def start(
        config: EmulatorConfig | None = None, *, files_host: str | None = None
    ) -> RunningEmulator:
        running = _start(config, files_host)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def fake_clock() -> FakeClock:
    """A FakeClock at 2023-11-14T22:13:20Z that moves only when told."""
    return FakeClock()


@pytest.fixture(scope="module")
def srv() -> Iterator[RunningEmulator]:
    """One loopback emulator per test module; tests `reset()` it to their config."""
    with running_emulator() as running:
        yield running


@pytest.fixture
def clock() -> FakeClock:
    """A fresh FakeClock (same as `fake_clock`), under the short name the tests use."""
    return FakeClock()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """A plain synchronous httpx client for raw contract requests."""
    with httpx.Client(timeout=10) as client:
        yield client
