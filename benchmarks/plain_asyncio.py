"""Baseline for bench_throughput: the same work as `batcher run`, with no durability.

Plain asyncio + httpx: submit every payload within a concurrency limit, poll status at a
fixed interval, fetch the result and download the file. No state database, no sidecars,
no verification, no retries: the least a script can do to get the videos.

    python benchmarks/plain_asyncio.py BASE_URL TOKEN PAYLOADS.json OUT_DIR CONCURRENCY POLL
        [POOL]

POOL: `httpx` (default: httpx's own connection pool) or `batcher` (batcher's pool from
`batcher.connections`, so the difference left is what batcher's durability costs).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import httpx

MODEL = "kling/kling-3.0/pro/text-to-video"


async def one(
    http: httpx.AsyncClient,
    files: httpx.AsyncClient,
    base: str,
    payload: dict[str, object],
    out: Path,
    poll: float,
) -> None:
    sub = (await http.post(f"{base}/v1/models/{MODEL}", json=payload)).json()
    rid = sub["request_id"]
    while True:
        await asyncio.sleep(poll)
        st = (await http.get(f"{base}/v1/requests/{rid}/status")).json()
        if st["status"] in ("completed", "succeeded"):
            break
    res = (await http.get(f"{base}/v1/requests/{rid}/result")).json()
    url = res["output"]["video"]
    data = (await files.get(url)).content
    (out / f"{rid}.mp4").write_bytes(data)


async def main(
    base: str,
    token: str,
    payloads: list[dict[str, object]],
    out: Path,
    concurrency: int,
    poll: float,
    pool: str = "httpx",
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    limit = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
    if pool == "batcher":
        from batcher.connections import pooled_client

        def client(**options: object) -> httpx.AsyncClient:
            return pooled_client(limits, timeout=60, **options)
    else:

        def client(**options: object) -> httpx.AsyncClient:
            return httpx.AsyncClient(limits=limits, timeout=60, **options)  # type: ignore[arg-type]

    async with client(headers=headers) as http, client() as files:

        async def guarded(p: dict[str, object]) -> None:
            async with limit:
                await one(http, files, base, p, out, poll)

        await asyncio.gather(*(guarded(p) for p in payloads))


if __name__ == "__main__":
    base_url, tok, path, out_dir, conc, interval = sys.argv[1:7]
    which = sys.argv[7] if len(sys.argv) > 7 else "httpx"
    asyncio.run(
        main(
            base_url,
            tok,
            json.loads(Path(path).read_text()),
            Path(out_dir),
            int(conc),
            float(interval),
            which,
        )
    )
