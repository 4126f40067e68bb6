"""Application flow of `run` / `resume`: sync job files into the store, open the API
(real or the in-process emulator), take the runs' locks, drive the scheduler, handle
signals.

Invariants: no printing here (the cli renders `Event`s); the API token lives only in
`ApiSettings` and the httpx client headers, never in the store, events or files; the run
options recorded in the store never include it; a recorded run's API is never replaced
(`ApiSettings.check_continues`), only moved on purpose with `--base-url`.
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio
import httpx

from batcher.client import RunComfyClient
from batcher.connections import pooled_client
from batcher.download import host_guard
from batcher.errors import (
    AuthError,
    BatcherError,
    ConfigError,
    TransportError,
    UnsendableRequest,
    UsageError,
)
from batcher.hosts import HostPolicy
from batcher.jobfile import JobFile
from batcher.locks import hold_runs
from batcher.models import UNFINISHED, Event
from batcher.outputs import LocalFolder, finish_moves
from batcher.scheduler import Scheduler, Summary
from batcher.settings import ApiSettings, RunSettings
from batcher.store import SqliteLedger, Store

DEFAULT_OUT = Path("outputs")


def emulator_journal(state_path: Path) -> Path:
    """Where the in-process emulator keeps its requests, so `resume` finds them."""
    return Path(f"{state_path}.emulator.jsonl")


@asynccontextmanager
async def open_api(
    api: ApiSettings,
    *,
    state_path: Path,
    emulator_speed: float | None = None,
    allow_hosts: tuple[str, ...] = (),
    concurrency: int = 8,
) -> AsyncIterator[tuple[RunComfyClient, httpx.AsyncClient]]:
    """An API client and a token-free client for output files, which fetches only from
    the hosts `hosts.HostPolicy` allows (every redirect checked too)."""
    hooks = host_guard(HostPolicy.for_api(api.base_url, allow_hosts))
    async with AsyncExitStack() as stack:
        if api.emulator:
            from batcher.emulator import EmulatorConfig, create_app

            cfg = EmulatorConfig(persist_path=emulator_journal(state_path))
            if emulator_speed is not None:
                cfg = EmulatorConfig(persist_path=cfg.persist_path, speed=emulator_speed)
            transport = httpx.ASGITransport(app=create_app(cfg))
            http = httpx.AsyncClient(transport=transport)
            files = httpx.AsyncClient(transport=transport, event_hooks=hooks)
        else:
            # Every request in flight keeps its connection alive for the next one: with
            # fewer kept than in flight, connections were closed and opened again all night.
            pool = max(8, concurrency + 8)  # + polls and cancels beside the submits
            limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
            http = pooled_client(limits, follow_redirects=False)
            files = pooled_client(  # downloads in flight keep their connections too
                httpx.Limits(max_connections=max(100, pool), max_keepalive_connections=pool),
                follow_redirects=True,
                timeout=api.timeouts.httpx(),
                event_hooks=hooks,
            )
        await stack.enter_async_context(http)
        await stack.enter_async_context(files)
        yield (
            RunComfyClient(http, base_url=api.base_url, token=api.token, timeouts=api.timeouts),
            files,
        )


@asynccontextmanager
async def catalog_api(api: ApiSettings) -> AsyncIterator[RunComfyClient]:
    """An API client to read the model catalog with (the emulator in-process, when asked)."""
    if api.emulator:
        from batcher.emulator import EmulatorConfig, create_app

        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(EmulatorConfig())))
    else:
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
        http = pooled_client(limits, follow_redirects=False)
    async with http:
        yield RunComfyClient(http, base_url=api.base_url, token=api.token, timeouts=api.timeouts)


def run_folder(jf: JobFile, out: Path | None) -> Path:
    """The run's output folder: --out, else the file's output_dir, else outputs/; + run."""
    if out is not None:
        root = out
    elif jf.options.output_dir:
        root = jf.path.parent / jf.options.output_dir
    else:
        root = DEFAULT_OUT
    return (root / jf.run).resolve()


def check_distinct_runs(files: Sequence[JobFile]) -> None:
    """Each job file of one invocation must be its own run."""
    seen: dict[str, Path] = {}
    for jf in files:
        if jf.run in seen:
            raise UsageError(
                f"{seen[jf.run]} and {jf.path} both define run {jf.run!r}; "
                "give one a different `name:` (or pass the file once)"
            )
        seen[jf.run] = jf.path


def ensure_writable(folder: Path) -> None:
    """Refuse before anything is paid for if the run's files could not be saved."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".batcher-write-test-"):
            pass  # a unique name: two runners may check one folder at the same moment
    except OSError as exc:
        raise ConfigError(
            f"cannot write output files in {folder}: {exc.strerror or exc}; "
            "fix it or choose another --out"
        ) from exc


def record_runs(
    store: Store,
    files: Sequence[JobFile],
    *,
    out: Path | None,
    api: ApiSettings,
    moving: bool = False,
    flags: Mapping[str, Any],
) -> dict[str, Path]:
    """Sync every job file into the store, then move files as the new versions need
    (an edit's old file aside, an undo's back under the final name); returns run -> folder.

    Call while holding the runs' locks. A run recorded before must continue against the
    API it started with: anything else is refused before the store is touched.
    """
    check_distinct_runs(files)
    known = set(store.run_names())
    for jf in files:
        if jf.run in known:
            api.check_continues(store.run_info(jf.run).options, run=jf.run, moving=moving)
    where: dict[str, Any] = {"api": "emulator" if api.emulator else "remote"}
    if not api.emulator:
        where["base_url"] = api.base_url
    folders: dict[str, Path] = {}
    for jf in files:
        folder = run_folder(jf, out)
        file_opts = {k: v for k, v in asdict(jf.options).items() if v is not None}
        store.upsert_run(
            jf.run,
            model=jf.model,
            job_file=str(jf.path),
            out_dir=str(folder),
            options=file_opts | dict(flags) | where,
        )
        store.sync_jobs(jf.run, jf.jobs)
        finish_moves(store, jf.run, folder)
        folders[jf.run] = folder
    return folders


async def drive(
    store: Store,
    api: ApiSettings,
    *,
    runs: Sequence[str],
    out_dirs: Mapping[str, Path],
    settings: RunSettings,
    on_event: Callable[[Event], None],
    on_tick: Callable[[], None] | None = None,
    emulator_speed: float | None = None,
) -> Summary:
    """Drive the runs (holding their locks) until done; SIGINT/SIGTERM stop it (a second
    one exits at once)."""
    with hold_runs(store.path, runs):
        for run_name in runs:  # a swap of versions cut short by a crash is finished first
            finish_moves(store, run_name, Path(out_dirs[run_name]))
        async with open_api(
            api,
            state_path=store.path,
            emulator_speed=emulator_speed,
            allow_hosts=settings.allow_hosts,
            concurrency=settings.concurrency,
        ) as (client, files):
            await preflight(store, client, runs)
            sink = LocalFolder(
                store,
                files,
                out_dirs,
                max_bytes=settings.max_download_bytes,
                concurrency=settings.download_concurrency,
                time_for=settings.download_deadline,
            )
            sched = Scheduler(
                SqliteLedger(store), client, sink, runs=runs, settings=settings, on_event=on_event
            )
            async with anyio.create_task_group() as tg:
                tg.start_soon(_watch_signals, sched, on_event)
                if on_tick is not None:
                    tg.start_soon(_ticker, on_tick)
                summary = await sched.run()
                tg.cancel_scope.cancel()
            return summary


PREFLIGHT_TRIES = 3


async def preflight(store: Store, client: RunComfyClient, runs: Sequence[str]) -> None:
    """Before work starts, make sure the API answers at all (any HTTP answer will do).

    A wrong base URL, DNS name or scheme would otherwise be retried all night as
    "nothing was sent"; an outage that begins later is waited out as usual.
    """
    if not store.jobs(runs, UNFINISHED, current_only=False):
        return
    model = store.run_info(runs[0]).model
    for attempt in range(1, PREFLIGHT_TRIES + 1):
        try:
            await client.model_info(model)
            return
        except UnsendableRequest as exc:
            raise ConfigError(
                f"cannot send requests to the API at {client.base_url}: {exc}; check "
                "RUNCOMFY_BASE_URL and RUNCOMFY_API_TOKEN (nothing was submitted)"
            ) from exc
        except TransportError as exc:
            if exc.sent or attempt == PREFLIGHT_TRIES:
                if exc.sent:
                    return  # it answered something, however badly: reachable
                raise ConfigError(
                    f"cannot reach the API at {client.base_url}: {exc}; check "
                    "RUNCOMFY_BASE_URL and the network (nothing was submitted)"
                ) from exc
            await anyio.sleep(attempt)
        except AuthError:
            raise
        except BatcherError:
            return  # an HTTP answer, even an error: the API is there


async def _watch_signals(sched: Scheduler, on_event: Callable[[Event], None]) -> None:
    seen = 0
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            seen += 1
            if seen > 1:
                # Second signal: every state change is already committed; leave now.
                os._exit(130)
            on_event(
                Event(
                    "stop",
                    "",
                    "stopping: finishing submits in flight, state is "
                    "saved; press Ctrl-C again to exit at once",
                )
            )
            sched.stop("interrupted")


async def _ticker(tick: Callable[[], None]) -> None:
    while True:
        tick()
        await anyio.sleep(0.5)
