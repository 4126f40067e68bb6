"""State store: migrations, versions, compare-and-set transitions, claims, history."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from batcher.errors import StateError
from batcher.models import JobSpec, JobState, Money, Submitted
from batcher.store import SqliteLedger, Store, plan_marks


def spec(key: str, prompt: str = "a fox", run: str = "r") -> JobSpec:
    return JobSpec(
        run=run,
        key=f"{run}/{key}",
        name=key,
        model="m",
        payload={"prompt": prompt},
        fingerprint=f"fp-{prompt}",
        output_name=key,
        cost=0.84,
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "state" / "b.db")
    s.upsert_run("r", model="m", job_file="x.yaml", out_dir=str(tmp_path / "out"), options={})
    return s


def test_blank_database_gets_every_migration(tmp_path: Path) -> None:
    with Store.open(tmp_path / "b.db"):
        pass
    conn = sqlite3.connect(tmp_path / "b.db")
    names = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations")]
    assert names == [
        "m001_initial",
        "m002_attempt_floor",
        "m003_file_moves",
        "m004_render_times",
        "m005_run_notes",
        "m006_rows_of",
    ]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_open_refuses_missing_file_without_create(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="no state database"):
        Store.open(tmp_path / "nope.db", create=False)
    assert not (tmp_path / "nope.db").exists()


def test_open_refuses_garbage_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StateError, match="not a usable state database"):
        Store.open(bad)


def test_sync_is_idempotent_and_edits_make_new_versions(store: Store) -> None:
    first = store.sync_jobs("r", [spec("a"), spec("b")])
    assert first.new == ("r/a", "r/b")
    again = store.sync_jobs("r", [spec("a"), spec("b")])
    assert again.new == () and again.unchanged == ("r/a", "r/b")
    edited = store.sync_jobs("r", [spec("a", "a wolf"), spec("b")])
    assert edited.changed == ("r/a",)
    records = store.records("r")
    a_versions = sorted((r.version, r.current, r.state) for r in records if r.key == "r/a")
    # the unsent old version is cancelled but kept in history
    assert a_versions == [(1, False, JobState.CANCELLED), (2, True, JobState.PENDING)]


def test_claim_and_transitions_are_compare_and_set(store: Store) -> None:
    store.sync_jobs("r", [spec("a")])
    [job] = store.claim(["r"], 10)
    assert job.state is JobState.SUBMITTING and job.attempts == 1
    assert store.claim(["r"], 10) == []  # nothing pending any more
    sub = Submitted("req-1", "http://x/s", "http://x/r", "http://x/c")
    assert store.record_submitted(job.id, sub)
    assert not store.record_submitted(job.id, sub)  # no longer submitting
    again = store.job(job.id)
    assert again.request_id == "req-1" and again.handle == sub
    with pytest.raises(ValueError, match="not allowed"):
        store.transition(job.id, JobState.QUEUED, JobState.SUBMITTING)
    attempts = store.attempts(job.id)
    assert [(a.number, a.request_id, a.outcome) for a in attempts] == [(1, "req-1", "queued")]
    states = [(e["from_state"], e["to_state"]) for e in store.events(job.id)]
    assert states == [(None, "pending"), ("pending", "submitting"), ("submitting", "queued")]


def test_two_handles_never_claim_the_same_job(store: Store) -> None:
    store.sync_jobs("r", [spec(f"j{i}", f"p{i}") for i in range(20)])
    other = Store.open(store.path)
    got: list[int] = []
    for _ in range(10):
        got += [j.id for j in store.claim(["r"], 1)]
        got += [j.id for j in other.claim(["r"], 1)]
    assert len(got) == 20 and len(set(got)) == 20


def test_orphaned_submitting_jobs_become_unknown(store: Store) -> None:
    store.sync_jobs("r", [spec("a")])
    [job] = store.claim(["r"], 1)
    orphans = SqliteLedger(store).reconcile(["r"])
    assert [o.id for o in orphans] == [job.id]
    assert store.job(job.id).state is JobState.UNKNOWN
    assert store.attempts(job.id)[0].outcome == "unknown"


def test_committed_spend_counts_sent_attempts(store: Store) -> None:
    store.sync_jobs("r", [spec("a"), spec("b", "b")])
    assert store.money(["r"]).at_most == 0
    [job] = store.claim(["r"], 1)
    assert store.money(["r"]).at_most == pytest.approx(0.84)
    store.transition(
        job.id, JobState.SUBMITTING, JobState.UNKNOWN, attempt={"outcome": "unknown", "cost": 0.5}
    )
    assert store.money(["r"]).at_most == pytest.approx(0.5)


def _attempt(store: Store, outcome: str, cost: float | None = None) -> None:
    """The next pending job of run r gets one attempt that ended as `outcome` (at `cost`)."""
    [job] = store.claim(["r"], 1)
    attempt: dict[str, object] = {"outcome": outcome}
    if cost is not None:
        attempt["cost"] = cost
    store.transition(job.id, JobState.SUBMITTING, JobState.UNKNOWN, attempt=attempt)


def test_money_keeps_spent_sent_and_failed_generations_apart(store: Store) -> None:
    """Issue 12: one account: spent (reported cost where known, else the estimate), sent
    with no outcome yet (may be billed), failed generations apart (not billed)."""
    store.sync_jobs("r", [spec(str(n), str(n)) for n in range(13)])  # one planned, never sent
    _attempt(store, "succeeded", cost=1.26)  # rendered; the API said what it billed
    _attempt(store, "succeeded")  # rendered; no cost said: the estimate
    _attempt(store, "download_failed", cost=0.0)  # rendered; 0 is "not said"
    _attempt(store, "queued")  # in flight
    _attempt(store, "unknown")  # may have been accepted
    _attempt(store, "abandoned")  # no longer followed: may have rendered
    _attempt(store, "failed", cost=0.0)  # the generation failed and the API says: not billed
    _attempt(store, "failed")  # failed, the API said nothing of its cost: may be billed
    _attempt(store, "failed", cost=0.3)  # failed, and the API says it billed it
    for outcome in ("not_sent", "rejected", "cancelled"):  # never billed
        _attempt(store, outcome)
    m = store.money(["r"])
    assert m.spent == pytest.approx(1.26 + 0.84 + 0.84 + 0.3)
    assert m.reported == pytest.approx(1.26 + 0.3)
    assert m.sent == pytest.approx(4 * 0.84)
    assert m.failed == pytest.approx(0.84)
    assert m.estimated == pytest.approx(13 * 0.84)
    assert m.at_most == pytest.approx(m.spent + m.sent)
    assert store.money(["other"]) == Money()
    text = m.text()
    assert text.startswith("$3.24 spent ($1.56 of it reported by the API), $3.36 sent")
    assert "estimated $10.92" in text and "failed generations $0.84 (not billed)" in text
    assert Money.of_json(m.as_json()) == Money(
        *(round(x, 4) for x in (m.estimated, m.spent, m.reported, m.sent, m.failed))
    )


def test_plan_marks_never_creates_a_database(tmp_path: Path) -> None:
    path = tmp_path / "none.db"
    assert plan_marks(path, [spec("a")]) == {"r/a": "new"}
    assert not path.exists()


def test_plan_marks_new_done_changed(store: Store) -> None:
    store.sync_jobs("r", [spec("a"), spec("b")])
    marks = plan_marks(store.path, [spec("a"), spec("b", "edited"), spec("c")])
    assert marks == {"r/a": "pending", "r/b": "changed", "r/c": "new"}


def test_unknown_run_error_lists_known_runs(store: Store) -> None:
    with pytest.raises(StateError, match=r"runs: r"):
        store.run_info("other")


def test_a_previous_version_database_is_migrated_with_its_data(tmp_path: Path) -> None:
    """A database made by the first release (m001 only) opens, migrates and keeps its jobs."""
    import sqlite_utils

    from batcher.store import m001_initial

    path = tmp_path / "old.db"
    old = sqlite_utils.Database(path)
    m001_initial(old)
    old.execute("CREATE TABLE _sqlite_migrations (migration_set TEXT, name TEXT, applied_at TEXT)")
    old.execute("INSERT INTO _sqlite_migrations VALUES ('batcher', 'm001_initial', 'then')")
    old.execute("INSERT INTO runs VALUES ('r', 'm', NULL, '/out', '{}', 1, 1)")
    old.execute(
        "INSERT INTO jobs (run, key, version, name, model, fingerprint, payload, output_name,"
        " state, attempts, created_at, updated_at) VALUES"
        " ('r', 'r/a', 1, 'a', 'm', 'fp', '{\"prompt\": \"x\"}', 'a', 'failed', 3, 1, 1)"
    )
    old.conn.commit()
    old.close()
    with Store.open(path) as store:
        [job] = store.jobs(["r"])
        assert job.state is JobState.FAILED and job.attempt_floor == 0
        assert store.transition(job.id, JobState.FAILED, JobState.PENDING, attempt_floor=3)
        assert store.job(job.id).attempt_floor == 3


def test_a_database_before_file_moves_is_migrated_with_its_data(tmp_path: Path) -> None:
    """A database of the release before m003 (m001 + m002) opens, migrates, keeps its jobs."""
    import sqlite_utils

    from batcher.store import migrations

    path = tmp_path / "old.db"
    old = sqlite_utils.Database(path)
    migrations.apply(old, stop_before="m003_file_moves")
    old.execute("INSERT INTO runs VALUES ('r', 'm', NULL, '/out', '{}', 1, 1)")
    outputs = '[{"url": "u", "path": "a~v1.mp4", "size": 3, "sha256": "s"}]'
    old.execute(
        "INSERT INTO jobs (run, key, version, current, name, model, fingerprint, payload,"
        " output_name, state, outputs, created_at, updated_at) VALUES"
        " ('r', 'r/a', 1, 1, 'a', 'm', 'fp', '{}', 'a', 'done', ?, 1, 1)",
        (outputs,),
    )
    old.conn.commit()
    old.close()
    with Store.open(path) as store:
        [rec] = store.records("r")
        assert rec.state is JobState.DONE and rec.outputs[0].path == "a~v1.mp4"
        assert store.pending_moves("r") == []
        # the current version under an archive name (an undo before m003): put right
        assert store.plan_moves("r") == 2
        [media, side] = store.pending_moves("r")
        assert (media.kind, media.src, media.dst) == ("output", "a~v1.mp4", "a.mp4")
        assert (side.kind, side.src, side.dst) == ("sidecar", "a~v1.json", "a.json")
        assert store.records("r")[0].outputs[0].path == "a.mp4"  # in the same transaction
        assert store.plan_moves("r") == 0  # planned once


def test_a_move_is_closed_once_with_its_event(store: Store) -> None:
    store.sync_jobs("r", [spec("a")])
    [job] = store.jobs(["r"])
    out = '[{"url": "u", "path": "a.mp4", "size": 1, "sha256": "x"}]'
    store._conn.execute("UPDATE jobs SET current=0, outputs=? WHERE id=?", (out, job.id))
    assert store.plan_moves("r", keys=["r/other"]) == 0
    assert store.plan_moves("r", keys=["r/a"]) == 2
    first = store.pending_moves("r")[0]
    assert first.dst == "a~v1.mp4" and first.sha256 == "x" and first.size == 1
    with pytest.raises(ValueError, match="not a move outcome"):
        store.finish_move(first.id, "gone")
    store.finish_move(first.id, "done")
    store.finish_move(first.id, "missing")  # already closed: unchanged
    assert [m.kind for m in store.pending_moves("r")] == ["sidecar"]
    details = [json.loads(e["detail"]) for e in store.events(job.id) if e["detail"]]
    reasons = [d.get("reason") for d in details]
    assert reasons[-2:] == ["files to move", "file move done"]


def test_pending_jobs_dropped_from_the_file_are_cancelled_and_come_back(store: Store) -> None:
    store.sync_jobs("r", [spec("a"), spec("b", "b")])
    result = store.sync_jobs("r", [spec("a")])
    assert result.removed == ("r/b",)
    assert [j.key for j in store.claim(["r"], 10)] == ["r/a"]
    back = store.sync_jobs("r", [spec("a"), spec("b", "b")])
    assert back.unchanged == ("r/a", "r/b")
    assert [j.key for j in store.jobs(["r"], [JobState.PENDING])] == ["r/b"]


def test_another_programs_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "theirs.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.execute("INSERT INTO notes VALUES ('keep me')")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StateError, match="not a batcher state database"):
        Store.open(path, create=False)
    assert path.read_bytes() == before


def test_a_rescued_request_id_is_followed_and_a_rescued_unsent_job_is_pending_again(
    store: Store,
) -> None:
    from batcher.models import Submitted

    store.sync_jobs("r", [spec("a"), spec("b", "b")])
    ledger = SqliteLedger(store)
    a = ledger.claim(["r"])
    b = ledger.claim(["r"])
    assert a is not None and b is not None
    ledger.rescue(a, Submitted("req-a", "", "", ""), "database full")
    ledger.rescue(b, None, "not sent; database full")
    assert ledger.reconcile(["r"]) == []  # nothing left in doubt
    assert store.job(a.id).state is JobState.QUEUED and store.job(a.id).request_id == "req-a"
    assert store.job(b.id).state is JobState.PENDING
    assert [x.outcome for x in store.attempts(b.id)] == ["not_sent"]


def test_claim_by_id_takes_only_that_job(store: Store) -> None:
    store.sync_jobs("r", [spec("a"), spec("b", "b")])
    second = store.jobs(["r"])[1]
    [got] = store.claim(["r"], 1, job_id=second.id)
    assert got.id == second.id
    assert store.claim(["r"], 1, job_id=second.id) == []


def test_an_outage_going_on_shows_in_status_while_a_process_drives_the_run(
    store: Store,
) -> None:
    from batcher.locks import hold_runs
    from batcher.operations import runs_data, status_data

    store.note(["r"], "start", "1 job to do")
    store.note(["r"], "outage", "API unreachable since 01:02:11; pausing 20 s")
    assert store.api_trouble("r") == "API unreachable since 01:02:11; pausing 20 s"
    assert status_data(store, "r")["runs"][0]["api_trouble"] is None  # nobody drives it
    with hold_runs(store.path, ["r"]):
        assert status_data(store, "r")["runs"][0]["driven_by"] == os.getpid()
        assert status_data(store, "r")["runs"][0]["api_trouble"].startswith("API unreachable")
        assert runs_data(store)[0]["api_trouble"].startswith("API unreachable")
        store.note(["r"], "recovered", "API answering again after 40 s")
        assert status_data(store, "r")["runs"][0]["api_trouble"] is None


def test_missing_files_checks_files_below_the_run_folder_too(store: Store, tmp_path: Path) -> None:
    """Review: a recorded path with a folder in it was reported missing unchecked."""
    from batcher.operations import missing_files

    store.sync_jobs("r", [spec("a"), spec("b", "b")])
    folder = tmp_path / "out"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.mp4").write_bytes(b"x")
    (folder / "b.mp4").write_bytes(b"x")
    for key, path in (("r/a", "sub/a.mp4"), ("r/b", "b.mp4")):
        out = json.dumps([{"url": "https://x.test/f", "path": path, "size": 1, "sha256": "0"}])
        store._conn.execute("UPDATE jobs SET state='done', outputs=? WHERE key=?", (out, key))
    assert missing_files(store, "r") == []
    (folder / "sub" / "a.mp4").unlink()
    (folder / "b.mp4").unlink()
    assert sorted(j.key for j in missing_files(store, "r")) == ["r/a", "r/b"]
