"""`make soak`: 100,000 messages through the API into one gateway; RSS and latency per 10,000.

Run: `.venv/bin/python -m bench.soak [--messages 100000] [--chunk 10000] [--concurrency 4]`.
The gateway and the model double as `make bench` starts them (web chat on, SQLite in a fresh
data dir, every message and reply stored; 50 sessions, so each turn reads 40 history messages
from a table that ends with 200,000 rows). After each chunk: the gateway's RSS, the chunk's
msg/s, p50 and p99. "Flat": RSS from the second chunk on grows by at most 5 MiB in all, and the
last three chunks' median p99 is at most 1.5× the median p99 of chunks 2–4 (the first chunk
warms up: bytecode, caches, the heap reaching its working size), and the SQLite WAL (read in
the gateway's data dir) stays under 64 MiB: a WAL that never restarts grows with every message
(it did once, to 2.1 GB: docs/benchmarks.md, "Soak").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from bench import run_all

RSS_FLAT_MIB = 5.0
P99_FLAT_RATIO = 1.5
WAL_BOUND_MIB = 64.0


def wal_mib(pid: int) -> float:
    """The gateway's WAL file (its data dir is its working directory: run_all.spawn_gateway)."""
    wal = Path(os.readlink(f"/proc/{pid}/cwd")) / "open-clanker.db-wal"
    return round(wal.stat().st_size / 2**20, 1) if wal.exists() else 0.0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--chunk", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=4)
    args = p.parse_args()
    rows = []
    started = time.perf_counter()
    with run_all.model_double() as double, run_all.gateway(double, "warning") as (base, pid):
        time.sleep(1.0)
        idle = run_all.rss_kib(pid)
        sent = 0
        while sent < args.messages:
            n = min(args.chunk, args.messages - sent)
            cpu0 = run_all.cpu_s(pid)
            r = run_all.load(base, n, args.concurrency, False, 0, 3600.0, offset=sent)
            cpu = run_all.cpu_s(pid) - cpu0
            sent += r["sent"]
            row = {"messages": sent, "rss_mib": round(run_all.rss_kib(pid) / 1024, 1),
                   "wal_mib": wal_mib(pid), "rps": r["rps"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
                   "errors": r["sent"] - r["ok"], "cpu_ms_per_msg": round(1000 * cpu / n, 2)}  # fmt: skip
            rows.append(row)
            run_all.log(f"soak: {row}")
    rss = [r["rss_mib"] for r in rows]
    p99 = [r["p99_ms"] for r in rows]
    rss_growth = max(rss[1:]) - rss[1] if len(rss) > 1 else 0.0
    early = statistics.median(p99[1:4]) if len(p99) >= 4 else p99[0]
    late = statistics.median(p99[-3:])
    wal = max(r["wal_mib"] for r in rows)
    flat = rss_growth <= RSS_FLAT_MIB and late <= P99_FLAT_RATIO * early and wal <= WAL_BOUND_MIB
    print(f"idle RSS {idle / 1024:.1f} MiB; {sent:,} messages, concurrency {args.concurrency}, "
          f"{time.perf_counter() - started:.0f} s\n")  # fmt: skip
    print("| messages | RSS MiB | WAL MiB | msg/s | p50 ms | p99 ms | server CPU ms/msg | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['messages']:,} | {r['rss_mib']} | {r['wal_mib']} | {r['rps']:.0f} | {r['p50_ms']:.2f} "
              f"| {r['p99_ms']:.2f} | {r['cpu_ms_per_msg']} | {r['errors']} |")  # fmt: skip
    print(f"\nRSS from chunk 2 on: +{rss_growth:.1f} MiB (flat: ≤ {RSS_FLAT_MIB} MiB); p99 last "
          f"three {late:.2f} ms vs chunks 2–4 {early:.2f} ms ({late / early:.2f}×, flat: ≤ "
          f"{P99_FLAT_RATIO}×); WAL at most {wal} MiB (≤ {WAL_BOUND_MIB:.0f}): "
          f"{'FLAT' if flat else 'NOT FLAT'}")  # fmt: skip
    run_all.RESULTS.mkdir(parents=True, exist_ok=True)
    (run_all.RESULTS / "soak.json").write_text(json.dumps({"idle_kib": idle, "rows": rows}))


if __name__ == "__main__":
    main()
