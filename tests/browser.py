"""A tiny headless-chromium driver for tests: the DevTools protocol over a pipe.

Chromium is started with `--remote-debugging-pipe`, so it opens no network port: commands
go in on fd 3 and answers come out on fd 4 as NUL-terminated JSON. Nothing is downloaded;
the browser is Debian's `/usr/bin/chromium` (env `BATCHER_CHROMIUM` overrides the path).

Invariants: one reader thread owns fd 4 and routes answers (by id) and events (by session);
each page collects its console errors, uncaught exceptions, log errors and dialogs (which
it dismisses at once, so an `alert()` can never hang a test); `close()` ends only the
process this module started.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # no name resolves: loopback/file:// only
    "--remote-debugging-pipe",
)


class BrowserError(RuntimeError):
    """The browser answered with an error, died, or did not answer in time."""


def find_chromium() -> str | None:
    """The chromium executable to use (env BATCHER_CHROMIUM, else Debian's), or None."""
    chosen = os.environ.get("BATCHER_CHROMIUM")
    if chosen:
        return chosen if os.access(chosen, os.X_OK) else None
    if os.access(DEFAULT_CHROMIUM, os.X_OK):
        return DEFAULT_CHROMIUM
    return shutil.which("chromium")


class Browser:
    """One headless chromium process and the pipe that drives it."""

    def __init__(self, executable: str, profile: Path) -> None:
        cmd_read, cmd_write = os.pipe()  # we write commands, chromium reads fd 3
        out_read, out_write = os.pipe()  # chromium writes fd 4, we read

        def _wire_fds() -> None:  # in the child: put the pipe ends on fds 3 and 4
            a, b = os.dup(cmd_read), os.dup(out_write)
            os.dup2(a, 3)
            os.dup2(b, 4)

        profile.mkdir(parents=True, exist_ok=True)
        self._log = open(profile / "chromium.log", "wb")  # noqa: SIM115 (closed in close())
        self.process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            preexec_fn=_wire_fds,
            close_fds=False,
        )
        os.close(cmd_read)
        os.close(out_write)
        self._out = cmd_write
        self._in = out_read
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._answers: dict[int, dict[str, Any]] = {}
        self._listeners: dict[str, Callable[[dict[str, Any]], None]] = {}
        self._next_id = 0
        self._dead = False
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    def _read_loop(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._in, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                self._dispatch(json.loads(raw))
        with self._cond:
            self._dead = True
            self._cond.notify_all()

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message:
            with self._cond:
                self._answers[message["id"]] = message
                self._cond.notify_all()
            return
        listener = self._listeners.get(message.get("sessionId", ""))
        if listener is not None:
            listener(message)

    def post(self, method: str, params: dict[str, Any] | None = None, session: str = "") -> int:
        """Send a command without waiting for its answer; returns its id."""
        with self._lock:
            self._next_id += 1
            message: dict[str, Any] = {"id": self._next_id, "method": method}
            message["params"] = params or {}
            if session:
                message["sessionId"] = session
            os.write(self._out, json.dumps(message).encode() + b"\0")
            return self._next_id

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str = "",
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """Send a command and wait for its result."""
        number = self.post(method, params, session)
        deadline = time.monotonic() + timeout
        with self._cond:
            while number not in self._answers:
                left = deadline - time.monotonic()
                if self._dead or left <= 0:
                    raise BrowserError(f"{method}: no answer (browser gone or timed out)")
                self._cond.wait(left)
            answer = self._answers.pop(number)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def new_page(self, width: int = 1280, height: int = 900) -> Page:
        """A fresh tab with its own console and dialog records."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        page = Page(self, target, session["sessionId"])
        self._listeners[page.session] = page.on_event
        for domain in ("Page", "Runtime", "Log"):
            page.call(f"{domain}.enable")
        page.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        return page

    def close(self) -> None:
        """Close the browser (politely, then by its pid) and release the pipes."""
        if self.process.poll() is None:
            try:
                self.post("Browser.close")
                self.process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(timeout=5)
        for fd in (self._out, self._in):
            try:
                os.close(fd)
            except OSError:
                pass
        self._reader.join(timeout=5)
        self._log.close()


class Page:
    """One tab: navigate, evaluate JavaScript, screenshot; records what went wrong."""

    def __init__(self, browser: Browser, target: str, session: str) -> None:
        self.browser = browser
        self.target = target
        self.session = session
        self.errors: list[str] = []  # console errors, exceptions, error log entries
        self.dialogs: list[str] = []  # alert/confirm/prompt messages (each dismissed)
        self._loads = 0
        self._cond = threading.Condition()

    def on_event(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Page.loadEventFired":
            with self._cond:
                self._loads += 1
                self._cond.notify_all()
        elif method == "Page.javascriptDialogOpening":
            self.dialogs.append(str(params.get("message")))
            self.browser.post("Page.handleJavaScriptDialog", {"accept": False}, self.session)
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = params.get("args", [])
            self.errors.append(" ".join(str(a.get("value", a.get("description"))) for a in args))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.errors.append(str(details.get("exception", {}).get("description", details)))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            self.errors.append(str(params["entry"].get("text")))

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """A DevTools command on this tab."""
        return self.browser.send(method, params, self.session)

    def goto(self, url: str, timeout: float = 10.0) -> None:
        """Navigate and wait for the load event."""
        with self._cond:
            before = self._loads
        answer = self.call("Page.navigate", {"url": url})
        if answer.get("errorText"):
            raise BrowserError(f"navigate {url}: {answer['errorText']}")
        with self._cond:
            if not self._cond.wait_for(lambda: self._loads > before, timeout):
                raise BrowserError(f"navigate {url}: no load event within {timeout} s")

    def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises awaited), as JSON data."""
        answer = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in answer:
            raise BrowserError(f"eval failed: {answer['exceptionDetails']}")
        return answer.get("result", {}).get("value")

    def screenshot(self, path: Path, *, full_page: bool = False) -> None:
        """Save a PNG of the viewport (or of the whole page)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", params)["data"]
        path.write_bytes(base64.b64decode(data))
