"""`make bench`: every benchmark in one go; prints a table, writes bench/results/latest.json and
prints the markdown for docs/benchmarks.md. (Long on purpose: orchestration and report in one
place, so `make bench` and the published table can never drift apart.)

Run: `.venv/bin/python -m bench.run_all [--quick] [--no-profile] [--no-ws]`.
Everything talks to 127.0.0.1 only (but the footprint's fresh installs, which use the package
index: bench/footprint.py). Each piece is its own process: the model double
(bench/model_double.py), the floor (bench/floor_app.py), the gateway (`.venv/bin/open-clanker
gateway`), the load generator (bench/load.py) and the WebSocket holder (bench/ws_hold.py).
Request counts are fixed; each load run also has a time cap so the whole run stays bounded
(the table shows how many requests each run actually completed).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench import footprint

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
PY = str(BIN / "python") if (BIN / "python").exists() else sys.executable
CLI = str(BIN / "open-clanker")
RESULTS = ROOT / "bench" / "results"
TOKEN = "bench-token-0123456789abcdef"
SESSIONS = 50
MIB = 1024 * 1024

# Targets (issue 16's table).
T_SEQ_RATIO = 0.50  # sequential msg/s, gateway / floor
T_C50_RATIO = 0.50  # 50 in flight msg/s, gateway / floor
T_ADDED_P50_MS = 1.0
T_ADDED_P99_MS = 5.0
T_CPU_MS = 1.0  # server CPU per message
T_WS = 10_000
T_WS_KIB = 20.0  # per idle WebSocket
T_IDLE_MIB = 60.0  # web chat on, no channels
T_IDLE_CHANNELS_MIB = 80.0  # with Telegram and Discord
T_GROWTH_MIB = 10.0
T_LAUNCH_S = 0.5
T_HELP_S = 0.15

# `--backend postgres`: every gateway start gets a fresh PostgreSQL database on this server
# (dropped afterwards) and a Redis bus, as one replica of the replica setup would run.
BACKEND: dict[str, str] = {"name": "sqlite"}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_http(url: str, timeout_s: float) -> float:
    """Poll until GET url answers 200; returns the time it took."""
    started = time.perf_counter()
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return time.perf_counter() - started
        except OSError:
            pass
        if time.perf_counter() - started > timeout_s:
            raise TimeoutError(f"{url} did not answer within {timeout_s}s")
        time.sleep(0.005)


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def model_double() -> Iterator[str]:
    proc = subprocess.Popen(
        [PY, "-m", "bench.model_double", "0"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("PORT "), line
        yield f"http://127.0.0.1:{int(line.split()[1])}/v1"
    finally:
        stop(proc)


def spawn_floor(double_url: str, port: int, framework: str = "starlette") -> subprocess.Popen[Any]:
    """`framework` "fastapi": the stack floor (bench/floor_app.py)."""
    args = [PY, "-m", "bench.floor_app", str(port), double_url]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return subprocess.Popen([*args, framework], cwd=ROOT, env=env)


@contextlib.contextmanager
def floor_app(double_url: str, framework: str = "starlette") -> Iterator[tuple[str, int]]:
    port = free_port()
    proc = spawn_floor(double_url, port, framework)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/health", 20)
        yield base, proc.pid
    finally:
        stop(proc)


def gateway_env(data_dir: str, double_url: str, level: str | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENCLAW_", "OPENAI_", "ANTHROPIC_"))
    }
    # A deployed gateway runs from compiled bytecode; let the first (untimed) start write it.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        OPENCLAW_DATA_DIR=data_dir,
        HOME=data_dir,
        XDG_DATA_HOME=data_dir,
        XDG_CONFIG_HOME=data_dir,
        OPENCLAW_GATEWAY_TOKEN=TOKEN,
        OPENCLAW_AGENT__PROVIDER="openai",
        OPENCLAW_OPENAI_API_KEY="bench-key",
        OPENCLAW_AGENT__BASE_URL=double_url,
        OPENCLAW_AGENT__MAX_RETRIES="0",
        OPENCLAW_LIMITS__MESSAGES_PER_MINUTE="100000000",
        OPENCLAW_ACCESS__DM_POLICY="open",
        OPENCLAW_SERVER__MAX_WS_CONNECTIONS="20000",
        OPENCLAW_SERVER__MAX_CONNECTIONS_PER_ADDRESS="30000",  # every client is 127.0.0.1
    )
    if level:
        env["OPENCLAW_LOGGING__LEVEL"] = level
    return env


def _with_database(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def _pg_admin(sql: str) -> None:
    import asyncio

    import asyncpg  # the dev venv has the postgres extra

    async def run() -> None:
        conn = await asyncpg.connect(BACKEND["pg_url"])
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@contextlib.contextmanager
def backend_env() -> Iterator[dict[str, str]]:
    """The storage (and bus) settings of one gateway start: SQLite in its data dir, or a fresh
    PostgreSQL database and a Redis namespace of its own."""
    if BACKEND["name"] != "postgres":
        yield {}
        return
    name = f"oc_bench_{os.getpid()}_{int(time.time() * 1000) % 10**9}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield {
            "OPENCLAW_STORAGE__URL": _with_database(BACKEND["pg_url"], name),
            "OPENCLAW_BUS__URL": BACKEND["redis_url"],
            "OPENCLAW_BUS__NAMESPACE": name,
        }
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def spawn_gateway(
    data_dir: str,
    double_url: str,
    port: int,
    level: str | None = "warning",
    whatif: tuple[str, ...] = (),
    extra_env: dict[str, str | None] | None = None,
    cli: str = CLI,
) -> subprocess.Popen[Any]:
    cmd = [cli, "gateway", "--port", str(port)]
    env = gateway_env(data_dir, double_url, level)
    for key, value in (extra_env or {}).items():  # None: not set at all
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    if whatif:  # the same CLI with fixes patched in (bench/whatif_gateway.py)
        cmd = [PY, "-m", "bench.whatif_gateway", *cmd[1:]]
        env.update({f"WHATIF_{flag}": "1" for flag in whatif})
        env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen(
        cmd,
        cwd=data_dir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(Path(data_dir) / "gateway.stderr", "ab"),
        preexec_fn=raise_nofile,
    )


@contextlib.contextmanager
def gateway(
    double_url: str,
    level: str | None = "warning",
    whatif: tuple[str, ...] = (),
    extra_env: dict[str, str | None] | None = None,
    cli: str = CLI,
) -> Iterator[tuple[str, int]]:
    data_dir = tempfile.mkdtemp(prefix="clanker-bench-")
    port = free_port()
    with backend_env() as storage_env:
        proc = spawn_gateway(
            data_dir, double_url, port, level, whatif, {**storage_env, **(extra_env or {})}, cli
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(base + "/health", 30)
            yield base, proc.pid
        finally:
            stop(proc)
            shutil.rmtree(data_dir, ignore_errors=True)


def load(
    base: str,
    count: int,
    concurrency: int,
    stream: bool,
    warmup: int,
    max_s: float,
    offset: int = 0,
    api: str = "chat",
) -> dict[str, Any]:
    cmd = [
        PY, "-m", "bench.load", "--url", base, "--token", TOKEN, "--count", str(count),
        "--concurrency", str(concurrency), "--warmup", str(warmup), "--sessions", str(SESSIONS),
        "--max-seconds", str(max_s), "--offset", str(offset), "--api", api,
    ]  # fmt: skip
    if stream:
        cmd.append("--stream")
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max_s * 2 + 60)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------- profile (py-spy)


def pyspy() -> str | None:
    found = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    return found


def start_profile(pid: int, seconds: int, out: Path) -> subprocess.Popen[Any] | None:
    exe = pyspy()
    if exe is None:
        return None
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--rate",
            "250",
            "--format",
            "raw",
            "-o",
            str(out),
            "--nonblocking",
            "--gil",  # only the thread holding the GIL: where the CPU goes, not who waits
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


LIBS = ("sqlalchemy", "aiosqlite", "pydantic", "fastapi", "starlette", "uvicorn", "aiohttp",
        "structlog", "open_clanker", "asyncio", "selectors", "json", "uuid", "threading")  # fmt: skip


def summarize_profile(raw: Path, top: int = 15) -> dict[str, Any]:
    """Self and inclusive shares of py-spy's collapsed stacks (non-idle samples only)."""
    self_c: Counter[str] = Counter()
    libs: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n_s = line.rpartition(" ")
        if not stack:
            continue
        n = int(n_s)
        total += n
        frames = [f for f in stack.split(";") if f]
        if frames:
            self_c[frames[-1]] += n
            leaf = frames[-1]
            libs[next((k for k in LIBS if k in leaf), "other")] += n
        for f in set(frames):
            incl[f] += n

    def share(c: Counter[str]) -> list[tuple[str, float]]:
        return [(f, round(100 * k / total, 1)) for f, k in c.most_common(top)]

    # Inclusive list without the always-100% outer frames (loop, CLI entry).
    boring = ("run_forever", "run_until_complete", "_run_once", "Runner.run", "<module>",
              "typer", "click", "Context.invoke", "Command", "cli/main.py", "asyncio/runners.py",
              "Handle._run", "runpy")  # fmt: skip
    incl_f = Counter({f: k for f, k in incl.items() if not any(b in f for b in boring)})
    return {
        "samples": total,
        "self": share(self_c),
        "inclusive": share(incl_f),
        "by_library": [(k, round(100 * v / total, 1)) for k, v in libs.most_common()],
    }


# ---------------------------------------------------------------- the pieces


def chat_suite(q: bool, profile: bool, raw_dir: Path) -> dict[str, Any]:
    n_seq, n_conc = (300, 600) if q else (3000, 6000)
    cap_seq, cap_conc = (8.0, 10.0) if q else (20.0, 25.0)
    n_mem = 1000 if q else 10_000
    res: dict[str, Any] = {"floor": {}, "gateway": {}, "gateway_info": {}}
    with model_double() as double:
        log(f"model double at {double}")
        with floor_app(double) as (fbase, fpid):
            for name, conc, stream, n in (
                ("json_seq", 1, False, n_seq),
                ("json_c50", 50, False, n_conc),
                ("sse_seq", 1, True, n_seq),
                ("sse_c50", 50, True, n_conc),
            ):
                cpu0 = cpu_s(fpid)
                res["floor"][name] = load(fbase, n, conc, stream, 200, cap_conc)
                res["floor"][name]["server_cpu_s"] = round(cpu_s(fpid) - cpu0, 2)
                res["floor"][name]["server_msgs"] = 200 + res["floor"][name]["sent"]
                log(f"floor {name}: {res['floor'][name]}")
        # The stack floor: the same forwarding on FastAPI with pydantic bodies.
        res["floor_fastapi"] = {}
        with floor_app(double, "fastapi") as (fbase, fpid):
            for name, conc, n in (("json_seq", 1, n_seq), ("json_c50", 50, n_conc)):
                cpu0 = cpu_s(fpid)
                r = load(fbase, n, conc, False, 200, cap_conc)
                r["server_cpu_s"] = round(cpu_s(fpid) - cpu0, 2)
                r["server_msgs"] = 200 + r["sent"]
                res["floor_fastapi"][name] = r
                log(f"floor (FastAPI) {name}: {r}")
        with gateway(double, "warning") as (gbase, gpid):
            time.sleep(1.0)
            res["idle_rss_kib"] = rss_kib(gpid)
            sent = 0
            for name, conc, stream, n, cap in (
                ("json_seq", 1, False, n_seq, cap_seq),
                ("json_c50", 50, False, n_conc, cap_conc),
            ):
                warm = 200 if conc == 1 else 100
                prof = None
                if (profile and conc == 50) or (profile and conc == 1):
                    prof = start_profile(
                        gpid, int(min(10, cap / 2)), raw_dir / f"gateway_{name}.raw"
                    )
                cpu0 = cpu_s(gpid)
                r = load(gbase, n, conc, stream, warm, cap, offset=sent)
                r["server_cpu_s"] = round(cpu_s(gpid) - cpu0, 2)
                r["server_msgs"] = warm + r["sent"]
                res["gateway"][name] = r
                sent += warm + r["sent"]
                if prof is not None:
                    prof.wait(30)
                log(f"gateway {name}: {r}")
            # Top up to n_mem non-streamed messages for the memory figure.
            if sent < n_mem:
                r = load(gbase, n_mem - sent, 50, False, 0, 240.0 if not q else 60.0, offset=sent)
                sent += r["sent"]
                log(f"gateway top-up: {r['sent']} more, {r['rps']} msg/s")
            time.sleep(1.0)
            res["messages_sent"] = sent
            res["after_rss_kib"] = rss_kib(gpid)
            log(
                f"RSS idle {res['idle_rss_kib']} KiB, after {sent} messages {res['after_rss_kib']} KiB"
            )
            for name, conc, stream, n, cap in (
                ("sse_seq", 1, True, n_seq, cap_seq),
                ("sse_c50", 50, True, n_conc, cap_conc),
            ):
                r = load(gbase, n, conc, stream, 100, cap, offset=sent + 100_000)
                res["gateway"][name] = r
                log(f"gateway {name}: {r}")
        with gateway(double, None) as (gbase, gpid):  # default level (info)
            for name, conc, n, cap in (
                ("json_seq", 1, n_seq, cap_seq / 2),
                ("json_c50", 50, n_conc, cap_conc / 2),
            ):
                r = load(gbase, n, conc, False, 100, cap)
                res["gateway_info"][name] = r
                log(f"gateway(info) {name}: {r}")
    return res


# (row, api, concurrency, stream): /v1/chat/completions beside /api/v1/chat, same sessions.
OPENAI_RUNS = (
    ("chat_json_seq", "chat", 1, False),
    ("openai_json_seq", "openai", 1, False),
    ("chat_sse_seq", "chat", 1, True),
    ("openai_sse_seq", "openai", 1, True),
    ("chat_json_c50", "chat", 50, False),
    ("openai_json_c50", "openai", 50, False),
)


OPENAI_ROUNDS = 3


def openai_suite(q: bool) -> dict[str, Any]:
    """The OpenAI-compatible route against /api/v1/chat on one gateway process, OPENAI_ROUNDS
    rounds: each route alone (its server CPU per message), then both in one run, requests
    alternating between them (each route's latency, under the same load at the same moment);
    and both routes on the floor."""
    n_seq, n_conc, cap = (300, 600, 6.0) if q else (1000, 2000, 10.0)
    res: dict[str, Any] = {"floor": {}, "gateway": {name: [] for name, *_ in OPENAI_RUNS}}
    res["alternate"] = {kind: [] for kind in ("json_seq", "sse_seq", "json_c50")}
    with model_double() as double:
        with floor_app(double) as (fbase, fpid):
            for name, api, conc, stream in OPENAI_RUNS:
                cpu0 = cpu_s(fpid)
                n = n_seq if conc == 1 else n_conc
                r = load(fbase, n, conc, stream, 100, cap, api=api)
                r["server_cpu_s"] = round(cpu_s(fpid) - cpu0, 2)
                r["server_msgs"] = 100 + r["sent"]
                res["floor"][name] = r
                log(f"floor {name}: {r}")
        with gateway(double, "warning") as (gbase, gpid):
            sent = 0
            for api in ("chat", "openai"):  # both routes' 50 sessions filled to the history cap
                sent += load(gbase, 400, 50, False, 0, cap, offset=sent, api=api)["sent"]
            for rnd in range(OPENAI_ROUNDS):
                for name, api, conc, stream in OPENAI_RUNS:
                    cpu0 = cpu_s(gpid)
                    n = n_seq if conc == 1 else n_conc
                    r = load(gbase, n, conc, stream, 50, cap, offset=sent, api=api)
                    r["server_cpu_s"] = round(cpu_s(gpid) - cpu0, 2)
                    r["server_msgs"] = 50 + r["sent"]
                    sent += r["server_msgs"]
                    res["gateway"][name].append(r)
                    log(f"gateway {name} (round {rnd + 1}): {r}")
                for kind, conc, stream in (("json_seq", 1, False), ("sse_seq", 1, True),
                                           ("json_c50", 50, False)):  # fmt: skip
                    n = 2 * (n_seq if conc == 1 else n_conc)
                    r = load(gbase, n, conc, stream, 50, 2 * cap, offset=sent, api="alternate")
                    sent += 50 + r["sent"]
                    res["alternate"][kind].append(r)
                    log(f"gateway alternate {kind} (round {rnd + 1}): {r['by_api']}")
    return res


def whatif_suite(flags: tuple[str, ...], seconds: float) -> dict[str, Any]:
    """The gateway with fixes patched in: JSON sequential, JSON 50 in flight, SSE sequential."""
    out: dict[str, Any] = {"flags": list(flags)}
    with model_double() as double, gateway(double, "warning", flags) as (gbase, gpid):
        for name, conc, stream, n in (
            ("json_seq", 1, False, 3000),
            ("json_c50", 50, False, 6000),
            ("sse_seq", 1, True, 3000),
        ):
            cpu0 = cpu_s(gpid)
            r = load(gbase, n, conc, stream, 100, seconds, offset=len(out) * 100_000)
            r["server_cpu_ms_per_msg"] = round(1000 * (cpu_s(gpid) - cpu0) / (100 + r["sent"]), 2)
            out[name] = r
            log(f"what-if {'+'.join(flags)} {name}: {r}")
        time.sleep(0.5)
        out["rss_kib"] = rss_kib(gpid)
    return out


def ws_suite(n: int) -> dict[str, Any]:
    with model_double() as double, gateway(double, "warning") as (gbase, gpid):
        time.sleep(1.0)
        before = rss_kib(gpid)
        ws_url = gbase.replace("http://", "ws://") + "/ws"
        proc = subprocess.Popen(
            [
                PY,
                "-m",
                "bench.ws_hold",
                "--url",
                ws_url,
                "--token",
                TOKEN,
                "--n",
                str(n),
                "--hold-s",
                "60",
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=raise_nofile,
        )
        assert proc.stdout is not None
        assert proc.stdin is not None
        try:
            first = json.loads(proc.stdout.readline() or "{}")
            time.sleep(2.0)
            held = rss_kib(gpid)
            open_fds = len(os.listdir(f"/proc/{gpid}/fd"))
            proc.stdin.write("done\n")
            proc.stdin.flush()
            second = json.loads(proc.stdout.readline() or "{}")
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
        time.sleep(3.0)
        healthy = wait_http(gbase + "/health", 10) >= 0
        out = {**first, **second, "rss_before_kib": before, "rss_held_kib": held,
               "rss_after_close_kib": rss_kib(gpid), "gateway_fds": open_fds,
               "healthy_after": healthy}  # fmt: skip
        opened = max(1, int(first.get("opened", 0)))
        out["per_conn_kib"] = round((held - before) / opened, 1)
        log(f"ws: {out}")
        return out


def launch_suite(runs: int = 5) -> dict[str, Any]:
    times: list[float] = []
    idle: list[int] = []
    with model_double() as double:
        for i in range(runs + 1):  # run 0 is an untimed warm-up (bytecode, page cache)
            data_dir = tempfile.mkdtemp(prefix="clanker-bench-")
            try:
                with backend_env() as storage_env:
                    spawn = functools.partial(
                        spawn_gateway, data_dir, double, extra_env=storage_env
                    )
                    got = _start_to_health(spawn, timed=i > 0)
            finally:
                shutil.rmtree(data_dir, ignore_errors=True)
            if got is not None:
                times.append(got[0])
                idle.append(got[1])
    log(f"launch to /health: {times}; idle RSS {idle} KiB")
    return {
        "runs_s": [round(t, 3) for t in times],
        "median_s": round(statistics.median(times), 3),
        "idle_rss_kib": idle,
        "floor": {fw: floor_launch(fw, runs) for fw in ("starlette", "fastapi")},
    }


def floor_launch(framework: str, runs: int) -> dict[str, Any]:
    """The floor's own launch -> /health and idle RSS, measured as the gateway's."""
    times: list[float] = []
    idle: list[int] = []
    with model_double() as double:
        spawn = functools.partial(spawn_floor, double, framework=framework)
        for i in range(runs + 1):  # run 0 is an untimed warm-up
            got = _start_to_health(spawn, timed=i > 0)
            if got is not None:
                times.append(got[0])
                idle.append(got[1])
    log(f"floor ({framework}) launch to /health: {times}; idle RSS {idle} KiB")
    return {"median_s": round(statistics.median(times), 3), "idle_rss_kib": idle}


def _start_to_health(
    spawn: Callable[..., subprocess.Popen[Any]], timed: bool
) -> tuple[float, int] | None:
    """Spawn (`spawn(port=…)`) to the first 200 from /health, and the RSS 1 s later (as the
    chat suite reads idle RSS); the process is stopped after. None for an untimed start."""
    port = free_port()
    started = time.perf_counter()
    proc = spawn(port=port)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 30)
        if not timed:
            return None
        took = time.perf_counter() - started
        time.sleep(1.0)
        return took, rss_kib(proc.pid)
    finally:
        stop(proc)


def channels_suite() -> dict[str, Any]:
    """Idle RSS with Telegram (long polling) and Discord (gateway WebSocket) enabled against the
    loopback doubles (bench/channel_doubles.py), read 1 s after both channels are connected."""
    doubles = subprocess.Popen(
        [PY, "-m", "bench.channel_doubles"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert doubles.stdout is not None
    assert doubles.stdin is not None
    try:
        urls = json.loads(doubles.stdout.readline())
        env = {
            "OPENCLAW_TELEGRAM_BOT_TOKEN": urls["telegram_token"],
            "OPENCLAW_CHANNELS__TELEGRAM__API_BASE_URL": urls["telegram_url"],
            "OPENCLAW_DISCORD_BOT_TOKEN": urls["discord_token"],
            "OPENCLAW_CHANNELS__DISCORD__API_BASE_URL": urls["discord_url"],
        }
        with model_double() as double, gateway(double, "warning", extra_env=env) as (_, gpid):
            line = doubles.stdout.readline()  # {"connected": true} once both channels are up
            connected = bool(line and json.loads(line).get("connected"))
            time.sleep(1.0)
            out = {"connected": connected, "idle_rss_kib": rss_kib(gpid)}
    finally:
        doubles.stdin.close()
        stop(doubles)
    log(f"channels: {out}")
    return out


def help_suite(runs: int = 10) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    times: list[float] = []
    for i in range(runs + 1):  # run 0 is an untimed warm-up
        started = time.perf_counter()
        subprocess.run([CLI, "--help"], capture_output=True, check=True, env=env)
        if i:
            times.append(time.perf_counter() - started)
    log(f"--help: {times}")
    return {"runs_s": [round(t, 3) for t in times], "median_s": round(statistics.median(times), 3)}


def provider_suite(n: int) -> dict[str, Any]:
    out = subprocess.run(
        [PY, "-m", "bench.provider_overhead", str(n)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    log("provider overhead done")
    return {"n": n, "markdown": out.stdout.strip(), "stderr": out.stderr[-1000:]}


# ---------------------------------------------------------------- report


def verdict(ok: bool, detail: str) -> str:
    return f"{'pass' if ok else 'MISS'} ({detail})"


def build_report(res: dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
    rows: list[dict[str, str]] = []
    chat = res.get("chat")
    if chat:
        for name, label in (
            ("json_seq", "chat JSON, sequential"),
            ("json_c50", "chat JSON, 50 in flight"),
            ("sse_seq", "chat SSE, sequential"),
            ("sse_c50", "chat SSE, 50 in flight"),
        ):
            g, f = chat["gateway"][name], chat["floor"][name]
            ratio = g["rps"] / f["rps"] if f["rps"] else 0.0
            a50 = g["p50_ms"] - f["p50_ms"]
            a99 = g["p99_ms"] - f["p99_ms"]
            row = {
                "what": label,
                "gateway": f"{g['rps']:.0f} msg/s; p50 {g['p50_ms']:.2f} ms, p99 {g['p99_ms']:.2f} ms (n={g['ok']})",
                "floor": f"{f['rps']:.0f} msg/s; p50 {f['p50_ms']:.2f} ms, p99 {f['p99_ms']:.2f} ms (n={f['ok']})",
                "result": f"{100 * ratio:.1f}% of floor; added p50 {a50:+.2f} ms, p99 {a99:+.2f} ms",
                "target": "",
            }
            if name == "json_seq":
                row["target"] = (
                    f"throughput ≥ 50% of floor: {verdict(ratio >= T_SEQ_RATIO, f'{ratio / T_SEQ_RATIO:.2f}× the target')}; "
                    f"added p50 ≤ 1 ms: {verdict(a50 <= T_ADDED_P50_MS, f'{a50 / T_ADDED_P50_MS:.0f}×' if a50 > 0 else 'ok')}; "
                    f"added p99 ≤ 5 ms: {verdict(a99 <= T_ADDED_P99_MS, f'{a99 / T_ADDED_P99_MS:.1f}×' if a99 > 0 else 'ok')}"
                )
            elif name == "sse_seq":
                row["target"] = (
                    f"added p50 ≤ 1 ms: {verdict(a50 <= T_ADDED_P50_MS, f'{a50 / T_ADDED_P50_MS:.0f}×' if a50 > 0 else 'ok')}; "
                    f"added p99 ≤ 5 ms: {verdict(a99 <= T_ADDED_P99_MS, f'{a99 / T_ADDED_P99_MS:.1f}×' if a99 > 0 else 'ok')}"
                )
            if "server_cpu_s" in g and "server_cpu_s" in f:
                g_cpu = 1000 * g["server_cpu_s"] / max(1, g["server_msgs"])
                f_cpu = 1000 * f["server_cpu_s"] / max(1, f["server_msgs"])
                row["result"] += f"; server CPU {g_cpu:.1f} ms/msg vs floor {f_cpu:.2f}"
            rows.append(row)
        gi = chat["gateway_info"]
        for name, label in (("json_seq", "chat JSON, sequential, log level info"),
                            ("json_c50", "chat JSON, 50 in flight, log level info")):  # fmt: skip
            g, w = gi[name], chat["gateway"][name]
            rows.append({
                "what": label,
                "gateway": f"{g['rps']:.0f} msg/s; p50 {g['p50_ms']:.2f} ms, p99 {g['p99_ms']:.2f} ms (n={g['ok']})",
                "floor": "—",
                "result": f"{100 * (g['rps'] / w['rps'] - 1):+.1f}% msg/s vs level warning",
                "target": "",
            })  # fmt: skip
        idle = chat["idle_rss_kib"] / 1024
        after = chat["after_rss_kib"] / 1024
        growth = after - idle
        rows.append({
            "what": "idle RSS after start (web chat on, no channels)",
            "gateway": f"{idle:.1f} MiB", "floor": "—", "result": f"{idle:.1f} MiB",
            "target": f"≤ 60 MiB: {verdict(idle <= T_IDLE_MIB, f'{idle - T_IDLE_MIB:+.1f} MiB')}",
        })  # fmt: skip
        rows.append({
            "what": f"RSS after {chat['messages_sent']:,} messages",
            "gateway": f"{after:.1f} MiB", "floor": "—", "result": f"growth {growth:+.1f} MiB",
            "target": f"growth ≤ 10 MiB: {verdict(growth <= T_GROWTH_MIB, f'{growth - T_GROWTH_MIB:+.1f} MiB')}",
        })  # fmt: skip
    ws = res.get("ws")
    if ws:
        opened = int(ws.get("opened", 0))
        rows.append({
            "what": f"idle WebSockets held ({ws.get('requested')} asked)",
            "gateway": f"{opened:,} open, {ws.get('still_open', 0):,} still open after hold, "
                       f"pongs {ws.get('pongs')}/{ws.get('pinged')}, opened in {ws.get('open_s')} s",
            "floor": "—",
            "result": f"RSS {ws['rss_before_kib'] / 1024:.1f} → {ws['rss_held_kib'] / 1024:.1f} MiB, "
                      f"{ws['per_conn_kib']:.1f} KiB per connection",
            "target": f"10,000 in one process: {verdict(opened >= T_WS and ws.get('still_open', 0) >= T_WS, f'{opened:,}')}",
        })  # fmt: skip
    la = res.get("launch")
    if la:
        rows.append({
            "what": "launch (spawn) to /health 200, median of 5",
            "gateway": f"{la['median_s']:.3f} s", "floor": "—",
            "result": ", ".join(f"{t:.2f}" for t in la["runs_s"])
                      + ("; idle RSS " + ", ".join(f"{k / 1024:.1f}" for k in la["idle_rss_kib"]) + " MiB"
                         if la.get("idle_rss_kib") else ""),
            "target": f"≤ {T_LAUNCH_S} s: " + verdict(la["median_s"] <= T_LAUNCH_S, f"{la['median_s'] / T_LAUNCH_S:.2f}× the limit"),
        })  # fmt: skip
    he = res.get("help")
    if he:
        rows.append({
            "what": "`open-clanker --help`, median of 10",
            "gateway": f"{he['median_s']:.3f} s", "floor": "—",
            "result": ", ".join(f"{t:.2f}" for t in he["runs_s"]),
            "target": f"≤ {T_HELP_S} s: " + verdict(he["median_s"] <= T_HELP_S, f"{he['median_s'] / T_HELP_S:.2f}× the limit"),
        })  # fmt: skip

    oa = res.get("openai")
    if oa:
        rows += openai_rows(oa)

    ch = res.get("channels")
    if ch:
        mib = ch["idle_rss_kib"] / 1024
        rows.append({
            "what": "idle RSS, Telegram and Discord enabled (loopback doubles)",
            "gateway": f"{mib:.1f} MiB", "floor": "—",
            "result": f"{mib:.1f} MiB, both channels connected: {ch['connected']}",
            "target": f"≤ {T_IDLE_CHANNELS_MIB:.0f} MiB: "
                      + verdict(mib <= T_IDLE_CHANNELS_MIB and ch["connected"], f"{mib - T_IDLE_CHANNELS_MIB:+.1f} MiB"),
        })  # fmt: skip

    md = ["| measure | gateway | floor | result | target |", "| --- | --- | --- | --- | --- |"]
    md += [
        f"| {r['what']} | {r['gateway']} | {r['floor']} | {r['result']} | {r['target']} |"
        for r in rows
    ]
    text = "\n".join(md)
    text = issue_table(res) + "\n\n" + text
    fp = res.get("footprint")
    if fp:
        text += "\n\nFootprint (`bench/footprint.py`):\n\n" + footprint.markdown(fp)
    prov = res.get("provider")
    if prov:
        text += "\n\nProvider overhead (`bench/provider_overhead.py`):\n\n" + prov["markdown"]
    for name, prof in res.get("profiles", {}).items():
        text += (
            f"\n\nProfile of the gateway during `{name}` (py-spy --gil, {prof['samples']} samples); "
            "running frame by library: "
            + ", ".join(f"{k} {v}%" for k, v in prof.get("by_library", [])[:8])
            + "\n\n"
        )
        text += "| self % | frame |\n| --- | --- |\n"
        text += "\n".join(f"| {p} | `{f}` |" for f, p in prof["self"][:12])
        text += "\n\n| inclusive % | frame |\n| --- | --- |\n"
        text += "\n".join(f"| {p} | `{f}` |" for f, p in prof["inclusive"][:15])
    return text, rows


def issue_table(res: dict[str, Any]) -> str:
    """Issue 16's table, one row per target, each with its verdict (a missing piece says so).

    The floors column: the floor (bare Starlette) / the stack floor (the same on FastAPI with
    pydantic bodies, bench/floor_app.py), measured in the same run, where the row has one."""
    out: list[tuple[str, str, str, str, str]] = []

    def add(what: str, value: str, floors: str, target: str, ok: bool | None) -> None:
        verdict = "—" if ok is None else ("pass" if ok else "**MISS**")
        out.append((what, value, floors, target, verdict))

    chat = res.get("chat")
    if chat:
        g, f = chat["gateway"], chat["floor"]
        ff = chat.get("floor_fastapi") or {}

        def stack(kind: str, show: Any) -> str:
            """The stack floor's figure for `kind`: show(its run, the floor's run)."""
            return f" / {show(ff[kind], f[kind])}" if kind in ff else ""

        for kind, label in (("json_seq", "sequential"), ("json_c50", "50 in flight")):
            ratio = g[kind]["rps"] / max(1e-9, f[kind]["rps"])
            stack_ratio = stack(kind, lambda r, b: f"{r['rps'] / max(1e-9, b['rps']):.2f}")
            add(
                f"{label} msg/s, gateway / floor (JSON)",
                f"{ratio:.2f} ({g[kind]['rps']:.0f} / {f[kind]['rps']:.0f})",
                f"1.00{stack_ratio}",
                "≥ 0.5",
                ratio >= T_SEQ_RATIO,
            )
        for kind, label in (("json_seq", "JSON"), ("sse_seq", "SSE")):
            a50 = g[kind]["p50_ms"] - f[kind]["p50_ms"]
            a99 = g[kind]["p99_ms"] - f[kind]["p99_ms"]
            floors = stack(
                kind,
                lambda r, b: (
                    f"{r['p50_ms'] - b['p50_ms']:+.2f} / {r['p99_ms'] - b['p99_ms']:+.2f} ms"
                ),
            )
            add(
                f"added latency p50 / p99, sequential ({label})",
                f"{a50:+.2f} / {a99:+.2f} ms",
                f"stack floor {floors[3:]}" if floors else "",
                "≤ 1 ms / ≤ 5 ms",
                a50 <= T_ADDED_P50_MS and a99 <= T_ADDED_P99_MS,
            )
        for kind, label in (("json_seq", "sequential"), ("json_c50", "50 in flight")):
            gc, fc = _cpu_ms(g[kind]), _cpu_ms(f[kind])
            add(
                f"server CPU per message ({label}, JSON)",
                f"{gc:.2f} ms",
                f"{fc:.2f}{stack(kind, lambda r, _b: f'{_cpu_ms(r):.2f}')} ms",
                "≤ 1 ms",
                gc <= T_CPU_MS,
            )
        idle = chat["idle_rss_kib"] / 1024
        add("idle RSS, web chat on", f"{idle:.1f} MiB", _floor_idle(res), "≤ 60 MiB",
            idle <= T_IDLE_MIB)  # fmt: skip
    else:
        add("chat rows", "not run", "", "", None)
    ch = res.get("channels")
    if ch:
        mib = ch["idle_rss_kib"] / 1024
        add(
            "idle RSS, Telegram and Discord enabled",
            f"{mib:.1f} MiB" + ("" if ch["connected"] else " (NOT connected)"),
            "",
            "≤ 80 MiB",
            mib <= T_IDLE_CHANNELS_MIB and ch["connected"],
        )
    la = res.get("launch")
    if la:
        fl = la.get("floor") or {}
        add(
            "launch → /health 200 (median of 5)",
            f"{la['median_s']:.3f} s ({min(la['runs_s']):.2f}–{max(la['runs_s']):.2f})",
            " / ".join(f"{fl[k]['median_s']:.3f}" for k in ("starlette", "fastapi") if k in fl)
            + (" s" if fl else ""),
            "≤ 0.5 s",
            la["median_s"] <= T_LAUNCH_S,
        )
    he = res.get("help")
    if he:
        add(
            "`open-clanker --help` (median of 10)",
            f"{he['median_s']:.3f} s ({min(he['runs_s']):.2f}–{max(he['runs_s']):.2f})",
            "",
            "≤ 0.15 s",
            he["median_s"] <= T_HELP_S,
        )
    ws = res.get("ws")
    if ws:
        held = min(int(ws.get("opened", 0)), int(ws.get("still_open", 0)))
        add(
            f"{ws.get('requested'):,} idle WebSockets",
            f"{held:,} held, {ws['per_conn_kib']:.1f} KiB each",
            "",
            "held, ≤ 20 KiB each",
            held >= int(ws.get("requested", T_WS)) and ws["per_conn_kib"] <= T_WS_KIB,
        )
    if chat:
        growth = (chat["after_rss_kib"] - chat["idle_rss_kib"]) / 1024
        add(f"RSS growth over {chat['messages_sent']:,} messages", f"{growth:+.1f} MiB", "",
            "≤ 10 MiB", growth <= T_GROWTH_MIB)  # fmt: skip
    head = (
        f"Issue 16's table (backend: {res.get('backend', 'sqlite')}; floors: the floor / the "
        "stack floor, the same forwarding on FastAPI with pydantic bodies):\n\n"
    )
    lines = [
        "| measure | this run | floors | target | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in out]
    return head + "\n".join(lines)


def _floor_idle(res: dict[str, Any]) -> str:
    """The floors' idle RSS from the launch suite (median of its starts), if it ran."""
    fl = (res.get("launch") or {}).get("floor") or {}
    mibs = [
        statistics.median(fl[k]["idle_rss_kib"]) / 1024
        for k in ("starlette", "fastapi")
        if fl.get(k, {}).get("idle_rss_kib")
    ]
    return " / ".join(f"{m:.1f}" for m in mibs) + (" MiB" if mibs else "")


def _cpu_ms(r: dict[str, Any]) -> float:
    return 1000 * r["server_cpu_s"] / max(1, r["server_msgs"])


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(r[key]) for r in runs)


def openai_rows(oa: dict[str, Any]) -> list[dict[str, str]]:
    """Each OpenAI-route row against /api/v1/chat measured beside it (medians of the rounds).

    The verdict is on latency from the runs where requests alternate between the two routes:
    both meet the same machine at the same moment. Server CPU per message comes from runs of
    one route alone and is shown with its range over the rounds: on a shared machine it varies
    by ±15 % between rounds of the same route, more than any difference between the routes."""
    rows = []
    labels = {"json_seq": "JSON, sequential", "sse_seq": "SSE, sequential",
              "json_c50": "JSON, 50 in flight"}  # fmt: skip
    for kind, label in labels.items():
        o, c = oa["gateway"][f"openai_{kind}"], oa["gateway"][f"chat_{kind}"]
        fo = oa["floor"][f"openai_{kind}"]
        o_cpus, c_cpus = [_cpu_ms(r) for r in o], [_cpu_ms(r) for r in c]
        o_cpu, c_cpu = statistics.median(o_cpus), statistics.median(c_cpus)
        alt = oa["alternate"][kind]

        def lat(api: str, key: str, runs: list[dict[str, Any]] = alt) -> float:
            return statistics.median(r["by_api"][api][key] for r in runs)

        o50, c50, o99, c99 = (
            lat("openai", "p50_ms"),
            lat("chat", "p50_ms"),
            lat("openai", "p99_ms"),
            lat("chat", "p99_ms"),
        )
        cpu_d = 100 * (o_cpu / c_cpu - 1)
        p50_d = 100 * (o50 / c50 - 1)
        n = sum(r["by_api"]["openai"]["ok"] for r in alt)
        rows.append({
            "what": f"/v1/chat/completions {label}, beside /api/v1/chat",
            "gateway": f"p50 {o50:.2f} ms, p99 {o99:.2f} ms (n={n}); CPU {o_cpu:.2f} ms/msg "
                       f"({min(o_cpus):.2f}–{max(o_cpus):.2f})",
            "floor": f"{fo['rps']:.0f} msg/s; p50 {fo['p50_ms']:.2f} ms; CPU {_cpu_ms(fo):.2f} ms/msg",
            "result": f"/api/v1/chat: p50 {c50:.2f} ms, p99 {c99:.2f} ms; CPU {c_cpu:.2f} ms/msg "
                      f"({min(c_cpus):.2f}–{max(c_cpus):.2f}). OpenAI route: p50 {p50_d:+.1f}%, "
                      f"p99 {100 * (o99 / c99 - 1):+.1f}%, CPU {cpu_d:+.1f}%",
            "target": "same cost within 10 % (p50, alternating): " + verdict(abs(p50_d) <= 10, f"{p50_d:+.1f}%"),
        })  # fmt: skip
    return rows


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0]
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory": mem,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="a tenth of the requests (smoke test)")
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--no-ws", action="store_true")
    p.add_argument("--ws", type=int, default=10_000, help="WebSockets to hold")
    p.add_argument(
        "--only",
        default="",
        help="comma list: chat,openai,ws,launch,help,provider,footprint,channels",
    )
    p.add_argument("--report", metavar="JSON", help="only rebuild the report from a results file")
    p.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument(
        "--pg-url",
        default=os.environ.get("OPENCLAW_BENCH_POSTGRES_URL")
        or os.environ.get("OPENCLAW_TEST_POSTGRES_URL", ""),
        help="a PostgreSQL server URL; each gateway start gets a fresh database on it",
    )
    p.add_argument(
        "--redis-url",
        default=os.environ.get("OPENCLAW_BENCH_REDIS_URL")
        or os.environ.get("OPENCLAW_TEST_REDIS_URL", ""),
        help="the Redis bus for --backend postgres",
    )
    p.add_argument(
        "--whatif",
        action="append",
        default=[],
        metavar="FLAGS",
        help="measure the gateway with fixes patched in, e.g. NODELAY,UVLOOP (repeatable)",
    )
    args = p.parse_args()
    if args.whatif:
        runs = [whatif_suite(tuple(f.split(",")), 10.0) for f in args.whatif]
        (RESULTS / "whatif.json").parent.mkdir(parents=True, exist_ok=True)
        (RESULTS / "whatif.json").write_text(json.dumps(runs, indent=2))
        print("| fixes | JSON seq msg/s | p50 / p99 ms | JSON 50 in flight msg/s | p50 / p99 ms "
              "| SSE seq p50 / p99 ms | CPU ms/msg (seq) |")  # fmt: skip
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for r in runs:
            js, jc, ss = r["json_seq"], r["json_c50"], r["sse_seq"]
            print(f"| {'+'.join(r['flags'])} | {js['rps']:.0f} | {js['p50_ms']:.1f} / {js['p99_ms']:.1f} "
                  f"| {jc['rps']:.0f} | {jc['p50_ms']:.0f} / {jc['p99_ms']:.0f} "
                  f"| {ss['p50_ms']:.1f} / {ss['p99_ms']:.1f} | {js['server_cpu_ms_per_msg']:.1f} |")  # fmt: skip
        return
    if args.report:
        print(build_report(json.loads(Path(args.report).read_text()))[0])
        return
    if args.backend == "postgres":
        if not (args.pg_url and args.redis_url):
            p.error("--backend postgres needs --pg-url and --redis-url (or their env variables)")
        BACKEND.update(name="postgres", pg_url=args.pg_url, redis_url=args.redis_url)
    raise_nofile()
    os.chdir(ROOT)
    RESULTS.mkdir(parents=True, exist_ok=True)
    raw_dir = Path(tempfile.mkdtemp(prefix="clanker-prof-"))
    only = set(filter(None, args.only.split(","))) or {
        "chat", "openai", "ws", "launch", "help", "provider", "footprint", "channels"
    }  # fmt: skip
    if args.no_ws:
        only.discard("ws")
    started = time.perf_counter()
    res: dict[str, Any] = {"machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                           "backend": args.backend}  # fmt: skip
    if "footprint" in only:
        res["footprint"] = footprint.measure()
    if "help" in only:
        res["help"] = help_suite()
    if "launch" in only:
        res["launch"] = launch_suite()
    if "provider" in only:
        res["provider"] = provider_suite(300 if args.quick else 2000)
    if "channels" in only:
        res["channels"] = channels_suite()
    if "chat" in only:
        res["chat"] = chat_suite(args.quick, not args.no_profile, raw_dir)
        res["profiles"] = {
            f.stem: summarize_profile(f) for f in sorted(raw_dir.glob("*.raw")) if f.stat().st_size
        }
    if "openai" in only:
        res["openai"] = openai_suite(args.quick)
    if "ws" in only:
        try:
            res["ws"] = ws_suite(1000 if args.quick else args.ws)
        except Exception as exc:
            res["ws_error"] = repr(exc)
            log(f"ws failed: {exc!r}")
    res["wall_s"] = round(time.perf_counter() - started, 1)
    # A partial run (--only, --quick, --no-ws) must not replace the full results.
    out_name = "latest.json" if not (args.only or args.quick or args.no_ws) else "partial.json"
    if args.backend == "postgres":
        out_name = out_name.replace(".json", "-postgres.json")
    (RESULTS / out_name).write_text(json.dumps(res, indent=2))  # kept even if the report fails
    text, rows = build_report(res)
    res["rows"] = rows
    res["markdown"] = text
    (RESULTS / out_name).write_text(json.dumps(res, indent=2))
    shutil.rmtree(raw_dir, ignore_errors=True)
    print(f"\nMachine: {res['machine']}\nWall time: {res['wall_s']} s\n")
    print(text)
    print(f"\n(wrote {RESULTS / out_name})")


if __name__ == "__main__":
    main()
