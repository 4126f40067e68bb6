"""Commands that look after runs without driving them: status, cancel, retry."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import click

from batcher.cli.common import count, handle_errors, state_option
from batcher.errors import UsageError
from batcher.locks import hold_runs
from batcher.models import JobState, Money
from batcher.operations import (
    cancel_runs,
    refetch_missing,
    render_time_lines,
    retry_jobs,
    retry_runs,
    runs_data,
    status_data,
)
from batcher.store import Store

SHORT_LIST = 5  # cancelled jobs listed one by one up to this many


@click.command()
@click.argument("run_name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--all", "every", is_flag=True, help="List every cancelled job too.")
@state_option
@handle_errors
def status(run_name: str | None, as_json: bool, every: bool, state_path: Path) -> None:
    """Counts by state, money, the jobs that need attention, and render times seen.

    \b
    Examples:
      batcher status night
      batcher status --json | jq '.runs[] | {run, counts}'
    """
    with Store.open(state_path, create=False, read_only=True) as store:
        data = status_data(store, run_name)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for run_data in data["runs"]:
        counts = ", ".join(f"{k} {v}" for k, v in run_data["counts"].items())
        pid = run_data["driven_by"]
        driver = "" if pid is None else f"; driven by pid {pid}" if pid else "; driven"
        click.echo(
            f"{run_data['run']}: {count(run_data['total'], 'job')} ({counts}); "
            f"outputs {run_data['out_dir']}{driver}"
        )
        money = Money.of_json(run_data["money"])
        click.echo(f"  money: {money.text(emulated=run_data['emulated'])}")
        if run_data["api_trouble"]:
            click.echo(f"  api: {run_data['api_trouble']}")
        for warning in run_data["warnings"]:
            click.echo(f"  warning: {warning}")
        if run_data["missing_files"]:
            click.echo(
                f"  {len(run_data['missing_files'])} done job(s) have missing files: "
                "`batcher retry --missing` downloads them again"
            )
        if run_data["superseded_unfinished"]:
            click.echo(
                f"  {run_data['superseded_unfinished']} superseded version(s) of edited jobs "
                "still in flight or unknown (kept as NAME~vN when done)"
            )
        for kept in run_data["rescued"]:
            what = f"accepted as {kept['request_id']}" if kept["request_id"] else "not sent"
            click.echo(
                f"  kept     {kept['key']}: {what}, but the state database refused it; "
                "`batcher resume` takes it up"
            )
        cancelled = [j for j in run_data["attention"] if j["state"] == "cancelled"]
        for job in run_data["attention"]:
            if job["state"] == "cancelled" and len(cancelled) > SHORT_LIST and not every:
                continue
            rid = f" [{job['request_id']}]" if job["request_id"] else ""
            click.echo(f"  {job['state']:<8} {job['key']}{rid}: {job['error'] or ''}")
        if len(cancelled) > SHORT_LIST and not every:
            click.echo(f"  {len(cancelled)} cancelled: `batcher status --all` lists them")
    if len(data["runs"]) > 1:
        emulated = sum(r["emulated"] for r in data["runs"])
        click.echo(_total(len(data["runs"]), emulated, Money.of_json(data["money"])))
    if not data["runs"]:
        click.echo("no runs yet")
    if data["render_times"]:
        click.echo("render times seen (polling and the ETA use them):")
        for line in render_time_lines(data["render_times"]):
            click.echo(f"  {line}")


ALL_HELP = (
    "Act on every run in the state. Without RUN or --all, only the one run that has such"
    " work is touched; with several, nothing is, and the runs are listed."
)


@click.command()
@click.argument("run_name", required=False)
@click.option("--all", "every", is_flag=True, help=ALL_HELP)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--base-url", default=None, help="API base URL (env RUNCOMFY_BASE_URL).")
@state_option
@handle_errors
def cancel(
    run_name: str | None, every: bool, as_json: bool, base_url: str | None, state_path: Path
) -> None:
    """Cancel queued remote requests and pending local jobs of RUN.

    \b
    Examples:
      batcher cancel night          # one run
      batcher cancel --all          # every run in the state
    """
    with Store.open(state_path, create=False) as store:
        done = anyio.run(lambda: cancel_runs(store, run_name, base_url=base_url, every=every))
    if as_json:
        entries = [{k: v for k, v in e.items() if k != "text"} for e in done]
        click.echo(
            json.dumps(
                {
                    "cancelled": [e for e in entries if e["now"] == "cancelled"],
                    "not_cancelled": [e for e in entries if e["now"] != "cancelled"],
                },
                indent=2,
            )
        )
        return
    for entry in done:
        click.echo(entry["text"])
    if not done:
        click.echo("nothing to cancel")


@click.command()
@click.argument("run_name", required=False)
@click.option("--failed", "failed", is_flag=True, help="Failed jobs (the default).")
@click.option(
    "--unknown",
    "unknown",
    is_flag=True,
    help="Unknown-outcome jobs: resubmits them, which may pay twice.",
)
@click.option("--cancelled", "cancelled", is_flag=True, help="Cancelled jobs.")
@click.option(
    "--missing", "missing", is_flag=True, help="Done jobs whose files were deleted (re-download)."
)
@click.option("--all", "every", is_flag=True, help=ALL_HELP)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@state_option
@handle_errors
def retry(
    run_name: str | None,
    every: bool,
    as_json: bool,
    failed: bool,
    unknown: bool,
    cancelled: bool,
    missing: bool,
    state_path: Path,
) -> None:
    """Put failed (or unknown / cancelled / missing) jobs of RUN back; then `batcher resume`.

    \b
    Examples:
      batcher retry night                 # failed jobs (a failed download downloads again)
      batcher retry night --missing       # files deleted since: downloaded again, not rendered
      batcher retry night --unknown       # may pay twice: check your dashboard first
    """
    states = [
        s
        for s, on in (
            (JobState.FAILED, failed or not (unknown or cancelled or missing)),
            (JobState.UNKNOWN, unknown),
            (JobState.CANCELLED, cancelled),
        )
        if on
    ]
    with Store.open(state_path, create=False) as store:
        runs = retry_runs(store, run_name, states, missing=missing, every=every)
        moved = [job for run in runs for job in retry_jobs(store, run, states)]
        fetch = refetch_missing(store, runs) if missing else []
        now = {j.id: store.job(j.id).state.value for j in [*moved, *fetch]}
    if as_json:
        click.echo(
            json.dumps(
                {
                    "runs": runs,
                    "retried": [
                        {"key": j.key, "was": j.state.value, "now": now[j.id]} for j in moved
                    ],
                    "refetched": [{"key": j.key, "now": now[j.id]} for j in fetch],
                },
                indent=2,
            )
        )
        return
    said = []
    if moved or not missing:
        said.append(f"{len(moved)} job(s) back to pending")
    if missing:
        said.append(f"{len(fetch)} done job(s) with missing files to download again")
    tail = "; run `batcher resume` to continue" if moved or fetch else ""
    click.echo(", ".join(said) + tail)
    if unknown and any(m.state is JobState.UNKNOWN for m in moved):
        click.echo(
            "note: unknown-outcome jobs may already have been accepted; resubmitting may pay twice"
        )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@state_option
@handle_errors
def runs(as_json: bool, state_path: Path) -> None:
    """List the runs in the state: counts, money, API, last activity, and the process
    driving each (if any)."""
    with Store.open(state_path, create=False, read_only=True) as store:
        data = runs_data(store)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    if not data:
        click.echo("no runs yet")
    for r in data:
        counts = ", ".join(f"{k} {v}" for k, v in r["counts"].items()) or "no jobs"
        pid = r["driven_by"]
        driver = "not running" if pid is None else f"driven by pid {pid}" if pid else "driven"
        click.echo(
            f"{r['run']}: {counts}; {r['api']}; last activity {r['last_activity']}; {driver}"
        )
        click.echo(f"  money: {Money.of_json(r['money']).text(emulated=r['api'] == 'emulator')}")
        if r["api_trouble"]:
            click.echo(f"  api: {r['api_trouble']}")
    if len(data) > 1:
        real = [r for r in data if r["api"] != "emulator"]
        total = sum((Money.of_json(r["money"]) for r in real), Money())
        click.echo(_total(len(data), len(data) - len(real), total))


@click.command()
@click.argument("run_name", required=False)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@state_option
@handle_errors
def forget(run_name: str | None, yes: bool, as_json: bool, state_path: Path) -> None:
    """Drop RUN's records from the state (its output files stay). Refused while another
    process drives it or while paid work is still out (cancel or finish it first)."""
    if run_name is None:
        with Store.open(state_path, create=False, read_only=True) as store:
            known = ", ".join(store.run_names()) or "none"
        raise UsageError(f"name the run to forget: `batcher forget RUN` (runs: {known})")
    with Store.open(state_path, create=False) as store, hold_runs(store.path, [run_name]):
        info = store.run_info(run_name)
        total = sum(store.counts([run_name]).values())
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError(f"forgetting run {run_name!r} needs a confirmation: add --yes")
            click.confirm(
                f"forget run {run_name!r} ({count(total, 'job')})? "
                f"Its files in {info.out_dir} stay",
                abort=True,
            )
        dropped = store.forget_run(run_name)
    if as_json:
        click.echo(json.dumps({"run": run_name, "dropped": dropped, "out_dir": info.out_dir}))
        return
    click.echo(f"forgot {run_name}: {dropped} job version(s); its files stay in {info.out_dir}")


COMMANDS: list[click.Command] = [status, runs, cancel, retry, forget]


def _total(runs: int, emulated: int, money: Money) -> str:
    """The money of every run together (emulated runs billed nothing: left out)."""
    apart = f" ({emulated} emulated, not counted)" if emulated else ""
    return f"all {runs} runs{apart}: {money.text()}"
