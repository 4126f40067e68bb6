"""The command registry the `batcher` group lists and imports from lazily (issue 10:
start-up in well under 0.2 s) names every command of every cli module, and only those."""

from __future__ import annotations

import importlib
import subprocess
import sys

from click.testing import CliRunner

from batcher.cli import COMMANDS, main


def test_the_registry_names_each_modules_commands() -> None:
    found = {}
    for module in {m for m, _ in COMMANDS.values()}:
        for command in importlib.import_module(f"batcher.cli.{module}").COMMANDS:
            found[command.name] = module
    assert found == {name: module for name, (module, _) in COMMANDS.items()}
    assert all(len(summary) <= 66 and summary.endswith(".") for _, summary in COMMANDS.values())


def test_version_and_help_import_no_command_module() -> None:
    probe = (
        "import sys\nfrom click.testing import CliRunner\nfrom batcher.cli import main\n"
        "CliRunner().invoke(main, ['--version']); CliRunner().invoke(main, ['--help'])\n"
        "print(sorted(m for m in sys.modules if m.startswith(('httpx', 'sqlite_utils',"
        " 'jsonschema', 'anyio', 'rich', 'yaml', 'batcher.cli.'))))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip() == "['batcher.cli.common']", done.stdout + done.stderr


def test_an_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["rnu"])
    assert result.exit_code == 2 and "No such command 'rnu'" in result.output
