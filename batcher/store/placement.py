"""Where a job version's files belong in its run's output folder.

Invariants:
- An output name (`JobSpec.output_name`) never contains `~` (`jobfile.names` slugs keep
  `[A-Za-z0-9._-]` only), so every name built here with `~` is one no job can own:
  `NAME.mp4` / `NAME~2.mp4` / `NAME~3.mp4` ... are the current version's outputs,
  `NAME~vN.mp4` / `NAME~vN~2.mp4` ... version N's once another version is current, and
  `NAME.json` / `NAME~vN.json` their sidecars.
- A name belongs to one version only: the final name to the current version, `~vN` to
  version N. So moving every version to its own name needs no cycle breaking, only order:
  versions leaving the final name move before the version entering it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, replace

from batcher.models import OutputFile

MARK = "~"  # never in an output name: every name batcher derives from one uses it


def version_stem(output_name: str, version: int, *, current: bool) -> str:
    """The file stem of a job version: NAME when current, else NAME~vN."""
    return output_name if current else f"{output_name}{MARK}v{version}"


def output_path(stem: str, index: int, suffix: str) -> str:
    """The file name of output `index` (0-based) of a version: STEM.mp4, STEM~2.mp4..."""
    return f"{stem}{'' if index == 0 else f'{MARK}{index + 1}'}{suffix}"


def sidecar_path(stem: str) -> str:
    """The sidecar of the version whose file stem is `stem`."""
    return f"{stem}.json"


def stem_of(path: str) -> str:
    """The version stem a recorded first output lives under (its name without suffix)."""
    return os.path.splitext(path)[0]


@dataclass(frozen=True)
class Placed:
    """A job version and the files its record names."""

    job_id: int
    version: int
    current: bool
    output_name: str
    outputs: tuple[OutputFile, ...]


@dataclass(frozen=True)
class Move:
    """One rename to make: an output (carrying bytes of this size and sha256) or a sidecar."""

    job_id: int
    kind: str  # "output" or "sidecar"
    src: str
    dst: str
    size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Placement:
    """A version whose files are not under its own names: where they go, and the moves."""

    job_id: int
    outputs: tuple[OutputFile, ...]
    moves: tuple[Move, ...]


def placements(versions: Iterable[Placed]) -> list[Placement]:
    """Every version not under its own names, in the order its moves must be made.

    Versions leaving a final name come first, so the current version finds it free.
    """
    return [p for v in sorted(versions, key=lambda v: v.current) if (p := _place(v))]


def _place(v: Placed) -> Placement | None:
    if not v.outputs:
        return None
    stem = version_stem(v.output_name, v.version, current=v.current)
    outputs = tuple(
        replace(o, path=output_path(stem, i, os.path.splitext(o.path)[1]))
        for i, o in enumerate(v.outputs)
    )
    moves = [
        Move(v.job_id, "output", old.path, new.path, old.size, old.sha256)
        for old, new in zip(v.outputs, outputs, strict=True)
        if old.path != new.path
    ]
    if not moves:
        return None
    # The sidecar follows the first output (rewritten in place if only a later one moves).
    moves.append(
        Move(v.job_id, "sidecar", sidecar_path(stem_of(v.outputs[0].path)), sidecar_path(stem))
    )
    return Placement(v.job_id, outputs, tuple(moves))
