"""The output folder agrees with the store: a check to run after any scenario.

- Every recorded output (`folder/path`) exists and its size and sha256 match the record
  (paths the test itself deleted are named in `deleted`).
- No two records claim one path, and every media file in the folder is claimed by one.
- A final-named file (`NAME.ext`, `NAME~2.ext`) is an output of the current version of the
  job whose output name is NAME, and the sidecar `NAME.json` names that version's request.
- An archive (`NAME~vN.ext`, `NAME~vN~2.ext`) holds version N's bytes, and its sidecar
  `NAME~vN.json`, if present, is version N's.
- No recorded move is left unfinished, unless `mid_move` (a process killed during a swap):
  then a record's bytes may still be at the source of a recorded move to its path, a file
  that is such a source is that move's bytes, and a final name's sidecar may be missing.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path

from batcher.models import JobRecord
from batcher.store import Store

# STEM[~vN][~I].EXT, where STEM never contains "~"
_NAME = re.compile(r"^(?P<stem>[^~]+?)(?:~v(?P<version>\d+))?(?:~(?P<index>\d+))?(?P<ext>\.\w+)$")
_SKIP = (".json", ".part", ".tmp")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_output_folder(
    store: Store, run: str, *, deleted: Iterable[str] = (), mid_move: bool = False
) -> None:
    """Assert every invariant above for one run (AssertionError names the first broken)."""
    gone = set(deleted)
    folder = Path(store.run_info(run).out_dir)
    moves = [m for m in store.pending_moves(run) if m.kind == "output"]
    assert mid_move or not store.pending_moves(run), "recorded moves left unfinished"
    leaving = {m.src: m for m in moves}
    records = store.records(run)
    claimed: dict[str, JobRecord] = {}
    for rec in records:
        for out in rec.outputs:
            assert out.path not in claimed, f"{out.path} claimed by v{rec.version} and another"
            claimed[out.path] = rec
            if out.path in gone:
                continue
            places = [out.path] + [m.src for m in moves if m.dst == out.path]
            held = [p for p in places if _holds(folder / p, out.size, out.sha256)]
            assert held, f"{rec.key} v{rec.version}: no file with its bytes at {places}"
    by_name: dict[str, list[JobRecord]] = {}
    for rec in records:
        by_name.setdefault(rec.output_name, []).append(rec)
    files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.exists() else []
    for path in files:
        if path.name.endswith(_SKIP) or path.name.startswith("."):
            continue
        move = leaving.get(path.name)
        if move is not None and _holds(path, move.size, move.sha256):
            continue  # a recorded move's bytes, waiting for their rename
        assert path.name in claimed, f"{path.name} is in the folder but no record claims it"
        _check_name(path, by_name, folder, sidecar_required=not mid_move)


def _holds(path: Path, size: int | None, sha: str | None) -> bool:
    return path.is_file() and path.stat().st_size == size and sha256(path) == sha


def _check_name(
    path: Path, by_name: dict[str, list[JobRecord]], folder: Path, *, sidecar_required: bool
) -> None:
    m = _NAME.match(path.name)
    assert m, f"{path.name}: not a name batcher gives"
    versions = by_name.get(m["stem"], [])
    assert versions, f"{path.name}: no job has the output name {m['stem']}"
    index = int(m["index"]) - 1 if m["index"] else 0
    if m["version"] is None:  # final name: the current version's, and its sidecar says so
        [rec] = [r for r in versions if r.current]
        side = folder / f"{m['stem']}.json"
    else:
        [rec] = [r for r in versions if r.version == int(m["version"])]
        assert not rec.current, f"{path.name}: the current version under an archive name"
        side = folder / f"{m['stem']}~v{rec.version}.json"
    assert index < len(rec.outputs), f"{path.name}: v{rec.version} has no output {index + 1}"
    out = rec.outputs[index]
    assert out.path == path.name, f"{path.name}: v{rec.version}'s output is at {out.path}"
    assert sha256(path) == out.sha256, f"{path.name}: not v{rec.version}'s bytes"
    if (m["version"] is None and sidecar_required) or side.exists():
        data = json.loads(side.read_text(encoding="utf-8"))
        assert data["version"] == rec.version, f"{side.name} is v{data['version']}'s sidecar"
        assert data["request_id"] == rec.request_id, f"{side.name} names another request"
        assert data["outputs"][index]["path"] == path.name, f"{side.name}: wrong path"
        assert data["outputs"][index]["sha256"] == out.sha256, f"{side.name}: wrong sha256"
