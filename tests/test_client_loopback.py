"""The client against the emulator over real loopback HTTP (uvicorn): every contract point
of runcomfy-api.md, fault classes as the client sees them, and where the token goes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from batcher import errors
from batcher.client import RunComfyClient
from batcher.download import download
from batcher.emulator import EmulatorConfig, parse_faults
from batcher.models import Cancelled, Failed, InProgress, Queued, Succeeded
from tests.emulator_server import FakeClock, RunningEmulator, running_emulator

pytestmark = pytest.mark.anyio
MODEL = "kling/kling-3.0/pro/text-to-video"
TOKEN = "loopback-secret-token"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningEmulator]:
    with running_emulator(EmulatorConfig(token=TOKEN), files_host="localhost") as running:
        yield running


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client(server: RunningEmulator, clock: FakeClock) -> AsyncIterator[RunComfyClient]:
    server.reset(EmulatorConfig(token=TOKEN, clock=clock, speed=1.0, slots=1))
    async with httpx.AsyncClient() as http:
        yield RunComfyClient(http, base_url=server.base_url, token=TOKEN)


async def test_submit_status_result_lifecycle(client: RunComfyClient, clock: FakeClock) -> None:
    a = await client.submit(MODEL, {"prompt": "first", "duration": 5})
    b = await client.submit(MODEL, {"prompt": "second", "duration": 5})
    assert a.request_id != b.request_id
    assert a.status_url.endswith(f"/v1/requests/{a.request_id}/status")
    assert await client.status(a) == InProgress()  # one slot: a runs...
    assert await client.status(b) == Queued(0)  # ...b is next in line
    assert isinstance(await client.result(b), Queued)  # unfinished result: its state
    clock.advance(5.5)
    done = await client.result(a)
    assert isinstance(done, Succeeded) and len(done.outputs) == 1
    assert done.cost == pytest.approx(0.84)  # 5 s with sound, include_cost=true
    assert isinstance(await client.status(a), Succeeded)  # `completed` accepted


async def test_cancel_queued_and_not_cancellable(client: RunComfyClient) -> None:
    a = await client.submit(MODEL, {"prompt": "runs", "duration": 5})
    b = await client.submit(MODEL, {"prompt": "waits", "duration": 5})
    running = await client.cancel(a)
    assert not running.cancelled and running.outcome == "not_cancellable"
    queued = await client.cancel(b)
    assert queued.cancelled and queued.outcome == "cancelled"
    assert await client.status(b) == Cancelled()


async def test_validation_errors_carry_the_detail(client: RunComfyClient) -> None:
    with pytest.raises(errors.InvalidInput) as info:
        await client.submit(MODEL, {"prompt": "x", "cfg_scale": 3, "generate_audio": True})
    assert info.value.status_code == 422 and info.value.detail


async def test_unknown_model_and_unknown_request(client: RunComfyClient) -> None:
    with pytest.raises(errors.InvalidInput):
        await client.submit("no/such/model", {"prompt": "x"})
    with pytest.raises(errors.RequestNotFound) as info:
        await client.status(client.handle("does-not-exist"))
    assert info.value.error_code == 404001


async def test_model_info_has_a_price(client: RunComfyClient) -> None:
    info = await client.model_info(MODEL)
    assert info["price_unit"] == "second" and info["base_price_usd"] > 0


async def test_a_refused_token_is_an_auth_error(server: RunningEmulator) -> None:
    async with httpx.AsyncClient() as http:
        bad = RunComfyClient(http, base_url=server.base_url, token="nope")
        with pytest.raises(errors.AuthError):
            await bad.submit(MODEL, {"prompt": "x"})


async def test_failed_generation_has_its_error(server: RunningEmulator, clock: FakeClock) -> None:
    server.reset(
        EmulatorConfig(
            token=TOKEN,
            clock=clock,
            speed=0.0,
            faults=parse_faults(["fail"]),
            status_variant="error-object",
        )
    )
    async with httpx.AsyncClient() as http:
        c = RunComfyClient(http, base_url=server.base_url, token=TOKEN)
        sub = await c.submit(MODEL, {"prompt": "doomed"})
        res = await c.result(sub)
    assert isinstance(res, Failed) and "fault" in res.error


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("429", errors.RateLimited),
        ("5xx", errors.ServerError),
        ("error-200", errors.ServerError),
        ("drop", errors.TransportError),
    ],
)
async def test_fault_classes_on_a_get(
    server: RunningEmulator, clock: FakeClock, fault: str, expected: type[Exception]
) -> None:
    server.reset(EmulatorConfig(token=TOKEN, clock=clock, faults=parse_faults([f"{fault}@status"])))
    async with httpx.AsyncClient() as http:
        c = RunComfyClient(http, base_url=server.base_url, token=TOKEN)
        sub = await c.submit(MODEL, {"prompt": "x"})
        with pytest.raises(expected) as info:
            await c.status(sub)
    assert not isinstance(info.value, errors.UnknownOutcome)
    if fault == "429":
        assert info.value.retry_after is not None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("accept-5xx", errors.ServerError),
        ("accept-drop", errors.UnknownOutcome),
        ("no-request-id", errors.MalformedAnswer),
        ("429", errors.RateLimited),
    ],
)
async def test_fault_classes_on_submit(
    server: RunningEmulator, clock: FakeClock, fault: str, expected: type[Exception]
) -> None:
    from batcher.retry import Action, classify

    server.reset(EmulatorConfig(token=TOKEN, clock=clock, faults=parse_faults([f"{fault}@submit"])))
    async with httpx.AsyncClient() as http:
        c = RunComfyClient(http, base_url=server.base_url, token=TOKEN)
        with pytest.raises(expected) as info:
            await c.submit(MODEL, {"prompt": "x"})
    accepted = len(server.emulator.submissions)
    action = classify(info.value, is_submit=True)  # type: ignore[arg-type]
    # Only a submit that surely created nothing may be retried automatically.
    assert (action is Action.RETRY) == (fault == "429")
    assert accepted == (0 if fault == "429" else 1)


async def test_the_token_never_reaches_the_file_host_nor_the_logs(
    server: RunningEmulator, clock: FakeClock, caplog: pytest.LogCaptureFixture, tmp_path: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    server.reset(EmulatorConfig(token=TOKEN, clock=clock, speed=0.0))
    async with httpx.AsyncClient() as http, httpx.AsyncClient() as files:
        c = RunComfyClient(http, base_url=server.base_url, token=TOKEN)
        sub = await c.submit(MODEL, {"prompt": "a fox"})
        res = await c.result(sub)
        assert isinstance(res, Succeeded)
        [url] = res.outputs
        assert httpx.URL(url).host == "localhost"  # another host than the API's 127.0.0.1
        got = await download(files, url, tmp_path / "v.mp4")
    assert got.size > 0
    hits = server.emulator.file_hits
    assert hits and not any(h.authorization for h in hits)
    assert TOKEN not in caplog.text
    assert any("127.0.0.1" in r.getMessage() for r in caplog.records)  # logging was on


async def test_a_stalled_download_times_out_with_the_clients_timeout(
    server: RunningEmulator, clock: FakeClock, tmp_path: Any
) -> None:
    server.reset(
        EmulatorConfig(token=TOKEN, clock=clock, speed=0.0, faults=parse_faults(["slow:1:5@files"]))
    )
    async with httpx.AsyncClient() as http, httpx.AsyncClient(timeout=0.3) as files:
        c = RunComfyClient(http, base_url=server.base_url, token=TOKEN)
        res = await c.result(await c.submit(MODEL, {"prompt": "stall"}))
        assert isinstance(res, Succeeded)
        with pytest.raises(errors.DownloadError, match="Timeout"):
            await download(files, res.outputs[0], tmp_path / "v.mp4")
