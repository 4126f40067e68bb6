"""Store-level operations behind `status`, `cancel` and `retry` (no printing).

Invariants: every change goes through `Store.transition` (compare-and-set), so these are
safe while a runner drives the same run: whichever moves a job first wins, the other
leaves it alone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batcher import errors
from batcher.locks import holder
from batcher.models import JobState, Money
from batcher.polling import PollPolicy, RenderTimes
from batcher.store import Job, Store, rescued_entries

if TYPE_CHECKING:
    from batcher.settings import ApiSettings

ATTENTION = (JobState.FAILED, JobState.UNKNOWN, JobState.CANCELLED)
SUPERSEDED_WATCH = (JobState.QUEUED, JobState.RUNNING, JobState.DOWNLOADING, JobState.UNKNOWN)
S = JobState


def _runs(store: Store, run: str | None) -> list[str]:
    if run is None:
        return store.run_names()
    store.run_info(run)  # raises with the known run names
    return [run]


def acting_runs(
    store: Store,
    run: str | None,
    *,
    every: bool,
    work: Callable[[str], int],
    what: str,
    command: str,
) -> list[str]:
    """The runs a command that cancels or resubmits acts on: the one named; every run with
    `every`; else the one run that has such work (`work(run)` jobs). With several, nothing
    is touched: a UsageError names them, since one bare command must not stop every
    project in a shared state, or pay twice across all of them."""
    if run is not None:
        return _runs(store, run)
    names = store.run_names()
    if every:
        return names
    busy = [(name, n) for name in names if (n := work(name)) > 0]
    if len(busy) <= 1:
        return [name for name, _ in busy]
    listed = ", ".join(f"{name} ({n})" for name, n in busy)
    first = busy[-1][0]
    raise errors.UsageError(
        f"{len(busy)} runs have {what}: {listed}; name one (`batcher {command} {first}`) "
        f"or pass --all to act on every run"
    )


def runs_data(store: Store) -> list[dict[str, Any]]:
    """Every run of the state, oldest first: what it is, where it stands, who drives it."""
    out = []
    for name in store.run_names():
        info = store.run_info(name)
        options = dict(info.options)
        api = "emulator" if options.get("api") == "emulator" else options.get("base_url")
        last = store.last_activity(name)
        out.append(
            {
                "run": name,
                "job_file": info.job_file,
                "model": info.model,
                "api": api,
                "out_dir": info.out_dir,
                "counts": dict(sorted(store.counts([name]).items())),
                "money": store.money([name]).as_json(),
                "last_activity": None if last is None else _iso(last),
                "driven_by": (driver := holder(Path(store.path), name)),
                # What the driver last told of an API outage (None: none going on).
                "api_trouble": store.api_trouble(name) if driver is not None else None,
            }
        )
    return out


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at).astimezone().isoformat(timespec="seconds")


def status_data(
    store: Store, run: str | None, *, only: Sequence[str] | None = None
) -> dict[str, Any]:
    """Counts by state, spend and the jobs needing attention, per run (RUN, the runs in
    `only`, or every run)."""
    out: list[dict[str, Any]] = []
    rescued = rescued_entries(store.path)
    names = _runs(store, run)
    for name in names if only is None else [n for n in names if n in only]:
        counts = store.counts([name])
        attention = []
        for job in store.jobs([name], ATTENTION):
            rec = store.record(job.id)
            attention.append(
                {
                    "key": rec.key,
                    "state": rec.state.value,
                    "error": rec.error,
                    "request_id": rec.request_id,
                    "attempts": len(rec.attempts),
                }
            )
        out.append(
            {
                "run": name,
                "out_dir": (info := store.run_info(name)).out_dir,
                "total": sum(counts.values()),
                "counts": dict(sorted(counts.items())),
                "money": store.money([name]).as_json(),
                "emulated": info.options.get("api") == "emulator",
                "attention": attention,
                "missing_files": [j.key for j in missing_files(store, name)],
                "driven_by": (driver := holder(Path(store.path), name)),
                "api_trouble": store.api_trouble(name) if driver is not None else None,
                "warnings": store.warnings_since_start(name),
                # Answers the database could not take: followed (or re-sent) by `resume`.
                "rescued": [
                    {"key": e.get("key"), "request_id": e.get("request_id"), "why": e.get("why")}
                    for e in rescued
                    if str(e.get("key", "")).startswith(f"{name}/")
                ],
                # Old versions of edited jobs still rendering or held (paid, kept as NAME~vN).
                "superseded_unfinished": sum(
                    1
                    for j in store.jobs([name], SUPERSEDED_WATCH, current_only=False)
                    if not j.current
                ),
            }
        )
    models = sorted({store.run_info(r["run"]).model for r in out})
    return {
        "state": str(store.path),
        "runs": out,
        # The runs shown that ran against a real API, together (their money never
        # overlaps; emulated runs billed nothing).
        "money": sum(
            (Money.of_json(r["money"]) for r in out if not r["emulated"]), Money()
        ).as_json(),
        "render_times": render_times(store, models, now=time.time()),
    }


def render_times(store: Store, models: Sequence[str], *, now: float) -> list[dict[str, Any]]:
    """What renders of these models took, by group (as polling weighs them: older nights
    count less): p10 / p50 / p90 seconds and how many renders were seen."""
    out = []
    for group, samples in sorted(store.render_times().items()):
        if not any(group == m or group.startswith(f"{m} ") for m in models):
            continue
        times = RenderTimes(PollPolicy())
        times.remember(samples, now)
        q = times.quantiles()
        if q is not None:
            out.append(
                {
                    "group": group,
                    "renders": len(samples),
                    "p10": round(q.p10, 1),
                    "p50": round(q.p50, 1),
                    "p90": round(q.p90, 1),
                }
            )
    return out


def render_time_lines(entries: Sequence[dict[str, Any]]) -> list[str]:
    """One line per group: `GROUP: p10 32 s, p50 45 s, p90 57 s (30 renders)`."""
    return [
        f"{e['group']}: p10 {e['p10']:g} s, p50 {e['p50']:g} s, p90 {e['p90']:g} s"
        f" ({e['renders']} render{'s' if e['renders'] != 1 else ''})"
        for e in entries
    ]


def _cancellable(store: Store, name: str) -> int:
    local = store.jobs([name], [S.PENDING, S.UNKNOWN])
    return len(local) + len(store.jobs([name], [S.QUEUED, S.RUNNING], current_only=False))


async def cancel_runs(
    store: Store, run: str | None, *, base_url: str | None, every: bool = False
) -> list[dict[str, Any]]:
    """Cancel pending and unknown jobs locally and queued/running ones remotely. One entry
    per job touched: key, was, now (its state after), request_id, and a `text` line."""
    done: list[dict[str, Any]] = []
    runs = acting_runs(
        store,
        run,
        every=every,
        work=lambda name: _cancellable(store, name),
        what="jobs to cancel",
        command="cancel",
    )
    for name in runs:
        for job in store.jobs([name], [S.PENDING, S.UNKNOWN]):
            if store.transition(job.id, job.state, S.CANCELLED, error="cancelled by user"):
                unknown = " or outcome unknown" if job.state is S.UNKNOWN else ""
                text = f"cancelled  {job.key} (was {job.state.value}, never sent{unknown})"
                done.append(_cancelled(job, S.CANCELLED, text))
        remote = store.jobs([name], [S.QUEUED, S.RUNNING], current_only=False)
        if remote:
            options = store.run_info(name).options
            from batcher.settings import ApiSettings  # the HTTP side: only when needed

            api = ApiSettings.for_run(os.environ, options, base_url=base_url, run=name)
            done += await _cancel_remote(store, api, remote)
    return done


def _cancelled(job: Job, now: JobState, text: str) -> dict[str, Any]:
    return {
        "key": job.key,
        "was": job.state.value,
        "now": now.value,
        "request_id": job.request_id,
        "text": text,
    }


async def _cancel_remote(
    store: Store, api: ApiSettings, jobs: Sequence[Job]
) -> list[dict[str, Any]]:
    from batcher.session import open_api  # the HTTP stack: only when something is cancelled

    done: list[dict[str, Any]] = []
    async with open_api(api, state_path=Path(store.path)) as (client, _files):
        for job in jobs:
            handle = job.handle or client.handle(job.request_id or "")
            try:
                outcome = await client.cancel(handle)
            except errors.AuthError:
                raise
            except errors.BatcherError as exc:
                done.append(_cancelled(job, job.state, f"not cancelled {job.key}: {exc}"))
                continue
            if outcome.cancelled:
                if store.transition(
                    job.id,
                    job.state,
                    S.CANCELLED,
                    error="cancelled by user",
                    attempt={"outcome": "cancelled"},
                ):
                    text = f"cancelled  {job.key} [{job.request_id}]"
                    done.append(_cancelled(job, S.CANCELLED, text))
            else:
                if outcome.outcome == "cancellation_requested":
                    text = (
                        f"asked      {job.key} [{job.request_id}]: cancellation requested; it "
                        "may still run and be billed; `batcher resume` follows it to its end"
                    )
                else:
                    text = (
                        f"running    {job.key} [{job.request_id}]: {outcome.outcome}; "
                        "it will finish and be billed; `batcher resume` downloads it"
                    )
                done.append(_cancelled(job, job.state, text))
    return done


def missing_files(store: Store, run: str) -> list[Job]:
    """Done jobs (current versions) whose files are no longer where their record says."""
    folder = store.run_info(run).out_dir
    try:  # one listing of the folder instead of a stat per file (100,000 at scale)
        here = {e.name for e in os.scandir(folder) if e.is_file()}
    except OSError:
        here = set()
    gone: dict[int, None] = {}
    for job_id, rel in store.done_files(run):
        if job_id in gone or rel in here:
            continue
        if not os.path.isfile(os.path.join(folder, rel)):  # not listed (or below): check it
            gone[job_id] = None
    return [store.job(job_id) for job_id in gone]


def refetch_missing(store: Store, runs: Sequence[str]) -> list[Job]:
    """Done jobs whose files were deleted go back to `downloading` (no new render)."""
    moved = []
    for name in runs:
        for job in missing_files(store, name):
            if store.transition(job.id, S.DONE, S.DOWNLOADING, reason="file missing"):
                moved.append(job)
    return moved


def retry_runs(
    store: Store, run: str | None, states: Sequence[JobState], *, missing: bool, every: bool
) -> list[str]:
    """The runs `batcher retry` acts on (see `acting_runs`)."""

    def work(name: str) -> int:
        found = len(store.jobs([name], states))
        return found + (len(missing_files(store, name)) if missing else 0)

    kinds = [s.value for s in states] + (["missing files"] if missing else [])
    return acting_runs(
        store,
        run,
        every=every,
        work=work,
        what=f"jobs to retry ({', '.join(kinds)})",
        command="retry",
    )


def retry_jobs(store: Store, run: str | None, states: Sequence[JobState]) -> list[Job]:
    """Put jobs back: to `downloading` when only the download failed, else `pending`."""
    moved: list[Job] = []
    for name in _runs(store, run):
        for job in store.jobs([name], states):
            last = store.attempts(job.id)
            to = S.PENDING
            if job.state is S.FAILED and last and last[-1].outcome == "download_failed":
                to = S.DOWNLOADING
            if store.transition(
                job.id, job.state, to, error=None, reason="retry", attempt_floor=job.attempts
            ):
                moved.append(job)
    return moved
