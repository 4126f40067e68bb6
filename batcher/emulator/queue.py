"""The emulated queue: FIFO over a fixed number of slots, computed from time alone.

Nothing runs in the background. Each request has the time it becomes eligible
(submission + queue_delay) and a processing time (duration x speed); walking the requests
in submission order and giving each the earliest free slot yields its start and finish.
The state of a request at time `now` follows: queued before its start, in progress until
its finish, done after.

Invariants:
- Starts are non-decreasing in submission order (FIFO): no request overtakes another.
- Only a request still queued can be cancelled; a cancelled request never held a slot,
  so removing it cannot change anything that already happened (it only lets the requests
  behind it start sooner). The schedule is valid for any `now` at or after the latest
  cancel, which is every `now` an emulator with a monotonic clock asks about.
- Appending a request extends the schedule in O(log slots); a cancel recomputes it.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from dataclasses import dataclass
from enum import StrEnum


class Phase(StrEnum):
    """Where a request is in its life, by time."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Timing:
    """When a request starts and finishes processing."""

    start: float
    finish: float


@dataclass(frozen=True)
class Snapshot:
    """A request's phase at some time; `position` (0-based) only while queued."""

    phase: Phase
    position: int | None
    timing: Timing | None
    cancelled_at: float | None


class Schedule:
    """FIFO slots; `add` in submission order, `cancel` while queued, `at` to look."""

    def __init__(self, slots: int) -> None:
        self._slots = slots
        self._order: list[str] = []
        self._eligible: dict[str, float] = {}
        self._processing: dict[str, float] = {}
        self._cancelled: dict[str, float] = {}
        self._timing: dict[str, Timing] = {}
        self._active: list[str] = []  # not cancelled, in submission order
        self._starts: list[float] = []  # their starts (non-decreasing)
        self._index: dict[str, int] = {}  # request id -> position in _active
        self._free: list[float] = [float("-inf")] * slots  # min-heap of slot free times

    def __len__(self) -> int:
        return len(self._order)

    def add(self, request_id: str, eligible_at: float, processing: float) -> Timing:
        """Append a request; returns its start and finish."""
        if request_id in self._eligible:
            raise ValueError(f"request {request_id!r} is already scheduled")
        self._order.append(request_id)
        self._eligible[request_id] = eligible_at
        self._processing[request_id] = max(0.0, processing)
        return self._place(request_id)

    def _place(self, request_id: str) -> Timing:
        earliest = heapq.heappop(self._free)
        floor = self._starts[-1] if self._starts else float("-inf")
        start = max(self._eligible[request_id], earliest, floor)
        timing = Timing(start, start + self._processing[request_id])
        heapq.heappush(self._free, timing.finish)
        self._timing[request_id] = timing
        self._index[request_id] = len(self._active)
        self._active.append(request_id)
        self._starts.append(start)
        return timing

    def _rebuild(self) -> None:
        self._active, self._starts, self._index, self._timing = [], [], {}, {}
        self._free = [float("-inf")] * self._slots
        for request_id in self._order:
            if request_id not in self._cancelled:
                self._place(request_id)

    def cancel(self, request_id: str, now: float) -> bool:
        """Cancel a request still queued at `now`; False when it already started."""
        if request_id in self._cancelled:
            return True
        timing = self._timing[request_id]
        if timing.start <= now:
            return False
        self._cancelled[request_id] = now
        self._rebuild()
        return True

    def restore_cancel(self, request_id: str, at: float) -> None:
        """Replay a cancel recorded earlier (from a journal), without checks."""
        if request_id in self._eligible and request_id not in self._cancelled:
            self._cancelled[request_id] = at
            self._rebuild()

    def at(self, request_id: str, now: float) -> Snapshot:
        """The request's phase at `now`."""
        if request_id in self._cancelled:
            return Snapshot(Phase.CANCELLED, None, None, self._cancelled[request_id])
        timing = self._timing[request_id]
        if now < timing.start:
            started = bisect_right(self._starts, now)
            position = self._index[request_id] - started
            return Snapshot(Phase.QUEUED, position, timing, None)
        if now < timing.finish:
            return Snapshot(Phase.RUNNING, None, timing, None)
        return Snapshot(Phase.DONE, None, timing, None)
