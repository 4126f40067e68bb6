"""Fault plans: which fault, if any, the emulator injects into one call.

Spec syntax (command line `--fault`, or `parse_faults`):

    KIND[:RATE[:PARAM]][@ENDPOINT[,ENDPOINT...]][#N]

RATE is a probability in [0, 1] (default 1), PARAM a number whose meaning depends on the
kind, `@...` narrows the endpoints the kind applies to, `#N` limits it to the first N calls
per identity and endpoint (so `5xx#1` fails every first try and lets the retry through).

Invariants:
- A decision is a pure function of (seed, kind, endpoint, identity, call number): there is
  no shared random stream, so the same seed injects the same fault into the same call of
  the same request whatever the interleaving of concurrent clients.
- At most one fault per call: the first spec (in plan order) that fires wins.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass

API_ENDPOINTS = frozenset({"submit", "status", "result", "cancel", "model"})
ENDPOINTS = API_ENDPOINTS | {"files", "generate"}


@dataclass(frozen=True)
class KindInfo:
    """What a fault kind does, where it may apply, and what its PARAM means."""

    endpoints: frozenset[str]
    param: str  # human description of PARAM ("" when the kind takes none)
    default_param: float | None = None
    default_first: int | None = None


_ALL = API_ENDPOINTS | {"files"}
KINDS: dict[str, KindInfo] = {
    "429": KindInfo(API_ENDPOINTS, "Retry-After seconds", 1.0),
    "5xx": KindInfo(_ALL, "status code (500, 502 or 503; default: picked by hash)"),
    "drop": KindInfo(_ALL, ""),
    "slow": KindInfo(_ALL, "delay in seconds", 1.0),
    "error-200": KindInfo(API_ENDPOINTS, "error_code carried by the 200 body", 500001.0),
    "balance": KindInfo(frozenset({"submit"}), ""),
    "accept-5xx": KindInfo(frozenset({"submit"}), ""),
    "accept-drop": KindInfo(frozenset({"submit"}), ""),
    "no-request-id": KindInfo(frozenset({"submit"}), ""),
    "fail": KindInfo(frozenset({"generate"}), ""),
    "truncate": KindInfo(frozenset({"files"}), "fraction of the bytes sent", 0.5),
    "expire": KindInfo(frozenset({"files"}), "", None, 1),
}


class FaultSpecError(ValueError):
    """A fault spec that cannot be parsed (the message says why)."""


@dataclass(frozen=True)
class FaultSpec:
    """One kind of fault, its rate, its parameter and where it applies."""

    kind: str
    rate: float = 1.0
    param: float | None = None
    endpoints: frozenset[str] = frozenset()  # empty: the kind's default endpoints
    first: int | None = None  # only the first N calls per identity and endpoint

    def __post_init__(self) -> None:
        info = KINDS.get(self.kind)
        if info is None:
            raise FaultSpecError(f"unknown fault kind {self.kind!r} (known: {', '.join(KINDS)})")
        if not 0.0 <= self.rate <= 1.0:
            raise FaultSpecError(f"{self.kind}: rate must be within 0..1, got {self.rate}")
        wrong = self.endpoints - info.endpoints
        if wrong:
            raise FaultSpecError(
                f"{self.kind}: does not apply to {', '.join(sorted(wrong))} "
                f"(applies to: {', '.join(sorted(info.endpoints))})"
            )
        if self.first is not None and self.first < 1:
            raise FaultSpecError(f"{self.kind}: #N must be at least 1")

    @property
    def where(self) -> frozenset[str]:
        """The endpoints this spec applies to."""
        return self.endpoints or KINDS[self.kind].endpoints

    @property
    def value(self) -> float | None:
        """PARAM, or the kind's default."""
        return self.param if self.param is not None else KINDS[self.kind].default_param

    @property
    def limit(self) -> int | None:
        """#N, or the kind's default limit."""
        return self.first if self.first is not None else KINDS[self.kind].default_first

    def __str__(self) -> str:
        text = f"{self.kind}:{self.rate:g}"
        if self.param is not None:
            text += f":{self.param:g}"
        if self.endpoints:
            text += "@" + ",".join(sorted(self.endpoints))
        if self.first is not None:
            text += f"#{self.first}"
        return text


@dataclass(frozen=True)
class Fault:
    """A fault decided for one call; `aux` is a second hash in [0, 1) for sub-choices."""

    kind: str
    endpoint: str
    identity: str
    call: int
    param: float | None
    aux: float


def unit(seed: int, *parts: object) -> float:
    """A number in [0, 1) derived from the seed and the parts only (no shared state)."""
    text = "\x00".join([str(seed), *(str(p) for p in parts)])
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass(frozen=True)
class FaultPlan:
    """An ordered list of fault specs; the default plan injects nothing."""

    specs: tuple[FaultSpec, ...] = ()

    def decide(self, seed: int, endpoint: str, identity: str, call: int) -> Fault | None:
        """The fault for the `call`-th (0-based) call of `identity` on `endpoint`, if any."""
        for spec in self.specs:
            if endpoint not in spec.where:
                continue
            limit = spec.limit
            if limit is not None and call >= limit:
                continue
            if unit(seed, spec.kind, endpoint, identity, call) < spec.rate:
                aux = unit(seed, spec.kind, endpoint, identity, call, "aux")
                return Fault(spec.kind, endpoint, identity, call, spec.value, aux)
        return None

    def __str__(self) -> str:
        return " ".join(str(s) for s in self.specs) or "none"


def _number(text: str, what: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FaultSpecError(f"{spec!r}: {what} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise FaultSpecError(f"{spec!r}: {what} must be finite")
    return value


def parse_fault(text: str) -> FaultSpec:
    """One spec: `KIND[:RATE[:PARAM]][@ENDPOINT[,ENDPOINT...]][#N]`."""
    rest = text.strip()
    first: int | None = None
    if "#" in rest:
        rest, _, n = rest.partition("#")
        if not n.isdigit():
            raise FaultSpecError(f"{text!r}: #N must be a whole number, got {n!r}")
        first = int(n)
    endpoints: frozenset[str] = frozenset()
    if "@" in rest:
        rest, _, eps = rest.partition("@")
        endpoints = frozenset(e.strip() for e in eps.split(",") if e.strip())
        unknown = endpoints - ENDPOINTS
        if unknown or not endpoints:
            raise FaultSpecError(
                f"{text!r}: unknown endpoint(s) {', '.join(sorted(unknown)) or '(none)'} "
                f"(known: {', '.join(sorted(ENDPOINTS))})"
            )
    kind, *numbers = rest.split(":")
    if len(numbers) > 2:
        raise FaultSpecError(f"{text!r}: expected KIND[:RATE[:PARAM]]")
    rate = _number(numbers[0], "RATE", text) if numbers else 1.0
    param = _number(numbers[1], "PARAM", text) if len(numbers) > 1 else None
    return FaultSpec(kind.strip(), rate, param, endpoints, first)


def parse_faults(texts: Iterable[str]) -> FaultPlan:
    """A plan from several specs, in the order given."""
    return FaultPlan(tuple(parse_fault(t) for t in texts))
