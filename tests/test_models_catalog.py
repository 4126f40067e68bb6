"""The model catalog (issue 11, first part): the emulator serves it as RunComfy's CLI reads
it, `batcher models` lists and shows it over loopback HTTP, and a copy answers offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from batcher.catalog import MAX_PAGES, CatalogCache, fetch_models, fields, matches, price_text
from batcher.emulator import EmulatorConfig, create_app
from tests.emulator_server import RunningEmulator, running_emulator
from tests.test_e2e import TOKEN, batcher

KLING = "kling/kling-3.0/pro/text-to-video"


@pytest.fixture(scope="module")
def emu() -> Any:
    with running_emulator(EmulatorConfig(speed=0.02, token=TOKEN)) as running:
        yield running


def _get(path: str, token: str | None = "tok") -> httpx.Response:
    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(EmulatorConfig()))
        async with httpx.AsyncClient(transport=transport, base_url="http://emu") as client:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return await client.get(path, headers=headers)

    return anyio.run(main)


# -- the emulator's catalog ------------------------------------------------------------------


def test_the_emulator_lists_its_models_a_page_at_a_time() -> None:
    body = _get("/v1/models").json()
    assert body["total"] == 1 and [m["model_id"] for m in body["models"]] == [KLING]
    [entry] = body["models"]
    assert entry["display_name"] and entry["categories"] == ["video", "text-to-video"]
    assert (entry["base_price_usd"], entry["price_unit"]) == (0.112, "second")
    assert "input_schema" not in entry  # only when asked
    asked = _get("/v1/models?include_schema=true").json()["models"][0]
    assert asked["input_schema"]["properties"]["duration"]["maximum"] == 15
    assert _get("/v1/models?offset=1").json() == {
        "models": [],
        "total": 1,
        "limit": 20,
        "offset": 1,
    }
    assert _get("/v1/models?search=TEXT+pro").json()["total"] == 0  # one phrase, not words
    assert _get("/v1/models?search=kling").json()["total"] == 1
    assert _get("/v1/models?category=VIDEO").json()["total"] == 1
    assert _get("/v1/models?category=image").json()["total"] == 0
    assert _get("/v1/models?kind=video").json()["total"] == 1
    assert _get("/v1/models/categories").json() == {"categories": ["text-to-video", "video"]}


def test_the_emulator_s_catalog_checks_its_query_and_token() -> None:
    for bad in ("limit=-1", "limit=x", "limit=101", "offset=1.5"):
        answer = _get(f"/v1/models?{bad}")
        assert answer.status_code == 400 and "limit" in answer.json()["error_message"]
    assert _get("/v1/models", token=None).status_code == 401
    assert _get("/v1/models/categories", token=None).status_code == 401
    assert _get(f"/v1/models/{KLING}").json()["input_schema"]["required"] == ["prompt"]


# -- reading it --------------------------------------------------------------------------------


class Pages:
    """A catalog of `n` models served `size` at a time (`total` as given)."""

    def __init__(self, n: int, size: int, total: int | None) -> None:
        self.models = [{"model_id": f"m/{i:03d}"} for i in range(n)]
        self.size, self.total, self.asked = size, total, 0

    async def list_models(self, *, limit: int, offset: int) -> tuple[list[dict[str, Any]], Any]:
        self.asked += 1
        return self.models[offset : offset + min(limit, self.size)], self.total


@pytest.mark.parametrize(
    ("n", "size", "total", "asks"),
    [(250, 100, 250, 3), (250, 100, None, 3), (200, 100, 200, 2), (0, 100, 0, 1), (7, 5, 7, 2)],
)
def test_every_page_is_read(n: int, size: int, total: int | None, asks: int) -> None:
    pages = Pages(n, size, total)
    found = anyio.run(fetch_models, pages)  # type: ignore[arg-type]
    assert [m["model_id"] for m in found] == [m["model_id"] for m in pages.models]
    assert pages.asked == asks


def test_a_server_that_repeats_its_first_page_ends_the_reading() -> None:
    class Looping(Pages):
        async def list_models(self, *, limit: int, offset: int) -> tuple[list[Any], Any]:
            self.asked += 1
            return self.models[:limit], 10**6

    pages = Looping(100, 100, None)
    assert len(anyio.run(fetch_models, pages)) == 100  # type: ignore[arg-type]
    assert pages.asked == 2 < MAX_PAGES


def test_fields_prices_and_matches_read_a_schema_as_people_do() -> None:
    entry = _get(f"/v1/models/{KLING}").json()
    by_name = {f.name: f for f in fields(entry)}
    assert fields(entry)[0].name == "prompt" and by_name["prompt"].required
    assert (by_name["duration"].allowed, by_name["duration"].default) == ("3-15", "5")
    assert by_name["aspect_ratio"].allowed == '"16:9", "9:16", "1:1"'
    assert by_name["multi_prompt"].type == "array of object"
    assert fields({"input_schema": "?"}) == [] and fields({}) == []
    assert price_text(entry) == "$0.112/second"
    assert price_text({"base_price_usd": 0.04, "price_unit": "image"}) == "$0.04/image"
    assert price_text({"base_price_usd": True}) == price_text({}) == "-"
    assert matches(entry, "PRO kling", "Video") and not matches(entry, "wan")
    assert not matches(entry, "", "image")


def test_the_copy_is_per_api_and_a_damaged_one_is_no_copy(tmp_path: Path) -> None:
    one = CatalogCache.load(tmp_path, "https://a.example")
    one.keep_models([{"model_id": "x"}])
    assert CatalogCache.load(tmp_path, "https://a.example").models == [{"model_id": "x"}]
    assert CatalogCache.load(tmp_path, "https://b.example").models is None
    one.path.write_text("{not json")
    assert CatalogCache.load(tmp_path, "https://a.example").models is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".catalog-")]


# -- `batcher models` over loopback HTTP ---------------------------------------------------


def _models(emu: RunningEmulator, tmp: Path, *args: str, **kw: Any) -> Any:
    env = {"BATCHER_CACHE": str(tmp / "cache")} | kw.pop("env", {})
    return batcher(["models", *args], cwd=tmp, base_url=kw.pop("url", emu.base_url), env=env, **kw)


def test_models_lists_searches_and_shows_the_catalog(emu: RunningEmulator, tmp_path: Path) -> None:
    listed = _models(emu, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert KLING in listed.stdout and "$0.112/second" in listed.stdout
    assert "1 model;" in listed.stdout
    as_json = json.loads(_models(emu, tmp_path, "kling", "--category", "video", "--json").stdout)
    assert [m["model_id"] for m in as_json["models"]] == [KLING]
    none = _models(emu, tmp_path, "--category", "image")
    assert none.returncode == 0 and "no model of the catalog's 1 model matches" in none.stdout
    shown = _models(emu, tmp_path, "show", KLING)
    assert shown.returncode == 0, shown.stderr
    assert "price: $0.112/second" in shown.stdout
    assert any(
        line.split()[:4] == ["duration", "integer", "3-15", "5"]
        for line in shown.stdout.splitlines()
    )
    entry = json.loads(_models(emu, tmp_path, "show", KLING, "--json").stdout)
    assert entry["input_schema"]["properties"]["cfg_scale"]["type"] == "number"
    copy = next((tmp_path / "cache").glob("catalog-*.json")).read_text()
    assert TOKEN not in copy and KLING in copy  # what the catalog said, never the token


def test_without_the_api_the_copy_answers_and_says_so(tmp_path: Path) -> None:
    with running_emulator(EmulatorConfig(token=TOKEN)) as soon_gone:
        assert _models(soon_gone, tmp_path).returncode == 0
        assert _models(soon_gone, tmp_path, "show", KLING).returncode == 0
    # The API is gone: its copy answers, and says why and from when.
    listed = _models(soon_gone, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert KLING in listed.stdout
    assert f"cannot read the catalog from {soon_gone.base_url}" in listed.stderr
    assert "showing the copy kept on" in listed.stderr
    shown = _models(soon_gone, tmp_path, "show", KLING)
    assert shown.returncode == 0 and "duration" in shown.stdout
    # No token: nothing can be asked, the copy answers.
    tokenless = _models(soon_gone, tmp_path, env={"RUNCOMFY_API_TOKEN": ""})
    assert tokenless.returncode == 0 and KLING in tokenless.stdout
    assert "RUNCOMFY_API_TOKEN is not set" in tokenless.stderr
    # A model never shown has no copy of its own: a clear error.
    never = _models(soon_gone, tmp_path, "show", "wan/wan-2.5/text-to-video")
    assert never.returncode == 1 and "Traceback" not in never.stderr
    # A copy is kept per API: another API has none.
    with running_emulator(EmulatorConfig(token=TOKEN)) as other:
        pass
    assert _models(other, tmp_path).returncode == 1


def test_an_unreachable_api_with_no_copy_is_a_clear_error(tmp_path: Path) -> None:
    with running_emulator(EmulatorConfig(token=TOKEN)) as gone:
        url = gone.base_url
    done = batcher(["models"], cwd=tmp_path, base_url=url, env={"BATCHER_CACHE": str(tmp_path)})
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and url.split("//")[1] in done.stderr
    no_token = batcher(
        ["models"],
        cwd=tmp_path,
        base_url=url,
        env={"BATCHER_CACHE": str(tmp_path), "RUNCOMFY_API_TOKEN": ""},
    )
    assert no_token.returncode == 2 and "RUNCOMFY_API_TOKEN is not set" in no_token.stderr


def test_an_unknown_model_is_named_with_a_guess(emu: RunningEmulator, tmp_path: Path) -> None:
    assert _models(emu, tmp_path).returncode == 0  # the copy knows the catalog's ids
    wrong = _models(emu, tmp_path, "show", "kling/kling-3.0/pro/text-to-vide")
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert "not in the catalog" in wrong.stderr and f"did you mean {KLING}?" in wrong.stderr
    usage = _models(emu, tmp_path, "show")
    assert usage.returncode == 2 and "batcher models show MODEL_ID" in usage.stderr
