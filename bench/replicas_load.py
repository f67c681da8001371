"""Load generator for `make bench-replicas` (its own process): chats spread over replicas.

Run: `.venv/bin/python -m bench.replicas_load --urls http://127.0.0.1:P1,http://127.0.0.1:P2
--token T --count 600 --concurrency 48 --sessions 16 [--warmup 30] [--max-seconds 60]
[--tag run1]`. Request i sends `{"text": "<tag> m<i> s<i mod sessions>", "session": "<tag>-s<i
mod sessions>"}` to replica `(i + i // sessions) mod replicas`: every replica gets its share,
and the next message of a session goes to the next replica, so with more requests in flight
than sessions one session has turns waiting on several replicas at once. The model double
answers "answer to: <text>", so a reply that answers another message shows. Prints one JSON
object: sent, answered (200 with its own answer), cross_answered (200 with another's answer),
errors by kind, elapsed_s, msg_s, p50/p99 latency in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def text_of(tag: str, i: int, sessions: int) -> tuple[str, str]:
    """(text, session) of request i: the orchestrator rebuilds them to audit the database."""
    return f"{tag} m{i} s{i % sessions}", f"{tag}-s{i % sessions}"


def answer_to(text: str) -> str:
    return f"answer to: {text}"  # tests/doubles/echo_model.py


async def run(args: argparse.Namespace) -> dict[str, object]:
    urls = [u.rstrip("/") for u in args.urls.split(",")]
    headers = {"authorization": f"Bearer {args.token}"}
    connector = aiohttp.TCPConnector(limit=args.concurrency * 2, limit_per_host=args.concurrency)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counts = {"sent": 0, "answered": 0, "cross_answered": 0}
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    ) as http:

        async def one(i: int, tag: str, measured: bool) -> None:
            text, session = text_of(tag, i, args.sessions)
            url = urls[(i + i // args.sessions) % len(urls)] + "/api/v1/chat"
            started = time.perf_counter()
            if measured:
                counts["sent"] += 1
            try:
                async with http.post(
                    url, json={"text": text, "session": session}, headers=headers
                ) as r:
                    body = await r.json()
                    status = r.status
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                if measured:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return
            if not measured:
                return
            if status != 200:
                errors[f"http_{status}"] = errors.get(f"http_{status}", 0) + 1
                return
            if body["reply"]["content"] == answer_to(text):
                counts["answered"] += 1
                latencies.append((time.perf_counter() - started) * 1000)
            else:
                counts["cross_answered"] += 1

        async def drive(count: int, tag: str, measured: bool, deadline: float) -> None:
            nxt = iter(range(count))

            async def worker() -> None:
                # The deadline is checked before a request is taken: the requests sent are
                # exactly 0 .. sent-1, which the orchestrator audits.
                while time.monotonic() < deadline and (i := next(nxt, None)) is not None:
                    await one(i, tag, measured)

            await asyncio.gather(*(worker() for _ in range(args.concurrency)))

        far = time.monotonic() + 3600
        await drive(args.warmup, f"{args.tag}-warmup", False, far)
        started = time.perf_counter()
        await drive(args.count, args.tag, True, time.monotonic() + args.max_seconds)
        elapsed = time.perf_counter() - started
    return {
        **counts,
        "errors": errors,
        "elapsed_s": round(elapsed, 3),
        "msg_s": round(counts["answered"] / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(percentile(latencies, 0.5), 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 0.99), 1) if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--urls", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--max-seconds", type=float, default=60)
    parser.add_argument("--tag", default="bench")
    print(json.dumps(asyncio.run(run(parser.parse_args()))), flush=True)


if __name__ == "__main__":
    main()
