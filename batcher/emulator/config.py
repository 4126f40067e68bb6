"""EmulatorConfig: every knob of the emulator in one frozen value.

Invariants: a config is validated when built (a bad value raises ValueError at once, not
on the first request); the clock and sleep are injected so tests move time without
sleeping; nothing here reads the environment.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from batcher.emulator.faults import FaultPlan

# Behaviours the contract leaves open; `status_variant` combines any of them ("a,b").
VARIANTS: dict[str, str] = {
    "documented": "the documented behaviour (default)",
    "succeeded": "the status endpoint says `succeeded` instead of `completed`",
    "canceled": "`canceled` (one l) instead of `cancelled` in status, result and cancel",
    "failed-status": "the status endpoint says `failed` for a failed render (not documented:"
    " by default it says `completed`, and only /result says `failed`)",
    "error-status": "the status endpoint says `error` for a failed render",
    "error-object": "a failed result's `error` is an object {type, message}, not a string",
    "videos": "a result's output is `{videos: [URL]}` instead of `{video: URL}`",
    "cancellation-requested": "cancel answers `outcome: cancellation_requested`",
    "message-key": "error bodies carry `message` instead of `error_message`",
    "no-queue-position": "`in_queue` status answers carry no `queue_position`",
}


@dataclass(frozen=True, kw_only=True)
class EmulatorConfig:
    """How the emulator behaves; see docs/emulator.md for every option."""

    seed: int = 0  # request ids and fault decisions derive from it
    faults: FaultPlan = field(default_factory=FaultPlan)
    speed: float = 0.02  # seconds of processing per second of video
    queue_delay: float = 0.0  # extra seconds each request waits in the queue
    slots: int = 4  # requests processed at once (FIFO)
    token: str | None = None  # None: any non-empty bearer token is accepted
    url_ttl: float = 3600.0  # signed file URLs expire after this many seconds
    files_base_url: str | None = None  # None: file URLs on the API request's origin
    status_variant: str = "documented"  # comma-separated names from VARIANTS
    persist_path: Path | str | None = None  # append-only journal of requests (JSON lines)
    balance_usd: float | None = None  # None: unlimited; else 402/400002 once spent
    result_lag: float = 0.0  # /result shows each request as it was this many seconds ago
    spread: float = 0.25  # lognormal sigma of render times around duration x speed
    render_time: str = ""  # overrides speed and spread: uniform:LO:HI, lognormal:MEDIAN:SIGMA
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep  # used by the `slow` fault

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ValueError(f"slots must be at least 1, got {self.slots}")
        if self.speed < 0 or self.queue_delay < 0 or self.result_lag < 0:
            raise ValueError("speed, queue_delay and result_lag must not be negative")
        timings = (self.speed, self.spread, self.queue_delay, self.result_lag, self.url_ttl)
        if not all(math.isfinite(x) for x in timings):
            raise ValueError("speed, spread, queue_delay, result_lag and url_ttl must be finite")
        if self.spread < 0:
            raise ValueError(f"spread must not be negative, got {self.spread}")
        parse_render_time(self.render_time)  # raises ValueError on a bad spec
        if self.url_ttl < 0:
            raise ValueError(f"url_ttl must not be negative, got {self.url_ttl}")
        if self.token is not None and not self.token.strip():
            raise ValueError("token must not be empty (use None to accept any token)")
        unknown = self.variants - set(VARIANTS)
        if unknown:
            raise ValueError(
                f"unknown status variant(s) {', '.join(sorted(unknown))} "
                f"(known: {', '.join(VARIANTS)})"
            )
        if self.files_base_url is not None and not self.files_base_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError(f"files_base_url must be an http(s) URL: {self.files_base_url!r}")

    @property
    def variants(self) -> frozenset[str]:
        """The variant names in `status_variant` ("documented" adds nothing)."""
        names = {v.strip() for v in self.status_variant.split(",") if v.strip()}
        return frozenset(names)

    def has(self, variant: str) -> bool:
        """True when `variant` is switched on."""
        return variant in self.variants


RENDER_TIMES = ("uniform:LO:HI", "lognormal:MEDIAN:SIGMA", "fixed:SECONDS")


def parse_render_time(spec: str) -> tuple[str, float, float] | None:
    """`uniform:30:60` -> ("uniform", 30, 60); "" -> None (duration x speed, with spread)."""
    if not spec.strip():
        return None
    kind, _, rest = spec.strip().partition(":")
    try:
        numbers = [float(x) for x in rest.split(":")] if rest else []
    except ValueError:
        numbers = []
    want = {"uniform": 2, "lognormal": 2, "fixed": 1}.get(kind)
    finite = all(math.isfinite(n) for n in numbers)
    if want is None or len(numbers) != want or not finite or any(n < 0 for n in numbers):
        raise ValueError(f"render time {spec!r}: expected one of {', '.join(RENDER_TIMES)}")
    if kind == "uniform" and numbers[0] > numbers[1]:
        raise ValueError(f"render time {spec!r}: LO must not exceed HI")
    a = numbers[0]
    return kind, a, numbers[1] if want == 2 else a


def draw_render_time(config: EmulatorConfig, duration: float, seq: int) -> float:
    """Seconds of processing for the `seq`-th request: seeded, so a replay draws the same."""
    rng = random.Random(f"batcher-emulator-render\x00{config.seed}\x00{seq}")
    spec = parse_render_time(config.render_time)
    if spec is None:
        typical = duration * config.speed
        return typical * math.exp(rng.gauss(0.0, config.spread)) if config.spread else typical
    kind, a, b = spec
    if kind == "uniform":
        return rng.uniform(a, b)
    if kind == "lognormal":
        return a * math.exp(rng.gauss(0.0, b))
    return a
