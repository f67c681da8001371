"""Load generator (its own process): POST /api/v1/chat COUNT times with CONCURRENCY in flight.

Run: `.venv/bin/python -m bench.load --url http://127.0.0.1:P --count 3000 --concurrency 1
[--stream] [--token T] [--warmup 200] [--sessions 50] [--max-seconds 60] [--api openai]`.
Request i (warm-up first, then measured) sends `{"text": "bench message i", "session":
"bench-<i mod sessions>"}`, so the run is deterministic. With `--api openai` it is
`POST /v1/chat/completions` with `{"model": "open-clanker", "messages": [{"role": "user",
"content": "bench message i"}]}` and `X-Session-Key: bench-<i mod sessions>` (the same
sessions, so the same history work; `--api openai-stateless` sends no session header). Streamed
answers are read to the end and must contain the final `done` event (gateway) or
`data: [DONE]` (floor, and the OpenAI route). `--api alternate` sends even requests to
/api/v1/chat and odd ones to the OpenAI route (with the session header), so both meet the same
machine at the same moment; `by_api` then has each route's latencies. Prints one JSON object:
count, errors, elapsed_s, rps, p50/p90/p99/max latency in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import aiohttp


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def stats(latencies: list[float]) -> dict[str, float | int | None]:
    ok = len(latencies)
    return {
        "ok": ok,
        "p50_ms": round(statistics.median(latencies), 3) if ok else None,
        "p90_ms": round(percentile(latencies, 0.90), 3) if ok else None,
        "p99_ms": round(percentile(latencies, 0.99), 3) if ok else None,
        "max_ms": round(max(latencies), 3) if ok else None,
        "mean_ms": round(statistics.fmean(latencies), 3) if ok else None,
    }


async def run(args: argparse.Namespace) -> dict[str, object]:
    base = args.url.rstrip("/")
    headers = {"content-type": "application/json"}
    if args.token:
        headers["authorization"] = f"Bearer {args.token}"
    connector = aiohttp.TCPConnector(limit=args.concurrency, limit_per_host=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    latencies: list[float] = []
    by_api: dict[str, list[float]] = {}
    errors: dict[str, int] = {}

    def api_for(i: int) -> str:
        if args.api == "alternate":
            return "chat" if i % 2 == 0 else "openai"
        return str(args.api)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def one(i: int, api: str) -> float | None:
            body: dict[str, object] = {
                "text": f"bench message {i}",
                "session": f"bench-{i % args.sessions}",
            }
            sent_headers = headers
            openai_api = api.startswith("openai")
            url = base + ("/v1/chat/completions" if openai_api else "/api/v1/chat")
            if openai_api:
                body = {
                    "model": "open-clanker",
                    "messages": [{"role": "user", "content": f"bench message {i}"}],
                }
                if args.stream:
                    body["stream_options"] = {"include_usage": True}
                if api == "openai":
                    sent_headers = {**headers, "x-session-key": f"bench-{i % args.sessions}"}
            if args.stream:
                body["stream"] = True
            data = json.dumps(body).encode()
            started = time.perf_counter()
            try:
                async with http.post(url, data=data, headers=sent_headers) as r:
                    raw = await r.read()
                    status = r.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return None
            elapsed = (time.perf_counter() - started) * 1000
            ok = status == 200 and (
                (b"event: done" in raw or b"data: [DONE]" in raw)
                if args.stream
                else raw.startswith(b"{")
            )
            if not ok:
                key = f"http_{status}"
                errors[key] = errors.get(key, 0) + 1
                if errors[key] == 1:
                    errors[key + "_sample"] = raw[:300].decode(errors="replace")  # type: ignore[assignment]
                return None
            return elapsed

        async def phase(start: int, count: int, record: bool, deadline: float) -> int:
            counter = iter(range(start, start + count))
            done = 0

            async def worker() -> None:
                nonlocal done
                for i in counter:
                    if time.perf_counter() > deadline:
                        return
                    api = api_for(i)
                    ms = await one(i, api)
                    done += 1
                    if record and ms is not None:
                        latencies.append(ms)
                        by_api.setdefault(api, []).append(ms)

            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
            return done

        await phase(args.offset, args.warmup, False, time.perf_counter() + args.max_seconds)
        errors.clear()
        started = time.perf_counter()
        done = await phase(args.offset + args.warmup, args.count, True, started + args.max_seconds)
        elapsed = time.perf_counter() - started

    ok = len(latencies)
    return {
        "requested": args.count,
        "sent": done,
        "errors": errors,
        "concurrency": args.concurrency,
        "stream": args.stream,
        "api": args.api,
        "elapsed_s": round(elapsed, 3),
        "rps": round(ok / elapsed, 1) if elapsed else 0.0,
        **stats(latencies),
        "by_api": {api: stats(samples) for api, samples in sorted(by_api.items())},
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--token", default="")
    p.add_argument("--count", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--sessions", type=int, default=50)
    p.add_argument(
        "--offset", type=int, default=0, help="first message number (keeps texts unique)"
    )
    p.add_argument("--stream", action="store_true")
    p.add_argument(
        "--api", choices=("chat", "openai", "openai-stateless", "alternate"), default="chat"
    )
    p.add_argument("--max-seconds", type=float, default=60.0)
    args = p.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
