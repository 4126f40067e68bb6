"""Shared test fixtures: isolation of env and cwd, loopback emulator servers."""

from __future__ import annotations

import pytest

from tests.emulator_server import (  # noqa: F401 (fixtures)
    clock,
    emulator_server,
    fake_clock,
    http,
    srv,
)


@pytest.fixture(autouse=True)
def _isolate_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees a real token, base URL or state path from the developer's shell."""
    for name in ("RUNCOMFY_API_TOKEN", "RUNCOMFY_BASE_URL", "BATCHER_STATE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
