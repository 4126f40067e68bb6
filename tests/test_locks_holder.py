"""`locks.holder`: who drives a run, read from the kernel's lock table without taking the
lock; a lock on another file system with the same inode number is not ours."""

from __future__ import annotations

import os
from pathlib import Path

from batcher.locks import RunLock, holder


def test_the_holder_is_read_from_the_lock_table(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    with RunLock(state, "night"):
        assert holder(state, "night") == os.getpid()
        assert holder(state, "day") is None
    assert holder(state, "night") is None


def test_only_a_lock_on_the_same_device_and_inode_counts(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    with RunLock(state, "night"):
        pass  # the lock file exists, nobody holds it now
    lock_file = next((tmp_path / "state.db.locks").iterdir())
    st = lock_file.stat()
    ours = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    other = f"{os.major(st.st_dev) + 1:02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    table = tmp_path / "locks"
    table.write_text(f"1: FLOCK  ADVISORY  WRITE 4242 {other} 0 EOF\n")
    assert holder(state, "night", proc_locks=table) is None
    table.write_text(f"1: FLOCK  ADVISORY  WRITE 4242 {ours} 0 EOF\n")
    assert holder(state, "night", proc_locks=table) == 4242
    table.write_text(f"1: POSIX  ADVISORY  WRITE 4242 {ours} 0 EOF\n")  # not a flock
    assert holder(state, "night", proc_locks=table) is None
