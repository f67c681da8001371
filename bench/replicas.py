"""`make bench-replicas`: 1, 2 and 3 gateway replicas on one PostgreSQL and one Redis bus.

Run: `.venv/bin/python -m bench.replicas [--rounds 3] [--count 600] [--concurrency 48]
[--sessions 16] [--delay-ms 20] [--replicas 1,2,3]`. Needs `OPENCLAW_BENCH_POSTGRES_URL` (or
`OPENCLAW_TEST_POSTGRES_URL`) and `OPENCLAW_BENCH_REDIS_URL` (or `OPENCLAW_TEST_REDIS_URL`);
each run gets a fresh database on that server (created and dropped here) and its own bus
namespace. Everything is loopback: the echo model double (tests/doubles/echo_model.py, its own
process, answering "answer to: <text>" after `--delay-ms`), the gateways
(`open-clanker gateway`), the load generator (bench/replicas_load.py, its own process).

For each replica count and round: start the replicas, send `--count` chats round robin over
them (several sessions, more in flight than sessions, so one session's turns wait on several
replicas at once), stop them, then audit the database: every message stored once
(duplicated), answered (lost), by the answer to itself (cross-answered), and each session's
replies stored in the order of its messages (out of order). Prints a markdown table (the
median of the rounds, with their range; the CPU the replicas spent per message, summed over
them, and PostgreSQL's transactions per message) for docs/replicas.md and writes
bench/results/replicas.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench import run_all
from bench.replicas_load import answer_to, text_of

ROOT, PY, CLI, RESULTS = run_all.ROOT, run_all.PY, run_all.CLI, run_all.RESULTS
log, free_port = run_all.log, run_all.free_port
TOKEN = "bench-replicas-token-0123456789"


def wait_ready(url: str, proc: subprocess.Popen[Any], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"a gateway exited with {proc.returncode} before it was ready")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url + "/ready", timeout=1) as r,
        ):
            if r.status == 200:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{url} was not ready within {timeout_s} s")


def stop_all(procs: list[subprocess.Popen[Any]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def _admin(url: str, sql: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval(sql) if sql.startswith("SHOW") else await conn.execute(sql))
    finally:
        await conn.close()


@contextlib.contextmanager
def fresh_database(pg_url: str) -> Iterator[str]:
    name = f"oc_bench_replicas_{secrets.token_hex(4)}"
    asyncio.run(_admin(pg_url, f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(pg_url, name)
    finally:
        asyncio.run(_admin(pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def echo_model(delay_s: float) -> Iterator[str]:
    proc = subprocess.Popen(
        [PY, "-m", "tests.doubles.echo_model", "0", str(delay_s)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("PORT "), line
        yield f"http://127.0.0.1:{int(line.split()[1])}/v1"
    finally:
        stop_all([proc])


def gateway_env(
    data_dir: str, model_url: str, storage_url: str, redis_url: str, ns: str
) -> dict[str, str]:
    """`make bench`'s gateway, on the shared PostgreSQL and Redis."""
    env = run_all.gateway_env(data_dir, model_url, "warning")
    env.update(
        OPENCLAW_GATEWAY_TOKEN=TOKEN,
        OPENCLAW_STORAGE__URL=storage_url,
        OPENCLAW_BUS__URL=redis_url,
        OPENCLAW_BUS__NAMESPACE=ns,
    )
    return env


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


@contextlib.contextmanager
def replicas(
    n: int, model_url: str, storage_url: str, redis_url: str
) -> Iterator[tuple[list[str], list[int]]]:
    ns = f"bench{secrets.token_hex(3)}"
    procs: list[subprocess.Popen[Any]] = []
    dirs = [tempfile.mkdtemp(prefix="clanker-bench-replica-") for _ in range(n)]
    urls = []
    try:
        for data_dir in dirs:
            port = free_port()
            procs.append(
                subprocess.Popen(
                    [CLI, "gateway", "--port", str(port)],
                    cwd=data_dir,
                    env=gateway_env(data_dir, model_url, storage_url, redis_url, ns),
                    stdout=subprocess.DEVNULL,
                    stderr=open(Path(data_dir) / "gateway.stderr", "ab"),  # noqa: SIM115
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        for url, proc in zip(urls, procs, strict=True):
            wait_ready(url, proc, 60)
        yield urls, [p.pid for p in procs]
    finally:
        stop_all(procs)
        for data_dir in dirs:
            with contextlib.suppress(OSError):
                err = (Path(data_dir) / "gateway.stderr").read_text(errors="replace")
                if "Traceback" in err:
                    log(f"a replica logged a traceback:\n{err[-2000:]}")


def load(urls: list[str], args: argparse.Namespace, tag: str) -> dict[str, Any]:
    cmd = [
        PY, "-m", "bench.replicas_load", "--urls", ",".join(urls), "--token", TOKEN,
        "--count", str(args.count), "--concurrency", str(args.concurrency),
        "--sessions", str(args.sessions), "--warmup", str(args.warmup),
        "--max-seconds", str(args.max_seconds), "--tag", tag,
    ]  # fmt: skip
    out = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=args.max_seconds * 3 + 120
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


async def _rows(storage_url: str) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(storage_url)
    try:
        return list(
            await conn.fetch(
                "SELECT seq, id, session_key, role, text, answers_id FROM messages ORDER BY seq"
            )
        )
    finally:
        await conn.close()


def audit(storage_url: str, tag: str, sent: int, sessions: int) -> dict[str, int]:
    """What storage says about the `sent` measured messages (the warm-up is left out)."""
    rows = asyncio.run(_rows(storage_url))
    users: dict[str, list[Any]] = defaultdict(list)
    replies: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        if r["role"] == "user":
            users[r["text"]].append(r)
        elif r["answers_id"] is not None:
            replies[r["answers_id"]].append(r)
    duplicated = lost = cross = 0
    for i in range(sent):
        text, _session = text_of(tag, i, sessions)
        stored = users.get(text, [])
        duplicated += max(0, len(stored) - 1)
        answers = [a for u in stored for a in replies.get(u["id"], [])]
        duplicated += max(0, len(answers) - len(stored))
        lost += not answers
        cross += sum(1 for a in answers if a["text"] != answer_to(text))
    # A session's replies must be stored in the order of the messages they answer.
    by_session: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        if r["role"] == "user" and r["text"].startswith(f"{tag} m"):
            by_session[r["session_key"]].append(r)
    out_of_order = 0
    for questions in by_session.values():
        seqs = [replies[q["id"]][0]["seq"] for q in questions if replies.get(q["id"])]
        out_of_order += sum(1 for a, b in itertools.pairwise(seqs) if b < a)
    return {"duplicated": duplicated, "lost": lost, "db_cross": cross, "out_of_order": out_of_order}


async def _transactions(storage_url: str) -> int:
    """Transactions PostgreSQL counted in this database so far (pg_stat_database)."""
    import asyncpg

    conn = await asyncpg.connect(storage_url)
    try:
        value = await conn.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        return int(value or 0)
    finally:
        await conn.close()


def one_run(n: int, rnd: int, model_url: str, args: argparse.Namespace) -> dict[str, Any]:
    tag = f"r{n}x{rnd}"
    with fresh_database(args.pg) as storage_url:
        with replicas(n, model_url, storage_url, args.redis) as (urls, pids):
            xacts = asyncio.run(_transactions(storage_url))
            before = cpu_s(pids)
            result = load(urls, args, tag)
            # All replicas together, per message (the warm-up's messages included).
            spent = cpu_s(pids) - before
            messages = max(1, result["sent"] + args.warmup)
            result["cpu_ms_msg"] = round(spent * 1000 / messages, 2)
        # Read once the replicas have stopped: a backend reports its counts when it exits
        # (their shutdown's few transactions, and some of their start's, are counted too).
        xacts = asyncio.run(_transactions(storage_url)) - xacts
        result["pg_xact_msg"] = round(xacts / messages, 1)
        result |= audit(storage_url, tag, result["sent"], args.sessions)
    result["cross_answered"] += result.pop("db_cross")
    result["replicas"] = n
    log(f"{n} replica(s), round {rnd + 1}: {json.dumps(result)}")
    return result


def machine(pg_url: str) -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    pg = asyncio.run(_admin(pg_url, "SHOW server_version")).split(" ")[0]
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, PostgreSQL {pg}"


def table(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        "| replicas | sent | answered | duplicated | lost | cross-answered | out of order "
        "| msg/s (median, range) | p50 ms | p99 ms | gateway CPU ms/msg | PG transactions/msg |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for n in sorted({r["replicas"] for r in results}):
        runs = [r for r in results if r["replicas"] == n]

        def total(key: str, runs: list[dict[str, Any]] = runs) -> int:
            return sum(int(r[key]) for r in runs)

        rates = [float(r["msg_s"]) for r in runs]
        p50 = statistics.median(float(r["p50_ms"] or 0) for r in runs)
        p99 = statistics.median(float(r["p99_ms"] or 0) for r in runs)
        lines.append(
            f"| {n} | {total('sent')} | {total('answered')} | {total('duplicated')} "
            f"| {total('lost')} | {total('cross_answered')} | {total('out_of_order')} "
            f"| {statistics.median(rates):.0f} ({min(rates):.0f}–{max(rates):.0f}) "
            f"| {p50:.0f} | {p99:.0f} "
            f"| {statistics.median(float(r['cpu_ms_msg']) for r in runs):.1f} "
            f"| {statistics.median(float(r['pg_xact_msg']) for r in runs):.1f} |"
        )
    lines.append("")
    lines.append(
        f"{args.rounds} round(s) per row, counts summed over rounds; {args.count} chats per "
        f"round, {args.concurrency} in flight, {args.sessions} sessions, model double "
        f"{args.delay_ms} ms; {machine(args.pg)}; load average {args.load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after (the machine is shared)."
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--delay-ms", type=int, default=20)
    parser.add_argument("--max-seconds", type=float, default=45)
    parser.add_argument("--replicas", default="1,2,3")
    args = parser.parse_args()
    args.pg = os.environ.get("OPENCLAW_BENCH_POSTGRES_URL") or os.environ.get(
        "OPENCLAW_TEST_POSTGRES_URL", ""
    )
    args.redis = os.environ.get("OPENCLAW_BENCH_REDIS_URL") or os.environ.get(
        "OPENCLAW_TEST_REDIS_URL", ""
    )
    if not (args.pg and args.redis):
        log(
            "bench-replicas needs a PostgreSQL server and a Redis: set "
            "OPENCLAW_BENCH_POSTGRES_URL and OPENCLAW_BENCH_REDIS_URL (or the _TEST_ ones)"
        )
        return 2
    counts = [int(n) for n in args.replicas.split(",")]
    args.load_before = os.getloadavg()[0]
    results = []
    started = time.monotonic()
    with echo_model(args.delay_ms / 1000) as model_url:
        # Rounds interleave the replica counts, so a noisy minute on the machine does not
        # land on one row only.
        for rnd in range(args.rounds):
            for n in counts:
                results.append(one_run(n, rnd, model_url, args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "replicas.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table(results, args))
    log(f"bench-replicas took {time.monotonic() - started:.0f} s")
    broken = sum(
        r["duplicated"] + r["lost"] + r["cross_answered"] + r["out_of_order"] for r in results
    )
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
