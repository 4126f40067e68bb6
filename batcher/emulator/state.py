"""The Emulator: every request it accepted, what it injected, and what it was asked.

This is the in-process handle tests introspect (`submissions`, `requests`, `hits`,
`faults_injected`, `file_hits`, `stats()`); the ASGI app in `app.py` drives it.

Invariants:
- Request ids derive from the seed and a counter only (`request_id_for`), so the same seed
  and the same calls give the same ids; a persisted emulator continues its counter.
- A request's identity is `payload_sha256#k` (its k-th acceptance of that payload), which
  does not depend on the interleaving of clients; fault decisions key on it.
- Mutations and snapshots hold one lock and never await, so a test thread may read while
  the server thread writes.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from batcher.emulator.config import EmulatorConfig, draw_render_time
from batcher.emulator.faults import Fault
from batcher.emulator.files import Signer, pick_clip
from batcher.emulator.journal import Journal
from batcher.emulator.queue import Schedule, Snapshot
from batcher.schema import load_schema


def canonical_sha256(payload: Any) -> str:
    """sha256 hex of the canonical JSON (sorted keys, no spaces, UTF-8) of a payload."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def token_key(token: str) -> str:
    """A short hash standing for a token (tokens themselves are never kept)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:16]


def request_id_for(seed: int, counter: int) -> str:
    """The `counter`-th request id of an emulator with this seed (uuid-shaped hex)."""
    h = hashlib.sha256(f"batcher-emulator-request\x00{seed}\x00{counter}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


@dataclass
class Request:
    """One accepted request (mutable: cancels and issued URLs change it)."""

    request_id: str
    seq: int
    model: str
    payload: dict[str, Any]
    payload_sha256: str
    identity: str
    token_key: str
    created_at: float
    fail: bool
    clip: str
    cost: float
    url_issues: int = 0  # file URLs issued so far (the N in `n=`)
    revoked_upto: int = -1  # URLs with n <= this are refused (the `expire` fault)


@dataclass(frozen=True)
class Submission:
    """A request the emulator created, as the stats report it."""

    request_id: str
    payload_sha256: str
    identity: str
    model: str
    time: float


@dataclass(frozen=True)
class FaultRecord:
    """A fault the emulator injected."""

    kind: str
    endpoint: str
    identity: str
    call: int
    time: float
    request_id: str | None = None


@dataclass(frozen=True)
class FileHit:
    """A request for an output file: did a token come along? (status 0: dropped)"""

    path: str
    method: str
    status: int
    authorization: bool
    range: str | None
    time: float
    fault: str | None = None  # the fault injected into this answer, if any


@dataclass
class Emulator:
    """The emulator's whole state; build it from a config (or use `create_app`)."""

    config: EmulatorConfig
    requests: dict[str, Request] = field(default_factory=dict)
    submissions: list[Submission] = field(default_factory=list)
    hits: Counter[str] = field(default_factory=Counter)
    faults_injected: list[FaultRecord] = field(default_factory=list)
    file_hits: list[FileHit] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self.schedule = Schedule(self.config.slots)
        self.signer = Signer(self.config.seed)
        self._calls: Counter[tuple[str, str]] = Counter()
        self._occurrences: Counter[str] = Counter()
        self._counter = 0
        self.journal = Journal(self.config.persist_path) if self.config.persist_path else None
        if self.journal is not None:
            self._replay(self.journal.load())

    def now(self) -> float:
        """The emulator's clock."""
        return self.config.clock()

    # -- faults ---------------------------------------------------------------------------

    def decide(self, endpoint: str, identity: str, request_id: str | None = None) -> Fault | None:
        """Count this call of `identity` on `endpoint` and decide its fault (recorded)."""
        with self.lock:
            self.hits[endpoint] += 1
            call = self._calls[(endpoint, identity)]
            self._calls[(endpoint, identity)] = call + 1
            fault = self.config.faults.decide(self.config.seed, endpoint, identity, call)
            if fault is not None:
                self.record_fault(fault, request_id)
            return fault

    def record_fault(self, fault: Fault, request_id: str | None = None) -> None:
        """Note an injected fault for the stats."""
        with self.lock:
            rec = FaultRecord(
                fault.kind, fault.endpoint, fault.identity, fault.call, self.now(), request_id
            )
            self.faults_injected.append(rec)

    # -- requests -------------------------------------------------------------------------

    def next_identity(self, payload_sha256: str) -> str:
        """The identity the next acceptance of this payload will get."""
        with self.lock:
            return f"{payload_sha256}#{self._occurrences[payload_sha256]}"

    def spent(self) -> float:
        """USD of every request accepted and not cancelled (for `balance_usd`)."""
        with self.lock:
            return sum(
                r.cost
                for r in self.requests.values()
                if self.schedule.at(r.request_id, self.now()).cancelled_at is None
            )

    def create(self, model: str, payload: Mapping[str, Any], token: str) -> Request:
        """Accept a validated payload: a new request, queued now, journaled."""
        with self.lock:
            sha = canonical_sha256(payload)
            identity = self.next_identity(sha)
            # generate: the payload is the identity and its k-th acceptance the call, so
            # `fail#N` lets at most the first N renders of a payload fail.
            occurrence = self._occurrences[sha]
            gen = self.config.faults.decide(self.config.seed, "generate", sha, occurrence)
            request = Request(
                request_id=request_id_for(self.config.seed, self._counter),
                seq=self._counter,
                model=model,
                payload=dict(payload),
                payload_sha256=sha,
                identity=identity,
                token_key=token_key(token),
                created_at=self.now(),
                fail=gen is not None,
                clip=pick_clip(payload),
                cost=load_schema(model).price.estimate(dict(payload)),
            )
            if self.journal is not None:
                self.journal.append({"event": "submit", **asdict(request)})
            self._add(request)
            if gen is not None:
                self.record_fault(gen, request.request_id)
            return request

    def _add(self, r: Request) -> None:
        self._counter = max(self._counter, r.seq + 1)
        self._occurrences[r.payload_sha256] += 1
        self.requests[r.request_id] = r
        self.submissions.append(
            Submission(r.request_id, r.payload_sha256, r.identity, r.model, r.created_at)
        )
        duration = float(r.payload.get("duration", 5))
        processing = draw_render_time(self.config, duration, r.seq)
        self.schedule.add(r.request_id, r.created_at + self.config.queue_delay, processing)

    def _replay(self, events: list[dict[str, Any]]) -> None:
        fields = set(Request.__dataclass_fields__)
        for event in events:
            kind = event.get("event")
            if kind == "submit" and event.get("request_id") not in self.requests:
                self._add(Request(**{k: v for k, v in event.items() if k in fields}))
            elif kind == "cancel" and event.get("request_id") in self.requests:
                self.schedule.restore_cancel(str(event["request_id"]), float(event["at"]))

    def snapshot(self, request: Request, *, lag: float = 0.0) -> Snapshot:
        """Where the request is now (or was `lag` seconds ago)."""
        with self.lock:
            return self.schedule.at(request.request_id, self.now() - lag)

    def cancel(self, request: Request) -> bool:
        """Cancel if still queued (journaled); False when it already started."""
        with self.lock:
            now = self.now()
            if self.schedule.at(request.request_id, now).cancelled_at is not None:
                return True
            if not self.schedule.cancel(request.request_id, now):
                return False
            if self.journal is not None:
                self.journal.append(
                    {"event": "cancel", "request_id": request.request_id, "at": now}
                )
            return True

    def issue_url_query(self, request: Request, path: str) -> str:
        """A freshly signed query string for one of the request's files."""
        with self.lock:
            n = request.url_issues
            request.url_issues += 1
            return self.signer.query(path, n, self.now() + self.config.url_ttl)

    def revoke_urls(self, request: Request, upto: int) -> None:
        """Refuse every URL of this request issued as number `upto` or before."""
        with self.lock:
            request.revoked_upto = max(request.revoked_upto, upto)

    def note_file(self, hit: FileHit) -> None:
        """Record a request for an output file."""
        with self.lock:
            self.file_hits.append(hit)

    # -- introspection --------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Everything the emulator saw, as JSON-ready data (also at GET /_emulator/stats)."""
        with self.lock:
            now = self.now()
            states = {rid: self.schedule.at(rid, now).phase.value for rid in self.requests}
            return {
                "seed": self.config.seed,
                "now": now,
                "faults_plan": str(self.config.faults),
                "submissions": [asdict(s) for s in self.submissions],
                "hits": dict(sorted(self.hits.items())),
                "faults": [asdict(f) for f in self.faults_injected],
                "files": [asdict(f) for f in self.file_hits],
                "requests": [
                    {"request_id": rid, "phase": phase, "fail": self.requests[rid].fail}
                    for rid, phase in states.items()
                ],
            }
