"""Output files come only from allowed hosts (issue 11: any URL a result named was
fetched, 169.254.169.254 included)."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest

from batcher.download import download, host_guard
from batcher.emulator import EmulatorConfig
from batcher.errors import HostRefused
from batcher.hosts import HostPolicy
from tests.emulator_server import running_emulator
from tests.test_e2e import FAST, TOKEN, batcher

API = HostPolicy.for_api("https://model-api.runcomfy.net")
LOCAL = HostPolicy.for_api("http://127.0.0.1:8765")


@pytest.mark.parametrize(
    "url",
    [
        "https://model-api.runcomfy.net/files/a.mp4",  # the API's own host
        "https://playgrounds-storage-public.runcomfy.net/x/a.mp4",  # RunComfy's storage
        "https://RUNCOMFY.NET./a.mp4",  # case and a trailing dot do not matter
    ],
)
def test_runcomfy_hosts_are_allowed(url: str) -> None:
    assert API.refusal(url) is None


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://169.254.169.254/latest/meta-data/", "plain http"),
        ("https://169.254.169.254/latest/meta-data/", "link-local address"),
        ("https://10.0.0.5/a.mp4", "private address"),
        ("https://[fe80::1]/a.mp4", "link-local address"),
        ("https://evil.example.com/a.mp4", "not an allowed host"),
        ("https://runcomfy.net.evil.example/a.mp4", "not an allowed host"),
        ("http://storage.runcomfy.net/a.mp4", "plain http"),
        ("ftp://storage.runcomfy.net/a.mp4", "https only"),
        ("file:///etc/passwd", "no host"),
        ("https://127.0.0.1/a.mp4", "loopback address"),  # not the API's host here
    ],
)
def test_anything_else_is_refused_with_the_way_out(url: str, said: str) -> None:
    why = API.refusal(url)
    assert why is not None and said in why, why
    if "host" in why and "allowed" in why:
        assert "--allow-host" in why


def test_loopback_apis_serve_their_files_over_plain_http() -> None:
    assert LOCAL.refusal("http://127.0.0.1:9999/files/a.mp4") is None  # any port
    assert LOCAL.refusal("http://localhost/files/a.mp4") is not None  # another name


def test_hosts_allowed_on_purpose() -> None:
    mine = HostPolicy.for_api("https://model-api.runcomfy.net", ("cdn.example.com", "*.s3.test"))
    assert mine.refusal("https://cdn.example.com/a.mp4") is None
    assert mine.refusal("https://bucket.s3.test/a.mp4") is None
    assert mine.refusal("https://other.example.com/a.mp4") is not None
    exact = HostPolicy.for_api("https://api.example", ("10.1.2.3",))
    assert exact.refusal("https://10.1.2.3/a.mp4") is None  # named exactly: allowed
    wild = HostPolicy.for_api("https://api.example", ("*.1.2.3",))
    assert wild.refusal("https://10.1.2.3/a.mp4") is not None  # never by a pattern


def test_an_api_given_as_http_serves_its_own_files_over_http() -> None:
    lab = HostPolicy.for_api("http://render-box.lan:8000")
    assert lab.refusal("http://render-box.lan:8000/files/a.mp4") is None
    assert lab.refusal("http://storage.runcomfy.net/a.mp4") is not None  # others: https


async def _redirected(tmp_path: Path) -> tuple[list[str], BaseException | None]:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(302, headers={"Location": "http://169.254.169.254/latest/"})

    guard = host_guard(HostPolicy.for_api("https://model-api.runcomfy.net"))
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(answer), follow_redirects=True, event_hooks=guard
    ) as files:
        try:
            await download(files, "https://storage.runcomfy.net/a.mp4", tmp_path / "a.mp4")
        except HostRefused as exc:
            return seen, exc
    return seen, None


def test_a_redirect_to_a_forbidden_host_is_never_followed(tmp_path: Path) -> None:
    seen, refused = anyio.run(_redirected, tmp_path)
    assert seen == ["https://storage.runcomfy.net/a.mp4"]  # 169.254.169.254: never asked
    assert refused is not None and "169.254.169.254" in str(refused)
    assert not (tmp_path / "a.mp4").exists()


@pytest.mark.e2e
def test_files_on_a_host_not_allowed_stop_submissions_until_it_is(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(
        "name: night\njobs:\n" + "".join(f"  - prompt: clip {i}\n" for i in range(3))
    )
    state = ["--state", "s.db"]
    with running_emulator(EmulatorConfig(speed=0.02, token=TOKEN), files_host="localhost") as emu:
        refused = batcher(
            ["run", "jobs.yaml", *state, "--out", "out", "--concurrency", "1", *FAST],
            cwd=tmp_path,
            base_url=emu.base_url,
        )
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "output file host localhost is a loopback address" in refused.stdout
        assert "stopped submitting: a result named an output file on a host" in refused.stdout
        assert len(emu.emulator.submissions) <= 2  # the one refused and one in flight: no more
        assert emu.emulator.file_hits == []  # not a byte asked of the refused host
        assert batcher(["retry", *state], cwd=tmp_path, base_url=emu.base_url).returncode == 0
        sent = len(emu.emulator.submissions)
        again = batcher(["resume", *state, *FAST], cwd=tmp_path, base_url=emu.base_url)
        assert again.returncode == 2, again.stdout + again.stderr  # remembered: not paid again
        assert "--allow-host localhost" in again.stderr and len(emu.emulator.submissions) == sent
        allowed = batcher(
            ["resume", *state, "--allow-host", "localhost", *FAST],
            cwd=tmp_path,
            base_url=emu.base_url,
        )
        assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert len(list((tmp_path / "out" / "night").glob("*.mp4"))) == 3
