"""Open N idle authenticated WebSockets to the gateway's /ws and hold them (its own process).

Run: `.venv/bin/python -m bench.ws_hold --url ws://127.0.0.1:P/ws --token T --n 10000`.
Raises RLIMIT_NOFILE to the hard limit, opens the sockets (`Authorization: Bearer` on the
upgrade) with at most --parallel handshakes at a time, then sends `{"type":"ping"}` on a
sample and expects `{"type":"pong"}`. Prints one JSON line (`opened`, `failed`, `pongs`,
`open_s`), then holds every socket until a line arrives on stdin (or --hold-s passes), checks
how many are still open, prints a second JSON line and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time

import aiohttp


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def run(args: argparse.Namespace) -> None:
    headers = {"Authorization": f"Bearer {args.token}"}
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    failures: dict[str, int] = {}
    gate = asyncio.Semaphore(args.parallel)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def open_one() -> None:
            async with gate:
                try:
                    ws = await http.ws_connect(
                        args.url,
                        headers=headers,
                        heartbeat=None,
                        autoping=True,
                        timeout=aiohttp.ClientWSTimeout(ws_close=5),
                    )
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    key = type(exc).__name__ + (
                        f" {exc}"[:80] if failures.get(type(exc).__name__) is None else ""
                    )
                    failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
                    failures.setdefault("first: " + key, 1)
                    return
                sockets.append(ws)

        started = time.perf_counter()
        await asyncio.gather(*(open_one() for _ in range(args.n)))
        open_s = time.perf_counter() - started

        async def ping(ws: aiohttp.ClientWebSocketResponse) -> bool:
            try:
                await ws.send_str('{"type":"ping"}')
                msg = await ws.receive(timeout=10)
                return (
                    msg.type == aiohttp.WSMsgType.TEXT
                    and json.loads(msg.data).get("type") == "pong"
                )
            except (TimeoutError, aiohttp.ClientError, ValueError, ConnectionError):
                return False

        step = max(1, len(sockets) // args.sample)
        sample = sockets[::step][: args.sample]
        pongs = sum(await asyncio.gather(*(ping(ws) for ws in sample)))
        print(
            json.dumps(
                {
                    "requested": args.n,
                    "opened": len(sockets),
                    "failed": failures,
                    "open_s": round(open_s, 2),
                    "pinged": len(sample),
                    "pongs": pongs,
                }
            ),
            flush=True,
        )
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), args.hold_s)
        still_open = sum(1 for ws in sockets if not ws.closed)
        pongs_after = sum(await asyncio.gather(*(ping(ws) for ws in sample)))
        print(json.dumps({"still_open": still_open, "pongs_after": pongs_after}), flush=True)
        for ws in sockets:  # let the kernel close them: a clean close of 10k takes long
            conn = ws._response.connection
            if conn is not None and conn.transport is not None:
                conn.transport.abort()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--parallel", type=int, default=200)
    p.add_argument("--sample", type=int, default=100)
    p.add_argument("--hold-s", type=float, default=120.0)
    args = p.parse_args()
    limit = raise_nofile()
    if limit < args.n + 100:
        print(json.dumps({"error": f"RLIMIT_NOFILE is {limit}"}), flush=True)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
