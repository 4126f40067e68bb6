"""The `batcher` command line: one module per command group, registered on `main`.

Invariant: the cli package is the only place that imports click or prints; it maps
BatcherError subclasses to exit codes (see `common.exit_code_for`), and a reader that
closes our stdout early ends any command quietly (`common.stdout_closed`).
"""

from __future__ import annotations

from typing import Any

import click

from batcher import __version__
from batcher.cli.common import quiet_on_closed_stdout


class _Batcher(click.Group):
    """The `batcher` group: whatever a command printed is flushed before the process ends."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        with quiet_on_closed_stdout():
            return super().main(*args, **kwargs)


@click.group(cls=_Batcher, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="batcher")
def main() -> None:
    """Resumable, concurrent batch runner for RunComfy's Model API."""


def _register() -> None:
    from batcher.cli import emulator as _emulator
    from batcher.cli import jobs as _jobs
    from batcher.cli import log as _log
    from batcher.cli import manage as _manage
    from batcher.cli import report as _report
    from batcher.cli import runs as _runs

    for mod in (_jobs, _runs, _manage, _log, _report, _emulator):
        for command in mod.COMMANDS:
            main.add_command(command)


_register()
