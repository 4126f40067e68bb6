"""Scale: 100,000-job nights (issue 10). Each figure is a `batcher` subprocess, timed with
its peak RSS (from wait4), interpreter start included.

    .venv/bin/python benchmarks/bench_scale.py [--jobs 100000] [--only NAME ...]

NAME: startup | load | state | edit | resume (default: all). Throughput against a plain
script is `benchmarks/bench_throughput.py --jobs N` (600, 2,000 and 16,000 in BENCHMARKS.md).

- startup: `batcher --version`, best of 5.
- load: `validate` and `plan --json` of a --jobs file in each form: one sweep, bare prompts,
  CSV rows, and jobs listed one by one in block YAML (best of 3; the highest peak RSS).
- state: a state of --jobs done jobs (one small file each, on disk, and its poster, as
  after a first report), made directly through the store; then `status`, `status --json`,
  `report --format jsonl`, `report --format csv`, `report` (html), each best of 3.
- edit: `run --emulator` of N jobs (250, 500, 1,000), then every job edited and run again;
  linear means the re-run costs about what the first run did.
- resume: 10,000 pending jobs; seconds from `resume` to its first submission.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECTIONS = ("startup", "load", "state", "edit", "resume")
HEAD = "| command | wall | peak RSS |\n|---|---|---|"


# Runs the CLI and, as it exits, writes its own peak RSS (KiB) where RSS_FILE says: a
# child's ru_maxrss seen from the parent can carry the parent's size from before exec.
_RSS_WRAPPER = (
    "import atexit, os, resource, sys\n"
    "atexit.register(lambda: open(os.environ['RSS_FILE'], 'w').write(\n"
    "    str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))\n"
    "sys.argv = ['batcher', *sys.argv[1:]]\n"
    "from batcher.cli import main\n"
    "main()\n"
)


def measure(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (MB) of `batcher ARGS`; fails loudly on a non-zero exit."""
    rss = Path(tempfile.mkstemp(prefix="rss-")[1])
    env = dict(env or os.environ) | {"RSS_FILE": str(rss)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _RSS_WRAPPER, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(
            f"batcher {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]!r}"
        )
    kib = int(rss.read_text() or 0)
    rss.unlink()
    return took, kib // 1024


def row(what: str, took: float, mb: int) -> None:
    print(f"| {what} | {took:.2f} s | {mb} MB |", flush=True)


# -- job files ------------------------------------------------------------------------------
def sweep_file(folder: Path, n: int) -> Path:
    prompts = n // 100
    lines = [
        "name: sweep",
        "jobs:",
        "  - name: fox",
        "    sweep:",
        "      prompt:",
        *[f'        - "A red fox number {i} in fresh snow"' for i in range(prompts)],
        f"      cfg_scale: {[round(i / 25, 2) for i in range(25)]}",
        '      aspect_ratio: ["16:9", "9:16"]',
        "      duration: [5, 10]",
    ]
    path = folder / "sweep.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def bare_file(folder: Path, n: int) -> Path:
    lines = ["name: bare", "jobs:", *[f'  - prompt: "Prompt number {i}"' for i in range(n)]]
    path = folder / "bare.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def rows_file(folder: Path, n: int) -> Path:
    (folder / "rows.csv").write_text(
        "name,prompt,cfg_scale\n"
        + "".join(f"r{i},Prompt number {i},0.{i % 10}\n" for i in range(n))
    )
    path = folder / "rows.yaml"
    path.write_text("name: rows\njobs:\n  - rows: rows.csv\n")
    return path


def listed_file(folder: Path, n: int) -> Path:
    lines = ["name: listed", "jobs:"]
    for i in range(n):
        lines += [
            f"  - name: job{i}",
            f'    prompt: "Prompt number {i}"',
            f"    cfg_scale: 0.{i % 10}",
            "    duration: 5",
        ]
    path = folder / "listed.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def load(work: Path, n: int) -> None:
    print(f"\n### validate / plan --json of {n:,} jobs\n\n{HEAD}")
    for make in (sweep_file, bare_file, rows_file, listed_file):
        path = make(work, n)
        size = path.stat().st_size + sum(p.stat().st_size for p in work.glob("*.csv"))
        form = f"{make.__name__.removesuffix('_file')} ({size / 2**20:.1f} MiB)"
        row(f"validate, {form}", *best(["validate", path.name], work))
        state = ["--state", str(work / "none.db")]
        row(f"plan --json, {form}", *best(["plan", path.name, "--json", *state], work))


def best(args: list[str], cwd: Path, runs: int = 3) -> tuple[float, int]:
    """The fastest of `runs` (this shared machine's speed drifts by up to a fifth over
    minutes: the best run is the one least disturbed); its wall time and the peak RSS."""
    results = [measure(args, cwd) for _ in range(runs)]
    return min(t for t, _ in results), max(mb for _, mb in results)


# -- a big state ----------------------------------------------------------------------------
def big_state(work: Path, n: int) -> Path:
    """n done jobs in one run, each with one attempt and one small file on disk."""
    from batcher.models import JobSpec, JobState
    from batcher.store import Store

    out = work / "out" / "big"
    out.mkdir(parents=True)
    path = work / "big.db"
    with Store.open(path) as store:
        store.upsert_run("big", model="kling/kling-3.0/pro/text-to-video", job_file="big.yaml",
                         out_dir=str(out), options={"api": "emulator"})  # fmt: skip
        specs = [
            JobSpec(
                run="big",
                key=f"big/job{i}",
                name=f"job{i}",
                model="kling/kling-3.0/pro/text-to-video",
                payload={"prompt": f"Prompt number {i}", "duration": 5, "cfg_scale": 0.5},
                fingerprint=f"{i:064x}",
                output_name=f"job{i}",
                cost=0.56,
            )
            for i in range(n)
        ]
        store.sync_jobs("big", specs)
    import sqlite3

    conn = sqlite3.connect(path)
    now = time.time()
    with conn:
        for i in range(n):
            (out / f"job{i}.mp4").write_bytes(b"\0\0\0\x18ftypmp42" + b"\0" * 16)
        for i in range(n):  # as after the first report: posters made (4+ ms each to make)
            (out / f"job{i}~poster.jpg").write_bytes(b"\xff\xd8\xff\xd9")
        conn.execute(
            "UPDATE jobs SET state=?, request_id='req-'||id, attempts=1, submitted_at=?,"
            " finished_at=?, cost=0.56, outputs=json_array(json_object('url',"
            " 'http://127.0.0.1/f/'||name||'.mp4', 'path', name||'.mp4', 'size', 28,"
            " 'sha256', printf('%064d', id)))",
            (JobState.DONE.value, now - 60, now),
        )
        conn.execute(
            "INSERT INTO attempts (job_id, number, request_id, submitted_at, finished_at,"
            " outcome, cost) SELECT id, 1, 'req-'||id, ?, ?, 'succeeded', 0.56 FROM jobs",
            (now - 60, now),
        )
    conn.close()
    return path


def state(work: Path, n: int) -> None:
    # Made in another process: Linux keeps a process's peak RSS across fork and exec, so a
    # big parent would inflate every child's figure.
    made = [sys.executable, __file__, "--make-state", str(work), "--jobs", str(n)]
    subprocess.run(made, check=True)
    path = work / "big.db"
    print(f"\n### commands on a state of {n:,} done jobs (best of 3)\n\n{HEAD}")
    s = ["--state", str(path)]
    row("status", *best(["status", *s], work))
    row("status --json", *best(["status", "--json", *s], work))
    row("report --format jsonl", *best(["report", "--format", "jsonl", "-o", "m.jsonl", *s], work))
    row("report --format csv", *best(["report", "--format", "csv", "-o", "m.csv", *s], work))
    row("report (html)", *best(["report", "-o", "r.html", *s], work))


# -- edits ----------------------------------------------------------------------------------
def edit(work: Path) -> None:
    print("\n### re-running after an edit of every job\n")
    print("| jobs | first run | re-run after the edit | ratio |\n|---|---|---|---|")
    for n in (250, 500, 1000):
        folder = work / f"edit{n}"
        folder.mkdir()
        args = ["run", "e.yaml", "--emulator", "--emulator-speed", "0", "--no-progress",
                "--state", "e.db", "--out", "out", "--poll-min", "0.05", "--poll-max", "0.05",
                "--concurrency", "32"]  # fmt: skip

        def write(word: str, folder: Path = folder, n: int = n) -> None:
            jobs = "".join(f"  - name: j{i}\n    prompt: {word} {i}\n" for i in range(n))
            (folder / "e.yaml").write_text("name: e\njobs:\n" + jobs)

        write("first")
        first, _ = measure(args, folder)
        write("second")
        again, _ = measure(args, folder)
        print(f"| {n} | {first:.2f} s | {again:.2f} s | {again / first:.2f}x |", flush=True)


# -- resume ---------------------------------------------------------------------------------
def resume(work: Path) -> None:
    n = 10_000
    folder = work / "resume"
    folder.mkdir()
    jobs = "".join(f"  - prompt: clip {i}\n" for i in range(n))
    (folder / "r.yaml").write_text("name: r\njobs:\n" + jobs)
    base = ["--state", "r.db", "--no-progress", "-v"]
    # --max-cost 0: the run is recorded with every job pending, nothing sent.
    subprocess.run([sys.executable, "-m", "batcher", "run", "r.yaml", "--emulator",
                    "--max-cost", "0", "--out", "out", *base], cwd=folder,
                   capture_output=True, check=False)  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "batcher", "resume", "--max-cost", "1000000", *base],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    took = None
    for line in proc.stdout:
        if " submitted " in line or "submitted" in line.split()[1:2]:
            took = time.perf_counter() - start
            break
    proc.kill()
    proc.wait()
    print(f"\n### resume with {n:,} pending\n\nfirst submission after {took:.2f} s" if took
          else "\nresume: no submission seen")  # fmt: skip


def startup(work: Path) -> None:
    best = min(measure(["--version"], work)[0] for _ in range(5))
    print(f"\n### start-up\n\n`batcher --version`: {best:.3f} s (best of 5)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--only", action="append", choices=SECTIONS)
    ap.add_argument("--make-state", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make_state is not None:
        big_state(args.make_state, args.jobs)
        return
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        for name in args.only or SECTIONS:
            if name == "startup":
                startup(work)
            elif name == "load":
                load(work, args.jobs)
            elif name == "state":
                state(work, args.jobs)
            elif name == "edit":
                edit(work)
            else:
                resume(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.pop("RUNCOMFY_API_TOKEN", None)
    main()
