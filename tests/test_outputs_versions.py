"""Versions in the output folder: edits, undos, deleted archives, several outputs, crashes.

The final name (`NAME.ext`) always holds the current version's render; archives are named
for the version they hold (`NAME~vN.ext`); every move is recorded before it is made.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from batcher.models import JobSpec
from batcher.outputs import finish_moves
from batcher.store import Store
from tests.outputs_invariants import check_output_folder, sha256
from tests.test_scheduler import Harness, specs

# Prompts the emulator renders with three different clips, so versions differ in bytes.
FOX, WOLF, BEAR = "A red fox in snow", "A grey wolf in snow", "A brown bear in snow"


def version(prompt: str) -> list[JobSpec]:
    """The one job `r/job-0` with this prompt (a new version whenever the prompt changes)."""
    [spec] = specs(1)
    payload = {"prompt": prompt, "duration": 5}
    return [JobSpec(**{**asdict(spec), "payload": payload, "fingerprint": prompt})]


def sync(h: Harness, jobs: list[JobSpec]) -> None:
    """What `session.record_runs` does: sync the job file, then make the recorded moves."""
    h.store.sync_jobs("r", jobs)
    finish_moves(h.store, "r", h.tmp / "out")


def current(store: Store, key: str = "r/job-0") -> Any:
    [rec] = [r for r in store.records("r") if r.key == key and r.current]
    return rec


@pytest.mark.anyio
async def test_undo_puts_the_current_versions_render_under_the_final_name(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path)
    for prompt in (FOX, WOLF, FOX):  # render v1, render v2, undo the edit
        sync(h, version(prompt))
        await h.run()
    assert len(h.emulator.submissions) == 2  # the undo renders nothing
    v1 = current(h.store)
    assert v1.version == 1
    final = tmp_path / "out" / "job-0.mp4"
    assert sha256(final) == v1.outputs[0].sha256
    check_output_folder(h.store, "r")


@pytest.mark.anyio
async def test_a_deleted_archive_never_takes_another_versions_file(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    for prompt in (FOX, WOLF):
        sync(h, version(prompt))
        await h.run()
    (tmp_path / "out" / "job-0~v1.mp4").unlink()  # the user tidies up
    sync(h, version(BEAR))
    await h.run()
    check_output_folder(h.store, "r", deleted=["job-0~v1.mp4"])
    assert not (tmp_path / "out" / "job-0~v1.mp4").exists()


@pytest.mark.anyio
async def test_an_undo_to_a_deleted_archive_is_downloaded_again_not_rendered(
    tmp_path: Path,
) -> None:
    from batcher.operations import missing_files, refetch_missing

    h = Harness(tmp_path)
    for prompt in (FOX, WOLF):
        sync(h, version(prompt))
        await h.run()
    (tmp_path / "out" / "job-0~v1.mp4").unlink()
    sync(h, version(FOX))  # undo: version 1 is current, its file is gone
    assert not (tmp_path / "out" / "job-0.mp4").exists()  # v2 left; nothing wrong took it
    assert [j.key for j in missing_files(h.store, "r")] == ["r/job-0"]
    check_output_folder(h.store, "r", deleted=["job-0.mp4"])
    refetch_missing(h.store, ["r"])
    await h.run()
    assert len(h.emulator.submissions) == 2
    assert sha256(tmp_path / "out" / "job-0.mp4") == current(h.store).outputs[0].sha256
    check_output_folder(h.store, "r")


# -- end to end: the real CLI, the in-process emulator ------------------------------------

JOBS = """\
name: undo
defaults:
  duration: 5
  sound: false
jobs:
  - name: clip
    prompt: "{prompt}"
"""


def cli(tmp: Path, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "BATCHER_CRASH_AT"}
    if crash_at:
        env["BATCHER_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, "-m", "batcher", *args],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_with(tmp: Path, prompt: str, *, crash_at: str | None = None) -> int:
    (tmp / "jobs.yaml").write_text(JOBS.format(prompt=prompt))
    args = ["run", "jobs.yaml", "--emulator", "--state", "state.db", "--out", "out"]
    done = cli(tmp, *args, "--no-progress", "--poll-min", "0.02", crash_at=crash_at)
    assert crash_at or done.returncode == 0, done.stdout + done.stderr
    return done.returncode


@pytest.mark.e2e
def test_undo_through_the_cli_leaves_the_current_render_under_the_final_name(
    tmp_path: Path,
) -> None:
    for prompt in (FOX, WOLF, FOX):
        run_with(tmp_path, prompt)
    with Store.open(tmp_path / "state.db", create=False) as store:
        [v1] = [r for r in store.records("undo") if r.current]
        assert v1.version == 1
        assert sha256(tmp_path / "out" / "undo" / "clip.mp4") == v1.outputs[0].sha256
        check_output_folder(store, "undo")


@pytest.mark.e2e
@pytest.mark.parametrize("point", ["before_move", "after_move"])
@pytest.mark.parametrize("nth", [1, 2, 3, 4])
def test_kill_9_during_the_undo_swap_then_a_rerun_finishes_it(
    tmp_path: Path, point: str, nth: int
) -> None:
    for prompt in (FOX, WOLF):
        run_with(tmp_path, prompt)
    assert run_with(tmp_path, FOX, crash_at=f"{point}:{nth}") == -signal.SIGKILL
    with Store.open(tmp_path / "state.db", create=False) as store:
        assert len(store.pending_moves("undo")) == 5 - nth  # moves before the nth closed
        check_output_folder(store, "undo", mid_move=True)
    run_with(tmp_path, FOX)
    with Store.open(tmp_path / "state.db", create=False) as store:
        check_output_folder(store, "undo")
        [v1] = [r for r in store.records("undo") if r.current]
        assert v1.version == 1 and len(store.records("undo")) == 2
        assert sha256(tmp_path / "out" / "undo" / "clip.mp4") == v1.outputs[0].sha256


# -- several outputs of one version ----------------------------------------------------------


def mp4(tag: str) -> bytes:
    """A tiny file that passes the MP4 check, distinct per tag."""
    return b"\x00\x00\x00\x18ftypisom" + tag.encode() * 64


def file_host() -> Any:
    """A token-free file host serving `mp4(<last path segment>)` for any URL."""
    import httpx

    def serve(request: httpx.Request) -> httpx.Response:
        data = mp4(request.url.path.rsplit("/", 1)[-1].removesuffix(".mp4"))
        return httpx.Response(200, stream=httpx.ByteStream(data))

    return httpx.AsyncClient(transport=httpx.MockTransport(serve))


def named(name: str, fingerprint: str = "") -> JobSpec:
    [spec] = specs(1)
    return JobSpec(
        **{**asdict(spec), "key": f"r/{name}", "name": name, "output_name": name}
        | {"fingerprint": fingerprint or name}
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "state.db")
    s.upsert_run("r", model="m", job_file=None, out_dir=str(tmp_path / "out"), options={})
    return s


async def land(store: Store, key: str, *tags: str) -> list[Any]:
    """What the scheduler does for the current version of `key` whose outputs are `tags`:
    land the files, write the sidecar, commit `done` (request id: KEY@vN)."""
    from batcher.models import JobState
    from batcher.outputs import file_stem, land_files, write_sidecar

    folder = Path(store.run_info("r").out_dir)
    [job] = [j for j in store.jobs(["r"]) if j.key == key]
    urls = [f"http://files.test/{key}/{t}.mp4" for t in tags]
    async with file_host() as http:
        files = await land_files(store, http, job, folder, urls, max_bytes=1 << 20)
    rid = f"{key}@v{job.version}"
    store._conn.execute(
        "UPDATE jobs SET state='downloading', request_id=? WHERE id=?", (rid, job.id)
    )
    write_sidecar(store.record(job.id), folder, files, 1.0, stem=file_stem(job))
    assert store.transition(job.id, JobState.DOWNLOADING, JobState.DONE, outputs=files)
    return files


@pytest.mark.anyio
async def test_a_second_output_never_takes_another_jobs_name(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    store.sync_jobs("r", [named("clip"), named("clip-2")])
    await land(store, "r/clip-2", "theirs")
    files = await land(store, "r/clip", "first", "second")
    assert (folder / "clip-2.mp4").read_bytes() == mp4("theirs")
    assert [f.path for f in files] == ["clip.mp4", "clip~2.mp4"]
    assert (folder / "clip~2.mp4").read_bytes() == mp4("second")
    check_output_folder(store, "r")


def resync(store: Store, *jobs: JobSpec) -> list[Any]:
    store.sync_jobs("r", list(jobs))
    return finish_moves(store, "r", Path(store.run_info("r").out_dir))


@pytest.mark.anyio
async def test_archives_of_several_outputs_keep_their_version_and_place(
    store: Store, tmp_path: Path
) -> None:
    resync(store, named("a", "one"))
    await land(store, "r/a", "one-1", "one-2")
    resync(store, named("a", "two"))
    await land(store, "r/a", "two-1", "two-2")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [
        "a.json",
        "a.mp4",
        "a~2.mp4",
        "a~v1.json",
        "a~v1.mp4",
        "a~v1~2.mp4",
    ]
    assert (tmp_path / "out" / "a~v1~2.mp4").read_bytes() == mp4("one-2")
    check_output_folder(store, "r")
    resync(store, named("a", "one"))  # undo: version 1's files back under the final names
    assert (tmp_path / "out" / "a~2.mp4").read_bytes() == mp4("one-2")
    assert (tmp_path / "out" / "a~v2~2.mp4").read_bytes() == mp4("two-2")
    check_output_folder(store, "r")


def as_before_m003(store: Store, job_id: int, paths: list[str]) -> None:
    """Rename a version's files (and its sidecar's paths) as a release before m003 did."""
    folder = Path(store.run_info("r").out_dir)
    rec = store.record(job_id)
    side = folder / f"{os.path.splitext(rec.outputs[0].path)[0]}.json"
    data = json.loads(side.read_text())
    for out, new, entry in zip(rec.outputs, paths, data["outputs"], strict=True):
        os.replace(folder / out.path, folder / new)
        entry["path"] = new
    side.unlink()
    (folder / f"{os.path.splitext(paths[0])[0]}.json").write_text(json.dumps(data))
    moved = [{**asdict(o), "path": p} for o, p in zip(rec.outputs, paths, strict=True)]
    store._conn.execute("UPDATE jobs SET outputs=? WHERE id=?", (json.dumps(moved), job_id))


@pytest.mark.anyio
async def test_files_left_by_a_release_before_recorded_moves_are_put_right(
    store: Store, tmp_path: Path
) -> None:
    resync(store, named("a", "one"), named("b"))
    await land(store, "r/a", "one")
    await land(store, "r/b", "b-1", "b-2")
    resync(store, named("a", "two"), named("b"))
    await land(store, "r/a", "two")
    v1, v2, b = sorted(store.records("r"), key=lambda r: (r.key, r.version))
    # The undo of hole 5: version 1 current again under its archive name, v2 at the final.
    store._conn.execute("UPDATE jobs SET current = (id = ?) WHERE key = 'r/a'", (v1.id,))
    as_before_m003(store, v2.id, ["a.mp4"])
    as_before_m003(store, b.id, ["b.mp4", "b-2.mp4"])  # the old name of a second output
    with pytest.raises(AssertionError):
        check_output_folder(store, "r")
    resync(store, named("a", "one"), named("b"))  # the next `batcher run`
    check_output_folder(store, "r")
    assert sorted(p.name for p in (tmp_path / "out").glob("*.mp4")) == [
        "a.mp4",
        "a~v2.mp4",
        "b.mp4",
        "b~2.mp4",
    ]


# -- recorded moves: only those are made, each is made once, a crash is finished ------------


async def two_versions_then_undo(store: Store) -> None:
    """v1 and v2 rendered, then the edit undone: the swap is recorded, not made yet."""
    resync(store, named("a", "one"))
    await land(store, "r/a", "one")
    resync(store, named("a", "two"))
    await land(store, "r/a", "two")
    store.sync_jobs("r", [named("a", "one")])
    check_output_folder(store, "r", mid_move=True)
    moves = store.pending_moves("r")
    assert [(m.kind, m.src, m.dst) for m in moves] == [
        ("output", "a.mp4", "a~v2.mp4"),
        ("sidecar", "a.json", "a~v2.json"),
        ("output", "a~v1.mp4", "a.mp4"),
        ("sidecar", "a~v1.json", "a.json"),
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("made", [1, 2, 3, 4])
async def test_a_swap_cut_short_after_a_rename_is_finished_once(
    store: Store, tmp_path: Path, made: int
) -> None:
    """What a kill -9 after the rename of move `made` and before its record leaves."""
    from batcher import outputs

    await two_versions_then_undo(store)
    folder = tmp_path / "out"
    moves = store.pending_moves("r")
    for m in moves[:made]:
        if m.kind == "output":
            os.replace(folder / m.src, folder / m.dst)
        else:  # the new sidecar written, the old one not yet removed
            data = json.loads((folder / m.src).read_text())
            data["outputs"][0]["path"] = m.dst.replace(".json", ".mp4")
            outputs.write_json_atomic(folder / m.dst, json.dumps(data))
        if m is not moves[made - 1]:
            (folder / m.src).unlink(missing_ok=True)
            store.finish_move(m.id, "done")
    check_output_folder(store, "r", mid_move=True)
    finished = outputs.finish_moves(store, "r", folder)
    assert [o for _, o in finished] == ["done"] * (4 - made + 1)
    check_output_folder(store, "r")
    assert json.loads((folder / "a.json").read_text())["request_id"] == "r/a@v1"


@pytest.mark.anyio
async def test_a_move_whose_file_holds_other_bytes_is_not_made(
    store: Store, tmp_path: Path
) -> None:
    await two_versions_then_undo(store)
    folder = tmp_path / "out"
    (folder / "a.mp4").write_bytes(mp4("someone else"))  # v2's bytes are gone
    finished = outputs_of(finish_moves(store, "r", folder))
    assert finished == [("a.mp4", "mismatch"), ("a.json", "done"), ("a~v1.mp4", "done")] + [
        ("a~v1.json", "done")
    ]
    # v1 is under the final name; the stranger was replaced there, never moved or recorded
    check_output_folder(store, "r", deleted=["a~v2.mp4"])
    assert not (folder / "a~v2.mp4").exists()


def outputs_of(finished: list[Any]) -> list[tuple[str, str]]:
    return [(m.src, outcome) for m, outcome in finished]


@pytest.mark.anyio
async def test_only_recorded_moves_are_made(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    resync(store, named("a", "one"))
    await land(store, "r/a", "one")
    (folder / "a~v1.mp4").write_bytes(mp4("a copy the user made"))
    assert finish_moves(store, "r", folder) == []
    assert (folder / "a.mp4").read_bytes() == mp4("one")
    assert (folder / "a~v1.mp4").read_bytes() == mp4("a copy the user made")


@pytest.mark.anyio
async def test_a_move_that_cannot_be_made_stops_with_one_line_and_stays_recorded(
    store: Store, tmp_path: Path
) -> None:
    from batcher.errors import ConfigError

    folder = tmp_path / "out"
    resync(store, named("a", "one"))
    await land(store, "r/a", "one")
    (folder / "a~v1.mp4").mkdir()  # something in the way that a rename cannot replace
    (folder / "a~v1.mp4" / "keep").write_text("x")
    with pytest.raises(ConfigError, match=r"cannot move a\.mp4 to a~v1\.mp4 .*next run"):
        resync(store, named("a", "two"))
    assert [m.dst for m in store.pending_moves("r")] == ["a~v1.mp4", "a~v1.json"]
    (folder / "a~v1.mp4" / "keep").unlink()
    (folder / "a~v1.mp4").rmdir()
    assert [o for _, o in finish_moves(store, "r", folder)] == ["done", "done"]
    check_output_folder(store, "r")


@pytest.mark.anyio
@pytest.mark.parametrize("seed", range(6))
async def test_any_sequence_of_edits_undos_and_deletions_keeps_the_folder_true(
    store: Store, tmp_path: Path, seed: int
) -> None:
    """A property over random histories: edit to any of three payloads (new or rendered
    before), render what is new (two outputs each), sometimes delete a file by hand."""
    import random

    from batcher.models import JobState

    rng = random.Random(seed)
    folder = tmp_path / "out"
    lost: set[tuple[int, int]] = set()  # (job id, output index) whose bytes were deleted
    for _ in range(12):
        payload = rng.choice(["one", "two", "three"])
        resync(store, named("a", payload), named("a-2"))
        for key in ("r/a", "r/a-2"):
            [job] = [j for j in store.jobs(["r"]) if j.key == key]
            if job.state is JobState.PENDING:
                await land(store, key, f"{key}{job.version}-1", f"{key}{job.version}-2")
        if rng.random() < 0.3:
            rec = rng.choice([r for r in store.records("r") if r.outputs])
            i = rng.randrange(len(rec.outputs))
            (folder / rec.outputs[i].path).unlink(missing_ok=True)
            lost.add((rec.id, i))
        records = store.records("r")
        gone = [r.outputs[i].path for r in records for i in range(2) if (r.id, i) in lost]
        check_output_folder(store, "r", deleted=gone)
