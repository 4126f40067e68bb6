"""The file host: serves output clips behind signed, expiring URLs, like a CDN would.

Invariants: no token is needed (or checked) here, but whether an Authorization header
arrived is recorded for every file request, so tests can prove a client never sends its
token to the file host. Errors are S3-style XML, not the API's JSON, as on a real CDN.
Full bodies carry Content-Length and Accept-Ranges; Range gives 206 or 416.
"""

from __future__ import annotations

from dataclasses import replace

from batcher.emulator.faults import Fault
from batcher.emulator.files import Unsatisfiable, clips, parse_range
from batcher.emulator.queue import Phase
from batcher.emulator.state import Emulator, FileHit, Request
from batcher.emulator.wire import HttpRequest, Reply, server_error_status, slowed


def _xml_error(
    status: int, code: str, message: str, headers: tuple[tuple[str, str], ...] = ()
) -> Reply:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>\n"
    ).encode()
    return Reply(status, body, (("content-type", "application/xml"), *headers))


def _find(emu: Emulator, path: str) -> tuple[Request | None, str]:
    parts = path.split("/")  # "", "files", request id, clip name
    if len(parts) != 4:
        return None, ""
    return emu.requests.get(parts[2]), parts[3]


def _faulted(
    emu: Emulator, req: HttpRequest, fault: Fault | None, request: Request | None
) -> Reply | None:
    """Faults that answer instead of the file: drop, 5xx, expire."""
    if fault is None:
        return None
    if fault.kind == "drop":
        return Reply(0, drop=True)
    if fault.kind == "5xx":
        status = server_error_status(fault)
        return Reply(status, b"upstream error\n", (("content-type", "text/plain"),))
    if fault.kind == "expire" and request is not None:
        n, _ = emu.signer.check(req.path, req.query, emu.now())
        if n is not None:
            emu.revoke_urls(request, n)
            return _xml_error(403, "AccessDenied", "request has expired")
    return None


def _serve(emu: Emulator, req: HttpRequest, request: Request | None, name: str) -> Reply:
    if request is None or name != request.clip:
        return _xml_error(404, "NoSuchKey", "The specified key does not exist.")
    if emu.snapshot(request).phase is not Phase.DONE or request.fail:
        return _xml_error(404, "NoSuchKey", "The specified key does not exist.")
    n, reason = emu.signer.check(req.path, req.query, emu.now())
    if reason:
        return _xml_error(403, "AccessDenied", reason)
    if n is not None and n <= request.revoked_upto:
        return _xml_error(403, "AccessDenied", "request has expired")
    clip = clips()[request.clip]
    total = len(clip.data)
    base = (
        ("content-type", "video/mp4"),
        ("accept-ranges", "bytes"),
        ("etag", clip.etag),
        ("cache-control", "private, max-age=3600"),
    )
    try:
        wanted = parse_range(req.headers.get("range"), total)
    except Unsatisfiable:
        headers = (("content-range", f"bytes */{total}"), ("accept-ranges", "bytes"))
        return _xml_error(416, "InvalidRange", "The requested range is not satisfiable", headers)
    head = req.method == "HEAD"
    if wanted is None:
        return Reply(200, clip.data, base, head=head)
    body = clip.data[wanted.start : wanted.end + 1]
    return Reply(206, body, (*base, ("content-range", wanted.content_range)), head=head)


def serve_file(emu: Emulator, req: HttpRequest) -> Reply:
    """GET or HEAD /files/{request_id}/{clip}?n=&exp=&sig=."""
    request, name = _find(emu, req.path)
    identity = request.identity if request is not None else f"file:{req.path}"
    fault = emu.decide("files", identity, request.request_id if request else None)
    reply = _faulted(emu, req, fault, request) or _serve(emu, req, request, name)
    if fault is not None and fault.kind == "truncate" and reply.status in (200, 206):
        if not reply.head:
            fraction = fault.param if fault.param is not None else 0.5
            keep = int(len(reply.body) * min(max(fraction, 0.0), 1.0))
            reply = replace(reply, truncate_to=max(0, min(keep, len(reply.body) - 1)))
    reply = slowed(reply, fault)
    emu.note_file(
        FileHit(
            path=req.path,
            method=req.method,
            status=0 if reply.drop else reply.status,
            authorization="authorization" in req.headers,
            range=req.headers.get("range"),
            time=emu.now(),
            fault=fault.kind if fault is not None else None,
        )
    )
    return reply
