"""Durability overhead: `batcher run` vs a plain asyncio+httpx script (plain_asyncio.py).

Both drive the same N zero-latency jobs through a fresh `batcher emulator` on loopback
(speed 0: a request is done as soon as it is accepted), with the same concurrency and poll
interval, and download every file. batcher also commits every transition to SQLite,
writes sidecars, verifies and renames each file. Goal: batcher <= 1.3x the plain time.
A second reference, the same plain script over batcher's connection pool, shows what the
durability alone costs (batcher's own pool is much cheaper than httpx's; see
batcher/connections.py).

    .venv/bin/python benchmarks/bench_throughput.py [--jobs 2000] [--concurrency 64]
        [--poll 0.05] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOKEN = "bench-token"


@contextmanager
def emulator() -> Iterator[str]:
    """A fresh loopback emulator in its own process; yields its base URL."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batcher",
            "emulator",
            "--port",
            "0",
            "--speed",
            "0",
            "--slots",
            "100000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("RUNCOMFY_BASE_URL="), line
        yield line.split("=", 1)[1]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(
            f"{cmd[:4]} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--poll", type=float, default=0.05)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    rows = [
        {
            "name": f"job-{i:05d}",
            "prompt": f"benchmark prompt number {i}",
            "duration": 5,
            "sound": False,
        }
        for i in range(args.jobs)
    ]
    (work / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (work / "bench.yaml").write_text("name: bench\njobs:\n  - rows: rows.jsonl\n")
    payloads = [{k: v for k, v in r.items() if k != "name"} for r in rows]
    (work / "payloads.json").write_text(json.dumps(payloads))
    times: dict[str, list[float]] = {"plain": [], "plain+pool": [], "batcher": []}
    for i in range(args.repeat):
        for what in times:
            for leftover in ("out", "state"):
                shutil.rmtree(work / leftover, ignore_errors=True)
            with emulator() as url:
                env = dict(os.environ) | {"RUNCOMFY_BASE_URL": url, "RUNCOMFY_API_TOKEN": TOKEN}
                if what.startswith("plain"):
                    cmd = [
                        sys.executable,
                        str(HERE / "plain_asyncio.py"),
                        url,
                        TOKEN,
                        "payloads.json",
                        "out",
                        str(args.concurrency),
                        str(args.poll),
                        "batcher" if what == "plain+pool" else "httpx",
                    ]
                else:
                    cmd = [
                        sys.executable,
                        "-m",
                        "batcher",
                        "run",
                        "bench.yaml",
                        "--state",
                        "state/b.db",
                        "--out",
                        "out",
                        "--concurrency",
                        str(args.concurrency),
                        "--poll-min",
                        str(args.poll),
                        "--poll-max",
                        str(args.poll),
                        "--no-progress",
                    ]
                times[what].append(timed(cmd, env, work))
            files = len(list((work / "out").rglob("*.mp4")))
            assert files == args.jobs, f"{what}: {files} files, expected {args.jobs}"
            print(f"round {i + 1}: {what:<10} {times[what][-1]:.2f} s", flush=True)
    p, q, b = (statistics.median(times[what]) for what in times)
    print(
        f"\n{args.jobs} jobs, concurrency {args.concurrency}, poll {args.poll} s, "
        f"median of {args.repeat}:"
    )
    print(f"  plain asyncio+httpx            : {p:.2f} s")
    print(f"  plain, over batcher's pool     : {q:.2f} s")
    print(f"  batcher (durable)              : {b:.2f} s")
    print(f"  ratio to plain                 : {b / p:.2f}x (goal <= 1.30x)")
    print(f"  ratio to plain over its pool   : {b / q:.2f}x (durability alone)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
