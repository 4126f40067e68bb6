"""Poster frames: the first frame of each video as a JPEG next to it, so a report's cards
show a picture before any player loads. PyAV decodes and encodes (it ships its own FFmpeg).

Invariants: a poster is `NAME~poster.jpg` beside `NAME.mp4` (`~` never appears in a job's
output name, so no job's file can be one); it is written whole (temp file, then rename)
and made again when the video is newer; a video that cannot be read gets no poster and
no error (the page shows the player alone).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path

from batcher.models import JobRecord

SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".m4v")


def poster_path(video: Path) -> Path:
    return video.with_name(poster_name(video.name))


def poster_name(video: str) -> str:
    """`NAME~poster.jpg` for `NAME.mp4` (a file name, no folder)."""
    dot = video.rfind(".")
    if dot > 0 and "/" not in video and video[dot - 1] != ".":  # plain `NAME.EXT`: the
        return f"{video[:dot]}~poster.jpg"  # stem without splitext's calls (100,000 a report)
    return f"{os.path.splitext(os.path.basename(video))[0]}~poster.jpg"  # Path(v).stem


def ensure_poster(video: Path) -> Path | None:
    """The poster of `video`, made if missing or older than the video; None if it cannot be."""
    if video.suffix.lower() not in SUFFIXES:
        return None
    poster = poster_path(video)
    try:
        if _poster_fresh(video):
            return poster
        data = first_frame_jpeg(video)
    except Exception:  # noqa: BLE001 - any unreadable video: no poster, never a failed report
        return None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{poster.name}.", suffix=".tmp", dir=poster.parent)
    except OSError:  # a folder we may read but not write: no poster, the report goes on
        return None
    try:
        with os.fdopen(fd, "wb") as fh:
            mask = os.umask(0)
            os.umask(mask)
            os.fchmod(fh.fileno(), 0o666 & ~mask)
            fh.write(data)
        os.replace(tmp, poster)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        return None
    return poster


def ensure_posters(records: Iterable[JobRecord]) -> None:
    """A poster beside every recorded video (made once; again when the video changed)."""
    by_folder: dict[str, list[str]] = {}
    for record in records:
        by_folder.setdefault(record.out_dir, []).extend(o.path for o in record.outputs)
    for folder, paths in by_folder.items():
        ensure_posters_at(folder, paths)


def ensure_posters_at(
    out_dir: str, paths: Iterable[str], *, making: Callable[[], None] | None = None
) -> int:
    """A poster beside every video of `paths` (relative to the run's folder `out_dir`);
    how many were made. `making` is called once, as soon as the first one is made (a big
    night's first report makes thousands: worth a word).

    The folder is listed once (names only), so a report of a big night whose posters are
    made costs a listing and two stats per video, not a poster made again."""
    names: set[str] | None = None
    folder = _Folder(out_dir)
    made = 0
    try:
        for path in paths:
            try:
                if not path.lower().endswith(SUFFIXES):  # strings, not paths: 100,000 of them
                    continue
                if "/" in path:  # below the run's folder: asked plainly
                    if _poster_fresh(Path(out_dir) / path):
                        continue
                else:  # in it: from one listing, and a Path only for a poster to make
                    if names is None:
                        names = _names(out_dir)
                    if _fresh(folder, names, path):
                        continue
                video = Path(out_dir) / path
                if ensure_poster(video) is not None:
                    made += 1
                    if made == 1 and making is not None:
                        making()  # after one is made: a video that cannot be read says nothing
            except Exception:  # noqa: BLE001 - a poster is a nicety: never the report's end
                continue
    finally:
        folder.close()
    return made


def _poster_fresh(video: Path) -> bool:
    """Whether `video` has a poster no older than it (asked of the file system)."""
    poster = poster_path(video)
    return poster.exists() and _newer(poster.stat(), video.stat())


def _names(folder: str) -> set[str]:
    try:
        return {e.name for e in os.scandir(folder)}
    except OSError:
        return set()


class _Folder:
    """A run's folder, its files' status asked relative to it (a file descriptor of the
    folder where the system has them: no path walked again for each of 200,000 files)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None
        if os.stat in os.supports_dir_fd:
            try:
                self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            except OSError:
                self.fd = None

    def stat(self, name: str) -> os.stat_result:
        if self.fd is None:
            return os.stat(os.path.join(self.path, name))
        return os.stat(name, dir_fd=self.fd)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _fresh(folder: _Folder, names: set[str], video: str) -> bool:
    """Whether `video` (listed in `names`) has a poster no older than it."""
    poster = poster_name(video)
    if video not in names or poster not in names:
        return video not in names  # no video: nothing to make; no poster: make it
    return _newer(folder.stat(poster), folder.stat(video))


def _newer(poster: os.stat_result, video: os.stat_result) -> bool:
    """Whether a poster is no older than its video (ctime too: a rename, as an undo bringing
    an archived version back, keeps the mtime)."""
    return poster.st_mtime >= max(video.st_mtime, video.st_ctime)


def first_frame_jpeg(video: Path) -> bytes:
    """The first decodable frame of `video`, as JPEG bytes."""
    import av  # here: a command that makes no posters does not pay for loading FFmpeg

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        frame = next(container.decode(stream))
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height = frame.width, frame.height
    codec.pix_fmt = "yuvj420p"  # full-range YUV: what JPEG holds
    codec.time_base = Fraction(1, 25)  # one still image: any time base will do
    image = frame.reformat(format="yuvj420p")
    image.pts = 0
    packets = list(codec.encode(image)) + list(codec.encode(None))
    return b"".join(bytes(p) for p in packets)
