"""The contract endpoints of runcomfy-api.md: submit, status, result, cancel, and the
catalog (the models list, its categories, one model's entry).

Order of checks on every call: count the call and decide its fault (a pre-handler fault
answers at once, before auth, as a gateway would), then auth (401), then the endpoint's
own checks (400 unknown model, 404 unknown request, 403 another token's request, 422
invalid input), then the answer. A submit is accepted only after every check passed, and
the request exists before any post-acceptance fault (`accept-5xx`, `accept-drop`,
`no-request-id`, `slow`) is played, which is exactly the client's "unknown outcome" case.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from batcher.emulator.faults import Fault
from batcher.emulator.queue import Phase, Snapshot
from batcher.emulator.state import Emulator, Request, canonical_sha256, token_key
from batcher.emulator.wire import (
    HttpRequest,
    Reply,
    error_reply,
    fault_reply,
    iso,
    json_reply,
    slowed,
)
from batcher.errors import SchemaError
from batcher.schema import ModelSchema, bundled, load_schema


def _authenticate(emu: Emulator, req: HttpRequest) -> str | Reply:
    header = req.headers.get("authorization", "")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if not header:
        return error_reply(emu.config, 401, 401001, "missing Authorization: Bearer <token>")
    if scheme.lower() != "bearer" or not token:
        return error_reply(emu.config, 401, 401001, "Authorization must be 'Bearer <token>'")
    if emu.config.token is not None and token != emu.config.token:
        return error_reply(emu.config, 401, 400004, "invalid or expired token")
    return token


def _schema(emu: Emulator, model_id: str) -> ModelSchema | Reply:
    try:
        return load_schema(model_id)
    except SchemaError:
        return error_reply(emu.config, 400, 400001, f"invalid model id {model_id!r}")


def _validate(schema: ModelSchema, payload: Any) -> list[dict[str, Any]]:
    """Validation errors as `detail` items: {loc, msg, type}."""
    if not isinstance(payload, dict):
        return [{"loc": ["body"], "msg": "the body must be a JSON object", "type": "type"}]
    detail = [
        {"loc": ["body", *e.absolute_path], "msg": e.message, "type": str(e.validator)}
        for e in sorted(schema.validator.iter_errors(payload), key=lambda e: list(map(str, e.path)))
    ]
    shots = payload.get("multi_prompt")
    if not detail and isinstance(shots, list) and shots:
        total = sum(int(s["duration"]) for s in shots)
        duration = payload.get("duration", schema.default("duration") or 5)
        if total != duration:
            msg = f"shot durations sum to {total} s but duration is {duration} s"
            detail.append({"loc": ["body", "multi_prompt"], "msg": msg, "type": "value_error"})
    return detail


def _urls(origin: str, request_id: str) -> dict[str, str]:
    base = f"{origin}/v1/requests/{request_id}"
    return {
        "status_url": f"{base}/status",
        "result_url": f"{base}/result",
        "cancel_url": f"{base}/cancel",
    }


def submit(emu: Emulator, req: HttpRequest, model_id: str) -> Reply:
    """POST /v1/models/{model_id}."""
    try:
        payload: Any = json.loads(req.body)
        identity = canonical_sha256(payload)
    except (ValueError, UnicodeDecodeError):
        payload, identity = None, hashlib.sha256(req.body).hexdigest()
    fault = emu.decide("submit", identity)
    early = fault_reply(emu.config, fault, emu.now())
    if early is not None:
        return early
    token = _authenticate(emu, req)
    if isinstance(token, Reply):
        return token
    schema = _schema(emu, model_id)
    if isinstance(schema, Reply):
        return schema
    detail = _validate(schema, payload)
    if detail:
        return error_reply(emu.config, 422, 422001, "input validation failed", detail=detail)
    balance = emu.config.balance_usd
    if balance is not None and emu.spent() + schema.price.estimate(payload) > balance + 1e-9:
        return error_reply(emu.config, 402, 400002, "insufficient balance")
    request = emu.create(model_id, payload, token)
    if fault is not None and fault.kind == "accept-5xx":
        return error_reply(emu.config, 502, 500001, "bad gateway")
    if fault is not None and fault.kind == "accept-drop":
        return Reply(0, drop=True)
    if fault is not None and fault.kind == "no-request-id":
        return json_reply(200, {"status": "in_queue"})
    body = {"request_id": request.request_id, **_urls(req.origin, request.request_id)}
    return slowed(json_reply(200, body), fault)


def model_info(emu: Emulator, req: HttpRequest, model_id: str) -> Reply:
    """GET /v1/models/{model_id}: one model's catalog entry, its input schema included."""
    fault = emu.decide("model", f"model:{model_id}")
    early = fault_reply(emu.config, fault, emu.now())
    if early is not None:
        return early
    token = _authenticate(emu, req)
    if isinstance(token, Reply):
        return token
    schema = _schema(emu, model_id)
    if isinstance(schema, Reply):
        return schema
    return slowed(json_reply(200, catalog_entry(schema, with_schema=True)), fault)


def list_models(emu: Emulator, req: HttpRequest) -> Reply:
    """GET /v1/models?search=&category=&kind=&include_schema=&limit=&offset=: a page of
    the catalog (`models`, `total`), in model id order."""
    fault = emu.decide("model", "catalog")
    early = fault_reply(emu.config, fault, emu.now())
    if early is not None:
        return early
    token = _authenticate(emu, req)
    if isinstance(token, Reply):
        return token
    q = req.query
    limit, offset = _count(q.get("limit"), 20), _count(q.get("offset"), 0)
    if limit is None or offset is None or limit > CATALOG_PAGE_MAX:
        return error_reply(
            emu.config, 400, 400000, f"limit must be 1-{CATALOG_PAGE_MAX}, offset 0 or more"
        )
    search = q.get("search", "").strip().lower()
    category = q.get("category", "").strip().lower()
    kind = q.get("kind", "").strip().lower()
    found = [
        ms
        for model_id, ms in sorted(bundled().items())
        if (not search or search in f"{model_id} {_display_name(ms)}".lower())
        and (not category or category in (c.lower() for c in _categories(ms)))
        and (not kind or kind == _kind(ms))
    ]
    with_schema = q.get("include_schema", "").lower() in ("true", "1", "yes")
    page = found[offset : offset + limit] if limit else []
    body = {
        "models": [catalog_entry(ms, with_schema=with_schema) for ms in page],
        "total": len(found),
        "limit": limit,
        "offset": offset,
    }
    return slowed(json_reply(200, body), fault)


def model_categories(emu: Emulator, req: HttpRequest) -> Reply:
    """GET /v1/models/categories: every category name of the catalog."""
    fault = emu.decide("model", "categories")
    early = fault_reply(emu.config, fault, emu.now())
    if early is not None:
        return early
    token = _authenticate(emu, req)
    if isinstance(token, Reply):
        return token
    names = sorted({c for ms in bundled().values() for c in _categories(ms)})
    return slowed(json_reply(200, {"categories": names}), fault)


CATALOG_PAGE_MAX = 100


def catalog_entry(ms: ModelSchema, *, with_schema: bool) -> dict[str, Any]:
    """A model as the catalog lists it (runcomfy-api.md, "Catalog")."""
    entry: dict[str, Any] = {
        "model_id": ms.model_id,
        "display_name": _display_name(ms),
        "categories": _categories(ms),
        "kind": _kind(ms),
        "base_price_usd": ms.price.usd,
        "price_unit": ms.price.unit,
    }
    if ms.price.usd_with_sound is not None:
        entry["price_with_sound_usd"] = ms.price.usd_with_sound  # the emulator's own field
    if with_schema:
        entry["input_schema"] = ms.schema
    return entry


def _display_name(ms: ModelSchema) -> str:
    name = ms.schema.get("x-display-name")
    return name if isinstance(name, str) and name else ms.model_id


def _categories(ms: ModelSchema) -> list[str]:
    found = ms.schema.get("x-categories")
    return [c for c in found if isinstance(c, str)] if isinstance(found, list) else []


def _kind(ms: ModelSchema) -> str:
    """What the model makes: the first output key it names (`video`, `image`...)."""
    outputs = ms.schema.get("x-output")
    first = outputs[0] if isinstance(outputs, list) and outputs else "video"
    return str(first).removesuffix("s")


def _count(text: str | None, default: int) -> int | None:
    """A query's non-negative integer (`default` when absent), None when it is not one."""
    if text is None or text == "":
        return default
    return int(text) if text.isascii() and text.isdigit() and len(text) < 10 else None


def _status_word(emu: Emulator, request: Request, snap: Snapshot, *, result: bool) -> str:
    has = emu.config.has
    if snap.phase is Phase.QUEUED:
        return "in_queue"
    if snap.phase is Phase.RUNNING:
        return "in_progress"
    if snap.phase is Phase.CANCELLED:
        return "canceled" if has("canceled") else "cancelled"
    if request.fail and result:
        return "failed"
    if request.fail:  # the documented /status states have no `failed`: finished is all it says
        if has("error-status"):
            return "error"
        return "failed" if has("failed-status") else "completed"
    return "succeeded" if (result or has("succeeded")) else "completed"


def _lookup(
    emu: Emulator, req: HttpRequest, rid: str, endpoint: str
) -> tuple[Request, Fault | None] | Reply:
    """Fault, auth, 404 and 403 checks shared by status, result and cancel."""
    request = emu.requests.get(rid)
    identity = request.identity if request is not None else f"unknown:{rid}"
    fault = emu.decide(endpoint, identity, request.request_id if request else None)
    early = fault_reply(emu.config, fault, emu.now())
    if early is not None:
        return early
    token = _authenticate(emu, req)
    if isinstance(token, Reply):
        return token
    if request is None:
        return error_reply(emu.config, 404, 404001, "request not found, deleted or expired")
    if request.token_key != token_key(token):
        return error_reply(emu.config, 403, 403001, "this request belongs to another account")
    return request, fault


def status(emu: Emulator, req: HttpRequest, rid: str) -> Reply:
    """GET /v1/requests/{id}/status."""
    found = _lookup(emu, req, rid, "status")
    if isinstance(found, Reply):
        return found
    request, fault = found
    snap = emu.snapshot(request)
    body: dict[str, Any] = {
        "request_id": rid,
        "status": _status_word(emu, request, snap, result=False),
    }
    if snap.phase is Phase.QUEUED and not emu.config.has("no-queue-position"):
        body["queue_position"] = snap.position
    urls = _urls(req.origin, rid)
    body.update(status_url=urls["status_url"], result_url=urls["result_url"])
    return slowed(json_reply(200, body), fault)


def _finished_at(snap: Snapshot) -> float | None:
    if snap.phase is Phase.CANCELLED:
        return snap.cancelled_at
    if snap.phase is Phase.DONE and snap.timing is not None:
        return snap.timing.finish
    return None


def _output(emu: Emulator, req: HttpRequest, request: Request) -> dict[str, Any]:
    base = emu.config.files_base_url or req.origin
    path = f"/files/{request.request_id}/{request.clip}"
    url = f"{base.rstrip('/')}{path}?{emu.issue_url_query(request, path)}"
    return {"videos": [url]} if emu.config.has("videos") else {"video": url}


def _error(emu: Emulator) -> str | dict[str, str]:
    message = "video generation failed (emulated fault)"
    if emu.config.has("error-object"):
        return {"type": "generation_error", "message": message}
    return message


def result(emu: Emulator, req: HttpRequest, rid: str) -> Reply:
    """GET /v1/requests/{id}/result[?include_cost=true]."""
    found = _lookup(emu, req, rid, "result")
    if isinstance(found, Reply):
        return found
    request, fault = found
    snap = emu.snapshot(request, lag=emu.config.result_lag)
    body: dict[str, Any] = {
        "request_id": rid,
        "model_id": request.model,
        "status": _status_word(emu, request, snap, result=True),
        "created_at": iso(request.created_at),
    }
    finished = _finished_at(snap)
    if finished is not None:
        body["finished_at"] = iso(finished)
    succeeded = snap.phase is Phase.DONE and not request.fail
    if succeeded:
        body["output"] = _output(emu, req, request)
    elif snap.phase is Phase.DONE:
        body["error"] = _error(emu)
    if finished is not None and req.query.get("include_cost", "").lower() in ("true", "1"):
        body["cost"] = request.cost if succeeded else 0.0
    return slowed(json_reply(200, body), fault)


def cancel(emu: Emulator, req: HttpRequest, rid: str) -> Reply:
    """POST /v1/requests/{id}/cancel: 202 cancelled while queued, else not_cancellable."""
    found = _lookup(emu, req, rid, "cancel")
    if isinstance(found, Reply):
        return found
    request, fault = found
    snap = emu.snapshot(request)
    if snap.phase in (Phase.QUEUED, Phase.CANCELLED) and emu.cancel(request):
        word = "canceled" if emu.config.has("canceled") else "cancelled"
        body = {"request_id": rid, "status": word, "outcome": "cancelled"}
        if emu.config.has("cancellation-requested"):
            body.update(status="in_queue", outcome="cancellation_requested")
            if snap.phase is Phase.CANCELLED:
                body["status"] = word
        return slowed(json_reply(202, body), fault)
    word = _status_word(emu, request, emu.snapshot(request), result=False)
    body = {"request_id": rid, "status": word, "outcome": "not_cancellable"}
    return slowed(json_reply(202, body), fault)
