"""What one idle WebSocket costs in uvicorn's WebSocket implementations, without the gateway.

Run: `.venv/bin/python -m bench.ws_impls [--n 10000] [--impl websockets-sansio,websockets,wsproto]`
(wsproto is not a dependency: `.venv/bin/pip install wsproto` to measure it). For each
implementation a bare Starlette app (one `/ws` route that accepts, answers `{"type":"ping"}`
with `{"type":"pong"}` and otherwise waits in `receive()`) runs on uvicorn with the gateway's
settings (uvloop, httptools, the gateway's ws_max_size and ping interval), and
`bench/ws_hold.py` opens and holds N sockets; RSS before and while held, per connection. The
gateway's own figure (`make bench`, "idle WebSockets") minus this is what the gateway's stack
adds per connection (middleware, endpoint task, send buffer). An implementation named with
`+trim` (`websockets-sansio+trim`) calls glibc's `malloc_trim(0)` every second in the server: if
RSS were freed-but-kept heap, it would drop.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from bench import run_all

APP = r"""
import asyncio, resource, sys
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

async def ws(websocket):
    await websocket.accept()
    while True:
        msg = await websocket.receive()
        if msg["type"] == "websocket.disconnect":
            return
        if msg.get("text") == '{"type":"ping"}':
            await websocket.send_text('{"type":"pong"}')

if len(sys.argv) > 3:  # trim: hand freed heap pages back to the OS every second
    import ctypes
    libc = ctypes.CDLL("libc.so.6")
    async def trim():
        while True:
            await asyncio.sleep(1.0)
            libc.malloc_trim(0)

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
started = []
async def ws_trimmed(websocket):
    if not started:
        started.append(asyncio.get_running_loop().create_task(trim()))
    await ws(websocket)
app = Starlette(routes=[WebSocketRoute("/ws", ws_trimmed if len(sys.argv) > 3 else ws)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), ws=sys.argv[2], loop="uvloop",
            http="httptools", log_level="warning", ws_max_size=1024 * 1024,
            ws_ping_interval=20.0, ws_ping_timeout=20.0, lifespan="off")
"""


def hold(port: int, n: int) -> dict[str, object]:
    proc = subprocess.Popen(
        [run_all.PY, "-m", "bench.ws_hold", "--url", f"ws://127.0.0.1:{port}/ws", "--token",
         "x", "--n", str(n), "--hold-s", "60"],
        cwd=run_all.ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        preexec_fn=run_all.raise_nofile,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdin is not None
    first = json.loads(proc.stdout.readline() or "{}")
    return {"proc": proc, **first}


def measure(impl: str, n: int) -> dict[str, float]:
    port = run_all.free_port()
    name, _, trim = impl.partition("+")  # "websockets-sansio+trim": malloc_trim every second
    cmd = [run_all.PY, "-c", APP, str(port), name, *(["trim"] if trim else [])]
    server = subprocess.Popen(cmd, cwd=run_all.ROOT)
    try:
        started = time.perf_counter()
        while True:
            try:
                import socket

                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.perf_counter() - started > 20:
                    raise
                time.sleep(0.02)
        time.sleep(1.0)
        before = run_all.rss_kib(server.pid)
        held = hold(port, n)
        time.sleep(3.0)
        during = run_all.rss_kib(server.pid)
        proc = held.pop("proc")
        proc.stdin.write("done\n")  # type: ignore[attr-defined]
        proc.stdin.flush()  # type: ignore[attr-defined]
        proc.wait(60)  # type: ignore[attr-defined]
        opened = max(1, int(held.get("opened", 0)))  # type: ignore[call-overload]
        return {"opened": opened, "pongs": held.get("pongs", 0), "before_mib": before / 1024,
                "held_mib": during / 1024, "kib_each": (during - before) / opened}  # type: ignore[dict-item]  # fmt: skip
    finally:
        run_all.stop(server)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--impl", default="websockets-sansio,websockets,wsproto")
    args = p.parse_args()
    run_all.raise_nofile()
    print("| uvicorn ws= | opened | pongs | RSS before → held | KiB per connection |")
    print("| --- | --- | --- | --- | --- |")
    for impl in args.impl.split(","):
        try:
            r = measure(impl, args.n)
        except Exception as exc:  # e.g. wsproto not installed
            print(f"| {impl} | failed: {exc!r} | | | |", file=sys.stderr)
            continue
        print(f"| {impl} | {r['opened']:,} | {r['pongs']} | {r['before_mib']:.1f} → "
              f"{r['held_mib']:.1f} MiB | {r['kib_each']:.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
