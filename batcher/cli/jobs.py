"""Commands that read job files without running them: `validate` and `plan`.

Invariants: neither command submits anything or creates a state database; invalid input
exits 2 with every problem on stderr, one per line, never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import click

from batcher import errors
from batcher.cli.common import EXIT_USAGE, count, err, handle_errors, state_option, tally
from batcher.jobfile import load_jobfile
from batcher.jobfile.plan import (
    COLUMNS,
    PlanRow,
    cells,
    plain_table,
    plan_json,
    plan_rows,
    summary,
    totals,
)
from batcher.models import JobSpec, Money


@click.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON document: each file's result.")
@handle_errors
def validate(files: tuple[Path, ...], as_json: bool) -> None:
    """Check job files; exit 0 when every one is valid, 2 when not.

    \b
    Examples:
      batcher validate jobs/*.yaml
      batcher validate night.yaml --json | jq '.files[].problems[].what'
    """
    bad = 0
    results: list[dict[str, Any]] = []
    for path in files:
        result: dict[str, Any] = {"file": str(path), "ok": False, "jobs": None, "problems": []}
        results.append(result)
        try:
            jf = load_jobfile(path)
        except errors.JobFileInvalid as exc:
            result["problems"] = [asdict(p) for p in exc.problems]
            if not as_json:
                for p in exc.problems:
                    err(str(p))
                err(f"{path}: {tally(exc.problems)}")
            bad += 1
            continue
        except errors.BatcherError as exc:
            result["problems"] = [
                {
                    "file": str(path),
                    "line": None,
                    "col": None,
                    "where": "",
                    "what": str(exc),
                    "severity": "error",
                }
            ]
            if not as_json:
                err(f"batcher: error: {exc}")
            bad += 1
            continue
        result |= {"ok": True, "jobs": len(jf.jobs), "problems": [asdict(w) for w in jf.warnings]}
        if not as_json:
            for w in jf.warnings:
                err(str(w))
            note = f", {len(jf.warnings)} warning(s)" if jf.warnings else ""
            click.echo(f"{path}: ok, {count(len(jf.jobs), 'job')}{note}")
    if as_json:
        click.echo(json.dumps({"files": results}, indent=2))
    if bad:
        sys.exit(EXIT_USAGE)


@click.command("plan")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document for scripts.")
@state_option
@handle_errors
def plan(file: Path, as_json: bool, state_path: Path) -> None:
    """Show the expanded jobs, which are new / done / changed, seconds and estimated cost.

    \b
    Examples:
      batcher plan night.yaml
      batcher plan night.yaml --json | jq '[.jobs[] | select(.mark == "new")] | length'
    """
    jf = load_jobfile(file)
    for w in jf.warnings:
        err(str(w))
    rows = plan_rows(jf, _marks(state_path, jf.jobs))
    t = totals(rows)
    money = _money(state_path, jf.run, t.cost)
    if as_json:
        for piece in plan_json(jf, rows, {"money": money.as_json()}, t):
            sys.stdout.write(piece)
        return
    lines = summary(t)
    if money.at_most or money.failed:
        lines.append(f"so far: {money.text()}")
    if sys.stdout.isatty():
        _rich_table(rows, f"{jf.run}  ({jf.model})", lines)
        return
    click.echo(f"run {jf.run}  model {jf.model}")
    click.echo("\n".join(plain_table(rows)))
    click.echo("\n".join(lines))


def _money(state_path: Path, run: str, estimated: float) -> Money:
    """The run's account so far (the same words as `status`), estimated as this file plans."""
    from batcher.store import plan_money  # here: `validate` never loads the store

    return replace(plan_money(state_path, run) or Money(), estimated=estimated)


def _marks(state_path: Path, jobs: Sequence[JobSpec]) -> dict[str, str]:
    try:
        from batcher.store import plan_marks
    except ImportError:  # the state store is optional for planning
        return {}
    return plan_marks(state_path, jobs)


def _rich_table(rows: list[PlanRow], title: str, lines: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title))
    for i, name in enumerate(COLUMNS):
        table.add_column(name, justify="right" if i in (2, 4) else "left")
    for r in rows:
        table.add_row(*(Text(c) for c in cells(r)))  # Text: never parse names as markup
    console = Console()
    console.print(table)
    for line in lines:
        console.print(line, highlight=False)


COMMANDS: list[click.Command] = [validate, plan]
