"""Settings read once from the environment, flags and the job file (flags win).

Invariants: nothing here runs at import time; the token is held in memory only (hidden
from repr) and is never written anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from batcher.client import DEFAULT_BASE_URL, Timeouts
from batcher.errors import ConfigError

EMULATOR_TOKEN = "emulator-token"
EMULATOR_BASE_URL = "http://emulator.batcher.invalid"
TOKEN_HELP = (
    "RUNCOMFY_API_TOKEN is not set. Create a token in your RunComfy profile "
    "(runcomfy.com → Profile → API Keys), then `export RUNCOMFY_API_TOKEN=...`; "
    "or try everything offline first with `--emulator`."
)


@dataclass(frozen=True, kw_only=True)
class ApiSettings:
    """Where and how to reach the API."""

    base_url: str
    token: str = field(repr=False)
    emulator: bool = False
    timeouts: Timeouts = field(default_factory=Timeouts)

    @classmethod
    def resolve(
        cls,
        env: Mapping[str, str],
        *,
        emulator: bool,
        base_url: str | None = None,
        timeouts: Timeouts | None = None,
    ) -> ApiSettings:
        """From flags and the environment; a clear error when the token is missing."""
        t = timeouts or Timeouts()
        if emulator:
            return cls(base_url=EMULATOR_BASE_URL, token=EMULATOR_TOKEN, emulator=True, timeouts=t)
        url = (base_url or env.get("RUNCOMFY_BASE_URL") or DEFAULT_BASE_URL).strip()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"RUNCOMFY_BASE_URL must be an http(s) URL, got {url!r}")
        token = env.get("RUNCOMFY_API_TOKEN", "").strip()
        if not token:
            raise ConfigError(TOKEN_HELP)
        return cls(base_url=url, token=token, timeouts=t)

    @classmethod
    def for_run(
        cls,
        env: Mapping[str, str],
        options: Mapping[str, object],
        *,
        base_url: str | None,
        timeouts: Timeouts | None = None,
        run: str = "",
    ) -> ApiSettings:
        """Settings to continue a recorded run: same API as it started with.

        Its requests live at the base URL it was started against; polling another server
        would make them look expired. `--base-url` (explicit) moves a run on purpose.
        """
        if options.get("api") == "emulator":
            return cls.resolve(env, emulator=True, timeouts=timeouts)
        recorded = options.get("base_url")
        if base_url is None and isinstance(recorded, str):
            env_url = env.get("RUNCOMFY_BASE_URL", "").strip()
            if env_url and env_url.rstrip("/") != recorded.rstrip("/"):
                raise ConfigError(
                    f"run {run!r} was started against {recorded} but RUNCOMFY_BASE_URL is "
                    f"{env_url}; unset it, or pass --base-url {env_url} to move the run on "
                    "purpose"
                )
            base_url = recorded
        return cls.resolve(env, emulator=False, base_url=base_url, timeouts=timeouts)
