"""The `batcher` command line: one module per command group, registered on `main`.

Invariant: the cli package is the only place that imports click or prints; it maps
BatcherError subclasses to exit codes (see `common.exit_code_for`), and a reader that
closes our stdout early ends any command quietly (`common.stdout_closed`).
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from batcher import __version__
from batcher.cli.common import quiet_on_closed_stdout

# Each command's module and its one-line summary: the group lists commands from here and
# imports a command's module only when that command runs (`batcher --version` or `--help`
# import nothing heavy). tests/test_cli_registry.py checks this against the modules.
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("jobs", "Check job files; exit 0 when every one is valid, 2 when not."),
    "plan": ("jobs", "Show the expanded jobs, new / done / changed, and cost."),
    "run": ("runs", "Submit, poll and download every job of the job files."),
    "resume": ("runs", "Continue unfinished runs (no job file needed)."),
    "runs": ("manage", "List the runs: counts, money, API, who drives each."),
    "status": ("manage", "Counts, money, jobs needing attention, render times."),
    "cancel": ("manage", "Cancel queued remote requests and pending local jobs of RUN."),
    "retry": ("manage", "Put failed (unknown, cancelled, missing) jobs back."),
    "forget": ("manage", "Drop RUN's records from the state (its output files stay)."),
    "log": ("log", "Print what happened to a run's jobs, and when."),
    "report": ("report", "Write a report of RUN (default: the newest run)."),
    "models": ("models", "List RunComfy's models, or show one's fields and price."),
    "emulator": ("emulator", "Serve the built-in RunComfy Model API emulator (Ctrl-C to stop)."),
}


class _Batcher(click.Group):
    """The `batcher` group: commands imported when used; whatever a command printed is
    flushed before the process ends."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        with quiet_on_closed_stdout():
            return super().main(*args, **kwargs)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in COMMANDS:  # added in code, or none
            return super().get_command(ctx, cmd_name)
        module = importlib.import_module(f"batcher.cli.{COMMANDS[cmd_name][0]}")
        commands: list[click.Command] = module.COMMANDS
        return next(c for c in commands if c.name == cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl(
                [(name, COMMANDS[name][1]) for name in self.list_commands(ctx) if name in COMMANDS]
            )


@click.group(cls=_Batcher, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="batcher")
def main() -> None:
    """Resumable, concurrent batch runner for RunComfy's Model API."""
