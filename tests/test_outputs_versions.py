"""Versions in the output folder: edits, undos, deleted archives, several outputs, crashes.

The final name (`NAME.ext`) always holds the current version's render; archives are named
for the version they hold (`NAME~vN.ext`); every move is recorded before it is made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from batcher.models import JobSpec
from batcher.store import Store
from tests.test_scheduler import specs

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


def named(name: str) -> JobSpec:
    [spec] = specs(1)
    return JobSpec(
        **{**spec.__dict__, "key": f"r/{name}", "name": name, "output_name": name}
        | {"fingerprint": name}
    )


async def land(store: Store, folder: Path, key: str, *tags: str) -> list[Any]:
    """Download `tags` as the outputs of the current version of `key`, then mark it done."""
    from batcher.models import JobState
    from batcher.outputs import land_files

    [job] = [j for j in store.jobs(["r"]) if j.key == key]
    urls = [f"http://files.test/{key}/{t}.mp4" for t in tags]
    async with file_host() as http:
        files = await land_files(store, http, job, folder, urls, max_bytes=1 << 20)
    store._conn.execute("UPDATE jobs SET state=?, request_id=? WHERE id=?", ("done", key, job.id))
    assert store.transition(job.id, JobState.DONE, JobState.DOWNLOADING)
    assert store.transition(job.id, JobState.DOWNLOADING, JobState.DONE, outputs=files)
    return files


@pytest.mark.anyio
async def test_a_second_output_never_takes_another_jobs_name(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db")
    folder = tmp_path / "out"
    store.upsert_run("r", model="m", job_file=None, out_dir=str(folder), options={})
    store.sync_jobs("r", [named("clip"), named("clip-2")])
    await land(store, folder, "r/clip-2", "theirs")
    files = await land(store, folder, "r/clip", "first", "second")
    assert (folder / "clip-2.mp4").read_bytes() == mp4("theirs")
    assert [f.path for f in files] == ["clip.mp4", "clip~2.mp4"]
    assert (folder / "clip~2.mp4").read_bytes() == mp4("second")
