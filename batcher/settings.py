"""Settings read once from the environment, flags and the job file (flags win).

Invariants: nothing here runs at import time; the token is held in memory only (hidden
from repr) and is never written anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from urllib.parse import urlsplit

from batcher.client import DEFAULT_BASE_URL, Timeouts
from batcher.errors import ConfigError
from batcher.polling import PollPolicy
from batcher.retry import Backoff

EMULATOR_TOKEN = "emulator-token"
EMULATOR_BASE_URL = "http://emulator.batcher.invalid"
TOKEN_ENV = "RUNCOMFY_API_TOKEN"  # where the token comes from (and is never passed on)
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
        token = env.get(TOKEN_ENV, "").strip()
        if not token:
            raise ConfigError(TOKEN_HELP)
        return cls(base_url=url, token=token, timeouts=t)

    def check_continues(self, options: Mapping[str, object], *, run: str, moving: bool) -> None:
        """Refuse to drive a recorded run against another API than the one it started with.

        Its request ids exist only there: polled elsewhere they look expired, and the paid
        renders are lost. Only an explicit `--base-url` (`moving`) moves a remote run.
        """
        recorded = options.get("api")
        if recorded not in ("emulator", "remote"):
            return
        was_emulator = recorded == "emulator"
        then = _describe(was_emulator, options.get("base_url"))
        if was_emulator != self.emulator:
            raise ConfigError(
                f"run {run!r} was started against {then}; this command would continue it "
                f"against {_describe(self.emulator, self.base_url)}, where its requests do "
                "not exist. Continue it the way it started, or give the job file another "
                "`name:` (or use another --state); nothing was changed"
            )
        url = options.get("base_url")
        if self.emulator or moving or not isinstance(url, str):
            return
        if url.rstrip("/") != self.base_url.rstrip("/"):
            raise ConfigError(
                f"run {run!r} was started against {url} but this command uses "
                f"{self.base_url}; unset RUNCOMFY_BASE_URL, or pass --base-url "
                f"{self.base_url} to move the run on purpose; nothing was changed"
            )

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


def _describe(emulator: bool, base_url: object) -> str:
    return "the built-in emulator (--emulator)" if emulator else f"the API at {base_url}"


DEFAULT_DEADLINE = 6 * 3600.0  # seconds a request may take from submit before it is given up
# Stored option names that mean the same setting (a job file says `deadline_s:`).
ALIASES = {"deadline_s": "deadline", "max_file_size": "max_file_size_mb"}


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """Every knob of driving runs, each default written once.

    Built by `merged()` from a run's stored options (job file + flags of earlier starts)
    and this invocation's flags: flags win, then stored options, then these defaults.
    """

    concurrency: int = 8  # remote requests in flight at once
    max_cost: float | None = None  # USD budget for new submissions
    max_attempts: int = 3  # remote attempts per job (failed renders, expiries)
    on_unknown: str = "hold"  # or "resubmit"
    deadline: float = DEFAULT_DEADLINE  # seconds from submit
    poll_min: float = 1.0  # shortest poll interval (and the least delay aimed at)
    poll_max: float = 60.0  # longest poll interval
    poll_delay: float | None = None  # mean delay after a finish to aim at; None: 3% of
    #   the typical render time of its kind, at least poll_min
    backoff_base: float = 1.0  # first retry delay; doubles up to backoff_cap
    backoff_cap: float = 60.0
    retry_after_cap: float = 600.0  # never wait longer than this on a server's word
    submit_interval: float = 0.0  # minimum seconds between two POSTs
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_file_size_mb: float = 2048.0  # largest output file accepted
    download_concurrency: int = 4
    download_attempts: int = 8  # tries per file download (expired URLs are refreshed free)
    # An output file download must average at least this rate (bytes/s) on top of a fixed
    # allowance: httpx's read timeout restarts on every chunk, this bounds the whole file.
    download_min_rate: float = 64 * 1024
    download_grace: float = 120.0
    allow_hosts: tuple[str, ...] = ()  # more hosts output files may come from (hosts.py)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                flag = "--" + f.name.removesuffix("_mb").replace("_", "-")
                raise ConfigError(f"{flag} must be a finite number, not {value}")
        if self.poll_min > self.poll_max:
            raise ConfigError(
                f"the shortest poll interval ({self.poll_min:g} s, --poll-min) is longer than"
                f" the longest ({self.poll_max:g} s, --poll-max)"
            )

    @classmethod
    def merged(
        cls,
        stored: Mapping[str, object],
        flags: Mapping[str, object],
        *,
        emulator: bool = False,
    ) -> RunSettings:
        """Flags beat stored options, which beat the defaults; unknown names are ignored."""
        names = {f.name for f in fields(cls)}
        values: dict[str, object] = {}
        if emulator:  # the in-process emulator renders in a fraction of a second
            values["poll_min"] = 0.2
        for source in (stored, flags):
            for name, value in source.items():
                name = ALIASES.get(name, name)
                if name in names and value is not None:
                    values[name] = tuple(value) if isinstance(value, list | tuple) else value
        return cls(**values)  # type: ignore[arg-type]

    @property
    def backoff(self) -> Backoff:
        return Backoff(
            base=self.backoff_base, cap=self.backoff_cap, retry_after_cap=self.retry_after_cap
        )

    @property
    def poll_policy(self) -> PollPolicy:
        return PollPolicy(floor=self.poll_min, cap=self.poll_max, delay=self.poll_delay)

    @property
    def timeouts(self) -> Timeouts:
        return Timeouts(
            connect=self.connect_timeout, read=self.read_timeout, write=self.read_timeout
        )

    @property
    def max_download_bytes(self) -> int:
        return int(self.max_file_size_mb * 1024 * 1024)

    def download_deadline(self, size: int) -> float:
        """Seconds a whole file of `size` bytes may take to arrive."""
        return self.download_grace + size / self.download_min_rate
