"""Synthetic job records for the report tests (and the screenshot script): a factory and
one demo-like run with a sweep, a multi-shot job, failures and hostile strings.

No tests live here; files are real (tiny MP4 clips when the emulator ships some)."""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
from pathlib import Path
from typing import Any

from batcher.models import DEFAULT_MODEL, Attempt, JobRecord, JobState, OutputFile
from batcher.report.grid import value_label

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DUMMY_MP4 = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 16
CLIPS = Path(__file__).resolve().parent.parent / "batcher" / "emulator" / "clips"

SCRIPT_TAG = "<script>window.__pwned = 1; alert('pwned-1')</script>"
IMG_ONERROR = '"><img src=x onerror="window.__pwned=2;alert(\'pwned-2\')">'
SCRIPT_END = "</script><script>window.__pwned=3;alert('pwned-3')</script><!--"
UNICODE = "雪の中の狐 🦊 Ünïcødé \u2028line\u2029para\x85nel \u202eRTL"
HOSTILE_PROMPT = f"{SCRIPT_TAG} {IMG_ONERROR} {SCRIPT_END} & &amp; {UNICODE}"
LONG_PROMPT = 'A very long prompt, with commas, "quotes" and\nnewlines; ' * 200


def fingerprint(model: str, payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{model}\n{canonical}".encode()).hexdigest()


def key_for(run: str, name: str, sweep: dict[str, Any], repeat: int) -> str:
    """Keys shaped like the job file's: `run/job[/field=value,...][#n]`, copy 0 bare."""
    key = f"{run}/{name}"
    if sweep:
        key += "/" + ",".join(f"{k}={value_label(v)}" for k, v in sorted(sweep.items()))
    return key + (f"#{repeat + 1}" if repeat else "")


def clip_bytes() -> bytes:
    """A real tiny MP4 from the emulator when there is one, else a dummy MP4 header."""
    clips = sorted(CLIPS.glob("*.mp4")) if CLIPS.is_dir() else []
    return clips[0].read_bytes() if clips else DUMMY_MP4


_IDS = itertools.count(1)  # job ids are unique, as in a state database


def make_record(
    out_dir: Path | str = "/tmp/out/run",
    *,
    run: str = "run",
    name: str = "job",
    prompt: str = "A red fox trotting through fresh snow",
    payload: dict[str, Any] | None = None,
    sweep: dict[str, Any] | None = None,
    repeat: int = 0,
    state: JobState = JobState.DONE,
    error: str | None = None,
    files: tuple[str, ...] | None = None,
    write_files: bool = False,
    version: int = 1,
    current: bool = True,
    seq: int = 0,
    model: str = DEFAULT_MODEL,
) -> JobRecord:
    """A consistent JobRecord; `files` default to one `<name>.mp4` for done jobs."""
    sweep = dict(sweep or {})
    body: dict[str, Any] = {"prompt": prompt, "duration": 5, "aspect_ratio": "16:9"}
    body.update(payload or {})
    body.update(sweep)
    key = key_for(run, name, sweep, repeat)
    stem = key.split("/", 1)[1].replace("/", "__").replace("#", "__r")
    if files is None:
        files = (f"{stem}.mp4",) if state is JobState.DONE else ()
    data = clip_bytes()
    outputs = []
    for rel in files:
        if write_files:
            target = Path(out_dir) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        url = f"https://cdn.example/{seq}.mp4?sig=a&b=<c>"
        outputs.append(OutputFile(url=url, path=rel, size=len(data), sha256=digest))
    start = T0 + seq * 60
    submitted = start + 1 if state is not JobState.PENDING else None
    finished = start + 95.5 if state.terminal else None
    request_id = f"req-{seq:04d}" if submitted else None
    attempts: list[Attempt] = []
    if state is JobState.FAILED:
        attempts.append(
            Attempt(
                number=1,
                request_id=f"req-{seq:04d}a",
                submitted_at=start,
                finished_at=start + 0.5,
                outcome="failed",
                error="HTTP 503",
            )
        )
    if submitted:
        outcome = {"done": "succeeded"}.get(state.value, state.value)
        attempts.append(
            Attempt(
                number=len(attempts) + 1,
                request_id=request_id,
                submitted_at=submitted,
                finished_at=finished,
                outcome=outcome,
                error=error,
            )
        )
    return JobRecord(
        id=next(_IDS), run=run, key=key, name=name, version=version, current=current,
        model=model, fingerprint=fingerprint(model, body), payload=body, sweep=sweep,
        repeat=repeat, output_name=stem, out_dir=str(out_dir), state=state,
        request_id=request_id, attempts=tuple(attempts), error=error, outputs=tuple(outputs),
        cost=round(0.168 * int(body.get("duration", 5)), 6), created_at=start,
        submitted_at=submitted, finished_at=finished,
    )  # fmt: skip


FOX_CFG = (0.8, 0.3, 0.5)  # deliberately unsorted: the grid sorts numbers
FOX_ASPECT = ("16:9", "9:16")
SHOTS = [
    {"prompt": "Wide establishing shot over vineyard hills", "duration": 4},
    {"prompt": 'Slow dolly-in on the stone <terrace> & "table"', "duration": 4},
    {"prompt": "Crane pull-back revealing the villa at sunset", "duration": 4},
]


def sweep_run(out_dir: Path, run: str = "tuscany") -> list[JobRecord]:
    """A demo-like run whose files exist under `out_dir` (see module docstring)."""
    seq = iter(range(1000))
    common: dict[str, Any] = {"run": run, "write_files": True}
    records = [
        make_record(out_dir, name="fox", sweep={"cfg_scale": cfg, "aspect_ratio": ar},
                    repeat=rep, seq=next(seq), **common)
        for cfg in FOX_CFG for ar in FOX_ASPECT for rep in range(2)
    ]  # fmt: skip
    records += [
        make_record(out_dir, name="terrace-shots", prompt="Anniversary dinner on a terrace",
                    payload={"duration": 12, "shot_type": "customize", "multi_prompt": SHOTS},
                    seq=next(seq), **common),
        make_record(out_dir, name="terrace", prompt="Candlelit terrace dinner, old version",
                    version=1, current=False, seq=next(seq), **common),
        make_record(out_dir, name="terrace", prompt="Candlelit terrace dinner at golden hour",
                    version=2, seq=next(seq), **common),
        make_record(out_dir, name="broken", prompt="A glitching neon city", seq=next(seq),
                    state=JobState.FAILED, error="generation failed: content moderation",
                    **common),
        make_record(out_dir, name="stopped", prompt="A slow sunrise over the dunes",
                    state=JobState.CANCELLED, error="cancelled by user", seq=next(seq),
                    **common),
        make_record(out_dir, name="lost", prompt="Waves crashing on black sand",
                    state=JobState.UNKNOWN, error="read timeout after the body was sent",
                    seq=next(seq), **common),
        make_record(out_dir, name="later", prompt="Rain on a tin roof", seq=next(seq),
                    state=JobState.PENDING, **common),
        make_record(out_dir, name="hostile\"><svg onload=alert(4)>", prompt=HOSTILE_PROMPT,
                    payload={"negative_prompt": SCRIPT_END}, files=("odd dir/a b#1?.mp4",),
                    seq=next(seq), **common),
        make_record(out_dir, name="long", prompt=LONG_PROMPT, seq=next(seq), **common),
    ]  # fmt: skip
    return records


def copy_clip(target: Path) -> None:
    """Put one clip at `target` (used by tests that need a file of their own)."""
    clips = sorted(CLIPS.glob("*.mp4")) if CLIPS.is_dir() else []
    if clips:
        shutil.copyfile(clips[0], target)
    else:
        target.write_bytes(DUMMY_MP4)
