"""Polling: requests per job and the delay from a render's finish to its download start.

For each render-time distribution, a loopback emulator (in this process, so its request
timings can be read) draws every render's time from it (`--render-time`, seeded), with
slots for every job, so all jobs start at once. `batcher run` (a subprocess, default poll
settings) drives the jobs twice in one state: cold (nothing known), then warm (a second
job file, same model and duration, in the same state: what the first night learnt).
In the same run, on a second emulator with the same distribution, two plain pollers ask
`/result` every 2 s (RunComfy's CLI) and every 5 s (its ComfyUI nodes), for reference.

Reported per row: requests per job (`/status` + `/result`) and the delay (mean, median,
p90) between the emulator finishing a render and batcher moving the job to `downloading`.

    .venv/bin/python benchmarks/bench_polling.py [--only u30-60] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from batcher.emulator import EmulatorConfig
from batcher.emulator.server import EmulatorServer

TOKEN = "bench-token"
MODEL = "kling/kling-3.0/pro/text-to-video"
SCENARIOS = {  # name: (render time spec, jobs)
    "u4-12": ("uniform:4:12", 40),
    "u30-60": ("uniform:30:60", 30),
    "lognormal": ("lognormal:40:0.6", 30),  # p10 ~19 s, p50 40 s, p90 ~86 s
}


@dataclass
class Row:
    name: str
    requests: float
    delays: list[float]

    def line(self) -> str:
        d = sorted(self.delays)
        p90 = d[min(len(d) - 1, int(0.9 * len(d)))]
        return (
            f"| {self.name} | {self.requests:.2f} | {statistics.mean(d):.2f} s "
            f"| {statistics.median(d):.2f} s | {p90:.2f} s |"
        )


def job_file(path: Path, name: str, n: int) -> None:
    lines = [f"name: {name}", "jobs:"]
    for i in range(n):
        lines += [
            f"  - name: {name}-{i:03d}",
            f"    prompt: {name} polling clip {i}",
            "    duration: 5",
        ]
    path.write_text("\n".join(lines) + "\n")


def batcher_night(work: Path, server: EmulatorServer, name: str, n: int) -> Row:
    emu = server.app.emulator
    before = emu.hits["status"] + emu.hits["result"]
    known = set(emu.requests)
    job_file(work / f"{name}.yaml", name, n)
    env = dict(os.environ) | {"RUNCOMFY_BASE_URL": server.base_url, "RUNCOMFY_API_TOKEN": TOKEN}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "batcher",
            "run",
            f"{name}.yaml",
            "--state",
            "state.db",
            "--out",
            "out",
            "--concurrency",
            str(n),
            "--no-progress",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    asked = emu.hits["status"] + emu.hits["result"] - before
    conn = sqlite3.connect(work / "state.db")
    rows = conn.execute(
        "SELECT j.request_id, e.at FROM jobs j JOIN events e"
        " ON e.job_id = j.id AND e.to_state = 'downloading' WHERE j.run = ?",
        (name,),
    ).fetchall()
    conn.close()
    delays = []
    for rid, noticed in rows:
        assert rid not in known
        timing = emu.snapshot(emu.requests[rid]).timing
        delays.append(noticed - timing.finish)
    return Row(name, asked / n, delays)


async def fixed_poller(base: str, n: int, every: float, tag: str) -> tuple[float, dict[str, float]]:
    """Submit n jobs, then ask /result of each every `every` seconds (a plain script)."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    fresh = httpx.Limits(max_keepalive_connections=0)  # no race with the server's idle close
    async with httpx.AsyncClient(base_url=base, headers=auth, timeout=30, limits=fresh) as http:
        ids = []
        for i in range(n):
            body = {"prompt": f"{tag} reference clip {i}", "duration": 5}
            answer = await http.post(f"/v1/models/{MODEL}", json=body)
            ids.append(answer.json()["request_id"])
        asked, noticed = 0, {}  # request id -> when its end was seen

        async def follow(rid: str) -> None:
            nonlocal asked
            while True:
                await asyncio.sleep(every)
                asked += 1
                status = (await http.get(f"/v1/requests/{rid}/result")).json()["status"]
                if status not in ("in_queue", "in_progress"):
                    noticed[rid] = time.time()
                    return

        await asyncio.gather(*(follow(rid) for rid in ids))
    return asked / n, noticed


def reference(server: EmulatorServer, n: int, every: float) -> Row:
    asked, noticed = asyncio.run(fixed_poller(server.base_url, n, every, f"every-{every}"))
    emu = server.app.emulator
    delays = [t - emu.snapshot(emu.requests[rid]).timing.finish for rid, t in noticed.items()]
    return Row(f"fixed {every:g} s poll (reference)", asked, delays)


def scenario(name: str, spec: str, n: int, seed: int) -> list[Row]:
    config = EmulatorConfig(seed=seed, render_time=spec, slots=10_000, token=TOKEN)
    ours, theirs = (
        EmulatorServer(config),
        EmulatorServer(EmulatorConfig(seed=seed + 1, render_time=spec, slots=10_000, token=TOKEN)),
    )
    ours.start()
    theirs.start()
    refs: list[Row] = []
    try:

        def run_refs() -> None:
            for every in (2.0, 5.0):
                refs.append(reference(theirs, n, every))

        thread = threading.Thread(target=run_refs)
        thread.start()
        work = Path(tempfile.mkdtemp(prefix=f"bench-polling-{name}-"))
        cold = batcher_night(work, ours, "cold", n)
        cold.name = "batcher, cold (nothing known)"
        warm = batcher_night(work, ours, "warm", n)
        warm.name = "batcher, warm (second run, same state)"
        thread.join()
    finally:
        ours.stop()
        theirs.stop()
    return [cold, warm, *refs]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=sorted(SCENARIOS), action="append")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    for name in args.only or list(SCENARIOS):
        spec, n = SCENARIOS[name]
        rows = scenario(name, spec, n, args.seed)
        print(f"\n{name}: render times {spec}, {n} jobs started at once")
        print("| poller | requests per job | delay mean | median | p90 |")
        print("|---|---|---|---|---|")
        for row in rows:
            print(row.line())
        sys.stdout.flush()


if __name__ == "__main__":
    main()
