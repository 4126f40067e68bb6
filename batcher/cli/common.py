"""Shared command-line pieces: common options, exit codes, error reporting."""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from batcher import errors
from batcher.errors import Problem

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # 141: what a shell reports for `yes | head -1`

DEFAULT_STATE = "state/batcher.db"
DEFAULT_OUT = "outputs"


def exit_code_for(exc: errors.BatcherError) -> int:
    """The process exit code for an error that ends a command."""
    if isinstance(exc, errors.AuthError):
        return EXIT_AUTH
    if isinstance(exc, errors.UnsendableRequest):  # the run's own settings: usage
        return EXIT_USAGE
    if isinstance(
        exc,
        errors.UsageError
        | errors.JobFileError
        | errors.SchemaError
        | errors.ConfigError
        | errors.StateError,
    ):
        return EXIT_USAGE
    return EXIT_FAILED


def count(n: int, noun: str) -> str:
    """`1 job`, `2 jobs`: counts read as English."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def err(message: str) -> None:
    """Print one line to stderr."""
    click.echo(message, err=True)


def tally(problems: Sequence[Problem]) -> str:
    """`3 error(s)`, with `, 1 warning(s)` when there are warnings too."""
    n = sum(1 for p in problems if p.severity == "error")
    warned = len(problems) - n
    return f"{n} error(s)" + (f", {warned} warning(s)" if warned else "")


def handle_errors(fn: F) -> F:
    """Turn expected errors into a one-line message and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except errors.JobFileInvalid as exc:
            for p in exc.problems:
                err(str(p))
            err(f"{tally(exc.problems)}; nothing was submitted")
            sys.exit(EXIT_USAGE)
        except errors.BatcherError as exc:
            err(f"batcher: error: {exc}")
            sys.exit(exit_code_for(exc))
        except BrokenPipeError:
            stdout_closed()
        except BaseExceptionGroup as group:  # from a task group: report what it carries
            leaf = _first_leaf(group)
            if isinstance(leaf, BrokenPipeError):
                stdout_closed()
            if isinstance(leaf, errors.BatcherError):
                err(f"batcher: error: {leaf}")
                sys.exit(exit_code_for(leaf))
            _internal(leaf)
        except (KeyboardInterrupt, SystemExit, click.exceptions.Exit, click.ClickException):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence: no tracebacks
            _internal(exc)

    return wrapper  # type: ignore[return-value]


def stdout_closed() -> NoReturn:
    """The reader of our stdout went away (`batcher plan big.yaml | head -1`): end quietly.

    As Unix tools do: no message, exit 141. Every state change so far is committed, as on
    any other exit.
    """
    # Point stdout at /dev/null, so the interpreter's last flush has nowhere to fail.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError):  # no real stdout (a test runner's stream): nothing to do
        pass
    sys.exit(EXIT_BROKEN_PIPE)


@contextmanager
def quiet_on_closed_stdout() -> Iterator[None]:
    """Flush stdout before leaving, so a closed pipe is met here, not at interpreter exit."""
    try:
        try:
            yield
        finally:
            if sys.stdout is not None:
                sys.stdout.flush()
    except BrokenPipeError:
        stdout_closed()


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _internal(exc: BaseException) -> None:
    """An unexpected error: one line (the traceback with BATCHER_DEBUG=1), state is saved."""
    if os.environ.get("BATCHER_DEBUG"):
        raise exc
    err(
        f"batcher: internal error: {type(exc).__name__}: {exc}; every state change so far "
        "is saved (`batcher resume` continues); BATCHER_DEBUG=1 shows the traceback"
    )
    sys.exit(EXIT_FAILED)


def state_option(fn: F) -> F:
    """--state PATH (env BATCHER_STATE, default state/batcher.db)."""
    return click.option(
        "--state",
        "state_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=lambda: os.environ.get("BATCHER_STATE", DEFAULT_STATE),
        show_default=DEFAULT_STATE,
        help="State database (env BATCHER_STATE).",
    )(fn)


def out_option(fn: F) -> F:
    """--out DIR (default outputs/)."""
    return click.option(
        "--out",
        "out_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=f"Output folder (default: the job file's output_dir, else {DEFAULT_OUT}/).",
    )(fn)
