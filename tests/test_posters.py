"""Poster frames (posters.py): the first frame as a JPEG beside the video, made again only
when the video changed; an unreadable video gets none and no error."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from batcher import posters
from batcher.posters import ensure_poster, poster_path

CLIP = Path(__file__).resolve().parent.parent / "batcher/emulator/clips/landscape-testsrc.mp4"


def test_a_poster_is_the_first_frame_beside_the_video(tmp_path: Path) -> None:
    video = tmp_path / "fox.mp4"
    shutil.copy(CLIP, video)
    poster = ensure_poster(video)
    assert poster == tmp_path / "fox~poster.jpg" == poster_path(video)
    data = poster.read_bytes()
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"  # a whole JPEG
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left
    made = poster.stat().st_mtime_ns
    assert ensure_poster(video) == poster and poster.stat().st_mtime_ns == made  # kept
    later = poster.stat().st_mtime + 10
    os.utime(video, (later, later))  # the video was replaced since
    assert ensure_poster(video) == poster and poster.stat().st_mtime_ns != made
    # An older file renamed into place (an undo) keeps its old mtime: still made again.
    other = tmp_path / "fox~v1.mp4"
    shutil.copy(Path(str(CLIP).replace("landscape-testsrc", "square-gradients")), other)
    os.utime(other, (1_000_000, 1_000_000))
    before = poster.read_bytes()
    other.replace(video)
    assert ensure_poster(video) == poster and poster.read_bytes() != before


def test_an_unreadable_video_gets_no_poster_and_no_error(tmp_path: Path) -> None:
    broken = tmp_path / "half.mp4"
    broken.write_bytes(CLIP.read_bytes()[:300])
    assert ensure_poster(broken) is None and not poster_path(broken).exists()
    assert ensure_poster(tmp_path / "missing.mp4") is None
    sidecar = tmp_path / "fox.json"
    sidecar.write_text("{}")
    assert ensure_poster(sidecar) is None  # not a video


def test_a_folder_that_cannot_take_a_poster_is_no_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = tmp_path / "fox.mp4"
    shutil.copy(CLIP, video)

    def refuse(*args: object, **kwargs: object) -> tuple[int, str]:
        raise PermissionError("read-only folder")

    monkeypatch.setattr(posters.tempfile, "mkstemp", refuse)
    assert ensure_poster(video) is None and not poster_path(video).exists()

    def crash(video: Path) -> None:
        raise RuntimeError("whatever FFmpeg thinks of it")

    monkeypatch.setattr(posters, "ensure_poster", crash)
    record = SimpleNamespace(out_dir=str(tmp_path), outputs=[SimpleNamespace(path="fox.mp4")])
    posters.ensure_posters([record])  # type: ignore[list-item]  # no exception: report goes on


def test_an_unreadable_video_makes_no_poster_and_says_nothing(tmp_path: Path) -> None:
    from batcher.posters import ensure_posters_at

    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    said: list[str] = []
    for _ in range(2):
        assert ensure_posters_at(str(tmp_path), ["bad.mp4"], making=lambda: said.append("x")) == 0
    assert said == []


@given(st.text(alphabet=".a~/ ", max_size=8) | st.text(max_size=12))
@example("..mp4")
@example(".mp4")
@example("a..mp4")
@settings(max_examples=400, deadline=None)
def test_a_poster_s_name_is_the_video_s_stem_whatever_the_name(video: str) -> None:
    stem = os.path.splitext(os.path.basename(video))[0]  # what Path(video).stem says
    assert posters.poster_name(video) == f"{stem}~poster.jpg"
