"""Polling cost and completion-detection delay for renders of 30-60 s.

A loopback emulator (in this process, so its request timings can be read) renders each
job in 6 s per second of video; the jobs ask for 5-10 s of video, so renders take 30-60 s.
`batcher run` (a subprocess, default poll settings) drives them in two waves
(concurrency = half the jobs): the first wave has seen no render yet, the second has.

Reported: status/result requests per job, and the delay between the emulator finishing a
render and batcher noticing it (the job's move to `downloading`).

    .venv/bin/python benchmarks/bench_polling.py [--jobs 12] [--seed 1]
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from batcher.emulator import EmulatorConfig
from batcher.emulator.server import EmulatorServer

TOKEN = "bench-token"
SPEED = 6.0  # emulator seconds of work per second of video


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="bench-polling-"))
    lines = ["name: polling", "jobs:"]
    for i in range(args.jobs):
        lines += [f"  - name: clip-{i:02d}", f"    prompt: polling benchmark clip {i}",
                  f"    duration: {rng.randint(5, 10)}", "    sound: false"]
    (work / "jobs.yaml").write_text("\n".join(lines) + "\n")
    server = EmulatorServer(EmulatorConfig(speed=SPEED, slots=1000, token=TOKEN))
    server.start()
    try:
        env = dict(os.environ) | {"RUNCOMFY_BASE_URL": server.base_url,
                                  "RUNCOMFY_API_TOKEN": TOKEN}
        done = subprocess.run(
            [sys.executable, "-m", "batcher", "run", "jobs.yaml", "--state", "state.db",
             "--out", "out", "--concurrency", str(max(1, args.jobs // 2)), "--no-progress"],
            cwd=work, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        emu = server.app.emulator
        report(work, emu, args.jobs)
    finally:
        server.stop()


def report(work: Path, emu: object, n: int) -> None:
    conn = sqlite3.connect(work / "state.db")
    rows = conn.execute(
        "SELECT j.id, j.request_id, j.submitted_at, e.at FROM jobs j JOIN events e"
        " ON e.job_id = j.id AND e.to_state = 'downloading' ORDER BY j.submitted_at"
    ).fetchall()
    hits = emu.hits  # type: ignore[attr-defined]
    delays, renders = [], []
    for _, rid, submitted, noticed in rows:
        req = emu.requests[rid]  # type: ignore[attr-defined]
        finish = emu.snapshot(req).timing.finish  # type: ignore[attr-defined]
        delays.append(noticed - finish)
        renders.append(finish - submitted)
    half = len(rows) // 2
    print(f"{n} jobs, renders {min(renders):.0f}-{max(renders):.0f} s, "
          f"two waves of {half}, default poll settings")
    print(f"  status requests per job : {hits['status'] / n:.1f}")
    print(f"  result requests per job : {hits['result'] / n:.1f}")
    for name, part in (("first wave (nothing seen yet)", delays[:half]),
                       ("second wave (renders seen)", delays[half:])):
        print(f"  detection delay, {name}: mean {statistics.mean(part):.2f} s, "
              f"max {max(part):.2f} s")


if __name__ == "__main__":
    main()
