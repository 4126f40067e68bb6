"""Unit tests of the emulator's pure parts: fault plans, the queue, ranges, signing, journal."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from batcher.emulator import (
    EmulatorConfig,
    FaultPlan,
    FaultSpec,
    FaultSpecError,
    parse_fault,
    parse_faults,
    request_id_for,
)
from batcher.emulator.config import draw_render_time, parse_render_time
from batcher.emulator.faults import unit
from batcher.emulator.files import ByteRange, Signer, Unsatisfiable, clips, parse_range, pick_clip
from batcher.emulator.journal import Journal
from batcher.emulator.queue import Phase, Schedule

# -- fault specs -------------------------------------------------------------------------


def test_parse_fault_full_syntax() -> None:
    spec = parse_fault("5xx:0.25:503@submit,status#2")
    assert spec == FaultSpec("5xx", 0.25, 503.0, frozenset({"submit", "status"}), 2)
    assert str(spec) == "5xx:0.25:503@status,submit#2"


def test_parse_fault_defaults() -> None:
    spec = parse_fault("slow")
    assert (spec.rate, spec.param, spec.value, spec.first) == (1.0, None, 1.0, None)
    assert "files" in spec.where and "submit" in spec.where
    assert parse_fault("expire:0.5").limit == 1  # "the first time it is fetched"
    assert parse_fault("fail").where == frozenset({"generate"})


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("teapot", "unknown fault kind"),
        ("429:2", "rate must be within 0..1"),
        ("429:x", "RATE must be a number"),
        ("429:0.1:nan", "PARAM must be finite"),
        ("429:0.1:1:2", "expected KIND[:RATE[:PARAM]]"),
        ("429@files", "does not apply to files"),
        ("drop@nowhere", "unknown endpoint"),
        ("5xx#0", "#N must be at least 1"),
        ("5xx#x", "#N must be a whole number"),
    ],
)
def test_parse_fault_rejects(text: str, fragment: str) -> None:
    with pytest.raises(FaultSpecError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        parse_fault(text)


def test_decide_is_pure_and_rate_shaped() -> None:
    plan = parse_faults(["429:0.3"])
    hits = [plan.decide(7, "status", f"id{i}", 0) for i in range(2000)]
    again = [plan.decide(7, "status", f"id{i}", 0) for i in reversed(range(2000))][::-1]
    assert hits == again
    share = sum(h is not None for h in hits) / len(hits)
    assert 0.25 < share < 0.35
    other_seed = [plan.decide(8, "status", f"id{i}", 0) for i in range(2000)]
    assert [h is None for h in hits] != [h is None for h in other_seed]


def test_decide_respects_endpoint_order_and_first_n() -> None:
    plan = parse_faults(["5xx:1@status#1", "429:1"])
    first = plan.decide(0, "status", "a", 0)
    second = plan.decide(0, "status", "a", 1)
    assert first is not None and first.kind == "5xx"
    assert second is not None and second.kind == "429"  # 5xx only on call 0
    assert plan.decide(0, "files", "a", 0) is None  # neither applies to files
    assert FaultPlan().decide(0, "status", "a", 0) is None


def test_unit_is_in_range_and_stable() -> None:
    values = [unit(1, "x", i) for i in range(100)]
    assert all(0.0 <= v < 1.0 for v in values)
    assert unit(1, "x", 5) == values[5]
    assert len(set(values)) == 100


def test_request_ids_are_deterministic_and_contract_shaped() -> None:
    ids = [request_id_for(3, n) for n in range(50)]
    assert ids == [request_id_for(3, n) for n in range(50)]
    assert len(set(ids)) == 50
    assert request_id_for(4, 0) != ids[0]
    import re

    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,128}", i) for i in ids)


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="slots"):
        EmulatorConfig(slots=0)
    with pytest.raises(ValueError, match="unknown status variant"):
        EmulatorConfig(status_variant="succeeded,bogus")
    with pytest.raises(ValueError, match="token must not be empty"):
        EmulatorConfig(token=" ")
    with pytest.raises(ValueError, match="files_base_url"):
        EmulatorConfig(files_base_url="localhost:80")
    assert EmulatorConfig(status_variant="succeeded, videos").variants == {"succeeded", "videos"}


# -- queue -------------------------------------------------------------------------------


def test_schedule_fifo_over_slots() -> None:
    s = Schedule(2)
    a = s.add("a", 0.0, 10.0)
    b = s.add("b", 0.0, 4.0)
    c = s.add("c", 1.0, 1.0)
    d = s.add("d", 1.0, 1.0)
    assert (a.start, b.start, c.start, d.start) == (0.0, 0.0, 4.0, 5.0)
    assert s.at("c", 2.0).phase is Phase.QUEUED and s.at("c", 2.0).position == 0
    assert s.at("d", 2.0).position == 1
    assert s.at("c", 4.5).phase is Phase.RUNNING
    assert s.at("d", 4.5).position == 0
    assert s.at("b", 4.0).phase is Phase.DONE
    assert s.at("a", 9.9).phase is Phase.RUNNING


def test_schedule_cancel_only_while_queued_and_frees_the_line() -> None:
    s = Schedule(1)
    s.add("a", 0.0, 5.0)
    s.add("b", 0.0, 5.0)
    s.add("c", 0.0, 5.0)
    assert s.cancel("a", 1.0) is False  # running
    assert s.at("c", 1.0).position == 1
    assert s.cancel("b", 1.0) is True
    assert s.at("b", 2.0).phase is Phase.CANCELLED and s.at("b", 2.0).cancelled_at == 1.0
    assert s.at("c", 1.0).position == 0
    assert s.at("c", 5.0).phase is Phase.RUNNING  # moved up into b's turn
    assert s.cancel("b", 3.0) is True  # idempotent


def test_schedule_queue_delay_and_monotone_starts() -> None:
    s = Schedule(4)
    s.add("a", 10.0, 1.0)
    s.add("b", 5.0, 1.0)  # a clock that went backwards must not let b overtake a
    assert s.at("b", 7.0).phase is Phase.QUEUED
    assert s.at("b", 10.0).phase is Phase.RUNNING
    with pytest.raises(ValueError):
        s.add("a", 0.0, 1.0)


# -- files -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-99", ByteRange(0, 99, 1000)),
        ("bytes=990-", ByteRange(990, 999, 1000)),
        ("bytes=-10", ByteRange(990, 999, 1000)),
        ("bytes=-5000", ByteRange(0, 999, 1000)),
        ("bytes=500-99999", ByteRange(500, 999, 1000)),
        ("bytes=0-1,5-6", None),
        ("items=0-1", None),
        ("bytes=9-3", None),
        ("bytes=a-b", None),
    ],
)
def test_parse_range(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_parse_range_unsatisfiable(header: str) -> None:
    with pytest.raises(Unsatisfiable):
        parse_range(header, 1000)


def test_signer_checks_signature_and_expiry() -> None:
    signer = Signer(1)
    query = dict(p.split("=") for p in signer.query("/files/x/a.mp4", 3, 100.0).split("&"))
    assert signer.check("/files/x/a.mp4", query, 99.0) == (3, "")
    assert signer.check("/files/x/a.mp4", query, 100.5)[1] == "request has expired"
    assert signer.check("/files/y/a.mp4", query, 99.0)[1] == "signature does not match"
    assert Signer(2).check("/files/x/a.mp4", query, 99.0)[1] == "signature does not match"
    assert signer.check("/files/x/a.mp4", query | {"exp": "200.000"}, 99.0)[1] != ""
    assert signer.check("/files/x/a.mp4", {}, 99.0) == (None, "missing or malformed signature")


def test_clips_are_real_mp4_and_picked_by_aspect_and_prompt() -> None:
    found = clips()
    assert len(found) >= 3
    for clip in found.values():
        assert clip.data[4:8] == b"ftyp" and 1000 < len(clip.data) < 60_000
    assert pick_clip({"prompt": "a", "aspect_ratio": "9:16"}).startswith("portrait-")
    assert pick_clip({"prompt": "a", "aspect_ratio": "1:1"}).startswith("square-")
    landscape = {pick_clip({"prompt": f"p{i}"}) for i in range(30)}
    assert len(landscape) >= 2 and all(n.startswith("landscape-") for n in landscape)
    assert pick_clip({"prompt": "same"}) == pick_clip({"prompt": "same", "duration": 9})


def test_journal_skips_torn_lines(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    assert journal.load() == []
    journal.append({"event": "a"})
    with journal.path.open("a") as fh:
        fh.write('{"event": "tor')  # killed mid-write
    journal.append({"event": "b"})
    assert [e["event"] for e in journal.load()] == ["a", "b"]


# -- render times ------------------------------------------------------------------------


def test_render_times_are_seeded_spread_and_replayable() -> None:
    cfg = EmulatorConfig(seed=3, speed=2.0, spread=0.3)
    draws = [draw_render_time(cfg, 5.0, seq) for seq in range(400)]
    assert draws == [draw_render_time(cfg, 5.0, seq) for seq in range(400)]  # a replay agrees
    assert draws != [
        draw_render_time(EmulatorConfig(seed=4, speed=2.0), 5.0, s) for s in range(400)
    ]
    assert 9.0 < statistics.median(draws) < 11.0  # around duration x speed
    assert min(draws) < 8.0 and max(draws) > 12.5  # with real spread
    assert {draw_render_time(EmulatorConfig(spread=0.0, speed=2.0), 5.0, s) for s in range(9)} == {
        10.0
    }


@pytest.mark.parametrize(
    ("spec", "low", "high", "median"),
    [
        ("uniform:30:60", 30.0, 60.0, 45.0),
        ("lognormal:60:0.5", 5.0, 600.0, 60.0),
        ("fixed:7", 7, 7, 7),
    ],
)
def test_render_time_distributions(spec: str, low: float, high: float, median: float) -> None:
    cfg = EmulatorConfig(render_time=spec, speed=99.0)  # speed and spread no longer apply
    draws = [draw_render_time(cfg, 5.0, seq) for seq in range(2000)]
    assert low <= min(draws) and max(draws) <= high
    assert statistics.median(draws) == pytest.approx(median, rel=0.08)


@pytest.mark.parametrize(
    "spec", ["uniform:60:30", "uniform:1", "gamma:1:2", "lognormal:a:b", "fixed:-1", "uniform"]
)
def test_a_bad_render_time_is_refused_naming_the_forms(spec: str) -> None:
    with pytest.raises(ValueError, match="render time"):
        EmulatorConfig(render_time=spec)
    assert parse_render_time("") is None
