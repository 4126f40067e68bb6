"""`batcher models`: what RunComfy's catalog holds, and one model's fields and price."""

from __future__ import annotations

import difflib
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import anyio
import click

from batcher import errors
from batcher.catalog import CatalogCache, cache_dir, fetch_entry, fetch_models, fields, matches
from batcher.catalog import price_text as price
from batcher.cli.common import count, err, handle_errors
from batcher.client import DEFAULT_BASE_URL
from batcher.session import catalog_api
from batcher.settings import ApiSettings

# What makes the catalog's copy serve instead: the API cannot be reached or is failing.
# A refused token (AuthError) is said as it is: the copy would hide a real problem.
_UNREACHABLE = (errors.TransportError, errors.ServerError, errors.RateLimited)


@click.command("models")
@click.argument("words", nargs=-1)
@click.option("--category", default="", help="Only models in this category (any case).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--emulator", is_flag=True, help="Ask the built-in emulator (no token, no network).")
@click.option("--base-url", default=None, help="The API to ask (default: $RUNCOMFY_BASE_URL).")
@handle_errors
def models(
    words: tuple[str, ...], category: str, as_json: bool, emulator: bool, base_url: str | None
) -> None:
    """List the models of RunComfy's catalog (SEARCH words match id and name), or show one
    model's input fields, their ranges and defaults, and its price.

    The catalog is read from the API and a copy is kept (in $BATCHER_CACHE, else
    ~/.cache/batcher): without a token or a network, the copy answers, and says from when.

    \b
    Examples:
      batcher models                          # the whole catalog
      batcher models kling pro --category video
      batcher models show kling/kling-3.0/pro/text-to-video
      batcher models show kling/kling-3.0/pro/text-to-video --json | jq .input_schema
    """
    if words and words[0] == "show":
        if len(words) != 2:
            raise errors.UsageError("usage: batcher models show MODEL_ID (one model id)")
        _show(words[1].strip().strip("/"), as_json, emulator, base_url)
        return
    _list(" ".join(words), category, as_json, emulator, base_url)


def _list(search: str, category: str, as_json: bool, emulator: bool, base_url: str | None) -> None:
    api, cache = _where(emulator, base_url)
    catalog: list[dict[str, Any]] | None = None
    failure = None
    if api is not None:
        try:
            catalog = anyio.run(_fetch_models, api)
            cache.keep_models(catalog)
        except _UNREACHABLE as exc:
            failure = exc
    if catalog is None:
        catalog = _from_copy(cache, cache.models, failure)
    found = [m for m in catalog if matches(m, search, category)]
    if as_json:
        click.echo(json.dumps({"models": found, "total": len(found)}, indent=2))
        return
    if not found:
        click.echo(f"no model of the catalog's {count(len(catalog), 'model')} matches")
        return
    rows = [
        (str(m["model_id"]), str(m.get("display_name", "")), _categories(m), price(m))
        for m in found
    ]
    for line in _table(("MODEL", "NAME", "CATEGORIES", "PRICE"), rows):
        click.echo(line)
    of = f" of {len(catalog)}" if len(found) != len(catalog) else ""
    click.echo(f"{count(len(found), 'model')}{of}; `batcher models show MODEL` for its fields")


def _show(model_id: str, as_json: bool, emulator: bool, base_url: str | None) -> None:
    api, cache = _where(emulator, base_url)
    entry: dict[str, Any] | None = None
    failure = None
    if api is not None:
        try:
            entry = anyio.run(_fetch_entry, api, model_id)
            cache.keep_entry(entry)
        except _UNREACHABLE as exc:
            failure = exc
        except (errors.InvalidInput, errors.RequestNotFound) as exc:
            raise errors.UsageError(
                f"{model_id}: not in the catalog of {api.base_url} ({exc}){_guess(model_id, cache)}"
            ) from exc
    if entry is None:
        entry = _from_copy(cache, (cache.entries or {}).get(model_id), failure, model_id)
    if as_json:
        click.echo(json.dumps(entry, indent=2, ensure_ascii=False))
        return
    click.echo(f"{entry['model_id']}  {entry.get('display_name', '')}".rstrip())
    click.echo(f"categories: {_categories(entry) or '-'}")
    sound = entry.get("price_with_sound_usd")
    with_sound = f" ({price({**entry, 'base_price_usd': sound})} with sound)" if sound else ""
    click.echo(f"price: {price(entry)}{with_sound}")
    found = fields(entry)
    if not found:
        click.echo("fields: the catalog gives no input schema for this model")
        return
    rows = [
        (f.name + (" *" if f.required else ""), f.type, f.allowed, f.default, f.description)
        for f in found
    ]
    click.echo("")
    for line in _table(("FIELD", "TYPE", "ALLOWED", "DEFAULT", "DESCRIPTION"), rows):
        click.echo(line)
    click.echo("* required")


def _where(emulator: bool, base_url: str | None) -> tuple[ApiSettings | None, CatalogCache]:
    """The API to ask (None: no token, the copy alone answers) and the copy kept for it."""
    try:
        api = ApiSettings.resolve(os.environ, emulator=emulator, base_url=base_url)
    except errors.ConfigError:
        url = (base_url or os.environ.get("RUNCOMFY_BASE_URL") or DEFAULT_BASE_URL).strip()
        cache = CatalogCache.load(cache_dir(os.environ), url)
        if cache.models is None and not cache.entries:
            raise
        return None, cache
    return api, CatalogCache.load(cache_dir(os.environ), api.base_url)


def _from_copy(cache: CatalogCache, kept: Any, failure: Exception | None, model: str = "") -> Any:
    """What the copy holds, said to come from it; the API's failure when it holds nothing."""
    why = (
        f"cannot read the catalog from {cache.base_url}: {failure}"
        if failure
        else ("RUNCOMFY_API_TOKEN is not set")
    )
    if kept is None:
        what = f"{model} has" if model else "the catalog has"
        message = f"{why}; and {what} no copy here ({cache.path})"
        if failure is not None:
            raise errors.BatcherError(message) from failure  # exit 1: try again later
        raise errors.ConfigError(message)
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(cache.fetched_at or 0))
    err(f"{why}; showing the copy kept {'on ' + when if cache.fetched_at else ''}".rstrip())
    return kept


def _guess(model_id: str, cache: CatalogCache) -> str:
    known = [str(m["model_id"]) for m in cache.models or []]
    close = difflib.get_close_matches(model_id, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


async def _fetch_models(api: ApiSettings) -> list[dict[str, Any]]:
    async with catalog_api(api) as client:
        return await fetch_models(client)


async def _fetch_entry(api: ApiSettings, model_id: str) -> dict[str, Any]:
    async with catalog_api(api) as client:
        return await fetch_entry(client, model_id)


def _categories(entry: dict[str, Any]) -> str:
    cats = entry.get("categories")
    return ", ".join(map(str, cats)) if isinstance(cats, list) else str(cats or "")


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell (the last one left as it is)."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    return [
        "  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip()
        for r in [head, *rows]
    ]


COMMANDS = [models]
