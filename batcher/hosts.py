"""Which hosts output files may be fetched from (pure: URL text in, a reason out).

A result names its files by URL, and batcher fetches them: a server that is wrong, or
not RunComfy, must not make it fetch from anywhere (cloud metadata at 169.254.169.254, a
printer on the LAN). As RunComfy's own CLI does, files come only from:
- the API's own host, and RunComfy's storage (`*.runcomfy.net`), by default;
- hosts the user allows on purpose (`--allow-host HOST`, `*.example.com` for a domain);
- over https; plain http only to a loopback address (the emulator, local test servers),
  or to the API's own host when the API itself was given as http (the user chose it).
Every redirect is held to the same rule (the files client checks each request it sends).
A private, link-local or otherwise special address is never allowed by a pattern: only
by being the API's host or named exactly.

Ports do not matter (a host is a host); names compare without case or a trailing dot.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

RUNCOMFY_STORAGE = "*.runcomfy.net"


@dataclass(frozen=True)
class HostPolicy:
    """The hosts output files may come from."""

    api_host: str
    allowed: tuple[str, ...] = (RUNCOMFY_STORAGE,)
    api_http: bool = False  # the API was given as plain http: its own files may be too

    @classmethod
    def for_api(cls, base_url: str, extra: tuple[str, ...] = ()) -> HostPolicy:
        parts = urlsplit(base_url)
        host = _norm(parts.hostname or "")
        return cls(host, (RUNCOMFY_STORAGE, *extra), api_http=parts.scheme.lower() == "http")

    def allows_host(self, host: str) -> bool:
        """Whether files may come from `host` at all (over https)."""
        return self.refusal(f"https://{host}/") is None

    def refusal(self, url: str) -> str | None:
        """Why `url` may not be fetched, or None when it may."""
        try:
            parts = urlsplit(url)
            host = _norm(parts.hostname or "")
        except ValueError:
            return f"not a usable URL: {url[:200]}"
        if not host:
            return f"no host in {url[:200]}"
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http"):
            return f"{scheme or 'no'} scheme in {url[:200]} (https only)"
        if (
            scheme == "http"
            and not _loopback(host)
            and not (self.api_http and host == self.api_host)
        ):
            return f"plain http to {host} (https only, except to a loopback address)"
        if host == self.api_host or any(_norm(p) == host for p in self.allowed):
            return None
        special = _special(host)
        if special is None and any(_matches(p, host) for p in self.allowed):
            return None
        what = f"a {special} address" if special else "not an allowed host"
        allowed = ", ".join(dict.fromkeys((self.api_host, *self.allowed)))
        return (
            f"output file host {host} is {what} (allowed: {allowed}); "
            f"`--allow-host {host}` fetches from it"
        )


def _norm(host: str) -> str:
    return host.lower().rstrip(".")


def _matches(pattern: str, host: str) -> bool:
    pattern = _norm(pattern)
    if pattern.startswith("*."):
        domain = pattern[2:]
        return host == domain or host.endswith("." + domain)
    return host == pattern


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    ip = _address(host)
    return ip is not None and ip.is_loopback


def _special(host: str) -> str | None:
    """What kind of special address `host` is ("link-local", "private"...), if it is one."""
    ip = _address(host)
    if ip is None:
        return "loopback" if host == "localhost" else None
    for kind, test in (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("private", ip.is_private),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved or ip.is_unspecified),
    ):
        if test:
            return kind
    return None
