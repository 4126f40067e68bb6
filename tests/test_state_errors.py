"""State-file failures: every sqlite3 error becomes the store's own, a failed write leaves
nothing behind (not even an open transaction), and the CLI names the cause and the remedy.

Real faults wherever possible: a COMMIT refused by SQLite itself (a deferred foreign-key
check), another connection holding the write lock, a full tmpfs, a read-only mount.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from batcher.errors import ConfigError, StateBusy, StateError, StateWriteFailed
from batcher.store import Store
from tests.test_store import spec

ROOT = os.geteuid() == 0


def made(path: Path) -> Path:
    """A state database with one run, closed again."""
    with Store.open(path) as store:
        store.upsert_run("r", model="m", job_file="x.yaml", out_dir="out", options={})
    return path


class CommitFailsOnce(sqlite3.Connection):
    """A connection whose next COMMIT, once armed, is refused by SQLite itself.

    Just before that COMMIT it adds a row breaking a foreign key, checked at COMMIT
    (`defer_foreign_keys`): SQLite answers SQLITE_CONSTRAINT and, as with a COMMIT that
    fails for any other reason, the transaction stays open.
    """

    armed = False

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT" and self.armed:
            self.armed = False
            super().execute("PRAGMA defer_foreign_keys=ON")
            super().execute("INSERT INTO events (job_id, at) VALUES (-1, 0)")
        return super().execute(sql, *args)


def store_on(path: Path) -> tuple[Store, CommitFailsOnce]:
    """A Store over a CommitFailsOnce connection to an existing state database."""
    conn = sqlite3.connect(path, factory=CommitFailsOnce, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys=ON")
    return Store(conn, path, time.time), conn


# -- hole 7: a failed COMMIT, and sqlite3 errors mapped at the store boundary ------------


def test_a_failed_commit_is_rolled_back_and_the_next_write_works(tmp_path: Path) -> None:
    store, conn = store_on(made(tmp_path / "b.db"))
    conn.armed = True
    with pytest.raises((StateError, sqlite3.Error)):
        store.sync_jobs("r", [spec("a")])
    assert not conn.in_transaction
    assert store.jobs(["r"]) == []  # nothing of the failed write landed
    assert store.sync_jobs("r", [spec("a")]).new == ("r/a",)  # the next BEGIN works
    assert [j.key for j in store.jobs(["r"])] == ["r/a"]
    assert conn.execute("SELECT COUNT(*) FROM events WHERE job_id=-1").fetchone()[0] == 0


def test_a_failed_commit_is_a_state_write_failed_naming_the_file(tmp_path: Path) -> None:
    store, conn = store_on(made(tmp_path / "b.db"))
    conn.armed = True
    saved = r"b\.db: .*FOREIGN KEY.*nothing of this change was saved"
    with pytest.raises(StateWriteFailed, match=saved) as info:
        store.sync_jobs("r", [spec("a")])
    assert isinstance(info.value.__cause__, sqlite3.IntegrityError)


@contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another program (a second sqlite3 connection) holds the database's write lock."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_write_lock_held_by_another_program_is_state_busy(tmp_path: Path) -> None:
    path = made(tmp_path / "b.db")
    with Store.open(path, busy_timeout=0.05) as store:
        assert store.busy_timeout == 0.05
        with write_lock_held(path):
            assert store.run_names() == ["r"]  # WAL: reading needs no write lock
            with pytest.raises(StateBusy, match=r"b\.db: locked by another program"):
                store.sync_jobs("r", [spec("a")])
        assert store.sync_jobs("r", [spec("a")]).new == ("r/a",)  # usable once it lets go


def test_opening_a_database_another_program_holds_is_state_busy(tmp_path: Path) -> None:
    """A new database mid-creation by another program: even reading it must wait."""
    path = tmp_path / "b.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # rollback journal: readers are locked out too
    try:
        with pytest.raises(StateBusy, match="locked by another program"):
            Store.open(path, busy_timeout=0.05)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_the_busy_timeout_comes_from_the_environment_at_call_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = made(tmp_path / "b.db")
    monkeypatch.setenv("BATCHER_BUSY_TIMEOUT", "0.25")
    with Store.open(path) as store:
        assert store.busy_timeout == 0.25
    monkeypatch.delenv("BATCHER_BUSY_TIMEOUT")
    with Store.open(path) as store:
        assert store.busy_timeout == 30.0
    monkeypatch.setenv("BATCHER_BUSY_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="BATCHER_BUSY_TIMEOUT"):
        Store.open(path)


def test_a_read_that_fails_is_a_state_error(tmp_path: Path) -> None:
    store = Store.open(made(tmp_path / "b.db"))
    store.close()
    with pytest.raises(StateError, match=r"b\.db: .*closed database") as info:
        store.jobs(["r"])
    assert isinstance(info.value.__cause__, sqlite3.Error)


def test_every_public_store_method_maps_sqlite_errors() -> None:
    """Reads and writes alike: no sqlite3.Error leaves the store (open is tested above)."""
    public = [n for n in dir(Store) if not n.startswith("_") and callable(getattr(Store, n))]
    unmapped = [
        n for n in public if n != "open" and not getattr(getattr(Store, n), "maps_sqlite", False)
    ]
    assert unmapped == []


@contextmanager
def small_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted on `folder` (root only), unmounted afterwards."""
    if not ROOT:
        pytest.skip("mounting a small tmpfs needs root")
    folder.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
    ).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def fill(folder: Path) -> Path:
    """Write a file until the file system is full."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_is_state_write_failed_and_the_store_recovers(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "small", "1m") as small:
        with Store.open(made(small / "b.db")) as store:
            filler = fill(small)
            many = [spec(f"j{i}", "x" * 2000 + str(i)) for i in range(50)]
            with pytest.raises(StateWriteFailed, match=r"b\.db: the disk is full"):
                store.sync_jobs("r", many)
            assert store.jobs(["r"]) == []
            filler.unlink()
            assert len(store.sync_jobs("r", many).new) == 50


# -- hole 12: state-file errors through the real CLI ---------------------------------------

ONE = """\
name: one
jobs:
  - name: a
    prompt: "A lighthouse in fog"
    duration: 3
  - name: b
    prompt: "A red fox in fresh snow"
    duration: 3
"""
FAST = ["--poll-min", "0.02", "--poll-max", "0.1", "--no-progress"]


def batcher(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "BATCHER_DEBUG"} | env
    return subprocess.run(
        [sys.executable, "-m", "batcher", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The single stderr line of a refused command, which must name every needle."""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "internal error" not in lines[0] and "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def state_with_pending_jobs(tmp: Path) -> Path:
    """A state database of run `one` with both jobs pending (a budget stop before any)."""
    (tmp / "one.yaml").write_text(ONE, encoding="utf-8")
    done = batcher(["run", "one.yaml", "--emulator", "--max-cost", "0.01", *FAST], tmp)
    assert done.returncode == 1 and "budget" in done.stdout, done.stdout + done.stderr
    return tmp / "state" / "batcher.db"


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.e2e
def test_a_state_locked_by_another_program_is_one_line_and_exit_2(tmp_path: Path) -> None:
    state = state_with_pending_jobs(tmp_path)
    before = files_of(state.parent)
    with write_lock_held(state):
        run = ["run", "one.yaml", "--emulator", *FAST]
        resume = ["resume", "--max-cost", "5", *FAST]  # a higher budget: it must write
        for args in (run, resume):
            started = time.monotonic()
            done = batcher(args, tmp_path, BATCHER_BUSY_TIMEOUT="0.2")
            assert done.returncode == 2, done.stderr
            one_line(done, "batcher.db: locked by another program", "close the program")
            assert time.monotonic() - started < 20  # the 30 s default was not waited
        status = batcher(["status"], tmp_path, BATCHER_BUSY_TIMEOUT="0.2")
        assert status.returncode == 0 and "2 jobs (pending 2)" in status.stdout  # reads work
    assert files_of(state.parent) == before


@contextmanager
def read_only_folder(folder: Path) -> Iterator[Callable[[], None]]:
    """`folder`, to be filled, then made read-only by calling what this yields.

    As root (whom permissions do not stop) it is a tmpfs remounted read-only; otherwise
    the folder and its files lose their write permission (given back afterwards).
    """
    folder.mkdir()
    if not ROOT:

        def freeze() -> None:
            for p in folder.iterdir():
                p.chmod(0o444)
            folder.chmod(0o555)

        try:
            yield freeze
        finally:
            folder.chmod(0o755)
            for p in folder.iterdir():
                p.chmod(0o644)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield lambda: subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


@pytest.mark.e2e
@pytest.mark.parametrize("where", ["new.db", "sub/new.db"])
def test_a_new_state_in_a_read_only_folder_is_one_line_and_exit_2(
    tmp_path: Path, where: str
) -> None:
    (tmp_path / "one.yaml").write_text(ONE, encoding="utf-8")
    with read_only_folder(tmp_path / "ro") as freeze:
        freeze()
        done = batcher(["run", "one.yaml", "--emulator", "--state", f"ro/{where}", *FAST], tmp_path)
        assert done.returncode == 2, done.stderr
        one_line(done, f"ro/{where}: cannot create the state database", "--state")
        assert list((tmp_path / "ro").iterdir()) == []


@pytest.mark.e2e
def test_a_valid_state_in_a_read_only_folder_is_not_called_unusable(tmp_path: Path) -> None:
    made_in = state_with_pending_jobs(tmp_path)
    with read_only_folder(tmp_path / "ro") as freeze:
        shutil.copy2(made_in, tmp_path / "ro" / "b.db")
        freeze()
        before = files_of(tmp_path / "ro")
        state = ["--state", "ro/b.db"]
        resume = ["resume", "--max-cost", "5", *FAST]
        for args in (["run", "one.yaml", "--emulator", *FAST], resume):
            done = batcher([*args, *state], tmp_path)
            assert done.returncode == 2, done.stderr
            line = one_line(done, "ro/b.db: cannot write", "writable", "--state")
            assert "not a usable" not in line
        status = batcher(["status", *state], tmp_path)  # status only reads: it works
        assert status.returncode == 0, status.stderr
        assert "pending 2" in status.stdout, status.stdout
        plan = batcher(["plan", "one.yaml", *state], tmp_path)  # plan only reads
        assert plan.returncode == 0, plan.stderr
        assert "2 jobs (2 pending)" in plan.stdout
        assert files_of(tmp_path / "ro") == before


def test_a_read_only_state_opens_as_a_snapshot_for_readers(tmp_path: Path) -> None:
    made_in = made(tmp_path / "b.db")
    with read_only_folder(tmp_path / "ro") as freeze:
        shutil.copy2(made_in, tmp_path / "ro" / "b.db")
        freeze()
        with pytest.raises(StateWriteFailed, match="cannot write"):
            Store.open(tmp_path / "ro" / "b.db", create=False)
        with Store.open(tmp_path / "ro" / "b.db", create=False, read_only=True) as store:
            assert store.run_names() == ["r"]
            with pytest.raises(StateWriteFailed, match="cannot be written"):
                store.sync_jobs("r", [spec("a")])
