"""The emulator in-process through httpx.ASGITransport, and determinism from the seed."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from batcher.emulator import (
    ConnectionDropped,
    EmulatorApp,
    EmulatorConfig,
    canonical_sha256,
    create_app,
    parse_faults,
)
from tests.emulator_server import MODEL, FakeClock

pytestmark = pytest.mark.anyio
BASE = "http://emulator.batcher.invalid"
AUTH = {"Authorization": "Bearer tok"}


def client(app: EmulatorApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE, headers=AUTH)


async def test_whole_flow_in_process() -> None:
    clock = FakeClock()
    app = create_app(EmulatorConfig(clock=clock, speed=1.0))
    async with client(app) as http:
        sub = (await http.post(f"/v1/models/{MODEL}", json={"prompt": "fox"})).json()
        assert sub["status_url"].startswith(f"{BASE}/v1/requests/")
        assert (await http.get(sub["status_url"])).json()["status"] == "in_progress"
        clock.advance(5)
        result = (await http.get(sub["result_url"])).json()
        assert result["status"] == "succeeded"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as files:
        video = await files.get(result["output"]["video"])
        assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    assert app.emulator.hits == {"submit": 1, "status": 1, "result": 1, "files": 1}
    assert app.emulator.file_hits[0].authorization is False


async def test_in_process_drop_is_an_httpx_transport_error() -> None:
    app = create_app(EmulatorConfig(faults=parse_faults(["drop@submit"])))
    async with client(app) as http:
        with pytest.raises(httpx.TransportError) as info:
            await http.post(f"/v1/models/{MODEL}", json={"prompt": "fox"})
    assert isinstance(info.value, httpx.RemoteProtocolError)
    assert isinstance(info.value, ConnectionDropped)
    assert app.emulator.submissions == []


async def test_in_process_accept_drop_and_truncate() -> None:
    app = create_app(EmulatorConfig(speed=0.0, faults=parse_faults(["accept-drop", "truncate"])))
    async with client(app) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(f"/v1/models/{MODEL}", json={"prompt": "fox"})
        assert len(app.emulator.submissions) == 1
        rid = app.emulator.submissions[0].request_id
        url = (await http.get(f"/v1/requests/{rid}/result")).json()["output"]["video"]
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(url)


async def test_slow_uses_the_injected_sleep() -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    cfg = EmulatorConfig(faults=parse_faults(["slow:1:42@status"]), sleep=fake_sleep)
    app = create_app(cfg)
    async with client(app) as http:
        sub = (await http.post(f"/v1/models/{MODEL}", json={"prompt": "fox"})).json()
        assert slept == []
        assert (await http.get(sub["status_url"])).status_code == 200
    assert slept == [42.0]


# -- determinism -------------------------------------------------------------------------

PLAN = ["5xx:0.3@submit", "429:0.2@status", "fail:0.3", "drop:0.1@result"]


async def _drive(app: EmulatorApp, prompts: list[str], *, concurrent: bool) -> dict[str, Any]:
    """Submit each prompt until accepted, poll it twice, fetch its result twice."""
    fates: dict[str, list[Any]] = {p: [] for p in prompts}

    async def one(http: httpx.AsyncClient, prompt: str) -> None:
        for _ in range(20):
            resp = await http.post(f"/v1/models/{MODEL}", json={"prompt": prompt})
            fates[prompt].append(resp.status_code)
            if resp.status_code == 200:
                break
        rid = resp.json()["request_id"]
        for _ in range(2):
            fates[prompt].append((await http.get(f"/v1/requests/{rid}/status")).status_code)
        for _ in range(2):
            try:
                body = (await http.get(f"/v1/requests/{rid}/result")).json()
                fates[prompt].append(body["status"])
            except httpx.RemoteProtocolError:
                fates[prompt].append("dropped")

    async with client(app) as http:
        if concurrent:
            async with anyio.create_task_group() as tg:
                for prompt in prompts:
                    tg.start_soon(one, http, prompt)
        else:
            for prompt in prompts:
                await one(http, prompt)
    return fates


def _cfg(seed: int) -> EmulatorConfig:
    return EmulatorConfig(seed=seed, speed=0.0, clock=FakeClock(), faults=parse_faults(PLAN))


async def test_same_seed_same_calls_same_ids_and_faults() -> None:
    prompts = [f"prompt {i}" for i in range(12)]
    a, b = create_app(_cfg(5)), create_app(_cfg(5))
    fates_a = await _drive(a, prompts, concurrent=False)
    fates_b = await _drive(b, prompts, concurrent=False)
    assert fates_a == fates_b
    assert [s.request_id for s in a.emulator.submissions] == [
        s.request_id for s in b.emulator.submissions
    ]
    strip = [(f.kind, f.endpoint, f.identity, f.call) for f in a.emulator.faults_injected]
    assert strip == [(f.kind, f.endpoint, f.identity, f.call) for f in b.emulator.faults_injected]
    kinds = {f.kind for f in a.emulator.faults_injected}
    assert kinds == {"5xx", "429", "fail", "drop"}  # the plan really bit
    other = create_app(_cfg(6))
    assert await _drive(other, prompts, concurrent=False) != fates_a


async def test_interleaving_does_not_change_which_request_gets_which_fault() -> None:
    prompts = [f"prompt {i}" for i in range(16)]
    sequential = create_app(_cfg(9))
    reverse = create_app(_cfg(9))
    concurrent = create_app(_cfg(9))
    fates = await _drive(sequential, prompts, concurrent=False)
    assert await _drive(reverse, prompts[::-1], concurrent=False) == fates
    assert await _drive(concurrent, prompts, concurrent=True) == fates

    def by_payload(app: EmulatorApp) -> dict[str, bool]:
        emu = app.emulator
        return {r.payload_sha256: r.fail for r in emu.requests.values()}

    assert by_payload(sequential) == by_payload(reverse) == by_payload(concurrent)
    assert set(by_payload(sequential).values()) == {True, False}
    assert canonical_sha256({"prompt": prompts[0]}) in by_payload(sequential)
