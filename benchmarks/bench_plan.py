"""How long `batcher plan FILE --json` takes on a 10,000-job sweep (target: < 3 s).

Writes a job file whose sweep expands to 10,000 distinct payloads (100 prompts x 25
cfg_scale values x 2 aspect ratios x 2 durations) plus a second file of 10,000 jobs
listed one by one, then times, best of 3:
- `batcher plan FILE --json` end to end, in a subprocess (interpreter start included);
- `load_jobfile(FILE)` alone, in this process.

Run: .venv/bin/python benchmarks/bench_plan.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from batcher.jobfile import load_jobfile  # noqa: E402

TARGET_S = 3.0
ROUNDS = 3


def sweep_file(folder: Path) -> Path:
    prompts = [f"A red fox number {i} trotting through fresh snow, {{camera}}" for i in range(100)]
    cfgs = [round(i / 25, 2) for i in range(25)]
    lines = [
        "name: bench-sweep",
        "vars:",
        '  camera: "shot on Arri Alexa 35"',
        "defaults:",
        "  sound: true",
        '  negative_prompt: "blur, watermark"',
        "jobs:",
        "  - name: fox",
        "    sweep:",
        "      prompt:",
        *[f'        - "{p}"' for p in prompts],
        f"      cfg_scale: {cfgs}",
        '      aspect_ratio: ["16:9", "9:16"]',
        "      duration: [5, 10]",
    ]
    path = folder / "sweep.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def listed_file(folder: Path) -> Path:
    lines = ["name: bench-listed", "jobs:"]
    for i in range(10_000):
        lines += [
            f"  - name: job{i}",
            f'    prompt: "Prompt number {i}"',
            f"    cfg_scale: 0.{i % 10}",
        ]
    path = folder / "listed.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def best_of(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def plan_cli(path: Path, state: Path) -> None:
    cmd = [sys.executable, "-m", "batcher", "plan", str(path), "--json", "--state", str(state)]
    done = subprocess.run(cmd, capture_output=True, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"plan failed: {done.stderr.decode()[:2000]}")
    if done.stdout.count(b'"key"') != 10_000:
        raise SystemExit("plan did not list 10,000 jobs")


def main() -> int:
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        state = folder / "absent.db"  # plan must not create it
        for make in (sweep_file, listed_file):
            path = make(folder)
            jobs = len(load_jobfile(path).jobs)
            load = best_of(lambda p=path: load_jobfile(p))  # type: ignore[misc]
            cli = best_of(lambda p=path: plan_cli(p, state))  # type: ignore[misc]
            worst = max(worst, cli)
            print(f"{path.name}: {jobs} jobs; load_jobfile {load:.2f} s; plan --json {cli:.2f} s")
        if state.exists():
            print("FAIL: plan created the state database")
            return 1
    verdict = "ok" if worst < TARGET_S else "SLOW"
    print(f"best of {ROUNDS}; target < {TARGET_S:.0f} s end to end: {verdict}")
    return 0 if worst < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
