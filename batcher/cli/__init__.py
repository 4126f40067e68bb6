"""The `batcher` command line: one module per command group, registered on `main`.

Invariant: the cli package is the only place that imports click or prints; it maps
BatcherError subclasses to exit codes (see `common.exit_code_for`).
"""

from __future__ import annotations

import click

from batcher import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="batcher")
def main() -> None:
    """Resumable, concurrent batch runner for RunComfy's Model API."""


def _register() -> None:
    from batcher.cli import emulator as _emulator
    from batcher.cli import jobs as _jobs
    from batcher.cli import manage as _manage
    from batcher.cli import report as _report
    from batcher.cli import runs as _runs

    for mod in (_jobs, _runs, _manage, _report, _emulator):
        for command in mod.COMMANDS:
            main.add_command(command)


_register()
