"""Reading a job file (or a rows file) from disk: every way it can be unusable.

Invariants: `read_text` returns decoded text or raises `JobFileError` with one line that
names the file and the reason (missing, a directory, empty, too big, binary, not UTF-8);
it never lets an `OSError` or `UnicodeDecodeError` through. A UTF-8 byte-order mark is
dropped so that columns count from the first visible character.
"""

from __future__ import annotations

from pathlib import Path

from batcher.errors import JobFileError

# Limits against absurd files, not big nights: 100,000 jobs listed one by one in block
# YAML with long prompts fit (about 8 MiB with short ones).
MAX_JOBFILE_BYTES = 64 * 1024 * 1024
MAX_ROWS_BYTES = 256 * 1024 * 1024  # rows files hold bulk prompts


def read_text(path: Path, *, display: str, max_bytes: int = MAX_JOBFILE_BYTES) -> str:
    """The file's text, or a one-line `JobFileError` saying why it cannot be used."""
    try:
        if path.is_dir():
            raise JobFileError(f"{display}: is a directory, not a file")
        size = path.stat().st_size
    except FileNotFoundError:
        raise JobFileError(f"{display}: no such file") from None
    except OSError as exc:
        raise JobFileError(f"{display}: cannot read ({exc.strerror or exc})") from None
    if size > max_bytes:
        raise JobFileError(
            f"{display}: file is too large ({_mib(size)}; the limit is {_mib(max_bytes)})"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise JobFileError(f"{display}: cannot read ({exc.strerror or exc})") from None
    return decode(data, display=display)


def decode(data: bytes, *, display: str) -> str:
    """UTF-8 text without a BOM; binary or non-UTF-8 content is refused in one line."""
    if not data.strip():
        raise JobFileError(f"{display}: file is empty")
    if b"\x00" in data:
        raise JobFileError(f"{display}: binary file (contains NUL bytes), expected UTF-8 text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise JobFileError(
            f"{display}: not UTF-8 text (invalid byte 0x{data[exc.start]:02x} on line {line})"
        ) from None
    return text.removeprefix("\ufeff")


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"
