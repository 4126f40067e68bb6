"""A built-in emulator of RunComfy's Model API (runcomfy-api.md), in-process or on a port.

    from batcher.emulator import EmulatorConfig, create_app, parse_faults
    app = create_app(EmulatorConfig(seed=1, faults=parse_faults(["429:0.2"])))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://emulator")
    app.emulator.submissions   # introspection (also GET /_emulator/stats)

Invariants: the emulator follows the contract point by point; everything it decides
(request ids, faults, clips) derives from the seed and the calls made, never from a shared
random stream; time comes from the injected clock only. Module map: config (options),
faults (fault plans), queue (FIFO slots from time), state (the Emulator), api (contract
handlers), wire (request/reply values), cdn + files (signed output files), app (ASGI),
server (uvicorn), journal (persistence across processes).
"""

from __future__ import annotations

from batcher.emulator.app import ConnectionDropped, EmulatorApp, create_app
from batcher.emulator.config import VARIANTS, EmulatorConfig
from batcher.emulator.faults import (
    KINDS,
    FaultPlan,
    FaultSpec,
    FaultSpecError,
    parse_fault,
    parse_faults,
)
from batcher.emulator.state import Emulator, canonical_sha256, request_id_for

__all__ = [
    "KINDS",
    "VARIANTS",
    "ConnectionDropped",
    "Emulator",
    "EmulatorApp",
    "EmulatorConfig",
    "FaultPlan",
    "FaultSpec",
    "FaultSpecError",
    "canonical_sha256",
    "create_app",
    "parse_fault",
    "parse_faults",
    "request_id_for",
]
