"""`batcher emulator`: serve the built-in RunComfy emulator on a loopback port.

Invariants: the first line on stdout is `RUNCOMFY_BASE_URL=http://HOST:PORT` (the real
port, also with `--port 0`), flushed before the server accepts requests, so a parent
process can read it; everything else goes to stderr. Ctrl-C (SIGINT) stops the server
cleanly and exits 0; bad options exit 2.
"""

from __future__ import annotations

from pathlib import Path

import click

from batcher.cli.common import EXIT_OK, EXIT_USAGE, err
from batcher.emulator import VARIANTS, EmulatorConfig, FaultSpecError, parse_faults
from batcher.emulator.server import EmulatorServer


@click.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="0: any free."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Ids and faults follow it.")
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="KIND[:RATE[:PARAM]][@EP,...][#N]",
    help="Inject a fault (repeatable); see docs/emulator.md.",
)
@click.option(
    "--speed",
    type=click.FloatRange(0),
    default=0.02,
    show_default=True,
    help="Seconds of processing per second of video.",
)
@click.option(
    "--queue-delay", type=click.FloatRange(0), default=0.0, help="Extra seconds in the queue."
)
@click.option("--slots", type=click.IntRange(1), default=4, show_default=True)
@click.option("--token", default=None, help="Accept only this bearer token (default: any).")
@click.option("--url-ttl", type=click.FloatRange(0), default=3600.0, show_default=True)
@click.option("--files-host", default=None, help="Serve file URLs from this host name.")
@click.option(
    "--variant",
    "variants",
    multiple=True,
    type=click.Choice(sorted(VARIANTS)),
    help="Play an undocumented-but-plausible behaviour (repeatable).",
)
@click.option(
    "--persist",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Journal file: requests survive a restart.",
)
@click.option("--balance", type=click.FloatRange(0), default=None, help="USD balance (402).")
@click.option(
    "--result-lag",
    type=click.FloatRange(0),
    default=0.0,
    help="Seconds /result lags behind /status (a finished render still shows running).",
)
@click.option(
    "--spread",
    type=click.FloatRange(0),
    default=0.25,
    show_default=True,
    help="Render times vary lognormally around duration x speed with this sigma (0: exact).",
)
@click.option(
    "--render-time",
    default="",
    metavar="uniform:LO:HI|lognormal:MEDIAN:SIGMA|fixed:S",
    help="Draw each render's seconds from this (seeded) instead of --speed and --spread.",
)
def emulator(
    host: str,
    port: int,
    seed: int,
    faults: tuple[str, ...],
    speed: float,
    queue_delay: float,
    slots: int,
    token: str | None,
    url_ttl: float,
    files_host: str | None,
    variants: tuple[str, ...],
    persist: Path | None,
    balance: float | None,
    result_lag: float,
    spread: float,
    render_time: str,
) -> None:
    """Serve the built-in RunComfy Model API emulator (Ctrl-C to stop)."""
    try:
        config = EmulatorConfig(
            seed=seed,
            faults=parse_faults(faults),
            speed=speed,
            queue_delay=queue_delay,
            slots=slots,
            token=token,
            url_ttl=url_ttl,
            status_variant=",".join(variants) or "documented",
            persist_path=persist,
            balance_usd=balance,
            result_lag=result_lag,
            spread=spread,
            render_time=render_time,
        )
        server = EmulatorServer(config, host=host, port=port, files_host=files_host)
    except FaultSpecError as exc:
        err(f"batcher: error: --fault {exc}")
        raise SystemExit(EXIT_USAGE) from None
    except (ValueError, OSError) as exc:
        err(f"batcher: error: {exc}")
        raise SystemExit(EXIT_USAGE) from None
    click.echo(f"RUNCOMFY_BASE_URL={server.base_url}")
    cfg = server.app.emulator.config
    token_note = "only the --token given" if token else "any non-empty bearer token"
    timing = render_time or f"speed {speed:g}, spread {spread:g}"
    err(f"emulator: seed {seed}, faults: {cfg.faults}, {slots} slot(s), {timing}")
    err(f"emulator: accepts {token_note}; stats at {server.base_url}/_emulator/stats")
    err("emulator: Ctrl-C to stop")
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    err("emulator: stopped")
    raise SystemExit(EXIT_OK)


COMMANDS: list[click.Command] = [emulator]
