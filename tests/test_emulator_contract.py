"""The emulator against runcomfy-api.md, point by point, over real loopback HTTP."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from batcher.emulator import Emulator, EmulatorConfig, canonical_sha256
from tests.emulator_server import MODEL, FakeClock, RunningEmulator

AUTH = {"Authorization": "Bearer tok-A"}
ID_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")


def reset(srv: RunningEmulator, clock: FakeClock, **kw: Any) -> Emulator:
    return srv.reset(EmulatorConfig(clock=clock, **kw))


def submit(
    http: httpx.Client, srv: RunningEmulator, payload: Any = None, **headers: str
) -> httpx.Response:
    body = payload if payload is not None else {"prompt": "A red fox in snow"}
    return http.post(srv.model_url, json=body, headers=headers or AUTH)


def assert_error(resp: httpx.Response, status: int, code: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    body: dict[str, Any] = resp.json()
    assert body["error_code"] == code
    assert isinstance(body["error_message"], str) and body["error_message"]
    return body


# -- submit ------------------------------------------------------------------------------


def test_submit_answers_id_and_absolute_urls(srv: RunningEmulator, clock: FakeClock) -> None:
    emu = reset(srv, clock)
    with httpx.Client() as http:
        resp = submit(http, srv)
    assert resp.status_code == 200
    body = resp.json()
    rid = body["request_id"]
    assert ID_RE.fullmatch(rid)
    assert set(body) == {"request_id", "status_url", "result_url", "cancel_url"}
    for key, tail in (("status_url", "status"), ("result_url", "result"), ("cancel_url", "cancel")):
        assert body[key] == f"{srv.base_url}/v1/requests/{rid}/{tail}"
    assert list(emu.requests) == [rid]
    sub = emu.submissions[0]
    assert sub.payload_sha256 == canonical_sha256({"prompt": "A red fox in snow"})
    assert (sub.request_id, sub.time, sub.model) == (rid, clock.now, MODEL)


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, 401001),
        ({"Authorization": "Basic dXNlcjpwdw=="}, 401001),
        ({"Authorization": "Bearer"}, 401001),
    ],
)
def test_submit_without_a_bearer_token_is_401(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client, headers: dict[str, str], code: int
) -> None:
    emu = reset(srv, clock)
    resp = http.post(srv.model_url, json={"prompt": "x"}, headers=headers)
    assert_error(resp, 401, code)
    assert emu.submissions == []


def test_token_mode_accepts_only_its_token(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    emu = reset(srv, clock, token="sesame")
    assert_error(submit(http, srv, Authorization="Bearer tok-A"), 401, 400004)
    assert submit(http, srv, Authorization="Bearer sesame").status_code == 200
    assert len(emu.submissions) == 1


def test_unknown_model_is_400001(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    reset(srv, clock)
    url = f"{srv.base_url}/v1/models/kling/kling-9/text-to-video"
    assert_error(http.post(url, json={"prompt": "x"}, headers=AUTH), 400, 400001)
    assert_error(http.get(url, headers=AUTH), 400, 400001)


def test_invalid_input_is_422_with_detail(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    emu = reset(srv, clock)
    body = assert_error(
        submit(http, srv, {"prompt": "x", "duration": 2, "generate_audio": True}), 422, 422001
    )
    locs = sorted(tuple(d["loc"]) for d in body["detail"])
    assert locs == [("body",), ("body", "duration")]
    assert all(isinstance(d["msg"], str) and d["msg"] for d in body["detail"])
    body = assert_error(submit(http, srv, {"duration": 5}), 422, 422001)
    assert "prompt" in body["detail"][0]["msg"]
    resp = http.post(srv.model_url, content=b"{not json", headers=AUTH)
    assert assert_error(resp, 422, 422001)["detail"][0]["loc"] == ["body"]
    assert emu.submissions == []


def test_multi_prompt_durations_must_sum_to_duration(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    emu = reset(srv, clock)
    shots = [{"prompt": "wide", "duration": 4}, {"prompt": "dolly", "duration": 4}]
    body = assert_error(submit(http, srv, {"prompt": "x", "multi_prompt": shots}), 422, 422001)
    assert body["detail"] == [
        {
            "loc": ["body", "multi_prompt"],
            "msg": "shot durations sum to 8 s but duration is 5 s",
            "type": "value_error",
        }
    ]
    ok = submit(http, srv, {"prompt": "x", "duration": 8, "multi_prompt": shots})
    assert ok.status_code == 200
    assert len(emu.submissions) == 1


def test_model_info_has_price(srv: RunningEmulator, clock: FakeClock, http: httpx.Client) -> None:
    reset(srv, clock)
    resp = http.get(srv.model_url, headers=AUTH)
    assert resp.status_code == 200
    body = resp.json()
    assert (body["model_id"], body["base_price_usd"], body["price_unit"]) == (
        MODEL,
        0.112,
        "second",
    )
    assert body["price_with_sound_usd"] == 0.168
    assert_error(http.get(srv.model_url), 401, 401001)


# -- status and queue --------------------------------------------------------------------


def _status(http: httpx.Client, srv: RunningEmulator, rid: str) -> dict[str, Any]:
    resp = http.get(srv.url(f"/v1/requests/{rid}/status"), headers=AUTH)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    assert body["request_id"] == rid
    assert body["status_url"].endswith(f"/v1/requests/{rid}/status")
    assert body["result_url"].endswith(f"/v1/requests/{rid}/result")
    return body


def test_status_walks_the_queue(srv: RunningEmulator, clock: FakeClock, http: httpx.Client) -> None:
    reset(srv, clock, slots=1, speed=1.0, spread=0.0)  # 5 s of processing per default clip
    ids = [submit(http, srv, {"prompt": f"p{i}"}).json()["request_id"] for i in range(3)]
    first = [_status(http, srv, rid) for rid in ids]
    assert [s["status"] for s in first] == ["in_progress", "in_queue", "in_queue"]
    assert "queue_position" not in first[0]
    assert [s.get("queue_position") for s in first[1:]] == [0, 1]
    clock.advance(5)
    second = [_status(http, srv, rid) for rid in ids]
    assert [s["status"] for s in second] == ["completed", "in_progress", "in_queue"]
    assert second[2]["queue_position"] == 0
    clock.advance(10)
    assert [_status(http, srv, rid)["status"] for rid in ids] == ["completed"] * 3


def test_queue_delay_keeps_requests_queued(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    reset(srv, clock, queue_delay=30.0, speed=0.0)
    rid = submit(http, srv).json()["request_id"]
    assert _status(http, srv, rid)["status"] == "in_queue"
    clock.advance(29.9)
    assert _status(http, srv, rid)["queue_position"] == 0
    clock.advance(0.1)
    assert _status(http, srv, rid)["status"] == "completed"


def test_unknown_request_is_404_and_foreign_request_is_403(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    reset(srv, clock)
    rid = submit(http, srv).json()["request_id"]
    for action in ("status", "result"):
        assert_error(http.get(srv.url(f"/v1/requests/nope/{action}"), headers=AUTH), 404, 404001)
        other = {"Authorization": "Bearer tok-B"}
        assert_error(http.get(srv.url(f"/v1/requests/{rid}/{action}"), headers=other), 403, 403001)
        assert_error(http.get(srv.url(f"/v1/requests/{rid}/{action}")), 401, 401001)
    assert_error(http.post(srv.url("/v1/requests/nope/cancel"), headers=AUTH), 404, 404001)


# -- result ------------------------------------------------------------------------------


def _result(http: httpx.Client, srv: RunningEmulator, rid: str, **params: str) -> dict[str, Any]:
    resp = http.get(srv.url(f"/v1/requests/{rid}/result"), headers=AUTH, params=params)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def test_result_shapes_through_the_life_cycle(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    reset(srv, clock, queue_delay=1.0, speed=1.0)
    rid = submit(http, srv, {"prompt": "fox", "duration": 5}).json()["request_id"]
    queued = _result(http, srv, rid)
    assert queued["status"] == "in_queue"
    assert "output" not in queued and "finished_at" not in queued and "error" not in queued
    clock.advance(2)
    assert _result(http, srv, rid, include_cost="true")["status"] == "in_progress"
    assert "cost" not in _result(http, srv, rid, include_cost="true")
    clock.advance(10)
    done = _result(http, srv, rid)
    assert done["status"] == "succeeded"
    assert set(done) == {"request_id", "model_id", "status", "output", "created_at", "finished_at"}
    assert done["model_id"] == "kling/kling-3.0/pro/text-to-video"  # as RunComfy's results say
    assert done["output"]["video"].startswith(f"{srv.base_url}/files/{rid}/")
    created = datetime.fromisoformat(done["created_at"])
    finished = datetime.fromisoformat(done["finished_at"])
    assert created.timestamp() == 1_700_000_000.0
    assert finished.timestamp() == pytest.approx(1_700_000_000.0 + 1 + 5)


@pytest.mark.parametrize(
    ("payload", "cost"),
    [
        ({"prompt": "a"}, 0.84),
        ({"prompt": "a", "sound": False}, 0.56),
        ({"prompt": "a", "duration": 15}, 2.52),
    ],
)
def test_include_cost(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client, payload: dict[str, Any], cost: float
) -> None:
    reset(srv, clock, speed=0.0)
    rid = submit(http, srv, payload).json()["request_id"]
    body = _result(http, srv, rid, include_cost="true")
    assert body["cost"] == pytest.approx(cost)
    assert "cost" not in _result(http, srv, rid)


def test_failed_generation(srv: RunningEmulator, clock: FakeClock, http: httpx.Client) -> None:
    from batcher.emulator import parse_faults

    emu = reset(srv, clock, speed=0.0, faults=parse_faults(["fail"]))
    rid = submit(http, srv).json()["request_id"]
    # The documented /status states have no `failed`: a failed render says `completed`.
    assert _status(http, srv, rid)["status"] == "completed"
    body = _result(http, srv, rid, include_cost="true")
    assert body["status"] == "failed" and "output" not in body
    assert isinstance(body["error"], str) and body["error"]
    assert body["cost"] == 0.0
    assert [f.kind for f in emu.faults_injected] == ["fail"]


# -- cancel ------------------------------------------------------------------------------


def test_cancel_queued_then_not_cancellable(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    reset(srv, clock, slots=1, speed=1.0)
    running, queued = (submit(http, srv, {"prompt": p}).json()["request_id"] for p in "ab")
    resp = http.post(srv.url(f"/v1/requests/{queued}/cancel"), headers=AUTH)
    assert resp.status_code == 202
    assert resp.json() == {"request_id": queued, "status": "cancelled", "outcome": "cancelled"}
    assert _status(http, srv, queued)["status"] == "cancelled"
    res = _result(http, srv, queued, include_cost="true")
    assert (res["status"], res["cost"], "output" in res) == ("cancelled", 0.0, False)
    again = http.post(srv.url(f"/v1/requests/{queued}/cancel"), headers=AUTH)
    assert again.json()["outcome"] == "cancelled"
    resp = http.post(srv.url(f"/v1/requests/{running}/cancel"), headers=AUTH)
    assert resp.status_code == 202
    body = resp.json()
    assert body == {"request_id": running, "status": "in_progress", "outcome": "not_cancellable"}
    clock.advance(5)
    assert _status(http, srv, running)["status"] == "completed"  # kept running
    late = http.post(srv.url(f"/v1/requests/{running}/cancel"), headers=AUTH).json()
    assert (late["status"], late["outcome"]) == ("completed", "not_cancellable")


def test_cancel_lets_the_next_request_move_up(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    reset(srv, clock, slots=1, speed=1.0)
    ids = [submit(http, srv, {"prompt": f"q{i}"}).json()["request_id"] for i in range(3)]
    assert _status(http, srv, ids[2])["queue_position"] == 1
    http.post(srv.url(f"/v1/requests/{ids[1]}/cancel"), headers=AUTH)
    assert _status(http, srv, ids[2])["queue_position"] == 0
    clock.advance(5)
    assert _status(http, srv, ids[2])["status"] == "in_progress"


# -- variants ----------------------------------------------------------------------------


def test_variants_play_the_undocumented_shapes(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    from batcher.emulator import parse_faults

    variant = "succeeded,canceled,error-status,error-object,videos,no-queue-position,message-key"
    reset(srv, clock, slots=1, speed=1.0, status_variant=variant)
    ok = submit(http, srv, {"prompt": "v1"}).json()["request_id"]
    queued = submit(http, srv, {"prompt": "v2"}).json()["request_id"]
    st = _status(http, srv, queued)
    assert st["status"] == "in_queue" and "queue_position" not in st
    assert http.post(srv.url(f"/v1/requests/{queued}/cancel"), headers=AUTH).json()["status"] == (
        "canceled"
    )
    assert _result(http, srv, queued)["status"] == "canceled"
    clock.advance(5)
    assert _status(http, srv, ok)["status"] == "succeeded"
    videos = _result(http, srv, ok)["output"]
    assert list(videos) == ["videos"] and len(videos["videos"]) == 1
    err = http.get(srv.url("/v1/requests/nope/status"), headers=AUTH).json()
    assert set(err) == {"error_code", "message"}
    reset(srv, clock, speed=0.0, status_variant=variant, faults=parse_faults(["fail"]))
    bad = submit(http, srv).json()["request_id"]
    assert _status(http, srv, bad)["status"] == "error"
    result = _result(http, srv, bad)
    assert result["status"] == "failed"
    assert set(result["error"]) == {"type", "message"}


def test_cancellation_requested_variant(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    reset(srv, clock, queue_delay=10.0, status_variant="cancellation-requested")
    rid = submit(http, srv).json()["request_id"]
    body = http.post(srv.url(f"/v1/requests/{rid}/cancel"), headers=AUTH).json()
    assert body["outcome"] == "cancellation_requested"
    assert _status(http, srv, rid)["status"] == "cancelled"


# -- routing, stats, persistence ---------------------------------------------------------


def test_unknown_routes_and_methods_answer_json_errors(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    reset(srv, clock)
    assert_error(http.get(srv.url("/v2/whatever"), headers=AUTH), 404, 404000)
    assert_error(http.get(srv.url("/v1/requests/x/cancel"), headers=AUTH), 405, 405001)
    assert_error(http.delete(srv.model_url, headers=AUTH), 405, 405001)


def test_stats_endpoint_reports_everything_without_auth(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    reset(srv, clock, speed=0.0)
    payload = {"prompt": "stats", "duration": 3}
    rid = submit(http, srv, payload).json()["request_id"]
    http.get(srv.url(f"/v1/requests/{rid}/status"), headers=AUTH)
    http.get(srv.url(f"/v1/requests/{rid}/status"), headers=AUTH)
    stats = http.get(srv.url("/_emulator/stats")).json()
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    assert stats["submissions"] == [
        {
            "request_id": rid,
            "payload_sha256": hashlib.sha256(canonical).hexdigest(),
            "identity": hashlib.sha256(canonical).hexdigest() + "#0",
            "model": MODEL,
            "time": clock.now,
        }
    ]
    assert stats["hits"] == {"status": 2, "submit": 1}
    assert stats["faults"] == []
    assert stats["requests"] == [{"request_id": rid, "phase": "done", "fail": False}]


def test_persisted_emulator_survives_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    journal = tmp_path / "emu.jsonl"
    cfg = EmulatorConfig(clock=clock, persist_path=journal, slots=1, speed=1.0)
    first = Emulator(cfg)
    a, b, c = (first.create(MODEL, {"prompt": p}, "s3cret-token") for p in "abc")
    assert first.cancel(b) is True
    second = Emulator(cfg)  # a new process reading the same journal
    assert list(second.requests) == [a.request_id, b.request_id, c.request_id]
    assert second.snapshot(second.requests[b.request_id]).phase.value == "cancelled"
    assert second.snapshot(second.requests[c.request_id]).position == 0
    d = second.create(MODEL, {"prompt": "a"}, "s3cret-token")
    assert d.request_id not in (a.request_id, b.request_id, c.request_id)
    assert d.identity.endswith("#1")  # second acceptance of payload "a"
    assert "s3cret" not in journal.read_text()


def test_failed_status_variant_says_failed_on_status(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    from batcher.emulator import parse_faults

    reset(srv, clock, speed=0.0, faults=parse_faults(["fail"]), status_variant="failed-status")
    rid = submit(http, srv).json()["request_id"]
    assert _status(http, srv, rid)["status"] == "failed"


def test_result_lag_shows_the_result_running_after_the_status_finished(
    srv: RunningEmulator, clock: FakeClock, http: httpx.Client
) -> None:
    reset(srv, clock, speed=0.0, result_lag=30.0)
    rid = submit(http, srv).json()["request_id"]
    assert _status(http, srv, rid)["status"] == "completed"
    assert _result(http, srv, rid)["status"] in ("in_queue", "in_progress")
    clock.advance(31)
    assert _result(http, srv, rid)["status"] == "succeeded"
