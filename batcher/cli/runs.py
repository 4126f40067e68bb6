"""Commands that drive runs: run and resume (status, cancel, retry are in manage.py)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio
import click

from batcher.cli.common import (
    DEFAULT_STATE,
    EXIT_AUTH,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    count,
    err,
    exit_code_for,
    handle_errors,
    out_option,
    state_option,
)
from batcher.cli.progress import Progress
from batcher.errors import AuthError, BatcherError, JobFileInvalid, StateLocked, UsageError
from batcher.hosts import HostPolicy
from batcher.jobfile import load_jobfile
from batcher.locks import hold_runs
from batcher.models import UNFINISHED, Event, JobState, bill_ratio
from batcher.operations import render_times, status_data
from batcher.scheduler import Summary
from batcher.session import (
    check_distinct_runs,
    drive,
    ensure_writable,
    record_runs,
    run_folder,
)
from batcher.settings import TOKEN_ENV, ApiSettings, RunSettings
from batcher.store import Store

NOTIFY_TIMEOUT = 120.0  # seconds a --notify command may take


def _run_options(fn: Any) -> Any:
    opts = [
        click.option(
            "--concurrency",
            type=click.IntRange(1, 1000),
            default=None,
            help="Remote requests in flight at once (default 8).",
        ),
        click.option(
            "--max-cost",
            type=click.FloatRange(0),
            default=None,
            help="USD budget: stop new submissions once spent + sent (may be billed, at the "
            "API's reported costs where known) would pass it.",
        ),
        click.option(
            "--max-attempts",
            type=click.IntRange(1, 100),
            default=None,
            help="Remote attempts per job before it fails for good (default 3).",
        ),
        click.option(
            "--on-unknown",
            type=click.Choice(["hold", "resubmit"]),
            default=None,
            help="What to do with a submit whose outcome is unknown (default hold).",
        ),
        click.option(
            "--deadline",
            type=click.FloatRange(1),
            default=None,
            help="Seconds a request may take from submit before it is given up (default 6 h).",
        ),
        click.option(
            "--poll-min",
            type=click.FloatRange(0.01),
            default=None,
            help="Shortest poll interval in seconds (default 1).",
        ),
        click.option(
            "--poll-max",
            type=click.FloatRange(0.01),
            default=None,
            help="Longest poll interval in seconds (default 60).",
        ),
        click.option(
            "--poll-delay",
            type=click.FloatRange(0.01),
            default=None,
            help="Mean seconds from a render's finish to its download that polling aims at"
            " (default 3% of the typical render time, at least --poll-min).",
        ),
        click.option(
            "--backoff-base",
            type=click.FloatRange(0.001),
            default=None,
            help="First retry delay in seconds; doubles up to 60 (default 1).",
        ),
        click.option(
            "--submit-interval",
            type=click.FloatRange(0),
            default=None,
            help="Minimum seconds between two submissions (default 0).",
        ),
        click.option(
            "--emulator",
            is_flag=True,
            help="Use the built-in emulator in-process (no token, no network).",
        ),
        click.option("--emulator-speed", type=click.FloatRange(0), default=None, hidden=True),
        click.option(
            "--connect-timeout",
            type=click.FloatRange(0.1),
            default=None,
            help="Seconds to wait for a connection to the API (default 10).",
        ),
        click.option(
            "--read-timeout",
            type=click.FloatRange(0.1),
            default=None,
            help="Seconds to wait for an API answer (default 60).",
        ),
        click.option(
            "--max-file-size",
            type=click.FloatRange(0.001),
            default=None,
            help="Largest output file to accept, in MB (default 2048).",
        ),
        click.option(
            "--allow-host",
            "allow_host",
            multiple=True,
            metavar="HOST",
            help="Also fetch output files from HOST (`*.example.com`: a domain); by default "
            "only the API's host and RunComfy's storage (*.runcomfy.net). Kept for `resume`.",
        ),
        click.option(
            "--notify",
            metavar="CMD",
            default=None,
            help="Run this shell command once when the run ends (done, failed, budget, "
            "interrupted...), with a JSON summary on its stdin; kept for `resume`.",
        ),
        click.option(
            "--report",
            "make_report",
            is_flag=True,
            default=None,
            help="Write the HTML report at the end (kept for `resume`).",
        ),
        click.option("--no-progress", is_flag=True, help="Plain line-by-line output."),
        click.option(
            "-q",
            "--quiet",
            is_flag=True,
            help="Only what needs attention (failures, stops, outages) and the final summary.",
        ),
        click.option("-v", "--verbose", is_flag=True, help="Show every event."),
        click.option(
            "--json",
            "as_json",
            is_flag=True,
            help="Print one JSON summary on stdout when the run ends (what --notify gets); "
            "everything else goes to stderr.",
        ),
        state_option,
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _flags(kw: dict[str, Any]) -> dict[str, Any]:
    names = (
        "concurrency",
        "max_cost",
        "max_attempts",
        "on_unknown",
        "deadline",
        "poll_min",
        "poll_max",
        "poll_delay",
        "backoff_base",
        "submit_interval",
        "connect_timeout",
        "read_timeout",
        "max_file_size",
        "notify",
    )
    flags = {n: kw[n] for n in names if kw.get(n) is not None}
    if kw.get("allow_host"):
        flags["allow_hosts"] = list(kw["allow_host"])
    if kw.get("make_report"):
        flags["report"] = True
    return flags


def _groups(store: Store, runs: Sequence[str]) -> list[list[str]]:
    """Runs with the same recorded options (API, limits, policies) are driven together."""
    groups: dict[str, list[str]] = {}
    for run_name in runs:
        options = json.dumps(dict(store.run_info(run_name).options), sort_keys=True)
        groups.setdefault(options, []).append(run_name)
    return list(groups.values())


def _drive_all(
    store: Store, runs: Sequence[str], kw: dict[str, Any], *, base_url: str | None
) -> tuple[int, str]:
    """Drive each group of runs with its own settings; stop at an interrupt or auth error.
    Returns the exit code and how the runs ended (done, failed, budget, balance, disk,
    state, auth, fatal, interrupted)."""
    code = EXIT_OK
    reasons: list[str] = []
    for names in _groups(store, runs):
        stored = dict(store.run_info(names[0]).options)
        settings = RunSettings.merged(stored, _flags(kw), emulator=stored.get("api") == "emulator")
        api = ApiSettings.for_run(
            os.environ, stored, base_url=base_url, timeouts=settings.timeouts, run=names[0]
        )
        group_code, reason = _drive(store, names, api, settings, kw)
        code = max(code, group_code)
        if reason:
            reasons.append(reason)
        if code in (EXIT_INTERRUPTED, EXIT_AUTH, EXIT_USAGE):
            break
    if code == EXIT_INTERRUPTED:
        return code, "interrupted"
    if reasons:
        return code, reasons[0]
    return code, "done" if code == EXIT_OK else "failed"


def _drive(
    store: Store,
    runs: Sequence[str],
    api: ApiSettings,
    settings: RunSettings,
    kw: dict[str, Any],
) -> tuple[int, str | None]:
    """Drive runs that share settings, print the summary; returns the exit code and why
    submitting stopped (None: it did not)."""
    out_dirs = {r: Path(store.run_info(r).out_dir) for r in runs}
    _check_refused_hosts(store, runs, api, settings)
    _warn_over_budget(store, runs, settings.max_cost)
    live = sys.stderr.isatty() and not kw.get("no_progress") and not kw.get("quiet")
    models = sorted({store.run_info(r).model for r in runs})
    seen = render_times(store, models, now=time.time())
    progress = Progress(
        lambda: store.counts(runs),
        lambda: store.money(runs),
        live=live,
        verbose=bool(kw.get("verbose")),
        quiet=bool(kw.get("quiet")),
        typical_render=max((e["p50"] for e in seen), default=None),
        concurrency=settings.concurrency,
    )
    with progress:
        _start_line(store, runs, settings, progress)
        summary = anyio.run(
            lambda: drive(
                store,
                api,
                runs=runs,
                out_dirs=out_dirs,
                settings=settings,
                on_event=progress.event,
                on_tick=progress.tick,
                emulator_speed=kw.get("emulator_speed"),
            )
        )
    return _finish(store, runs, summary, out_dirs, emulated=api.emulator), summary.stop_reason


def _check_refused_hosts(
    store: Store, runs: Sequence[str], api: ApiSettings, settings: RunSettings
) -> None:
    """A run whose files were refused from a host is not driven again, paying for renders
    it could not fetch either, until that host is allowed (UsageError, nothing sent)."""
    policy = HostPolicy.for_api(api.base_url, settings.allow_hosts)
    blocked = sorted({h for r in runs for h in store.refused_hosts(r) if not policy.allows_host(h)})
    if blocked:
        hosts = ", ".join(blocked)
        flags = " ".join(f"--allow-host {h}" for h in blocked)
        raise UsageError(
            f"output files of {', '.join(runs)} came from {hosts}, which files may not come "
            f"from; nothing was sent. If you trust it: `batcher resume {flags}`; if not, "
            "the API's results point somewhere they should not"
        )


def _start_line(
    store: Store, runs: Sequence[str], settings: RunSettings, progress: Progress
) -> None:
    """Say what this drive starts from (a log's first line), and keep it for `batcher log`."""
    counts = store.counts(runs)
    todo = sum(n for state, n in counts.items() if JobState(state) in UNFINISHED)
    cap = "" if settings.max_cost is None else f"; --max-cost ${settings.max_cost:.2f}"
    text = (
        f"{count(todo, 'job')} to do of {sum(counts.values())}; "
        f"money: {store.money(runs).text()}{cap}"
    )
    progress.event(Event("start", "", f"{', '.join(runs)}: {text}"))
    try:
        store.note(runs, "start", text)
    except BatcherError:  # a note is worth less than the run it would delay
        pass


def _warn_over_budget(store: Store, runs: Sequence[str], max_cost: float | None) -> None:
    """Say before anything is sent when the plan costs more than the budget allows."""
    if max_cost is None:
        return
    todo = store.jobs(runs, [JobState.PENDING])
    billed, estimated = store.billed(runs)
    ratio = bill_ratio(billed, estimated)  # what bills said so far
    planned = sum(j.cost_estimate for j in todo) * ratio
    committed = store.money(runs).at_most
    if committed + planned <= max_cost + 1e-9:
        return
    room, fits = max_cost - committed, 0
    for job in todo:  # in the order they are sent
        if job.cost_estimate * ratio > room + 1e-9:
            break
        room -= job.cost_estimate * ratio
        fits += 1
    already = f" (${committed:.2f} already spent or sent)" if committed else ""
    click.echo(
        f"warning: the {len(todo)} job(s) to send are estimated at ${planned:.2f}{already}, "
        f"which exceeds --max-cost ${max_cost:.2f}: about {fits} of {len(todo)} will be sent"
    )


def _finish(
    store: Store,
    runs: Sequence[str],
    s: Summary,
    out_dirs: dict[str, Path],
    *,
    emulated: bool,
) -> int:
    counts = store.counts(runs)
    total = sum(counts.values())
    line = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    click.echo(f"\n{count(total, 'job')}: {line}")
    click.echo(f"money: {store.money(runs).text(emulated=emulated)}")
    for run, folder in out_dirs.items():
        click.echo(f"outputs of {run}: {folder}")
    needs_care = _attention(store, runs)
    if isinstance(s.fatal, AuthError):
        err(f"batcher: error: the API refused the token: {s.fatal}")
        return EXIT_AUTH
    if s.fatal is not None:
        err(f"batcher: error: {s.fatal}; every state change so far is saved")
        return exit_code_for(s.fatal)
    if s.stop_reason == "interrupted":
        err("interrupted: state is saved; `batcher resume` continues")
        return EXIT_INTERRUPTED
    if s.stop_reason == "budget":
        click.echo(
            "stopped submitting: the budget (--max-cost) is reached; "
            "raise it and `batcher resume` to continue"
        )
    if s.stop_reason == "balance":
        click.echo("stopped submitting: insufficient balance; top up, then `batcher resume`")
    if s.stop_reason == "disk":
        click.echo(
            "stopped submitting: the output folder cannot take more files; free space, then "
            "`batcher retry` (downloads what was rendered) and `batcher resume`"
        )
    if s.stop_reason == "refused":
        click.echo(
            "stopped submitting: a result named an output file on a host files may not come "
            "from; if you trust it, `batcher retry` then `batcher resume --allow-host HOST` "
            "fetches what was rendered"
        )
    if s.stop_reason == "state":
        click.echo(
            "stopped submitting: the state database could not record a request; fix it "
            "(disk space, permissions), then `batcher resume` follows what was accepted"
        )
    left = sum(counts.get(x.value, 0) for x in UNFINISHED)
    return EXIT_OK if not needs_care and not left else EXIT_FAILED


def _attention(store: Store, runs: Sequence[str]) -> int:
    """List failed and unknown-outcome jobs; EXIT_FAILED if there are any."""
    attention = store.jobs(runs, [JobState.FAILED, JobState.UNKNOWN])
    for job in attention[:20]:
        rec = store.record(job.id)
        click.echo(f"  {rec.state.value:<8} {rec.key}: {rec.error or ''}")
    if len(attention) > 20:
        click.echo(f"  ... and {len(attention) - 20} more (batcher status)")
    if any(j.state is JobState.UNKNOWN for j in attention):
        click.echo(
            "unknown outcome: check your RunComfy dashboard before resubmitting; "
            "`batcher retry --unknown` resubmits them on purpose"
        )
    if any(j.state is JobState.FAILED for j in attention):
        click.echo("failed: `batcher retry` puts them back, then `batcher resume`")
    return EXIT_FAILED if attention else EXIT_OK


def _json_stdout(fn: Any) -> Any:
    """With --json, stdout carries only the final JSON summary: every other line the
    command prints goes to stderr."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kw: Any) -> Any:
        if not kw.get("as_json"):
            return fn(*args, **kw)
        kw["json_to"], kw["json_said"] = sys.stdout, [False]
        with contextlib.redirect_stdout(sys.stderr):
            try:
                return fn(*args, **kw)
            except BatcherError as exc:  # stopped before any run was recorded: say so too
                if not kw["json_said"][0]:
                    code = exit_code_for(exc)
                    ended = _ended_by(exc)
                    summary = {"runs": [], "ended": ended, "exit_code": code, "error": str(exc)}
                    if isinstance(exc, JobFileInvalid):  # as `validate --json` lists them
                        summary["problems"] = [asdict(p) for p in exc.problems]
                    _say_json(kw, summary)
                raise

    return wrapper


def _ended_by(exc: BatcherError) -> str:
    """How runs ended when an error stopped them: `auth` for a refused token, else `error`."""
    return "auth" if isinstance(exc, AuthError) else "error"


def _say_json(kw: dict[str, Any], summary: dict[str, Any]) -> None:
    """The --json summary, on the real stdout, once."""
    print(json.dumps(summary), file=kw["json_to"], flush=True)
    kw["json_said"][0] = True


def summary_of(
    store: Store,
    runs: Sequence[str],
    code: int,
    ended: str,
    *,
    started: float,
    reports: dict[str, str] | None = None,
    why: Exception | None = None,
) -> dict[str, Any]:
    """How runs ended: what `status --json` says of them, and ended, exit_code,
    duration_s, report(s) and the error, if one stopped them (for --notify and --json)."""
    reports = reports or {}
    known = set(store.run_names())
    summary = status_data(store, None, only=[r for r in runs if r in known])
    summary |= {
        "ended": ended,
        "exit_code": code,
        "duration_s": round(time.time() - started, 3),
        "report": reports.get(runs[0]) if len(runs) == 1 else None,
        "reports": {r: reports.get(r) for r in runs},
    }
    if why is not None:
        summary["error"] = str(why)
    return summary


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@_run_options
@out_option
@click.option("--base-url", default=None, help="API base URL (env RUNCOMFY_BASE_URL).")
@handle_errors
@_json_stdout
def run(
    files: tuple[Path, ...],
    state_path: Path,
    out_dir: Path | None,
    base_url: str | None,
    **kw: Any,
) -> None:
    """Submit, poll and download every job of FILE... until done or failed.

    \b
    Examples:
      batcher run jobs/demo.yaml --emulator             # try it: no token, no money
      batcher run night.yaml --max-cost 40 --report --notify 'notify-send batcher done'
      batcher run night.yaml --no-progress > night.log  # every line says when
    """
    loaded = [load_jobfile(f) for f in files]  # the files first: their problems need no token
    api = ApiSettings.resolve(
        os.environ,
        emulator=kw["emulator"],
        base_url=base_url,
        timeouts=RunSettings.merged({}, _flags(kw)).timeouts,
    )
    for jf in loaded:
        for w in jf.warnings:
            err(str(w))
    runs = [jf.run for jf in loaded]
    check_distinct_runs(loaded)
    for jf in loaded:  # a job file that runs a command says so before anything happens
        if jf.options.notify and not kw.get("notify"):
            click.echo(f"notify: {jf.path} asks to run `{jf.options.notify}` when {jf.run} ends")
    for jf in loaded:
        ensure_writable(run_folder(jf, out_dir))
    started = time.time()
    with Store.open(state_path) as store:
        try:
            with hold_runs(store.path, runs):
                record_runs(
                    store,
                    loaded,
                    out=out_dir,
                    api=api,
                    moving=base_url is not None,
                    flags=_flags(kw),
                )
                code, ended = _drive_all(store, runs, kw, base_url=base_url)
        except BatcherError as exc:  # the API unreachable at start, a refused token...
            _tell(store, runs, exit_code_for(exc), _ended_by(exc), started=started, kw=kw, why=exc)
            raise
        _wrap_up(store, runs, code, ended, started=started, kw=kw)  # the locks are free
    sys.exit(code)


def _wrap_up(
    store: Store,
    runs: Sequence[str],
    code: int,
    ended: str,
    *,
    started: float,
    kw: dict[str, Any],
) -> None:
    """The report (when asked for, now or when the run started) and the notification."""
    reports: dict[str, str] = {}
    if code in (EXIT_OK, EXIT_FAILED):
        from batcher.cli.report import write_html_report

        for run_name in runs:
            if kw.get("make_report") or store.run_info(run_name).options.get("report"):
                try:
                    path = write_html_report(store, run_name, None)
                except (BatcherError, OSError) as exc:  # the run's outcome stands
                    err(f"batcher: warning: the report of {run_name} could not be written: {exc}")
                    continue
                reports[run_name] = str(path)
                click.echo(f"report: {path}")
            else:
                where = "" if str(store.path) == DEFAULT_STATE else f" --state {store.path}"
                click.echo(f"HTML report: batcher report {run_name}{where}")
    _tell(store, runs, code, ended, started=started, kw=kw, reports=reports)


def _tell(
    store: Store,
    runs: Sequence[str],
    code: int,
    ended: str,
    *,
    started: float,
    kw: dict[str, Any],
    reports: dict[str, str] | None = None,
    why: Exception | None = None,
) -> None:
    """Say how the runs ended: the --json summary of every run, and each --notify /
    `notify:` command once, for the runs that asked for it."""
    if kw.get("json_to") is not None:
        _say_json(
            kw, summary_of(store, runs, code, ended, started=started, reports=reports, why=why)
        )
    known = set(store.run_names())
    commands: dict[str, list[str]] = {}
    for run_name in runs:
        kept = store.run_info(run_name).options if run_name in known else {}
        command = kw.get("notify") or kept.get("notify")
        if command:
            commands.setdefault(str(command), []).append(run_name)
    for command, named in commands.items():
        notify(
            command,
            summary_of(store, named, code, ended, started=started, reports=reports, why=why),
        )


def notify(command: str, summary: dict[str, Any]) -> None:
    """Run `command` (a shell command) with the JSON summary on its stdin; a failure is a
    warning: the run's outcome stays what it was."""
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}  # the token stays ours
    try:
        done = subprocess.run(
            command,
            shell=True,
            input=json.dumps(summary) + "\n",  # one line: easy for jq, a log or a webhook
            text=True,
            timeout=NOTIFY_TIMEOUT,
            check=False,
            env=env,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        err(f"batcher: warning: --notify command could not run: {exc}")
        return
    if done.returncode != 0:
        err(f"batcher: warning: --notify command exited {done.returncode}: {command}")


@click.command()
@click.argument("run_names", nargs=-1, metavar="[RUN]...")
@_run_options
@click.option("--base-url", default=None, help="API base URL (env RUNCOMFY_BASE_URL).")
@handle_errors
@_json_stdout
def resume(run_names: tuple[str, ...], state_path: Path, base_url: str | None, **kw: Any) -> None:
    """Continue the unfinished jobs of RUN... (default: every run no other process is
    driving; the ones another process holds are skipped, and said so). No job file needed."""
    if kw["emulator"]:
        raise UsageError(
            "resume continues each run against the API it started with; "
            "--emulator applies to `batcher run` only"
        )
    with Store.open(state_path, create=False) as store:
        for name in run_names:
            store.run_info(name)  # an unknown name: StateError naming the runs
        pending = store.jobs(list(run_names) or None, UNFINISHED, current_only=False)
        runs = sorted({j.run for j in pending})
        if not runs:
            click.echo("nothing to resume: every job is finished (see `batcher status`)")
            named = list(run_names) or store.run_names()
            code = _attention(store, named)
            if kw.get("json_to") is not None:
                ended = "done" if code == EXIT_OK else "failed"
                summary = summary_of(store, named, code, ended, started=time.time())
                _say_json(kw, summary)
            sys.exit(code)
        with ExitStack() as held:
            mine = []
            for name in runs:
                try:
                    held.enter_context(hold_runs(store.path, [name]))
                except StateLocked as exc:
                    if run_names:  # asked for by name: say it plainly, act on none
                        raise
                    err(f"skipped {name}: {exc}")
                    continue
                mine.append(name)
            if not mine:
                raise StateLocked("every run with unfinished jobs is driven by another process")
            click.echo(f"resuming {', '.join(mine)}")
            sys.stdout.flush()  # a watcher may wait for this line
            started = time.time()
            try:
                code, ended = _drive_all(store, mine, kw, base_url=base_url)
            except BatcherError as exc:
                held.close()
                ended = _ended_by(exc)
                _tell(store, mine, exit_code_for(exc), ended, started=started, kw=kw, why=exc)
                raise
        _wrap_up(store, mine, code, ended, started=started, kw=kw)  # the locks are free
    sys.exit(code)


COMMANDS: list[click.Command] = [run, resume]
