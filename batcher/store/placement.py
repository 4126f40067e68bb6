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
