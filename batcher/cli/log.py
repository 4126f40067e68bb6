"""`batcher log`: a run's events, read back from the state, with times."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from batcher.cli.common import handle_errors, state_option
from batcher.cli.report import pick_run
from batcher.locks import holder
from batcher.models import UNFINISHED
from batcher.store import Store

FOLLOW_EVERY = 1.0  # seconds between looks at the state with --follow
FOLLOW_IDLE = 5.0  # seconds with nobody driving the run before --follow stops


def iso(at: float) -> str:
    """Local time, ISO 8601 with its offset, to the second."""
    return datetime.fromtimestamp(at).astimezone().isoformat(timespec="seconds")


class Lines:
    """Turns event rows into lines, counting each job's attempts as they start."""

    def __init__(self, run: str) -> None:
        self.run = run
        self.tries: dict[int, int] = {}

    def entry(self, row: dict[str, Any]) -> dict[str, Any]:
        if row["to_state"] == "submitting" and row["job_id"] is not None:
            self.tries[row["job_id"]] = self.tries.get(row["job_id"], 0) + 1
        return {
            "at": iso(row["at"]),
            "run": self.run,
            "key": row["key"],
            "version": row["version"],
            "from": row["from_state"],
            "to": row["to_state"],
            "attempt": self.tries.get(row["job_id"], 0) if row["job_id"] is not None else None,
            "detail": row["detail"],
        }

    @staticmethod
    def text(e: dict[str, Any]) -> str:
        if e["key"] is None:  # a note about the whole run: an outage, its end
            return f"{e['at']}  ({e['run']})  {e['to']}: {e['detail']}"
        move = f"{e['from'] or 'new'} -> {e['to']}"
        tried = f" attempt {e['attempt']}" if e["attempt"] else ""
        detail = f": {e['detail']}" if e["detail"] else ""
        return f"{e['at']}  {e['key']} v{e['version']}  {move}{tried}{detail}"


@click.command()
@click.argument("run_name", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option(
    "-f",
    "--follow",
    is_flag=True,
    help="Keep printing new events while the run is driven (Ctrl-C to stop).",
)
@state_option
@handle_errors
def log(run_name: str | None, as_json: bool, follow: bool, state_path: Path) -> None:
    """Print what happened to RUN's jobs, and when (default: the newest run).

    \b
    Examples:
      batcher log                  # the newest run, oldest event first
      batcher log night --follow   # watch a run another terminal drives
      batcher log --json | jq -r 'select(.to == "failed") | .key'
    """
    with Store.open(state_path, create=False, read_only=True) as store:
        run = pick_run(store, run_name)
        lines, last, idle = Lines(run), 0, 0
        while True:
            rows = store.run_events(run, after=last)
            for row in rows:
                last = row["id"]
                entry = lines.entry(row)
                click.echo(json.dumps(entry) if as_json else Lines.text(entry))
            if not follow or not store.jobs([run], list(UNFINISHED), current_only=False):
                return
            # Nobody driving it and nothing new for a while: the run stopped (a budget, an
            # interrupt); say so rather than wait forever.
            idle = 0 if rows or holder(Path(store.path), run) is not None else idle + 1
            if idle * FOLLOW_EVERY >= FOLLOW_IDLE:
                click.echo(
                    f"(no process is driving {run}; `batcher resume {run}` continues it)",
                    err=True,
                )
                return
            time.sleep(FOLLOW_EVERY)


COMMANDS: list[click.Command] = [log]
