"""`batcher emulator` as a user runs it: a real process, a real port, Ctrl-C."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

MODEL = "kling/kling-3.0/pro/text-to-video"


@contextmanager
def emulator_process(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start `batcher emulator --port 0 ARGS`, yield it and the base URL it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "batcher", "emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(timeout=30), "the emulator printed nothing within 30 s"
        line = proc.stdout.readline().strip()
        assert line.startswith("RUNCOMFY_BASE_URL=http://127.0.0.1:"), line
        yield proc, line.split("=", 1)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def test_serves_on_a_free_port_and_stops_cleanly_on_ctrl_c() -> None:
    with emulator_process("--seed", "4", "--speed", "0", "--files-host", "localhost") as (
        proc,
        base,
    ):
        port = int(base.rsplit(":", 1)[1])
        assert port > 0
        with httpx.Client(base_url=base, timeout=10) as http:
            auth = {"Authorization": "Bearer t"}
            sub = http.post(f"/v1/models/{MODEL}", json={"prompt": "fox"}, headers=auth).json()
            result = http.get(sub["result_url"], headers=auth).json()
            assert result["status"] == "succeeded"
            assert result["output"]["video"].startswith(f"http://localhost:{port}/files/")
            assert http.get(result["output"]["video"]).content[4:8] == b"ftyp"
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        out, err = proc.communicate(timeout=20)
        assert time.monotonic() - started < 10
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        assert "emulator: stopped" in err


def test_fault_flags_reach_the_server() -> None:
    with emulator_process("--fault", "429:1@submit", "--token", "sesame") as (proc, base):
        with httpx.Client(base_url=base, timeout=10) as http:
            wrong = http.get(f"/v1/models/{MODEL}", headers={"Authorization": "Bearer x"})
            assert wrong.status_code == 401 and wrong.json()["error_code"] == 400004
            resp = http.post(
                f"/v1/models/{MODEL}", json={"prompt": "x"}, headers={"Authorization": "Bearer x"}
            )
            assert resp.status_code == 429 and "retry-after" in resp.headers
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
        assert proc.returncode == 0


def test_bad_fault_spec_is_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "batcher", "emulator", "--port", "0", "--fault", "teapot:0.5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown fault kind 'teapot'" in proc.stderr
    assert proc.stdout == ""
